/**
 * The submission entries the client's `ShmChannel` writes, byte for byte, against entries
 * built by hand from docs/protocol.md ("Region layout": the op as the ABI lays it out, zeros
 * to 56, the request id at 56, a zero reserved word at 60) and the spec's op tables (§2.6 v1:
 * oid at 8, index at 32, cmfn at 48; §2.7 v0: object at 8, index at 16, cmfn at 32). The ring
 * slots start filled with 0xee, so a byte the client forgets to write shows. The page of a
 * put must be in the frame its cmfn names, and an op handed back on detach must be the entry's
 * op bytes (cmfn included).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ShmChannel, type ShmWaiter } from '../../src/client/shm-channel.js'
import { shmGeometry, writeShmHeader } from '../../src/protocol/shm-region.js'
import { shmViews } from '../../src/protocol/shm-ring.js'

const SQ_OFFSET = 4096
const SQ_TAIL = 64
const PUT_PAGE = 4
const FLUSH_PAGE = 5

function setU32(bytes: Uint8Array, at: number, value: number): void {
  for (let i = 0; i < 4; i++) bytes[at + i] = (value >>> (8 * i)) & 0xff
}

function u32(bytes: Uint8Array, at: number): number {
  return (
    (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0
  )
}

/** A gen-arm op built by hand: cmd, pool, oid low word, index; every other byte zero. */
function handOp(abi: 0 | 1, cmd: number, pool: number, oid: number, index: number): Uint8Array {
  const op = new Uint8Array(abi === 1 ? 56 : 40)
  setU32(op, 0, cmd)
  setU32(op, 4, pool)
  setU32(op, 8, oid)
  setU32(op, abi === 1 ? 32 : 16, index)
  return op
}

/** The 64-byte entry docs/protocol.md says the ring must hold for `op` in frame `frame`. */
function expectedEntry(abi: 0 | 1, op: Uint8Array, frame: number, requestId: number): number[] {
  const entry = new Uint8Array(64)
  entry.set(op)
  setU32(entry, abi === 1 ? 48 : 32, frame)
  setU32(entry, 56, requestId)
  return [...entry]
}

const silent: ShmWaiter = { shmDone: () => {}, shmFailed: () => {} }

for (const [abi, opAt] of [
  [1, 0],
  [0, 0],
  [1, 1],
  [0, 3],
] as const) {
  void test(`v${abi}, op at ${opAt}: each entry is written whole, as the layout says`, () => {
    const geometry = shmGeometry(abi, 8, 8, 4)
    const bytes = new Uint8Array(geometry.regionBytes)
    writeShmHeader(bytes, geometry)
    bytes.fill(0xee, SQ_OFFSET, SQ_OFFSET + 8 * 64)
    const channel = new ShmChannel(
      shmViews(bytes.buffer, geometry.regionBytes),
      geometry,
      () => {},
      () => {},
    )
    const page = new Uint8Array(4096)
    for (let i = 0; i < page.length; i++) page[i] = (i * 7 + 3) & 0xff
    // The caller's op carries a cmfn of its own and dirty bytes past the op: the ring gets
    // neither (the cmfn is the frame's; a v0 entry is zero from 40 to 56). One scratch is
    // rewritten for the second op, as the client library does.
    const scratch = new Uint8Array(64 + opAt)
    const put = handOp(abi, PUT_PAGE, 3, 0x1234, 77)
    scratch.fill(0x55)
    scratch.set(put.subarray(0, abi === 1 ? 48 : 32), opAt)
    assert.ok(channel.trySubmit(scratch, opAt, page, 0, true, silent, 0))
    const flush = handOp(abi, FLUSH_PAGE, 3, 0x99, 5)
    scratch.fill(0x55)
    scratch.set(flush.subarray(0, abi === 1 ? 48 : 32), opAt)
    assert.ok(channel.trySubmit(scratch, opAt, null, 0, false, silent, 1))

    const first = [...bytes.subarray(SQ_OFFSET, SQ_OFFSET + 64)]
    const second = [...bytes.subarray(SQ_OFFSET + 64, SQ_OFFSET + 128)]
    const frame = u32(bytes, SQ_OFFSET + (abi === 1 ? 48 : 32))
    assert.ok(frame < 4, `the put names a frame of the region (${frame})`)
    assert.deepEqual(first, expectedEntry(abi, put, frame, u32(bytes, SQ_OFFSET + 56)))
    assert.deepEqual(second, expectedEntry(abi, flush, 0, u32(bytes, SQ_OFFSET + 64 + 56)))
    assert.notEqual(u32(bytes, SQ_OFFSET + 56), u32(bytes, SQ_OFFSET + 64 + 56), 'ids differ')
    const frameAt = geometry.framesOffset + frame * 4096
    assert.deepEqual(bytes.subarray(frameAt, frameAt + 4096), page, 'the page is in its frame')
    assert.equal(u32(bytes, SQ_TAIL), 0, 'nothing published before the end of the tick')

    const { orphans } = channel.detach()
    assert.equal(orphans.length, 2)
    assert.deepEqual([...orphans[0]!.op], first.slice(0, put.length), 'the op as submitted')
    assert.deepEqual(orphans[0]!.page, page)
    assert.deepEqual([...orphans[1]!.op], second.slice(0, flush.length))
    assert.equal(orphans[1]!.page, null)
  })
}
