/**
 * The live-migration extension subops (docs/migration.md): a pre-copy save keeps the client
 * running, logs every persistent change, and the page record batches move a client's
 * persistent pages to another host. The oracle is a plain Map of what the writer last put.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Host, type TmemOp } from '../../src/index.js'
import { checkInvariants } from '../../src/engine/invariants.js'

const PAGE = 4096
// Numbers typed from docs/migration.md and spec §2.2, not imported from the engine.
const CONTROL = 0
const RESTORE_NEW = 102
const SAVE_BEGIN = 10
const SAVE_END = 21
const RESTORE_BEGIN = 30
const FREEZE = 1
const SAVE_GET_PAGES = 40
const SAVE_GET_CHANGES = 41
const RESTORE_PAGES = 42
const PRECOPY = 2
const RECORD_HEADER = 40

function ctrl(subop: number, cliId: number, poolId = 0, arg1 = 0): TmemOp {
  return { cmd: CONTROL, poolId, ctrl: { subop, cliId, arg1, arg2: 0, oid: [0n, 0n, 0n], buf: 0n } }
}

function page(tag: number): Uint8Array {
  const bytes = new Uint8Array(PAGE)
  for (let i = 0; i < PAGE; i += 4) bytes[i] = (tag * 31 + i) & 0xff
  bytes[1] = tag & 0xff
  bytes[2] = (tag >> 8) & 0xff
  return bytes
}

/** Copies every record of `buffer[0..bytes]` onto the target by RESTORE_PAGES. */
function apply(target: Host, cliId: number, buffer: Uint8Array, bytes: number): number {
  return target.control(ctrl(RESTORE_PAGES, cliId, 0, bytes), buffer.subarray(0, bytes))
}

/** Length in bytes of `count` records at the start of a batch. */
function batchBytes(buffer: Uint8Array, count: number): number {
  let at = 0
  for (let i = 0; i < count; i++) {
    const kind = buffer[at + 32]!
    at += RECORD_HEADER + (kind === 1 ? PAGE : 0)
  }
  return at
}

void test('pre-copy migration moves every last-put page and nothing flushed', () => {
  const source = new Host({ pages: 512, reservePages: 0 })
  const target = new Host({ pages: 512, reservePages: 0 })
  const guest = source.client(7)
  const pool = guest.newPool({ persistent: true })
  const model = new Map<string, number>()
  let version = 0
  const put = (oid: bigint, index: number): void => {
    version++
    assert.equal(pool.put([oid, 3n, 1n << 63n], index, page(version)), true)
    model.set(`${oid}/${index}`, version)
  }
  for (let i = 0; i < 100; i++) put(BigInt(i % 10), i)

  assert.equal(source.control(ctrl(SAVE_BEGIN, 7, 0, PRECOPY)), 1)
  assert.equal(source.stats().clients[0]!.frozen, false)
  assert.equal(target.control(ctrl(RESTORE_BEGIN, 7)), 1)
  assert.equal(
    target.control({
      cmd: RESTORE_NEW,
      poolId: pool.poolId,
      creat: { uuid: [0n, 0n], flags: 0x01000001, arg1: 7 },
    }),
    pool.poolId,
  )
  const buffer = new Uint8Array(16 * (RECORD_HEADER + PAGE))
  // Round 1, interleaved with the writer: puts, replacements and flushes keep happening.
  // The first pass is bounded by the page count at its start: pages put later are in the
  // change log anyway (a writer that never stops would otherwise keep the pass going).
  let round = 0
  let remaining = 100
  while (remaining > 0) {
    const count = source.control(ctrl(SAVE_GET_PAGES, 7, pool.poolId, buffer.length), buffer)
    assert.ok(count >= 0)
    if (count === 0) break
    remaining -= count
    assert.ok(apply(target, 7, buffer, batchBytes(buffer, count)) === count)
    round++
    put(BigInt(round % 10), round) // replace an old page
    put(99n, round) // a new page
    pool.flushPage([BigInt((round + 3) % 10), 3n, 1n << 63n], round + 3)
    model.delete(`${(round + 3) % 10}/${round + 3}`)
  }
  // Drain the change log while the writer still runs, then freeze and drain the rest.
  for (let pass = 0; pass < 3; pass++) {
    put(5n, 1000 + pass)
    for (;;) {
      const count = source.control(ctrl(SAVE_GET_CHANGES, 7, 0, buffer.length), buffer)
      if (count === 0) break
      assert.ok(count > 0)
      assert.equal(apply(target, 7, buffer, batchBytes(buffer, count)), count)
    }
  }
  assert.equal(source.control(ctrl(FREEZE, 7)), 0)
  // A flush while frozen is performed and reports EFROZEN (spec §3.6).
  assert.throws(() => pool.flushObject([5n, 3n, 1n << 63n]), { code: 'EFROZEN' })
  for (const key of [...model.keys()]) if (key.startsWith('5/')) model.delete(key)
  for (;;) {
    const count = source.control(ctrl(SAVE_GET_CHANGES, 7, 0, buffer.length), buffer)
    if (count === 0) break
    assert.equal(apply(target, 7, buffer, batchBytes(buffer, count)), count)
  }
  assert.equal(source.control(ctrl(SAVE_END, 7)), 0)
  checkInvariants(source)
  checkInvariants(target)

  const moved = target.client(7).pool(pool.poolId)
  for (const [key, want] of model) {
    const [oid, index] = key.split('/').map(Number) as [number, number]
    const got = moved.get([BigInt(oid), 3n, 1n << 63n], index)
    assert.ok(got !== null, `page ${key} missing on the target`)
    assert.deepEqual(got, page(want), `page ${key} has stale bytes`)
  }
  assert.equal(target.stats().persistentPages, model.size, 'nothing flushed reappears')
})

void test('a plain live save still freezes and refuses duplicate puts (Xen semantics)', () => {
  const host = new Host({ pages: 64, reservePages: 0 })
  const pool = host.client(3).newPool({ persistent: true })
  pool.put(1n, 1, page(1))
  assert.equal(host.control(ctrl(SAVE_BEGIN, 3, 0, 1)), 1)
  assert.equal(host.stats().clients[0]!.frozen, true)
  assert.throws(() => pool.put(1n, 1, page(2)), { code: 'ENOSPC' })
})

void test('extension subops reject bad input without changing anything', () => {
  const host = new Host({ pages: 64, reservePages: 0 })
  const pool = host.client(3).newPool({ persistent: true })
  pool.put(1n, 1, page(1))
  const small = new Uint8Array(100)
  assert.equal(host.control(ctrl(SAVE_GET_PAGES, 3, pool.poolId, small.length), small), -12)
  assert.equal(host.control(ctrl(SAVE_GET_PAGES, 9, 0, small.length), small), -1)
  const bad = new Uint8Array(RECORD_HEADER)
  bad[32] = 7 // unknown kind
  assert.equal(host.control(ctrl(RESTORE_PAGES, 3, 0, bad.length), bad), -22)
  const truncated = new Uint8Array(RECORD_HEADER + 10)
  truncated[32] = 1
  assert.equal(host.control(ctrl(RESTORE_PAGES, 3, 0, truncated.length), truncated), -22)
  checkInvariants(host)
  assert.equal(host.stats().persistentPages, 1)
})
