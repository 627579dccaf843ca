/**
 * The migration's bounded fetch loop (src/migrate/pipeline.ts). The first test replays,
 * deterministically, the schedule that stalled live migration under a writer (issue 5): a
 * fetch in flight ends the pass while the loop waits for room, so nothing is in flight when it
 * looks again. The others check the loop against its stated rules with random timings: never
 * more than `depth` in flight, exactly the wanted calls, every call settled before it returns,
 * and the first failure passed on.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { pipeline } from '../../src/migrate/pipeline.js'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Settles within `ms`, or rejects: a stall becomes a failure, not a hang. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

void test('a fetch that ends the pass while the loop waits for room does not stall it', async () => {
  let caughtUp = false
  let calls = 0
  let roomCalls = 0
  let openGate!: () => void
  const gate = new Promise<void>((resolve) => (openGate = resolve))
  const done = pipeline(
    2,
    async () => {
      roomCalls++
      if (roomCalls === 2) {
        // The consumer is behind; meanwhile the second fetch finishes and ends the pass.
        openGate()
        await sleep(5)
      }
    },
    () => !caughtUp,
    async () => {
      calls++
      if (calls === 1) return // first batch full: not caught up
      await gate
      caughtUp = true // second batch short: the log is empty
    },
  )
  await within(done, 2000)
  assert.equal(calls, 2)
  assert.equal(roomCalls, 2)
})

void test('never more than depth in flight, exactly the wanted calls, all settled at the end', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 6 }),
      fc.integer({ min: 0, max: 40 }),
      fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 16 }),
      fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 8 }),
      async (depth, wanted, delays, roomDelays) => {
        let issued = 0
        let running = 0
        let peak = 0
        let settled = 0
        let rooms = 0
        await within(
          pipeline(
            depth,
            async () => {
              const ms = roomDelays[rooms++ % roomDelays.length]!
              if (ms > 0) await sleep(ms)
            },
            () => issued < wanted,
            async () => {
              const ms = delays[issued % delays.length]!
              issued++
              running++
              peak = Math.max(peak, running)
              if (ms > 0) await sleep(ms)
              else await Promise.resolve()
              running--
              settled++
            },
          ),
          5000,
        )
        assert.equal(issued, wanted)
        assert.equal(settled, wanted)
        assert.ok(peak <= depth, `${peak} in flight with depth ${depth}`)
      },
    ),
    { numRuns: 60 },
  )
})

void test('the first failure rejects the pass and no further call is issued after it', async () => {
  let issued = 0
  const failure = new Error('batch 3 failed')
  await assert.rejects(
    pipeline(
      2,
      () => Promise.resolve(),
      () => issued < 100,
      async () => {
        const n = ++issued
        await sleep(1)
        if (n === 3) throw failure
      },
    ),
    (error) => error === failure,
  )
  // Calls 3 and 4 were in flight together; the loop stopped issuing when 3 failed.
  assert.ok(issued <= 5, `${issued} calls issued`)
})

void test('a depth below 1 is refused', async () => {
  const nothing = (): Promise<void> => Promise.resolve()
  await assert.rejects(
    pipeline(0, nothing, () => false, nothing),
    RangeError,
  )
})
