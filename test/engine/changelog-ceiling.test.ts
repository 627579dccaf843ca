/**
 * The change log's memory ceiling (issue 13, item 2; docs/migration.md "The change log's
 * ceiling"). A pre-copy save with a tiny ceiling (SAVE_BEGIN arg2, KiB) under a writer that
 * puts, replaces and flushes far more often than the log has entries for between two drains:
 * every page still arrives on the target with its last bytes, nothing flushed reappears (the
 * oracle is a Map of what was last written per page), and the log's memory (entries times the
 * measured bytes of an entry, read from the engine's own lists) stays under the ceiling after
 * every op. When more distinct pages change between two drains than even one key per page
 * fits, SAVE_GET_CHANGES answers -ENOSPC, the log holds nothing, and after SAVE_END the
 * client is as before: running, every page there.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Host, type TmemOp } from '../../src/index.js'
import type { ChangeLog } from '../../src/engine/changelog.js'
import { checkInvariants } from '../../src/engine/invariants.js'
import { xorshift32 } from '../helpers/prng.js'

const PAGE = 4096
// Numbers typed from docs/abi.md and docs/migration.md, not imported from the engine.
const CONTROL = 0
const RESTORE_NEW = 102
const SAVE_BEGIN = 10
const SAVE_END = 21
const RESTORE_BEGIN = 30
const SAVE_GET_PAGES = 40
const SAVE_GET_CHANGES = 41
const RESTORE_PAGES = 42
const PRECOPY = 2
const RECORD_HEADER = 40
const ENOSPC = -28
/** The ceiling given to SAVE_BEGIN: 8 KiB. */
const CEILING_KIB = 8
/** Heap bytes per entry measured for the log's list and its dirty set (docs/migration.md). */
const LIST_ENTRY_BYTES = 300
const DIRTY_ENTRY_BYTES = 200
/** Distinct pages the writer touches: fewer than the set holds (8 KiB / 200 B = 40). */
const HOT_PAGES = 30
const ID = 5

function ctrl(subop: number, cliId: number, poolId = 0, arg1 = 0, arg2 = 0): TmemOp {
  return { cmd: CONTROL, poolId, ctrl: { subop, cliId, arg1, arg2, oid: [0n, 0n, 0n], buf: 0n } }
}

function page(tag: number): Uint8Array {
  const bytes = new Uint8Array(PAGE)
  for (let i = 0; i < PAGE; i += 8) bytes[i] = (tag * 131 + i) & 0xff
  bytes[1] = tag & 0xff
  bytes[2] = (tag >> 8) & 0xff
  bytes[3] = (tag >> 16) & 0xff
  return bytes
}

function batchBytes(buffer: Uint8Array, count: number): number {
  let at = 0
  for (let i = 0; i < count; i++) at += RECORD_HEADER + (buffer[at + 32] === 1 ? PAGE : 0)
  return at
}

