/**
 * The remote tier's turn meter (remote/turns.ts): a turn's remote work is the sum of its
 * pieces, closed when the loop reaches its check phase; each piece is timed by the wall clock
 * and by the main thread's CPU clock, so a piece during which the thread does not run (here it
 * blocks in Atomics.wait, as it would while the OS runs other processes) counts in wall time
 * but not in CPU time, and a piece that computes counts in both. A piece inside another counts
 * once; a piece that throws does not disturb later turns.
 *
 * The independent oracle is the clock the test reads itself around each piece (the meter's
 * figures must fit inside it) and what the thread did (blocked or spun).
 *
 * Needs the native addon's thread clock; where it is not built the CPU checks are skipped with
 * the loader's reason, except under CI (CI=true), whose `npm ci` builds it: there they fail.
 */
import { test } from 'node:test'
import { PerformanceObserver } from 'node:perf_hooks'
import assert from 'node:assert/strict'
import { TURN_BUDGET_MS, TurnMeter } from '../../src/remote/turns.js'
import { threadClockReason, threadCpuClock } from '../../src/util/thread-cpu.js'

const clock = threadCpuClock()
const reason = clock === null ? threadClockReason() || 'thread clock unavailable' : ''
const skip = reason !== '' && process.env['CI'] === undefined ? reason : false

const blocker = new Int32Array(new SharedArrayBuffer(4))

/** Blocks the thread for `ms` without using CPU. */
function block(ms: number): void {
  Atomics.wait(blocker, 0, 0, ms)
}

/** Computes for `ms` of wall time. */
function spin(ms: number): number {
  const end = performance.now() + ms
  let x = 0
  while (performance.now() < end) x = (x * 31 + 7) % 1000003
  return x
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/** Runs `work` as one piece of kind 'issue' in a turn of its own; the meter's section after. */
async function onePiece(
  work: () => void,
  meter = new TurnMeter(),
): Promise<{ wallMs: number; meter: TurnMeter }> {
  await nextTurn()
  const before = performance.now()
  const token = meter.start()
  work()
  meter.stop(token, 'issue')
  const wallMs = performance.now() - before
  await nextTurn()
  return { wallMs, meter }
}

void test('a blocked piece counts in wall time, not in thread CPU time', { skip }, async () => {
  const { wallMs, meter } = await onePiece(() => block(30))
  const section = meter.section()
  meter.close()
  assert.equal(section.turns, 1)
  assert.ok(section.maxMs >= 29 && section.maxMs <= wallMs, `wall ${section.maxMs} in ${wallMs}`)
  assert.ok(section.cpuMaxMs < 10, `a thread blocked 30 ms used ${section.cpuMaxMs} ms of CPU`)
})

void test('a computing piece counts in both, CPU no more than wall', { skip }, async () => {
  const cpuBefore = clock!()
  const { wallMs, meter } = await onePiece(() => spin(20))
  const cpuSpent = clock!() - cpuBefore
  const section = meter.section()
  meter.close()
  assert.ok(section.maxMs >= 20 && section.maxMs <= wallMs)
  assert.ok(section.cpuMaxMs > 0 && section.cpuMaxMs <= section.maxMs + 0.1)
  assert.ok(section.cpuMaxMs <= cpuSpent, `${section.cpuMaxMs} of the ${cpuSpent} ms spent`)
})

void test('pieces of one turn add up; a piece inside another counts once', { skip }, async () => {
  const meter = new TurnMeter()
  await nextTurn()
  const before = performance.now()
  const outer = meter.start()
  block(10)
  const inner = meter.start()
  block(10)
  meter.stop(inner, 'issue')
  meter.stop(outer, 'issue')
  const ops = meter.start()
  block(10)
  meter.stop(ops, 'ops')
  const wallMs = performance.now() - before
  assert.ok(wallMs >= TURN_BUDGET_MS && meter.overBudget()) // 30 ms of the 1.25 ms budget
  await nextTurn()
  assert.equal(meter.overBudget(), false) // a new turn, a new budget
  // A later turn of its own, smaller: the largest stays the first.
  const later = meter.start()
  block(2)
  meter.stop(later, 'replies')
  await nextTurn()
  const section = meter.section()
  meter.close()
  assert.equal(section.turns, 2)
  assert.ok(section.maxMs >= 30 && section.maxMs <= wallMs, `${section.maxMs} of ${wallMs}`)
})

void test('a piece that threw leaves the next turns timed', { skip }, async () => {
  const thrown = new TurnMeter()
  thrown.start() // never stopped: its work threw
  const { wallMs, meter } = await onePiece(() => block(20), thrown)
  const section = meter.section()
  meter.close()
  assert.ok(section.maxMs >= 20 && section.maxMs <= wallMs, `${section.maxMs} of ${wallMs}`)
})

void test(
  'the largest CPU turn of a second reports the GC pauses in its span',
  { skip },
  async () => {
    const saved = process.env['TMEM_LOOP_CPU']
    process.env['TMEM_LOOP_CPU'] = '1' // the meter watches collections only then
    const meter = new TurnMeter()
    if (saved === undefined) delete process.env['TMEM_LOOP_CPU']
    else process.env['TMEM_LOOP_CPU'] = saved
    // The test's own record of the collections (the oracle), from before the turn to after it.
    const seen: [number, number][] = []
    const observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) seen.push([entry.startTime, entry.duration])
    })
    observer.observe({ entryTypes: ['gc'] })
    const before = performance.now()
    let keep: number[] = []
    await onePiece(() => {
      // About 150 MB of short-lived arrays: young-generation collections, several of them.
      for (let i = 0; i < 1_000_000; i++) keep = new Array<number>(16).fill(i)
    }, meter)
    const after = performance.now()
    await new Promise((resolve) => setTimeout(resolve, 1100)) // the second ends; entries arrive
    const section = meter.section()
    meter.close()
    observer.disconnect()
    const ownMs = seen
      .filter(([start, ms]) => start >= before && start + ms <= after)
      .reduce((sum, [, ms]) => sum + ms, 0)
    assert.ok(keep.length === 16 && ownMs > 0, 'the churn collected')
    assert.ok(section.lastSecondCpuGcMs > 0, 'the turn saw the collections')
    assert.ok(section.lastSecondCpuGcMs <= ownMs + 0.01, `${section.lastSecondCpuGcMs} of ${ownMs}`)
    assert.ok(section.lastSecondCpuGcMs <= section.lastSecondCpuMs + 0.01)
  },
)

