/**
 * The daemon's end of a region publishes completions as it goes: within one turn, after every
 * 16th entry (docs/protocol.md "Shared memory": every 16 entries and at the turn's end), so
 * that a client with many ops in flight can take the first answers while the rest still run.
 *
 * The oracle is the rule as documented, applied to the byte offsets of the header table (cqTail
 * at 192), not the code: while the daemon runs entry k (1-based) of a turn, the cqTail the
 * client can read is 16 * floor((k - 1) / 16); after the turn it is the number served; and the
 * hook that kicks a sleeping client runs once per publish inside the turn.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { TMEM_FLUSH_PAGE } from '../../src/abi/constants.js'
import { shmGeometry, writeShmHeader } from '../../src/protocol/shm-region.js'
import { shmViews } from '../../src/protocol/shm-ring.js'
import { ShmServeRing } from '../../src/protocol/shm-serve.js'

const CQ_TAIL = 192
const SQ_TAIL = 64

function u32(bytes: Uint8Array, at: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset).getUint32(at, true)
}

void test('completions are published every 16 entries within a turn, and at its end', () => {
  for (const queued of [1, 15, 16, 17, 40, 64]) {
    const geometry = shmGeometry(1, 64, 64, 1)
    const bytes = new Uint8Array(geometry.regionBytes)
    writeShmHeader(bytes, geometry)
    const view = new DataView(bytes.buffer)
    for (let i = 0; i < queued; i++) {
      // A frameless op (FLUSH_PAGE), request id i.
      const at = geometry.sqOffset + i * 64
      view.setUint32(at, TMEM_FLUSH_PAGE, true)
      view.setUint32(at + 56, i, true)
    }
    view.setUint32(SQ_TAIL, queued, true)
    const seen: number[] = []
    let hooks = 0
    const serve = new ShmServeRing(shmViews(bytes.buffer, geometry.regionBytes), geometry, () => {
      seen.push(u32(bytes, CQ_TAIL))
      return 0
    })
    serve.afterPublish = () => hooks++
    assert.equal(serve.turn(), queued)
    const expected = Array.from({ length: queued }, (_, k) => 16 * Math.floor(k / 16))
    assert.deepEqual(seen, expected, `${queued} queued: cqTail seen by each op`)
    assert.equal(u32(bytes, CQ_TAIL), queued, `${queued} queued: all published at the end`)
    assert.equal(hooks, Math.floor((queued - 1) / 16), `${queued} queued: publishes inside`)
    for (let i = 0; i < queued; i++) {
      // Each completion echoes its request id (docs: 8-byte entries, id then result).
      assert.equal(u32(bytes, geometry.cqOffset + i * 8), i)
    }
  }
})

void test('a turn serves what the client submits while it runs, 256 entries at most', () => {
  // A ring of 512 entries; 10 queued at first, and each op the daemon runs makes the client
  // (played by the op itself) submit one more, until 600 were submitted in all.
  const geometry = shmGeometry(1, 512, 512, 1)
  const bytes = new Uint8Array(geometry.regionBytes)
  writeShmHeader(bytes, geometry)
  const view = new DataView(bytes.buffer)
  let submitted = 0
  const submit = (): void => {
    const at = geometry.sqOffset + (submitted % 512) * 64
    view.setUint32(at, TMEM_FLUSH_PAGE, true)
    view.setUint32(at + 56, submitted, true)
    submitted++
    view.setUint32(SQ_TAIL, submitted, true)
  }
  for (let i = 0; i < 10; i++) submit()
  const served: number[] = []
  const serve = new ShmServeRing(shmViews(bytes.buffer, geometry.regionBytes), geometry, (e) => {
    served.push(new DataView(e.buffer, e.byteOffset).getUint32(56, true))
    if (submitted < 600) submit()
    return 0
  })
  // The documented bound (docs/protocol.md "Shared memory": 256 entries a turn).
  assert.equal(serve.turn(), 256, 'the first turn: the 10 queued and 246 submitted meanwhile')
  assert.deepEqual(
    served,
    Array.from({ length: 256 }, (_, i) => i),
    'in submission order',
  )
  assert.equal(u32(bytes, CQ_TAIL), 256, 'all of them published')
  // The client takes its completions (cqHead at 256), so the ring has room again.
  view.setUint32(256, 256, true)
  assert.equal(serve.turn(), 256, 'the second turn')
  view.setUint32(256, 512, true)
  assert.equal(serve.turn(), 600 - 512, 'the third: what is left, then nothing more came')
  assert.equal(served.length, 600)
  // A turn the host asks to end early (its turn budget) stops after the batch it is in.
  serve.shouldYield = () => true
  view.setUint32(256, 600, true)
  for (let i = 0; i < 5; i++) submit()
  assert.equal(serve.turn(), 1, 'a yielding host: one entry, then the turn ends')
})