void test('a tiny change-log ceiling: every last write arrives, the log stays under it', () => {
  const source = new Host({ pages: 512, reservePages: 0 })
  const target = new Host({ pages: 512, reservePages: 0 })
  const pool = source.client(ID).newPool({ persistent: true })
  const model = new Map<number, number | null>()
  let version = 0
  const write = (n: number): void => {
    version++
    assert.equal(pool.put([BigInt(n), 0n, 0n], n, page(version)), true)
    model.set(n, version)
  }
  for (let n = 0; n < 200; n++) write(n)

  assert.equal(source.control(ctrl(SAVE_BEGIN, ID, 0, PRECOPY, CEILING_KIB)), 1)
  assert.equal(target.control(ctrl(RESTORE_BEGIN, ID)), 1)
  const flags = 0x01000001
  const creat = { uuid: [0n, 0n] as [bigint, bigint], flags, arg1: ID }
  assert.equal(target.control({ cmd: RESTORE_NEW, poolId: pool.poolId, creat }), pool.poolId)
  const client = source.core.clientsById[ID]!
  const log = source.core.changeLog as ChangeLog
  const ceiling = CEILING_KIB * 1024
  let peakEntries = 0
  const buffer = new Uint8Array(6 * (RECORD_HEADER + PAGE))
  const move = (subop: number): number => {
    const count = source.control(ctrl(subop, ID, pool.poolId, buffer.length), buffer)
    assert.ok(count >= 0, `subop ${subop}: ${count}`)
    if (count > 0)
      assert.equal(
        target.control(ctrl(RESTORE_PAGES, ID, 0, batchBytes(buffer, count)), buffer),
        count,
      )
    return count
  }
  const next = xorshift32(0x5eed)
  let changesSinceDrain = 0
  let mostBetweenDrains = 0
  const writer = (ops: number): void => {
    for (let i = 0; i < ops; i++) {
      const n = Math.floor(next() * HOT_PAGES) * 7
      if (next() < 0.2) {
        pool.flushPage([BigInt(n), 0n, 0n], n)
        model.set(n, null)
      } else {
        write(n)
      }
      changesSinceDrain++
      const held = log.heldBytes(client)
      assert.ok(held <= ceiling, `the log holds ${held} bytes, over ${ceiling}`)
      const entries = client.invalidated.length
      assert.ok(entries * LIST_ENTRY_BYTES <= ceiling, `${entries} list entries`)
      peakEntries = Math.max(peakEntries, held / Math.min(LIST_ENTRY_BYTES, DIRTY_ENTRY_BYTES))
    }
  }
  // The first pass: a batch of pages, then 150 ops of the writer (far past the list's room of
  // 8192 / 300 = 27 entries), with no drain until the pass is done. The pass is bounded by the
  // pages there at its start (pages put again later are in the change log anyway).
  let remaining = model.size
  while (remaining > 0) {
    const count = move(SAVE_GET_PAGES)
    if (count === 0) break
    remaining -= count
    writer(150)
  }
  mostBetweenDrains = changesSinceDrain
  // Change rounds under the writer, then the last drains with the writer stopped.
  for (let round = 0; round < 20; round++) {
    writer(100)
    mostBetweenDrains = Math.max(mostBetweenDrains, changesSinceDrain)
    changesSinceDrain = 0
    while (move(SAVE_GET_CHANGES) > 0);
  }
  while (move(SAVE_GET_CHANGES) > 0);
  assert.equal(log.heldBytes(client), 0, 'drained')
  assert.equal(source.control(ctrl(SAVE_END, ID)), 0)
  assert.ok(mostBetweenDrains * LIST_ENTRY_BYTES > 10 * ceiling, 'the writer outran the list')
  assert.ok(peakEntries > 0)
  checkInvariants(source)
  checkInvariants(target)

  const moved = target.client(ID).pool(pool.poolId)
  for (const [n, want] of model) {
    const got = moved.get([BigInt(n), 0n, 0n], n)
    if (want === null) assert.equal(got, null, `page ${n} was flushed and came back`)
    else assert.deepEqual(got, page(want), `page ${n}: not its last write`)
  }
  const live = [...model.values()].filter((want) => want !== null).length
  assert.equal(target.stats().persistentPages, live)
})

void test('more distinct pages than the ceiling holds: -ENOSPC, nothing held, client intact', () => {
  const source = new Host({ pages: 512, reservePages: 0 })
  const pool = source.client(ID).newPool({ persistent: true })
  for (let n = 0; n < 100; n++) pool.put([BigInt(n), 0n, 0n], 0, page(n))
  assert.equal(source.control(ctrl(SAVE_BEGIN, ID, 0, PRECOPY, CEILING_KIB)), 1)
  const client = source.core.clientsById[ID]!
  const log = source.core.changeLog as ChangeLog
  // 100 distinct pages changed, no drain: more than 8192 / 200 = 40 keys.
  for (let n = 0; n < 100; n++) {
    pool.put([BigInt(n), 0n, 0n], 0, page(1000 + n))
    assert.ok(log.heldBytes(client) <= CEILING_KIB * 1024)
  }
  assert.equal(log.heldBytes(client), 0, 'the log was dropped')
  const buffer = new Uint8Array(4 * (RECORD_HEADER + PAGE))
  assert.equal(source.control(ctrl(SAVE_GET_CHANGES, ID, 0, buffer.length), buffer), ENOSPC)
  assert.equal(source.control(ctrl(SAVE_GET_CHANGES, ID, 0, buffer.length), buffer), ENOSPC)
  // The rollback's SAVE_END: the client runs on with every page, and a new save starts clean.
  assert.equal(source.control(ctrl(SAVE_END, ID)), 0)
  assert.equal(pool.put([1n, 0n, 0n], 0, page(7)), true)
  for (let n = 0; n < 100; n++) {
    assert.deepEqual(pool.get([BigInt(n), 0n, 0n], 0), page(n === 1 ? 7 : 1000 + n))
  }
  assert.equal(source.control(ctrl(SAVE_BEGIN, ID, 0, PRECOPY, CEILING_KIB)), 1)
  assert.equal(source.control(ctrl(SAVE_GET_CHANGES, ID, 0, buffer.length), buffer), 0)
  assert.equal(source.control(ctrl(SAVE_END, ID)), 0)
  checkInvariants(source)
})
