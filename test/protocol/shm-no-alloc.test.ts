/**
 * The daemon's end of a shared-memory region allocates nothing per op (STYLE: the data plane
 * allocates nothing per page): after a warm-up, tens of thousands of puts and gets written
 * into the submission ring as a client would, served by `ShmServeRing` turns into a real
 * engine with the frames of the region as the pages, and read back from the completion ring,
 * leave the heap where it was, and the garbage collector does not run during the loop. The
 * region is a plain ArrayBuffer here (the daemon's is a mapping; the code cannot tell).
 * Counts bytes and collections, never time. Needs --expose-gc; without it the test skips
 * visibly.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { GCProfiler } from 'node:v8'
import { encodeOp } from '../../src/abi/codec.js'
import type { TmemOp } from '../../src/abi/types.js'
import { Host } from '../../src/engine/host.js'
import { shmGeometry, writeShmHeader } from '../../src/protocol/shm-region.js'
import { CompletionConsumer, SubmissionProducer, shmViews } from '../../src/protocol/shm-ring.js'
import { ShmServeRing } from '../../src/protocol/shm-serve.js'
import { registerCopyBuffer } from '../../src/util/bytes.js'

const gc = (globalThis as { gc?: () => void }).gc
const skip = gc === undefined ? 'needs node --expose-gc (tools/run-tests.mjs passes it)' : false

const HEAP_GROWTH_MAX = 1024 * 1024
const COLLECTIONS_MAX = 1
const CLIENT = 3
/** Offsets in a v1 op (spec §2.6): the page index and cmfn. */
const INDEX = 32
const CMFN = 48

function counterClock(): () => number {
  let now = 0
  return () => (now = (now + 100) & 0x3fffffff)
}

void test('serving puts and gets from the ring into the engine allocates nothing', { skip }, () => {
  const host = new Host({ pages: 4096, reservePages: 0, clockNs: counterClock() })
  const creat: TmemOp = {
    cmd: 1,
    poolId: 0,
    creat: { uuid: [0x5e5en, 2n], flags: 0x01000001, arg1: 0 },
  }
  assert.equal(host.opBytes(CLIENT, encodeOp(creat), 0, 1, null, 0), 0)
  const geometry = shmGeometry(1, 64, 64, 64)
  const buffer = new ArrayBuffer(geometry.regionBytes)
  registerCopyBuffer(buffer)
  const views = shmViews(buffer, geometry.regionBytes)
  writeShmHeader(views.bytes, geometry)
  const bytes = views.bytes
  const serve = new ShmServeRing(views, geometry, (entry, frameAt) =>
    host.opBytes(CLIENT, entry, 0, 1, frameAt < 0 ? null : bytes, frameAt),
  )
  const sq = new SubmissionProducer(views, geometry)
  const cq = new CompletionConsumer(views, geometry)
  const gen = (cmd: number): Uint8Array =>
    encodeOp({
      cmd,
      poolId: 0,
      gen: { oid: [1n, 0n, 0n], index: 0, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
    })
  const put = gen(4)
  const get = gen(5)
  let failures = 0
  /** 32 puts of pages 0..31 of a window, then 32 gets of them, in frames 0..63. */
  const round = (r: number): void => {
    for (let i = 0; i < 64; i++) {
      const op = i < 32 ? put : get
      const at = sq.next()
      bytes.set(op, at)
      const index = (r & 63) * 32 + (i & 31)
      bytes[at + INDEX] = index & 0xff
      bytes[at + INDEX + 1] = index >>> 8
      bytes[at + CMFN] = i
      if (i < 32) bytes[geometry.framesOffset + i * 4096] = index & 0xff
      sq.push(i)
    }
    sq.publish()
    assert.equal(serve.turn(), 64)
    const count = cq.begin()
    for (let i = 0; i < count; i++) {
      cq.take()
      if (cq.rc !== 1) failures++
    }
    cq.end()
  }
  for (let r = 0; r < 1000; r++) round(r)
  gc?.()
  gc?.()
  const heapBefore = process.memoryUsage().heapUsed
  const profiler = new GCProfiler()
  profiler.start()
  const rounds = 2000
  for (let r = 0; r < rounds; r++) round(r)
  const collections = profiler.stop().statistics.length
  gc?.()
  gc?.()
  const growth = process.memoryUsage().heapUsed - heapBefore
  assert.equal(failures, 0, 'every put stored and every get hit')
  assert.ok(collections <= COLLECTIONS_MAX, `${collections} collections during ${rounds * 64} ops`)
  assert.ok(growth < HEAP_GROWTH_MAX, `heap grew ${growth} bytes`)
  // The gets read the pages the puts stored: frame 32 + k holds page k's first byte.
  const last = ((rounds - 1) & 63) * 32
  for (let k = 0; k < 32; k++)
    assert.equal(bytes[geometry.framesOffset + (32 + k) * 4096], (last + k) & 0xff)
})
