/**
 * Doorbells: no lost wake-up under any interleaving of the sleep protocol's steps, one kick per
 * sleep, and a poller that serves while work comes, polls for its bound, then sleeps until
 * kicked. The poller's clock is injected and the test waits on its `onSleep` events, never on
 * time.
 *
 * The interleaving test runs a consumer and a producer over one ring counter. The consumer's
 * `trySleep` stores its flag and then looks at the ring; the test's `hasWork` lets the producer
 * run any of its steps (publish, then check-and-kick) just before or just after that load, as
 * another process could. The oracle is the property itself: whenever the
 * consumer is asleep and no kick is on its way, the ring it sleeps on is empty. A kick is a
 * message (a frame on the socket): sent at once, it reaches the consumer at a later step.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { ShmDoorbell, ShmPoller } from '../../src/protocol/shm-doorbell.js'
import {
  SHM_WORD_CLIENT_SLEEPING,
  SHM_WORD_DAEMON_SLEEPING,
} from '../../src/protocol/shm-region.js'

type Action =
  'produce' | 'publish' | 'kickCheck' | 'consumerSleep' | 'consumerDrain' | 'deliverKick'

interface World {
  words: Int32Array
  consumer: ShmDoorbell
  producer: ShmDoorbell
  produced: number
  published: number
  consumed: number
  asleep: boolean
  kicks: number
  kicksPending: number
  /** The producer published and has not yet made the kick check that follows every publish. */
  checkOwed: boolean
  /** Producer steps queued to run inside the consumer's trySleep, just before its load. */
  inside: Action[]
  /** Producer steps queued to run inside the consumer's trySleep, just after its load. */
  insideAfter: Action[]
}

function producerStep(world: World, action: Action): void {
  if (action === 'produce') world.produced++
  else if (action === 'publish') {
    world.published = world.produced
    world.checkOwed = true
  } else if (action === 'kickCheck') world.checkOwed = false
  if (action === 'kickCheck' && world.producer.peerNeedsKick()) {
    // A kick is a message: it reaches the consumer's event loop later ('deliverKick').
    world.kicks++
    world.kicksPending++
  }
}

/** A kick arrives: the consumer wakes (or, awake, polls again), clears its flag and drains. */
function deliverKick(world: World): void {
  if (world.kicksPending === 0) return
  world.kicksPending--
  world.asleep = false
  world.consumer.awake()
  world.consumed = world.published
}

function runActions(actions: [Action, number][]): void {
  const words = new Int32Array(128)
  const world: World = {
    words,
    consumer: new ShmDoorbell(words, SHM_WORD_DAEMON_SLEEPING, SHM_WORD_CLIENT_SLEEPING),
    producer: new ShmDoorbell(words, SHM_WORD_CLIENT_SLEEPING, SHM_WORD_DAEMON_SLEEPING),
    produced: 0,
    published: 0,
    consumed: 0,
    asleep: false,
    kicks: 0,
    kicksPending: 0,
    checkOwed: false,
    inside: [],
    insideAfter: [],
  }
  const ring = {
    hasWork(): boolean {
      for (const step of world.inside.splice(0)) producerStep(world, step)
      const work = world.published > world.consumed
      for (const step of world.insideAfter.splice(0)) producerStep(world, step)
      return work
    },
  }
  let announcements = 0
  for (const [action, interleave] of actions) {
    if (action === 'consumerSleep') {
      if (world.asleep) continue
      world.consumed = world.published
      announcements++
      if (world.consumer.trySleep(ring)) world.asleep = true
    } else if (action === 'deliverKick') {
      deliverKick(world)
    } else if (action === 'consumerDrain') {
      if (!world.asleep) world.consumed = world.published
    } else if (interleave === 1) {
      world.inside.push(action)
    } else if (interleave === 2) {
      world.insideAfter.push(action)
    } else {
      producerStep(world, action)
    }
    // The producer always finishes a publish with its kick check before it is done.
    if (interleave === 0 && action === 'publish') producerStep(world, 'kickCheck')
    if (
      world.asleep &&
      world.inside.length + world.insideAfter.length === 0 &&
      world.kicksPending === 0 &&
      !world.checkOwed
    ) {
      assert.equal(world.published, world.consumed, 'asleep with published work and no kick coming')
    }
  }
  // The producer finishes: its owed kick check, then every kick arrives.
  if (world.checkOwed && world.inside.length + world.insideAfter.length === 0)
    producerStep(world, 'kickCheck')
  if (
    world.asleep &&
    world.kicksPending === 0 &&
    world.inside.length + world.insideAfter.length === 0
  ) {
    assert.equal(
      world.published,
      world.consumed,
      'asleep at the end with published work and no kick coming',
    )
  }
  assert.ok(world.kicks <= announcements, 'at most one kick each time the consumer said it sleeps')
}

