/**
 * Ops the host answers later (the remote tier) on a shared-memory ring: the daemon's end keeps
 * a completion slot for each one, so the completion ring never holds more than it has room
 * for, and every request completes exactly once with the rc it was answered.
 *
 * The client here is a model written against the header table of docs/protocol.md (sqTail at
 * 64, cqTail at 192, cqHead at 256; 64-byte entries with the request id at 56; 8-byte
 * completions, id then rc) in plain DataView writes, not the client library. Random
 * interleavings of: the client submitting, the daemon's turn, a deferred answer arriving, and
 * the client reading completions. The oracle: the client's own table of what is in flight.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PAGE_SIZE, TMEM_GET_PAGE } from '../../src/abi/constants.js'
import { OP_DEFERRED } from '../../src/protocol/deferred.js'
import { shmGeometry, writeShmHeader } from '../../src/protocol/shm-region.js'
import { shmViews } from '../../src/protocol/shm-ring.js'
import { ShmServeRing } from '../../src/protocol/shm-serve.js'
import { xorshift32 } from '../helpers/prng.js'

const SQ_TAIL = 64
const SQ_HEAD = 128
const CQ_TAIL = 192
const CQ_HEAD = 256
const CMFN_V1 = 48
const FRAMES = 4

/** The rc an op answered at once carries (a fixed function of its id, for the oracle). */
function immediateRc(id: number): number {
  return (id % 5) - 2
}

void test('deferred ops keep their completion slots; every request completes once', () => {
  for (let seed = 1; seed <= 60; seed++) {
    const random = xorshift32(seed)
    const sqEntries = 16
    const cqEntries = random() < 0.5 ? 8 : 16
    const geometry = shmGeometry(1, sqEntries, cqEntries, FRAMES)
    const bytes = new Uint8Array(geometry.regionBytes)
    writeShmHeader(bytes, geometry)
    const view = new DataView(bytes.buffer)
    const deferRate = random()
    /** Client model: what is in flight, and the rc each answer must carry (null: not yet known). */
    const inFlight = new Map<number, number | null>()
    /** Deferred ops the daemon owes, with the frame offset it was told. */
    const owed: { id: number; frameAt: number }[] = []
    let nextId = 0
    let sqTail = 0
    let cqHead = 0
    const serve = new ShmServeRing(
      shmViews(bytes.buffer, geometry.regionBytes),
      geometry,
      (entry) => {
        const id = new DataView(entry.buffer, entry.byteOffset).getUint32(56, true)
        if (random() < deferRate) return OP_DEFERRED
        inFlight.set(id, immediateRc(id))
        return immediateRc(id)
      },
    )
    serve.onDeferred = (id, frameAt) => owed.push({ id, frameAt })

    const submit = (): void => {
      if (sqTail - view.getUint32(SQ_HEAD, true) >= sqEntries) return
      const id = nextId++
      const at = geometry.sqOffset + (sqTail % sqEntries) * 64
      bytes.fill(0, at, at + 64)
      view.setUint32(at, TMEM_GET_PAGE, true)
      view.setUint32(at + CMFN_V1, id % FRAMES, true)
      view.setUint32(at + 56, id, true)
      inFlight.set(id, null)
      sqTail++
      view.setUint32(SQ_TAIL, sqTail, true)
    }
    const answerOne = (): void => {
      if (owed.length === 0) return
      const { id, frameAt } = owed.splice(Math.floor(random() * owed.length), 1)[0]!
      assert.equal(frameAt, geometry.framesOffset + (id % FRAMES) * PAGE_SIZE, `frame of ${id}`)
      const rc = random() < 0.5 ? 1 : -12
      inFlight.set(id, rc)
      serve.complete(id, rc)
    }
    const read = (): void => {
      const tail = view.getUint32(CQ_TAIL, true)
      // Never more completions than the ring holds: an older one would have been overwritten.
      assert.ok(tail - cqHead <= cqEntries, `seed ${seed}: ${tail - cqHead} completions queued`)
      for (; cqHead !== tail; cqHead++) {
        const at = geometry.cqOffset + (cqHead % cqEntries) * 8
        const id = view.getUint32(at, true)
        const rc = view.getInt32(at + 4, true)
        assert.ok(inFlight.has(id), `seed ${seed}: completion for ${id}, not in flight`)
        assert.equal(rc, inFlight.get(id), `seed ${seed}: rc of ${id}`)
        inFlight.delete(id)
      }
      view.setUint32(CQ_HEAD, cqHead, true)
    }

    for (let step = 0; step < 600; step++) {
      const pick = random()
      if (pick < 0.4) submit()
      else if (pick < 0.65) assert.ok(serve.turn() >= 0)
      else if (pick < 0.85) answerOne()
      else if (random() < 0.5) read()
      // Read only part of the time: the ring fills and the room check matters.
    }
    // Settle: answer everything owed, serve everything queued, read everything.
    for (let round = 0; inFlight.size > 0 && round < 1000; round++) {
      answerOne()
      serve.turn()
      read()
    }
    assert.equal(inFlight.size, 0, `seed ${seed}: requests never completed`)
    assert.equal(serve.owed, 0)
  }
})

void test('a turn stops early when the host asks to yield, and the rest is served later', () => {
  const geometry = shmGeometry(1, 64, 64, FRAMES)
  const bytes = new Uint8Array(geometry.regionBytes)
  writeShmHeader(bytes, geometry)
  const view = new DataView(bytes.buffer)
  for (let i = 0; i < 40; i++) view.setUint32(geometry.sqOffset + i * 64 + 56, i, true)
  view.setUint32(SQ_TAIL, 40, true)
  let ran = 0
  const serve = new ShmServeRing(shmViews(bytes.buffer, geometry.regionBytes), geometry, () => {
    ran++
    return 0
  })
  serve.shouldYield = () => ran >= 10
  assert.equal(serve.turn(), 10)
  // The consumed head and the published completions say 10, as a client reads them.
  assert.equal(view.getUint32(SQ_HEAD, true), 10)
  assert.equal(view.getUint32(CQ_TAIL, true), 10)
  serve.shouldYield = null
  assert.equal(serve.turn(), 30)
  assert.equal(view.getUint32(CQ_TAIL, true), 40)
  for (let i = 0; i < 40; i++) assert.equal(view.getUint32(geometry.cqOffset + i * 8, true), i)
})
