/**
 * Doorbells of a shared-memory region: how each side sleeps when its ring is empty and is
 * woken when the other side fills it, without a lost wake-up and without a system call per op.
 *
 * Each side has a sleeping flag in the header (`SHM_DAEMON_SLEEPING`, `SHM_CLIENT_SLEEPING`).
 *
 *   consumer going to sleep             producer after publishing a cursor
 *   1. store  my flag = 1               1. store  cursor (publish)
 *   2. load   the ring: empty? sleep;   2. compareExchange(peer flag, 1 -> 0):
 *      else store my flag = 0, go on       it was 1? send one kick
 *
 * All four accesses are sequentially consistent Atomics, so either the consumer sees the new
 * cursor in its step 2 or the producer sees the flag in its step 2 (both cannot miss: that is
 * Dekker's argument). The compare-exchange makes one kick per sleep, however many producers'
 * publishes follow. A kick is a frame on the client's Unix connection (see `docs/protocol.md`,
 * "Shared memory"); the sleeper's event loop wakes on it as on any socket read.
 *
 * Under load neither side sleeps at once: after the last entry it found, a side keeps polling
 * its ring (one look per event-loop turn, via setImmediate, so other connections are served
 * in between) for up to `SHM_POLL_MICROSECONDS`; only then does it set its flag. A peer that
 * keeps submitting within that time never pays for a kick. A side polls only while that has
 * been paying (`ShmPoller` keeps a score of the recent gaps between its turns with work);
 * when its peer's answers take longer than the bound it sleeps at once. The flag is a hint
 * written by the other side too, so a hostile peer can only cost itself kicks or wake-ups:
 * never another client's.
 */
import { assert } from '../util/assert.js'

/**
 * How long a side keeps polling an empty ring before it sleeps, in microseconds. About the
 * round trip of a kick over a Unix socket between two Node processes here (20-40 us): polling
 * longer than a kick costs buys nothing, shorter sends a kick per op under a steady load.
 */
export const SHM_POLL_MICROSECONDS = 50

/** The sleeping flags of one side and of its peer, as Int32Array word indexes. */
export class ShmDoorbell {
  readonly #words: Int32Array
  readonly #mine: number
  readonly #peer: number

  constructor(words: Int32Array, mine: number, peer: number) {
    assert(mine !== peer && mine >= 0 && peer >= 0, 'Doorbell words must differ')
    assert(mine < words.length && peer < words.length, 'Doorbell words out of range')
    this.#words = words
    this.#mine = mine
    this.#peer = peer
  }

