/**
 * Busy polling: the daemon's event loop watches for the next request for a short time before
 * it sleeps, when a client has just been served and is likely to send again at once (a
 * depth-1 NBD client, an unpipelined socket client). On a virtual machine the wake-up of a
 * sleeping thread costs tens of microseconds, often most of such a client's round trip; a
 * request that arrives while the loop polls costs none of it. The price is CPU: while a
 * client keeps answering within the budget, the loop polls instead of idling, up to one core.
 *
 * The work is done by the native addon `native/loop` (a libuv prepare handle that polls the
 * loop's own epoll descriptor, with a zero timeout, before the loop blocks; it never takes an
 * event away from libuv and stops early when a timer or other work is due). This module
 * starts it and arms it: `armBusyPoll()` after serving a request says "poll before the next
 * sleep". The poller is adaptive (a score of whether recent waits ended within the budget),
 * so a client that pauses between requests soon stops costing CPU. Without the addon (not
 * built, not Linux, a worker thread) every call here is a no-op and the loop sleeps as usual.
 */
import { isMainThread } from 'node:worker_threads'
import { type LoopNative, loopNative } from './loop-native.js'
import { type AddonStatus, addonUnavailable } from './native-addon.js'

/** Default poll budget of the daemon (`--busy-poll`), in microseconds. */
export const BUSY_POLL_MICROSECONDS_DEFAULT = 100
/** Largest budget: the native poller clamps to this too. */
export const BUSY_POLL_MICROSECONDS_MAX = 1000

/** The memory shared with the native poller (native/loop/loop.c): Int32 words, Float64 counts. */
const WORD_ARMED = 0
const WORD_SCORE = 1
const COUNT_POLLS = 1
const COUNT_HITS = 2
const COUNT_SLEEPS = 3
/** The score's scale (native SCORE_ONE). */
export const BUSY_POLL_SCORE_ONE = 256

/** What STATS reports (`daemon.busyPoll`). */
export interface BusyPollStats {
  /** The budget per wait in microseconds; 0 when off. */
  budgetUs: number
  /** Why it is off ('' when on). */
  off: string
  /** Waits that polled, and those of them that saw the next event within the budget. */
  polls: number
  hits: number
  /** Armed waits that slept at once because recent polls did not pay. */
  sleeps: number
  /** 0..256: how often recent waits ended within the budget; polling needs 96. */
  score: number
}

let words: Int32Array | null = null
let counts: Float64Array | null = null
let budget = 0
let offReason = 'not started'

function loadLoop(): AddonStatus<LoopNative> {
  if (!isMainThread) return addonUnavailable('polls the main thread only')
  return loopNative()
}

/**
 * Starts busy polling on this thread's loop with `microseconds` per wait (0: off). Returns
 * '' when it runs, else why not. Calling again changes the budget.
 */
export function startBusyPoll(microseconds: number): string {
  if (!Number.isInteger(microseconds) || microseconds < 0) {
    throw new RangeError(
      `Busy-poll budget must be a whole number of microseconds, not ${microseconds}`,
    )
  }
  budget = Math.min(microseconds, BUSY_POLL_MICROSECONDS_MAX)
  if (budget === 0) {
    offReason = 'budget 0'
    return offReason
  }
  if (words === null) {
    const status = loadLoop()
    if (!status.available) {
      budget = 0
      offReason = status.reason
      return offReason
    }
    words = status.native.install()
    counts = new Float64Array(words.buffer, words.byteOffset, words.byteLength / 8)
  }
  offReason = ''
  return ''
}

/** Stops polling (the native handles stay, idle). */
export function stopBusyPoll(): void {
  budget = 0
  offReason = 'stopped'
  if (words !== null) words[WORD_ARMED] = 0
}

/** Poll before the next sleep: a client was just served. Costs one store. */
export function armBusyPoll(): void {
  if (budget !== 0) words![WORD_ARMED] = budget
}

export function busyPollStats(): BusyPollStats {
  return {
    budgetUs: budget,
    off: offReason,
    polls: counts?.[COUNT_POLLS] ?? 0,
    hits: counts?.[COUNT_HITS] ?? 0,
    sleeps: counts?.[COUNT_SLEEPS] ?? 0,
    score: words?.[WORD_SCORE] ?? 0,
  }
}
