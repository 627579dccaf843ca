/**
 * Busy polling (util/busy-poll.ts over native/loop): an armed wait polls the loop's epoll
 * descriptor and counts a hit when an event is ready within the budget; a wait with nothing
 * coming polls its budget out and counts a miss; after enough misses the loop sleeps at once;
 * pending work (an immediate) runs before any poll, and the armed wait is polled at the next
 * turn that waits; an unarmed loop never polls.
 *
 * The score is checked against a model of its rule (each wait moves it an eighth of the way
 * to 256 on a hit, to 0 on a miss, in integer steps; polling needs 96), not against the addon.
 *
 * This file is its own process (node --test), so the poller starts fresh: nothing else in it
 * reads from a descriptor, so a wait with no event of ours cannot end early.
 *
 * Where the addon is not built the polling tests are skipped with the loader's reason, except
 * under CI (CI=true), whose `npm ci` builds it: there they fail.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createConnection, createServer, type Socket } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  BUSY_POLL_MICROSECONDS_MAX,
  armBusyPoll,
  busyPollStats,
  startBusyPoll,
  stopBusyPoll,
} from '../../src/util/busy-poll.js'

const started = startBusyPoll(BUSY_POLL_MICROSECONDS_MAX)
const skip = started !== '' && process.env['CI'] === undefined ? started : false

/** The model: one wait's effect on the score (C integer division truncates toward zero). */
function nextScore(score: number, hit: boolean): number {
  return score + Math.trunc(((hit ? 256 : 0) - score) / 8)
}
const SCORE_POLL = 96

/** A connected pair of Unix sockets in this process. */
async function socketPair(): Promise<{ near: Socket; far: Socket; close(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'tmem-busy-poll-'))
  const path = join(dir, 's')
  const server = createServer()
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve))
  await new Promise<void>((resolve) => server.listen(path, resolve))
  const far = createConnection(path)
  const near = await accepted
  await new Promise<void>((resolve) => (far.connecting ? far.once('connect', resolve) : resolve()))
  return {
    near,
    far,
    close() {
      near.destroy()
      far.destroy()
      server.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

void test('the budget is checked and 0 turns polling off', () => {
  assert.throws(() => startBusyPoll(-1), RangeError)
  assert.throws(() => startBusyPoll(1.5), RangeError)
  if (started === '') {
    assert.equal(busyPollStats().budgetUs, BUSY_POLL_MICROSECONDS_MAX)
    assert.equal(busyPollStats().off, '')
  } else {
    assert.match(started, /^unavailable: /)
  }
})

void test(
  'armed waits: a ready event is a hit, silence a miss, then sleeps',
  { skip },
  async () => {
    startBusyPoll(BUSY_POLL_MICROSECONDS_MAX)
    const pair = await socketPair()
    try {
      let model = busyPollStats().score
      assert.equal(model, 256, 'a fresh poller starts sure that polling pays')

      // Bytes already in the kernel when the loop is about to wait: the poll sees them at once.
      let delivered: (() => void) | null = null
      pair.near.on('data', () => delivered?.())
      await sleep(5) // the reader's watcher is registered with epoll by now
      const before = busyPollStats()
      const got = new Promise<void>((resolve) => (delivered = resolve))
      pair.far.write('x')
      armBusyPoll()
      await got
      let after = busyPollStats()
      assert.equal(after.polls - before.polls, 1)
      assert.equal(after.hits - before.hits, 1)
      model = nextScore(model, true)
      assert.equal(after.score, model)

      // Nothing coming: each armed wait polls its whole budget and misses, until the score says
      // polling does not pay; from then on armed waits sleep at once (and a sleep far longer
      // than the budget is a miss too).
      let polls = 0
      let sleeps = 0
      for (let wait = 0; wait < 16; wait++) {
        const from = busyPollStats()
        if (model >= SCORE_POLL) polls++
        else sleeps++
        armBusyPoll()
        await sleep(5)
        model = nextScore(model, false)
        after = busyPollStats()
        assert.equal(after.hits, from.hits, `wait ${wait}: no event, no hit`)
        assert.equal(after.score, model, `wait ${wait}: score`)
      }
      assert.equal(after.polls - before.polls - 1, polls)
      assert.equal(after.sleeps - before.sleeps, sleeps)
      assert.ok(polls > 0 && sleeps > 0, 'the run covers both polling and sleeping')
    } finally {
      pair.close()
    }
  },
)

void test(
  'an unarmed loop never polls; work due first keeps the wait armed',
  { skip },
  async () => {
    startBusyPoll(BUSY_POLL_MICROSECONDS_MAX)
    const before = busyPollStats()
    await sleep(5)
    assert.equal(busyPollStats().polls + busyPollStats().sleeps, before.polls + before.sleeps)
    // An immediate is work due now: that turn does not wait, so nothing polls before it runs;
    // the next turn waits (for the timer), and the wait armed before is polled then.
    armBusyPoll()
    const atImmediate = await new Promise<number>((resolve) =>
      setImmediate(() => resolve(busyPollStats().polls + busyPollStats().sleeps)),
    )
    assert.equal(atImmediate, before.polls + before.sleeps)
    await sleep(5)
    const after = busyPollStats()
    assert.equal(after.polls + after.sleeps, before.polls + before.sleeps + 1)
    assert.equal(after.hits, before.hits)
  },
)

void test('stopped, arming does nothing', { skip }, async () => {
  stopBusyPoll()
  const before = busyPollStats()
  assert.equal(before.budgetUs, 0)
  armBusyPoll()
  await sleep(5)
  const after = busyPollStats()
  assert.equal(after.polls + after.sleeps, before.polls + before.sleeps)
  startBusyPoll(BUSY_POLL_MICROSECONDS_MAX)
})
