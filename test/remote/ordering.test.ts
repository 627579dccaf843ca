/**
 * The tier's ordering of pending ops (remote/ordering.ts), against a model the test keeps:
 * the set of ops still pending, each with its pool and page (null for a pool-wide op). An op
 * must wait for exactly the pending ops it touches: on a page, the pending ops of that page
 * and a pending pool-wide op of its pool; pool-wide, every pending op of its pool. Ops settle
 * (resolve or reject) in a seeded random order; what a waiter is given never rejects.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { PendingOps } from '../../src/remote/ordering.js'
import { poolNumber } from '../../src/remote/presence.js'

interface ModelOp {
  pool: number
  page: string | null
  settle: (ok: boolean) => void
  /** Set by the waiter the test puts on this op's tracked promise. */
  seen: boolean
}

function deferred(): { promise: Promise<number>; settle: (ok: boolean) => void } {
  let settle!: (ok: boolean) => void
  const promise = new Promise<number>((resolve, reject) => {
    settle = (ok) => (ok ? resolve(1) : reject(new Error('refused')))
  })
  return { promise, settle }
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

void test('pending ops: an op waits for what it touches, and only that', async () => {
  let seed = 7
  const random = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return (seed >>> 8) % n
  }
  const ops = new PendingOps()
  const live: ModelOp[] = []
  const pools = [poolNumber(1, 0), poolNumber(1, 1), poolNumber(2, 0)]
  const pages = ['a:0', 'a:1', 'b:0', null]
  for (let step = 0; step < 400; step++) {
    const pool = pools[random(pools.length)]!
    const page = pages[random(pages.length)]!
    // What the model says this op must wait for, against what PendingOps says.
    const expected = live.filter(
      (op) => op.pool === pool && (page === null || op.page === null || op.page === page),
    )
    assert.equal(
      ops.busy(pool),
      live.some((op) => op.pool === pool),
    )
    assert.equal(ops.idle, live.length === 0)
    const waits = ops.busy(pool) ? ops.waitsFor(pool, page) : []
    // The model's live ops never touch each other (see below), so the promises to wait for
    // are exactly those of the touched ops (a pool-wide op may be named twice: harmless).
    assert.equal(new Set(waits).size, expected.length)
    if (random(3) === 0 || live.length > 12) {
      // Settle a random pending op instead of adding one.
      if (live.length > 0) {
        const op = live.splice(random(live.length), 1)[0]!
        op.settle(random(4) !== 0)
        await flush()
        assert.ok(op.seen, 'its waiter saw it settle (and not reject)')
      }
      continue
    }
    // The tier tracks an op that has nothing to wait for, or one chained behind what it
    // waits for (tracked at once, but it cannot finish first): settle what it waits for
    // first, so the live ops never touch each other.
    if (expected.length > 0) {
      for (const op of expected) {
        live.splice(live.indexOf(op), 1)
        op.settle(true)
      }
      await flush()
      assert.deepEqual(ops.busy(pool) ? ops.waitsFor(pool, page) : [], [])
    }
    const { promise, settle } = deferred()
    const op: ModelOp = { pool, page, settle, seen: false }
    ops.track(pool, page, promise)
    const tracked = ops.waitsFor(pool, page)
    assert.ok(tracked.length >= 1)
    void Promise.all(tracked).then(() => (op.seen = true))
    live.push(op)
  }
  for (const op of live) op.settle(false)
  await flush()
  assert.equal(ops.idle, true)
})
