/**
 * The daemon's event-loop delay (server/event-loop.ts). The oracle is a block of known length:
 * the test holds the loop in a busy wait it times itself, so no timer can fire for that long
 * and the delay reported must be at least the block minus one resolution (being descheduled
 * only makes it larger; nothing is asserted from above). The CPU-time count is bounded below
 * by the process's own CPU use over the block, read the same way.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { EventLoopDelay } from '../../src/server/event-loop.js'

const BLOCK_MS = 60

/** Spins for `ms` of wall-clock time; the CPU time this process used meanwhile, in ms. */
function block(ms: number): number {
  const cpu = process.cpuUsage()
  const end = performance.now() + ms
  while (performance.now() < end) {
    // Busy: no timer runs meanwhile.
  }
  const used = process.cpuUsage(cpu)
  return (used.user + used.system) / 1000
}

/** Resolves after `turns` turns of the event loop's timers (an interval of 1 ms). */
function timerTurns(turns: number): Promise<void> {
  return new Promise((resolve) => {
    let left = turns
    const timer = setInterval(() => {
      if (--left > 0) return
      clearInterval(timer)
      resolve()
    }, 1)
  })
}

void test('a blocked loop shows as a delay of at least the block minus the resolution', async () => {
  const saved = process.env['TMEM_LOOP_CPU']
  process.env['TMEM_LOOP_CPU'] = '1'
  const delay = new EventLoopDelay(2)
  if (saved === undefined) delete process.env['TMEM_LOOP_CPU']
  else process.env['TMEM_LOOP_CPU'] = saved
  delay.start()
  try {
    await timerTurns(5)
    const before = delay.section()
    const cpuMs = block(BLOCK_MS)
    await timerTurns(5)
    const after = delay.section()
    assert.equal(after.resolutionMs, 2)
    assert.ok(after.maxMs >= BLOCK_MS - 2, `maxMs ${after.maxMs} after a ${BLOCK_MS} ms block`)
    assert.ok(after.maxMs >= before.maxMs)
    // Counted in CPU time: at least what the block used (all threads: capped by the block's
    // length), less one resolution.
    assert.ok(
      (after.busyMaxMs ?? 0) >= Math.min(cpuMs, BLOCK_MS) - 2,
      `busyMaxMs ${after.busyMaxMs} after a block that used ${cpuMs} ms of CPU`,
    )
  } finally {
    delay.stop()
  }
})

void test('without TMEM_LOOP_CPU there is no CPU-time count', () => {
  const saved = process.env['TMEM_LOOP_CPU']
  delete process.env['TMEM_LOOP_CPU']
  const delay = new EventLoopDelay(10)
  if (saved !== undefined) process.env['TMEM_LOOP_CPU'] = saved
  const section = delay.section()
  assert.equal(section.busyMaxMs, undefined)
  assert.equal(section.maxMs, 0)
  assert.equal(section.resolutionMs, 10)
})
