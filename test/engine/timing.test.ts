/**
 * The cycle statistics of the LIST `T=` line and the clients' `Tc` (docs/semantics.md "LIST",
 * Xen's tmemc list code as the oracle for what the keys mean):
 *
 *  - page copies (`C`), compressions (`c`) and decompressions (`d`) are counted and timed,
 *    counted by hand here for a known op sequence with a clock that moves 1000 per reading;
 *  - whatever the sampling, every `T=` category keeps `n`, sum, max and min consistent (n = 0
 *    with t = x = 0 and m = 2147483647, or m <= t/n <= x), the clients' `Tc` add up to the
 *    sum of the per-op categories, and no client that made a timed op shows `Tc:0`: invariants
 *    checked over LIST after random op sequences (fast-check), against the ops this test made.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { availableCodecs } from '../../src/engine/codecs.js'
import type { HostOptions } from '../../src/engine/options.js'
import { ALL, E, F, Harness, lineItems, page, SUB } from './conformance-helpers.js'

const MIN_UNUSED = 2147483647
const TAGS = ['G', 'P', 'g', 'p', 'F', 'O', 'C', 'c', 'd'] as const
/** The categories a client's `Tc` is made of (copies and codec calls are not per client). */
const OP_TAGS = ['G', 'P', 'g', 'p', 'F', 'O'] as const

interface Sample {
  n: number
  t: number
  x: number
  m: number
}

function timeLine(h: Harness): Map<string, Sample> {
  const line = h
    .list(ALL, true)
    .split('\n')
    .find((l) => l.startsWith('T='))
  assert.ok(line !== undefined, 'a T= line')
  const items = lineItems(line)
  const value = (key: string): number => Number(items.get(key))
  return new Map(
    TAGS.map((tag) => [
      tag,
      { n: value(`${tag}n`), t: value(`${tag}t`), x: value(`${tag}x`), m: value(`${tag}m`) },
    ]),
  )
}

/** `Tc` of every listed client, by id. */
function clientCycles(h: Harness): Map<number, number> {
  const cycles = new Map<number, number>()
  for (const line of h.list(ALL, false).split('\n')) {
    if (!line.startsWith('C=')) continue
    const items = lineItems(line)
    cycles.set(Number(items.get('CI')), Number(items.get('Tc')))
  }
  return cycles
}

/** A clock that moves `step` per reading. */
function stepClock(step: number): () => number {
  let now = 0
  return () => (now += step)
}

void describe('T= counts page copies, compressions and decompressions', () => {
  void test('plain pages: one copy per put and per get hit, each timed', () => {
    const h = new Harness({ pages: 64, reservePages: 0, clockNs: stepClock(1000) })
    assert.equal(h.newPool(1, F.PRIVATE_PERS), 0)
    for (let i = 0; i < 5; i++) assert.equal(h.put(1, 0, i, 0, page(i)), 1)
    assert.equal(h.put(1, 0, 0, 0, page(9)), 1) // a duplicate put copies too
    for (let i = 0; i < 3; i++) assert.equal(h.get(1, 0, i, 0), 1)
    assert.equal(h.get(1, 0, 42, 0), 0) // a miss copies nothing
    assert.equal(h.put(1, 0, 50, 0, null), E.FAULT) // no frame: nothing copied
    const t = timeLine(h)
    // Each copy reads the clock twice (1000 apart); each op that copies reads it four times.
    assert.deepEqual(t.get('C'), { n: 9, t: 9000, x: 1000, m: 1000 })
    assert.deepEqual(t.get('P'), { n: 6, t: 18000, x: 3000, m: 3000 })
    assert.deepEqual(t.get('G'), { n: 3, t: 9000, x: 3000, m: 3000 })
    assert.deepEqual(t.get('g'), { n: 1, t: 1000, x: 1000, m: 1000 })
    assert.deepEqual(t.get('p'), { n: 1, t: 1000, x: 1000, m: 1000 })
    assert.deepEqual(t.get('c'), { n: 0, t: 0, x: 0, m: MIN_UNUSED })
    assert.deepEqual(t.get('d'), { n: 0, t: 0, x: 0, m: MIN_UNUSED })
    assert.equal(clientCycles(h).get(1), 18000 + 9000 + 1000 + 1000)
  })

  const codec = availableCodecs()[0]
  void test('compressed pages: a compression per put, a decompression per get', () => {
    const options: HostOptions = { pages: 64, reservePages: 0, clockNs: stepClock(10) }
    if (codec !== undefined) options.codec = codec
    const h = new Harness(options)
    assert.equal(h.newPool(1, F.PRIVATE_PERS), 0)
    assert.equal(h.ctrl(SUB.SET_COMPRESS, { cliId: 1, arg1: 1 }), 0)
    // Text-like pages compress; a put goes caller -> scratch (copy), then the codec.
    const text = new Uint8Array(4096)
    for (let i = 0; i < text.length; i++) text[i] = 0x41 + ((i >> 5) % 7)
    for (let i = 0; i < 4; i++) assert.equal(h.put(1, 0, i, 0, text), 1)
    for (let i = 0; i < 2; i++) assert.equal(h.get(1, 0, i, 0), 1)
    const t = timeLine(h)
    assert.equal(h.stat('C=CI:1,', 'cp'), 4, 'the pages are stored compressed')
    assert.equal(t.get('c')!.n, 4)
    assert.equal(t.get('d')!.n, 2)
    // Copies: 4 into the scratch page, 2 from the scratch page out to the caller.
    assert.equal(t.get('C')!.n, 6)
    for (const tag of ['C', 'c', 'd']) assert.equal(t.get(tag)!.m, 10, `${tag}m`)
  })
})