void test('no interleaving of the sleep and kick steps loses a wake-up', () => {
  const action = fc.constantFrom<Action>(
    'produce',
    'publish',
    'kickCheck',
    'consumerSleep',
    'consumerDrain',
    'deliverKick',
  )
  const details = fc.check(
    fc.property(
      fc.array(fc.tuple(action, fc.constantFrom(0, 0, 1, 2)), {
        minLength: 4,
        maxLength: 40,
        size: 'max',
      }),
      (actions) => runActions(actions),
    ),
    {
      numRuns: 500,
      ...(process.env['TMEM_SEED'] === undefined ? {} : { seed: Number(process.env['TMEM_SEED']) }),
    },
  )
  if (details.failed)
    assert.fail(
      `seed ${details.seed}: ${String(details.errorInstance)} ${JSON.stringify(details.counterexample)}`,
    )
})

void test('a poller serves, polls for its bound, sleeps with its flag set, and wakes on a kick', async () => {
  const words = new Int32Array(128)
  const mine = new ShmDoorbell(words, SHM_WORD_DAEMON_SLEEPING, SHM_WORD_CLIENT_SLEEPING)
  const peer = new ShmDoorbell(words, SHM_WORD_CLIENT_SLEEPING, SHM_WORD_DAEMON_SLEEPING)
  let queued = 0
  let served = 0
  let turns = 0
  let now = 0
  let sleeps = 0
  let onSleep: () => void = () => {}
  const poller = new ShmPoller(
    mine,
    {
      turn(): number {
        turns++
        // Each empty turn moves the clock on 10 us; the bound is 50 us.
        if (queued === 0) now += 10
        const n = Math.min(queued, 4)
        queued -= n
        served += n
        return n
      },
      hasWork: () => queued > 0,
    },
    {
      pollMicroseconds: 50,
      nowMicroseconds: () => now,
      onSleep: () => {
        sleeps++
        onSleep()
      },
    },
  )
  const slept = (): Promise<void> =>
    new Promise((resolve) => {
      onSleep = resolve
    })

  queued = 10
  let sleeping = slept()
  poller.kick()
  await sleeping
  assert.equal(served, 10)
  // 3 turns with work (at 0 us), then empty turns while a turn starts less than 50 us after
  // the last work: those starting at 0, 10, 20, 30 and 40 us poll on, the one at 50 sleeps.
  assert.equal(turns, 3 + 6)
  assert.equal(Atomics.load(words, SHM_WORD_DAEMON_SLEEPING), 1, 'its flag says it sleeps')
  assert.equal(poller.polling, false)

  // The peer publishes work; its kick check says kick exactly once.
  queued = 3
  assert.equal(peer.peerNeedsKick(), true)
  assert.equal(peer.peerNeedsKick(), false)
  sleeping = slept()
  poller.kick()
  await sleeping
  assert.equal(served, 13)
  assert.equal(sleeps, 2)

  // A stopped poller does nothing when kicked.
  poller.stop()
  queued = 1
  poller.kick()
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(served, 13)
})