  /**
   * Announces that this side sleeps, then looks at its ring once more: when `ring` has work
   * after all, takes the announcement back and returns false. True: sleep until kicked.
   */
  trySleep(ring: { hasWork(): boolean }): boolean {
    Atomics.store(this.#words, this.#mine, 1)
    if (!ring.hasWork()) return true
    Atomics.store(this.#words, this.#mine, 0)
    return false
  }

  /** This side is awake (kicked, or polling): the peer need not kick it. */
  awake(): void {
    Atomics.store(this.#words, this.#mine, 0)
  }

  /**
   * After a publish: true (once per sleep) when the peer sleeps and must be kicked. The flag
   * is loaded first (a sequentially consistent load is all Dekker's argument needs) and
   * exchanged only when it says the peer sleeps: the exchange would take the flag's cache
   * line from the peer's core at every publish, asleep or not.
   */
  peerNeedsKick(): boolean {
    if (Atomics.load(this.#words, this.#peer) !== 1) return false
    return Atomics.compareExchange(this.#words, this.#peer, 1, 0) === 1
  }
}

/** What a poller drives: one side's consuming end. */
export interface ShmTurns {
  /** Serves one turn (a bounded number of entries); returns how many, or -1 when broken. */
  turn(): number
  /** True when a turn could do something now (the ring has entries and there is room for their results). */
  hasWork(): boolean
}

export interface ShmPollerOptions {
  /** Microseconds to keep polling after the last entry; default SHM_POLL_MICROSECONDS. */
  pollMicroseconds?: number
  /** Monotonic clock in microseconds; default performance.now() x 1000. */
  nowMicroseconds?: () => number
  /** Called when the side goes to sleep (its flag set, its ring empty). */
  onSleep?: () => void
  /** Called once when a turn reports the ring broken; the poller stops. */
  onBroken?: () => void
  /**
   * True while this side waits for the peer's entries (a client with ops in flight): it then
   * polls for its bound even after a lone op, instead of sleeping and costing the peer a kick.
   */
  expecting?: () => boolean
  /**
   * True when the gap score below decides whether to poll (default: always); false: poll
   * whenever the other conditions hold (a client with a lone op in flight, whose latency is
   * its caller's).
   */
  adaptive?: () => boolean
}

/** The gap score's scale: 256 when every recent gap ended within the poll bound, 0 when none. */
const GAPS_ONE = 256
/** Each new gap moves the score an eighth of the way to 0 or GAPS_ONE. */
const GAPS_SHIFT = 3

/**
 * Runs one side's turns: at once when the peer kicks (`wake`), on the next event-loop turn
 * when this side has news of its own (`kick`), then once per event-loop turn while work keeps
 * coming; when it stops, polls on for up to `pollMicroseconds` if polling has been paying,
 * then sleeps (flag set) until kicked.
 *
 * Polling after work pays when the peer's next entries come within the bound: a look per
 * event-loop turn (a `setImmediate` and an `epoll_wait` that returns at once, 2-3 us of CPU)
 * then replaces a kick (a write on one side, a wake-up and a read on the other). So an
 * adaptive poller keeps a score of the recent gaps, from the end of one turn with work to the
 * start of the next (sleeps included): when most of them were longer than the bound (a client
 * that takes 100 us or more to come back, as one with 64 single ops in flight does while it
 * resolves them, or one descheduled on a busy machine), it sleeps at once after its work, as
 * polling would only burn the CPU its peer needs; when most were shorter (a steady stream from
 * several connections), it polls. Short gaps seen through kicks bring polling back.
 *
 * After a lone op since the side woke (one request, one reply) it does not poll unless
 * `expecting`: sleeping at once serves an unpipelined peer better than spinning, which costs
 * the CPU the peer needs to answer (bench:peers 1x1).
 */
export class ShmPoller {
  readonly #doorbell: ShmDoorbell
  readonly #turns: ShmTurns
  readonly #pollMicroseconds: number
  readonly #now: () => number
  readonly #onSleep: () => void
  readonly #onBroken: () => void
  readonly #expecting: () => boolean
  readonly #adaptive: () => boolean
  #scheduled = false
  #running = false
  #stopped = false
  /** When the last turn with work ended, or this side last had news: a gap starts there. */
  #lastWork = 0
  /** `kick` came while a turn was scheduled or running: a new wait starts at the next turn. */
  #nudged = false
  /** How often recent gaps ended within the bound (0..GAPS_ONE, a moving average). */
  #shortGaps = GAPS_ONE
  /** Entries served since the side last woke: a lone op does not make it poll (see below). */
  #sinceWake = 0
  readonly #run = (): void => this.#loop()

  constructor(doorbell: ShmDoorbell, turns: ShmTurns, options: ShmPollerOptions = {}) {
    this.#doorbell = doorbell
    this.#turns = turns
    this.#pollMicroseconds = options.pollMicroseconds ?? SHM_POLL_MICROSECONDS
    this.#now = options.nowMicroseconds ?? (() => performance.now() * 1000)
    this.#onSleep = options.onSleep ?? (() => {})
    this.#onBroken = options.onBroken ?? (() => {})
    this.#expecting = options.expecting ?? (() => false)
    this.#adaptive = options.adaptive ?? (() => true)
  }

  /** True while a turn is scheduled (the side is polling, not sleeping). */
  get polling(): boolean {
    return this.#scheduled
  }

  /** True while recent gaps say polling pays (the side polls after its work). */
  get pollingPays(): boolean {
    return this.#shortGaps >= GAPS_ONE / 2
  }

  /**
   * This side has news of its own (it submitted): serve on the next event-loop turn. While a
   * turn is already scheduled this only notes the news (no clock read: it comes once per op).
   */
  kick(): void {
    if (!this.#wakeUp()) return
    this.#lastWork = this.#now()
    this.#schedule()
  }

  /**
   * The peer kicked: serve now, in the caller's turn (a socket read), which saves the event-
   * loop turn a scheduled serve would wait for. While a turn is scheduled it only notes it.
   */
  wake(): void {
    if (this.#wakeUp()) this.#loop()
  }

  /**
   * News for a side: false when it is stopped, or busy already (a turn scheduled or running:
   * the news is only noted); else the side is marked awake, to be served by the caller.
   */
  #wakeUp(): boolean {
    if (this.#stopped) return false
    if (this.#scheduled || this.#running) {
      this.#nudged = true
      return false
    }
    this.#doorbell.awake()
    this.#sinceWake = 0
    return true
  }

  /** Stops for good (the region is being torn down). */
  stop(): void {
    this.#stopped = true
  }

  #schedule(): void {
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(this.#run)
  }

  #loop(): void {
    this.#scheduled = false
    if (this.#stopped) return
    const started = this.#now()
    if (this.#nudged) {
      this.#nudged = false
      this.#lastWork = started
    }
    this.#running = true
    let handled: number
    try {
      handled = this.#turns.turn()
    } finally {
      this.#running = false
    }
    if (handled < 0) {
      this.#stopped = true
      this.#onBroken()
      return
    }
    let now = started
    this.#sinceWake += handled
    if (handled > 0) {
      this.#noteGap(started - this.#lastWork)
      now = this.#lastWork = this.#now()
    }
    if (this.#nudged || this.#turns.hasWork() || this.#shouldPoll(now)) {
      this.#schedule()
      return
    }
    if (this.#doorbell.trySleep(this.#turns)) this.#onSleep()
    else this.#schedule()
  }

  /** Keep polling: something may come, polling has been paying and the bound is not reached. */
  #shouldPoll(now: number): boolean {
    return (
      (this.#shortGaps >= GAPS_ONE / 2 || !this.#adaptive()) &&
      now - this.#lastWork < this.#pollMicroseconds &&
      (this.#sinceWake > 1 || this.#expecting())
    )
  }

  #noteGap(gap: number): void {
    const target = gap < this.#pollMicroseconds ? GAPS_ONE : 0
    this.#shortGaps += (target - this.#shortGaps) >> GAPS_SHIFT
  }
}