// ---------------------------------------------------------------------------------------------
// Consistency whatever the sampling.

type Op =
  | { k: 'put'; c: number; pool: number; oid: number; index: number; frame: boolean }
  | { k: 'get'; c: number; pool: number; oid: number; index: number }
  | { k: 'flushPage'; c: number; pool: number; oid: number; index: number }
  | { k: 'flushObject'; c: number; pool: number; oid: number }
  | { k: 'destroy'; c: number; pool: number }
  | { k: 'newPool'; c: number; flags: number }

const opArbitrary: fc.Arbitrary<Op> = (() => {
  const c = fc.integer({ min: 1, max: 4 })
  const pool = fc.integer({ min: 0, max: 3 })
  const oid = fc.nat(5)
  const index = fc.nat(7)
  const r = <T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> =>
    fc.record(model, { noNullPrototype: true })
  return fc.oneof(
    {
      weight: 6,
      arbitrary: r({ k: fc.constant('put' as const), c, pool, oid, index, frame: fc.boolean() }),
    },
    { weight: 6, arbitrary: r({ k: fc.constant('get' as const), c, pool, oid, index }) },
    { weight: 2, arbitrary: r({ k: fc.constant('flushPage' as const), c, pool, oid, index }) },
    { weight: 1, arbitrary: r({ k: fc.constant('flushObject' as const), c, pool, oid }) },
    { weight: 1, arbitrary: r({ k: fc.constant('destroy' as const), c, pool }) },
    {
      weight: 2,
      arbitrary: r({
        k: fc.constant('newPool' as const),
        c,
        flags: fc.constantFrom(F.PRIVATE_EPH, F.PRIVATE_PERS),
      }),
    },
  )
})()

type ClockKind = 'default' | 'step'

/** Runs the ops; returns the clients that made a timed op (one that reached a live pool). */
function runOps(h: Harness, ops: Op[]): Set<number> {
  const timed = new Set<number>()
  for (const op of ops) {
    let rc: number
    switch (op.k) {
      case 'newPool':
        h.newPool(op.c, op.flags)
        continue
      case 'put':
        rc = h.put(op.c, op.pool, op.oid, op.index, op.frame ? page(op.index) : null)
        break
      case 'get':
        rc = h.get(op.c, op.pool, op.oid, op.index)
        break
      case 'flushPage':
        rc = h.flushPage(op.c, op.pool, op.oid, op.index)
        break
      case 'flushObject':
        rc = h.flushObject(op.c, op.pool, op.oid)
        break
      case 'destroy':
        rc = h.destroy(op.c, op.pool)
        // DESTROY_POOL is timed whatever it returns.
        timed.add(op.c)
        continue
    }
    if (rc !== E.NODEV) timed.add(op.c)
  }
  return timed
}

function checkConsistent(h: Harness, timed: Set<number>, clock: ClockKind): void {
  const t = timeLine(h)
  // Rounding to whole units can move a total, a max or a min by half a unit each.
  const slack = clock === 'default' ? 1 : 0
  for (const [tag, s] of t) {
    if (s.n === 0) {
      assert.deepEqual(s, { n: 0, t: 0, x: 0, m: MIN_UNUSED }, `${tag}: an unused category`)
      continue
    }
    assert.ok(Number.isInteger(s.n) && s.n > 0, `${tag}n`)
    assert.ok(s.m > 0 && s.m <= s.x, `${tag}: 0 < min ${s.m} <= max ${s.x}`)
    assert.ok(s.t + slack * s.n >= s.m * s.n, `${tag}: total ${s.t} >= n ${s.n} x min ${s.m}`)
    assert.ok(s.t <= s.x * s.n + slack * s.n, `${tag}: total ${s.t} <= n ${s.n} x max ${s.x}`)
  }
  const cycles = clientCycles(h)
  let sum = 0
  for (const [id, tc] of cycles) {
    sum += tc
    if (timed.has(id)) assert.ok(tc > 0, `client ${id} made timed ops but lists Tc:0`)
  }
  const opTotal = OP_TAGS.reduce((total, tag) => total + t.get(tag)!.t, 0)
  const opCount = OP_TAGS.reduce((total, tag) => total + t.get(tag)!.n, 0)
  assert.ok(
    Math.abs(sum - opTotal) <= slack * (opCount + cycles.size),
    `the clients' Tc sum to ${sum}, the timed ops to ${opTotal}`,
  )
}

void test('T= and Tc stay consistent whatever the clock and the sampling (random ops)', () => {
  fc.assert(
    fc.property(
      fc.constantFrom<ClockKind>('default', 'step'),
      fc.constantFrom(1, 4, 64),
      fc.array(opArbitrary, { minLength: 1, maxLength: 150 }),
      (clock, sample, ops) => {
        const options: HostOptions = { pages: 24, reservePages: 0, timingSample: sample }
        if (clock === 'step') options.clockNs = stepClock(7)
        const h = new Harness(options)
        for (let c = 1; c <= 4; c++) h.newPool(c, c % 2 === 0 ? F.PRIVATE_PERS : F.PRIVATE_EPH)
        const timed = runOps(h, ops)
        checkConsistent(h, timed, clock)
      },
    ),
    { numRuns: 150 },
  )
})