void test(
  "the CPU-largest turn of a second is reported with its own work by kind, not the wall-largest one's",
  { skip },
  async () => {
    const meter = new TurnMeter()
    // Turn 1: an issue piece that blocks 40 ms (the wall-largest, little CPU).
    await onePiece(() => block(40), meter)
    // Turn 2: an ops piece that computes 15 ms (the CPU-largest), then a small issue piece.
    await nextTurn()
    const ops = meter.start()
    spin(15)
    meter.stop(ops, 'ops')
    const issue = meter.start()
    spin(1)
    meter.stop(issue, 'issue')
    await nextTurn()
    await new Promise((resolve) => setTimeout(resolve, 1100)) // the second ends
    const section = meter.section()
    meter.close()
    assert.ok(
      section.lastSecond.issueMs >= 39,
      `wall-largest: ${JSON.stringify(section.lastSecond)}`,
    )
    const cpuTurn = section.lastSecondCpuTurn
    assert.ok(cpuTurn.opsMs >= 15 && cpuTurn.opsMs < 39, `ops ${cpuTurn.opsMs}`)
    assert.ok(cpuTurn.issueMs >= 1 && cpuTurn.issueMs < 15, `issue ${cpuTurn.issueMs}`)
    assert.equal(cpuTurn.repliesMs, 0)
    assert.equal(cpuTurn.cpuMs, section.lastSecondCpuMs)
    // Its CPU is what the OS let the spin have (less on a loaded machine), never more than its wall time.
    assert.ok(cpuTurn.cpuMs > 0 && cpuTurn.cpuMs <= cpuTurn.totalMs + 0.01, `${cpuTurn.cpuMs}`)
  },
)
