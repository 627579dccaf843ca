/**
 * The daemon's end of a region (`ShmServeRing`) against a hostile client: between turns, and
 * from inside an op while a turn runs, random bytes land anywhere in the header, the rings and
 * the frames. The daemon's end must never throw, never take more than the bound per turn,
 * never hand `execute` a frame outside the region, and must report a broken ring exactly when
 * the cursors the client wrote are impossible.
 *
 * The oracle is arithmetic typed from docs/protocol.md, not the code: the test knows how many
 * entries the daemon took and posted (the sum of its turns), so from the tail and head the
 * client wrote it computes what the next turn must do: RING_BROKEN when `tail - taken` or
 * `posted - head` (mod 2^32) exceeds the ring's size, else min(queued, room, 256) entries;
 * and each entry the daemon copies must be the bytes the slot held when the turn began.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { EFAULT, EINVAL, TMEM_FLUSH_PAGE, TMEM_PUT_PAGE } from '../../src/abi/constants.js'
import { type ShmGeometry, shmGeometry, writeShmHeader } from '../../src/protocol/shm-region.js'
import { RING_BROKEN, SHM_OPS_PER_TURN_MAX, shmViews } from '../../src/protocol/shm-ring.js'
import { ShmServeRing } from '../../src/protocol/shm-serve.js'

const RUNS = Number(process.env['TMEM_RUNS'] ?? 150)

function u32(bytes: Uint8Array, at: number): number {
  return (
    (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0
  )
}

function setU32(bytes: Uint8Array, at: number, value: number): void {
  for (let i = 0; i < 4; i++) bytes[at + i] = (value >>> (8 * i)) & 0xff
}

type Scribble =
  | { kind: 'bytes'; at: number; data: Uint8Array }
  | { kind: 'sqTail'; value: number }
  | { kind: 'cqHead'; value: number }
  | { kind: 'validOps'; count: number }

const scribbleArbitrary: fc.Arbitrary<Scribble> = fc.oneof(
  fc.record({
    kind: fc.constant('bytes' as const),
    at: fc.nat({ max: 0xffff }),
    data: fc.uint8Array({ minLength: 1, maxLength: 300 }),
  }),
  fc.record({
    kind: fc.constant('sqTail' as const),
    value: fc.oneof(fc.nat({ max: 40 }), fc.nat({ max: 0xffff_ffff })),
  }),
  fc.record({
    kind: fc.constant('cqHead' as const),
    value: fc.oneof(fc.nat({ max: 40 }), fc.nat({ max: 0xffff_ffff })),
  }),
  fc.record({ kind: fc.constant('validOps' as const), count: fc.integer({ min: 1, max: 16 }) }),
)

/** Writes `count` well-formed puts after the daemon's head, as an honest client would. */
function writeValidOps(
  bytes: Uint8Array,
  geometry: ShmGeometry,
  taken: number,
  count: number,
): number {
  for (let i = 0; i < count; i++) {
    const at = geometry.sqOffset + ((taken + i) % geometry.sqEntries) * 64
    bytes.fill(0, at, at + 64)
    setU32(bytes, at, TMEM_PUT_PAGE)
    setU32(bytes, at + 48, i % geometry.frameCount)
    setU32(bytes, at + 56, taken + i)
  }
  return (taken + count) >>> 0
}

/**
 * Whether the daemon must run an entry (docs/protocol.md, "Shared memory"): its reserved word
 * is zero and, for a page command (NEW_PAGE 3, PUT_PAGE 4, GET_PAGE 5, READ 8, WRITE 9), its
 * cmfn names a frame of the region. Others are answered without running.
 */
function mustRun(entry: Uint8Array, geometry: ShmGeometry): boolean {
  if (u32(entry, 60) !== 0) return false
  if (![3, 4, 5, 8, 9].includes(u32(entry, 0))) return true
  return u32(entry, 52) === 0 && u32(entry, 48) < geometry.frameCount
}