void test('a poller whose ring breaks stops and says so once', async () => {
  const words = new Int32Array(128)
  const doorbell = new ShmDoorbell(words, SHM_WORD_DAEMON_SLEEPING, SHM_WORD_CLIENT_SLEEPING)
  let turns = 0
  const broken = new Promise<void>((resolve) => {
    const poller = new ShmPoller(
      doorbell,
      {
        turn: () => {
          turns++
          return -1
        },
        hasWork: () => true,
      },
      { onBroken: resolve },
    )
    poller.kick()
  })
  await broken
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(turns, 1)
})

/** A poller over a fake ring whose clock the test moves; counts turns and sleeps. */
function fakeSide(options: { expecting?: () => boolean; adaptive?: () => boolean } = {}): {
  poller: ShmPoller
  words: Int32Array
  state: { queued: number; served: number; turns: number; emptyTurns: number; now: number }
  slept: () => Promise<void>
} {
  const words = new Int32Array(128)
  const doorbell = new ShmDoorbell(words, SHM_WORD_DAEMON_SLEEPING, SHM_WORD_CLIENT_SLEEPING)
  const state = { queued: 0, served: 0, turns: 0, emptyTurns: 0, now: 0 }
  let onSleep: () => void = () => {}
  const poller = new ShmPoller(
    doorbell,
    {
      turn(): number {
        state.turns++
        if (state.queued === 0) {
          state.emptyTurns++
          state.now += 10
        }
        const n = state.queued
        state.served += n
        state.queued = 0
        return n
      },
      hasWork: () => state.queued > 0,
    },
    {
      pollMicroseconds: 50,
      nowMicroseconds: () => state.now,
      onSleep: () => onSleep(),
      ...options,
    },
  )
  const slept = (): Promise<void> =>
    new Promise((resolve) => {
      onSleep = resolve
    })
  return { poller, words, state, slept }
}

void test('a kick from the peer is served at once, in the caller, not on a later turn', () => {
  const { poller, words, state } = fakeSide()
  Atomics.store(words, SHM_WORD_DAEMON_SLEEPING, 1)
  state.queued = 5
  poller.wake()
  // Served before wake() returned; its flag cleared (it is awake and polls on).
  assert.equal(state.served, 5)
  assert.equal(Atomics.load(words, SHM_WORD_DAEMON_SLEEPING), 0)
  assert.equal(poller.polling, true)
  poller.stop()
})

void test('an adaptive poller stops polling when the gaps between work outgrow its bound, and polls again when they shrink', async () => {
  const { poller, state, slept } = fakeSide()
  // Each round: the side is kicked with 2 entries after sleeping for `gap` us.
  const round = async (gap: number): Promise<number> => {
    state.now += gap
    state.queued = 2
    state.emptyTurns = 0
    const sleeping = slept()
    poller.wake()
    await sleeping
    return state.emptyTurns
  }
  // Long gaps (200 us): after a few, the side sleeps at once after its work.
  const long: number[] = []
  for (let i = 0; i < 12; i++) long.push(await round(200))
  assert.equal(long[0], 6, 'it starts out polling for its bound (6 empty turns, as above)')
  assert.equal(
    long[11],
    0,
    'after a run of long gaps it sleeps right after its work, with no empty turn',
  )
  assert.equal(poller.pollingPays, false)
  // Short gaps (20 us, as a kick right after the side slept): polling comes back.
  const short: number[] = []
  for (let i = 0; i < 12; i++) short.push(await round(20))
  assert.equal(short[11], 6)
  assert.equal(poller.pollingPays, true)
  poller.stop()
})

void test('after a lone op a poller sleeps at once unless it expects entries', async () => {
  for (const expecting of [false, true]) {
    const { poller, state, slept } = fakeSide({ expecting: () => expecting, adaptive: () => false })
    state.queued = 1
    const sleeping = slept()
    poller.wake()
    await sleeping
    assert.equal(state.served, 1)
    assert.equal(state.emptyTurns, expecting ? 6 : 0, `expecting ${expecting}`)
    poller.stop()
  }
})
