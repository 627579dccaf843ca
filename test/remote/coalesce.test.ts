/**
 * Joining a batch of changes into commands (src/remote/coalesce.ts), against a model: the
 * cluster as a map of hashes and sets, the changes applied one by one in queue order is what
 * the joined commands, applied in their issue order, must leave; every write is acknowledged
 * exactly once by the command that carries it; removals from the index sets keep their order.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { type Command, coalesce } from '../../src/remote/coalesce.js'
import type { Change } from '../../src/remote/queue.js'
import { xorshift32 } from '../helpers/prng.js'

type Model = Map<string, Map<string, string>>

/** One change on its own, as a single-command client would send it. */
function applyChange(model: Model, change: Change): void {
  const hash = model.get(change.key) ?? new Map<string, string>()
  model.set(change.key, hash)
  if (change.kind === 'put') hash.set(String(change.index), change.value.toString())
  else if (change.kind === 'hdel') hash.delete(String(change.index))
  else if (change.kind === 'del') hash.clear()
  else if (change.kind === 'sadd') hash.set(change.member, '1')
  else hash.delete(change.member)
}

/** A joined command, as Redis runs it (HSET pairs left to right). */
function applyCommand(model: Model, command: Command): void {
  const hash = model.get(command.key) ?? new Map<string, string>()
  model.set(command.key, hash)
  if (command.kind === 'hset') {
    for (let i = 0; i < command.args.length; i += 2)
      hash.set(String(command.args[i]), command.args[i + 1]!.toString())
  } else if (command.kind === 'hdel') for (const field of command.fields) hash.delete(field)
  else if (command.kind === 'sadd') for (const member of command.members) hash.set(member, '1')
  else applyChange(model, command)
}

function randomBatch(next: () => number, length: number, acks: number[]): Change[] {
  const keys = ['{a}', '{b}', '{c}']
  const batch: Change[] = []
  for (let i = 0; i < length; i++) {
    const key = keys[Math.floor(next() * keys.length)]!
    const index = Math.floor(next() * 4)
    const pick = next()
    if (pick < 0.5) {
      const id = i
      batch.push({
        kind: 'put',
        key,
        index,
        value: Buffer.from(`v${i}`),
        replicas: next() < 0.8 ? 0 : 1,
        demotion: false,
        done: () => acks.push(id),
      })
    } else if (pick < 0.75) batch.push({ kind: 'hdel', key, index })
    else if (pick < 0.85) batch.push({ kind: 'del', key })
    else batch.push({ kind: next() < 0.5 ? 'sadd' : 'srem', key: '{i}:objects', member: key })
  }
  return batch
}

void test('joined commands leave the cluster as the changes one by one would', () => {
  const next = xorshift32(14)
  for (let round = 0; round < 500; round++) {
    const acks: number[] = []
    const batch = randomBatch(next, 1 + Math.floor(next() * 40), acks)
    const expected: Model = new Map()
    for (const change of batch) applyChange(expected, change)
    const commands = coalesce(batch)
    const actual: Model = new Map()
    for (const command of commands) applyCommand(actual, command)
    assert.deepEqual(actual, expected, `round ${round}`)
    // Each write acknowledged once, by its command.
    for (const command of commands)
      if (command.kind === 'hset') for (const done of command.done) done(true)
    const puts = batch.flatMap((c, i) => (c.kind === 'put' ? [i] : []))
    assert.deepEqual(
      [...acks].sort((a, b) => a - b),
      puts,
    )
    // The index's removals keep their order and are never joined.
    const removals = (list: readonly (Change | Command)[]): string[] =>
      list.flatMap((c) => (c.kind === 'srem' ? [c.member] : []))
    assert.deepEqual(removals(commands), removals(batch))
    assert.ok(commands.length <= batch.length)
  }
})

void test('sixteen writes to one object and their deletes become one HSET and one HDEL', () => {
  const batch: Change[] = []
  for (let i = 0; i < 16; i++) {
    const done = (): void => undefined
    batch.push({
      kind: 'put',
      key: '{o}',
      index: i,
      value: Buffer.from([i]),
      replicas: 0,
      demotion: true,
      done,
    })
  }
  for (let i = 0; i < 16; i++) batch.push({ kind: 'hdel', key: '{p}', index: i })
  const commands = coalesce(batch)
  assert.deepEqual(
    commands.map((c) => [
      c.kind,
      c.kind === 'hset' ? c.args.length : c.kind === 'hdel' ? c.fields.length : 0,
    ]),
    [
      ['hset', 32],
      ['hdel', 16],
    ],
  )
})