function runScribbles(scribbles: Scribble[]): void {
  const geometry = shmGeometry(1, 16, 8, 3)
  const bytes = new Uint8Array(geometry.regionBytes)
  writeShmHeader(bytes, geometry)
  const views = shmViews(bytes.buffer, geometry.regionBytes)
  // The entries of this turn that the daemon must run, and the slot each came from.
  let expectedEntry: Uint8Array[] = []
  let expectedSlot: number[] = []
  let seen = 0
  const serve = new ShmServeRing(views, geometry, (entry, frameAt) => {
    // Every op the daemon runs is the copy of the slot as it was when the turn began.
    assert.ok(seen < expectedEntry.length, 'the daemon ran no entry it had to refuse')
    assert.deepEqual(entry, expectedEntry[seen], 'the daemon ran a copy of the slot')
    const slot = expectedSlot[seen]!
    seen++
    if (frameAt !== -1) {
      assert.ok(
        frameAt >= geometry.framesOffset && frameAt + 4096 <= geometry.regionBytes,
        'frame in the region',
      )
      assert.equal((frameAt - geometry.framesOffset) % 4096, 0, 'frame aligned')
    }
    // Inside the op, the client rewrites the slot the op came from: the copy must not change.
    bytes.fill(0xee, slot, slot + 64)
    assert.deepEqual(entry, expectedEntry[seen - 1], 'the copy is private')
    return 1
  })
  let taken = 0
  let posted = 0
  let broken = 0
  for (const scribble of scribbles) {
    if (scribble.kind === 'bytes')
      bytes.set(
        scribble.data.subarray(0, geometry.regionBytes - (scribble.at % geometry.regionBytes)),
        scribble.at % geometry.regionBytes,
      )
    else if (scribble.kind === 'sqTail') setU32(bytes, 64, scribble.value)
    else if (scribble.kind === 'cqHead') setU32(bytes, 256, scribble.value)
    else setU32(bytes, 64, writeValidOps(bytes, geometry, taken, scribble.count))
    const queued = (u32(bytes, 64) - taken) >>> 0
    const used = (posted - u32(bytes, 256)) >>> 0
    const expectBroken = used > geometry.cqEntries || queued > geometry.sqEntries
    const expected = expectBroken
      ? RING_BROKEN
      : Math.min(queued, geometry.cqEntries - used, SHM_OPS_PER_TURN_MAX)
    const takenEntry: Uint8Array[] = []
    expectedEntry = []
    expectedSlot = []
    for (let i = 0; i < Math.max(expected, 0); i++) {
      const at = geometry.sqOffset + ((taken + i) % geometry.sqEntries) * 64
      takenEntry.push(bytes.slice(at, at + 64))
      if (!mustRun(takenEntry[i]!, geometry)) continue
      expectedEntry.push(takenEntry[i]!)
      expectedSlot.push(at)
    }
    seen = 0
    const served = serve.turn()
    assert.equal(served, expected)
    assert.equal(seen, expectedEntry.length, 'the daemon ran every entry it had to')
    if (served === RING_BROKEN) {
      broken++
      continue
    }
    for (let i = 0; i < served; i++) {
      const at = geometry.cqOffset + ((posted + i) % geometry.cqEntries) * 8
      assert.equal(
        u32(bytes, at),
        u32(takenEntry[i]!, 56),
        'completion carries the request id of the copy',
      )
    }
    taken += served
    posted += served
    // The head the daemon publishes is its private count, whatever the client wrote there.
    assert.equal(u32(bytes, 128), taken >>> 0)
  }
  const errors = serve.submissions.errors.badCursor + serve.completions.errors.badCursor
  assert.ok(errors >= broken, 'every broken turn was counted')
}

void test('the daemon end of a region survives random bytes in its header, rings and frames', () => {
  const parameters: fc.Parameters<[Scribble[]]> = { numRuns: RUNS }
  if (process.env['TMEM_SEED'] !== undefined) parameters.seed = Number(process.env['TMEM_SEED'])
  const details = fc.check(
    fc.property(fc.array(scribbleArbitrary, { maxLength: 60 }), (s) => runScribbles(s)),
    parameters,
  )
  if (details.failed) {
    const error = details.errorInstance
    assert.fail(
      `seed ${details.seed}: ${error instanceof Error ? error.message : String(error)}\nReplay: TMEM_SEED=${details.seed}`,
    )
  }
})

void test('bad entries get -EINVAL or -EFAULT and are not run', () => {
  const geometry = shmGeometry(1, 8, 8, 2)
  const bytes = new Uint8Array(geometry.regionBytes)
  writeShmHeader(bytes, geometry)
  const ran: number[] = []
  const serve = new ShmServeRing(
    shmViews(bytes.buffer, geometry.regionBytes),
    geometry,
    (entry, frameAt) => {
      ran.push(u32(entry, 56), frameAt)
      return 1
    },
  )
  const sq = geometry.sqOffset
  const entries: [cmd: number, cmfnLow: number, cmfnHigh: number, reserved: number][] = [
    [TMEM_PUT_PAGE, 1, 0, 0], // frame 1: runs
    [TMEM_PUT_PAGE, 2, 0, 0], // no frame 2: -EFAULT
    [TMEM_PUT_PAGE, 0, 1, 0], // high word set: -EFAULT
    [TMEM_PUT_PAGE, 0, 0, 7], // reserved set: -EINVAL
    [TMEM_FLUSH_PAGE, 99, 99, 0], // no page needed: runs with no frame
  ]
  entries.forEach(([cmd, low, high, reserved], i) => {
    setU32(bytes, sq + i * 64, cmd)
    setU32(bytes, sq + i * 64 + 48, low)
    setU32(bytes, sq + i * 64 + 52, high)
    setU32(bytes, sq + i * 64 + 56, 100 + i)
    setU32(bytes, sq + i * 64 + 60, reserved)
  })
  setU32(bytes, 64, entries.length)
  assert.equal(serve.turn(), entries.length)
  assert.deepEqual(ran, [100, geometry.framesOffset + 4096, 104, -1])
  const rcs = entries.map((_, i) => [
    u32(bytes, geometry.cqOffset + i * 8),
    u32(bytes, geometry.cqOffset + i * 8 + 4) | 0,
  ])
  assert.deepEqual(rcs, [
    [100, 1],
    [101, -EFAULT],
    [102, -EFAULT],
    [103, -EINVAL],
    [104, 1],
  ])
  assert.deepEqual(serve.counters, { ops: 2, badReserved: 1, badFrame: 2, ringFull: 0 })
})

void test('a client that refills the ring during a turn cannot hold the daemon in it', () => {
  const geometry = shmGeometry(1, 4096, 4096, 1)
  const bytes = new Uint8Array(geometry.regionBytes)
  writeShmHeader(bytes, geometry)
  let tail = 4096
  setU32(bytes, 64, tail)
  const serve = new ShmServeRing(shmViews(bytes.buffer, geometry.regionBytes), geometry, () => {
    // Keep the ring full: each op run makes one more entry appear behind the daemon's head.
    tail = (tail + 1) >>> 0
    setU32(bytes, 64, tail)
    return 0
  })
  // The client keeps the completion ring drained too, so room never stops the daemon.
  for (let turn = 1; turn <= 3; turn++) {
    assert.equal(serve.turn(), SHM_OPS_PER_TURN_MAX)
    setU32(bytes, 256, turn * SHM_OPS_PER_TURN_MAX)
  }
})
