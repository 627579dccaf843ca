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
 * in between) for `SHM_POLL_MICROSECONDS`; only then does it set its flag. A peer that keeps
 * submitting within that time never pays for a kick. "Under load" is more than one entry
 * since the side last woke: a lone op (one request, one reply) is better served by sleeping at
 * once than by spinning, which costs the CPU the peer needs to answer (bench:peers 1x1). The flag is a hint written by the other
 * side too, so a hostile peer can only cost itself kicks or wake-ups: never another client's.
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

  /** After a publish: true (once per sleep) when the peer sleeps and must be kicked. */
  peerNeedsKick(): boolean {
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
}

/**
 * Runs one side's turns: at once when kicked, then once per event-loop turn while work keeps
 * coming and for `pollMicroseconds` after it stops, then sleeps (flag set) until `kick()`.
 */
export class ShmPoller {
  readonly #doorbell: ShmDoorbell
  readonly #turns: ShmTurns
  readonly #pollMicroseconds: number
  readonly #now: () => number
  readonly #onSleep: () => void
  readonly #onBroken: () => void
  readonly #expecting: () => boolean
  #scheduled = false
  #stopped = false
  #lastWork = 0
  /** `kick` came while a turn was scheduled: count it as work at the next turn. */
  #nudged = false
  /** Entries served since the side last woke: polling pays only when more than one came. */
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
  }

  /** True while a turn is scheduled (the side is polling, not sleeping). */
  get polling(): boolean {
    return this.#scheduled
  }

  /**
   * The peer kicked (or this side has news of its own): serve soon. While a turn is already
   * scheduled this only notes the news (no clock read): the side submits once per op.
   */
  kick(): void {
    if (this.#stopped) return
    if (this.#scheduled) {
      this.#nudged = true
      return
    }
    this.#doorbell.awake()
    this.#sinceWake = 0
    this.#lastWork = this.#now()
    this.#schedule()
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
    const handled = this.#turns.turn()
    if (handled < 0) {
      this.#stopped = true
      this.#onBroken()
      return
    }
    const now = this.#now()
    if (handled > 0 || this.#nudged) this.#lastWork = now
    this.#nudged = false
    this.#sinceWake += handled
    const busy = this.#sinceWake > 1 || this.#expecting()
    const underLoad = busy && now - this.#lastWork < this.#pollMicroseconds
    if (underLoad || this.#turns.hasWork()) {
      this.#schedule()
      return
    }
    if (this.#doorbell.trySleep(this.#turns)) this.#onSleep()
    else this.#schedule()
  }
}
