/**
 * The daemon's end of a shared-memory region, short of the engine: one turn copies a bounded
 * number of ops out of the submission ring, checks each copy, hands it to `execute` with the
 * frame it names, and posts the rc on the completion ring. The server layer supplies
 * `execute` (the engine's `opBytes` with the client's id) and the doorbell.
 *
 * Checks on each entry, all made on the private copy (the client may rewrite the ring at any
 * time, so nothing is read from it twice):
 *  - the reserved word must be 0, else rc -EINVAL and the op is not run;
 *  - a page command (PUT_PAGE, GET_PAGE, NEW_PAGE, READ, WRITE) must name a frame of the
 *    region with its cmfn, else rc -EFAULT (Xen's answer to a bad guest frame) and the op is
 *    not run; other commands get no frame (-1) whatever their cmfn says.
 *
 * A turn never takes more entries than the completion ring has room for, so a client that
 * stops reading completions stops being served (and costs nothing: the turn finds no room,
 * the side sleeps). A cursor that cannot be right makes the turn return RING_BROKEN.
 *
 * An op the host answers later (OP_DEFERRED, protocol/deferred.ts: the remote tier's gets of
 * remote pages and its overflow puts) keeps a completion slot: the ring counts it as owed,
 * takes that many fewer entries per turn, and `complete` posts it when the answer comes. So
 * the ring never holds more unanswered ops than it has completion slots, which bounds what a
 * client can have waiting on the network.
 */
import {
  EFAULT,
  EINVAL,
  TMEM_GET_PAGE,
  TMEM_NEW_PAGE,
  TMEM_PUT_PAGE,
  TMEM_READ,
  TMEM_WRITE,
} from '../abi/constants.js'
import { type OpLayout, opLayout } from '../abi/layout.js'
import { readU32LE } from '../util/le.js'
import { PAGE_SIZE } from '../abi/constants.js'
import { OP_DEFERRED } from './deferred.js'
import { SQE_BYTES, type ShmGeometry } from './shm-region.js'
import {
  CompletionProducer,
  RING_BROKEN,
  SHM_OPS_PER_TURN_MAX,
  type ShmViews,
  SubmissionConsumer,
  sqeFrame,
  sqeRequestId,
  sqeReservedClear,
} from './shm-ring.js'

/**
 * Runs one op copied out of the ring: `entry[0..opBytes)` is the `tmem_op`, `frameAt` the byte
 * offset of its page in the region (the caller's `bytes` view), or -1 for none. Returns the rc.
 */
export type ShmExecute = (entry: Uint8Array, frameAt: number) => number

/** Faults a turn found in the client's entries (operating errors: answered, not fatal). */
export interface ShmServeCounters {
  /** Ops run. */
  ops: number
  /** Entries refused: reserved bits set. */
  badReserved: number
  /** Page ops refused: the cmfn is not a frame of the region. */
  badFrame: number
  /**
   * Turns that found entries queued and no room in the completion ring (the client is not
   * reading its completions): nothing was taken. Slots kept for deferred ops do not count.
   */
  ringFull: number
}

function isPageCommand(cmd: number): boolean {
  return (
    cmd === TMEM_PUT_PAGE ||
    cmd === TMEM_GET_PAGE ||
    cmd === TMEM_NEW_PAGE ||
    cmd === TMEM_READ ||
    cmd === TMEM_WRITE
  )
}

/**
 * Completions published within a turn every this many entries (and at its end). With many
 * ops in flight the client then resolves the first ones, and submits their successors, while
 * the daemon still runs the rest: the two processes work at the same time instead of taking
 * turns. 1 x 64 single ops over shared memory went from 117-124 k to 245-332 k ops/s with 16
 * (bench/results.md, 2026-12-07 15:05); 8 and 32 did less.
 */
export const SHM_PUBLISH_EVERY = 16

/** The daemon's side of one region: submission consumer, completion producer, the checks. */
export class ShmServeRing {
  /** Called after each publish inside a turn (the end's is the caller's): kick a sleeping peer. */
  afterPublish: (() => void) | null = null
  /**
   * The op just run answered OP_DEFERRED: the server takes its answer from the host and calls
   * `complete` with it. Without one, such an op completes with -EFAULT.
   */
  onDeferred: ((requestId: number, frameAt: number) => void) | null = null
  /** True when the host wants the rest of a turn left for later (its turn budget). */
  shouldYield: (() => boolean) | null = null
  readonly counters: ShmServeCounters = { ops: 0, badReserved: 0, badFrame: 0, ringFull: 0 }
  readonly submissions: SubmissionConsumer
  readonly completions: CompletionProducer
  readonly #geometry: ShmGeometry
  readonly #layout: OpLayout
  readonly #execute: ShmExecute
  /** The private copy of the entry being served; allocated once. */
  readonly #entry = new Uint8Array(SQE_BYTES)
  /** The same copy as words, which `takeWords` fills. */
  readonly #entryWords = new Int32Array(this.#entry.buffer)
  /** The frame offset of the op `#serve` ran last, or -1. */
  #frameAt = -1
  /** Completions owed to deferred ops: their slots stay free until `complete`. */
  #owed = 0

  constructor(views: ShmViews, geometry: ShmGeometry, execute: ShmExecute, start = 0) {
    this.#geometry = geometry
    this.#layout = opLayout(geometry.abi)
    this.#execute = execute
    this.submissions = new SubmissionConsumer(views, geometry, start)
    this.completions = new CompletionProducer(views, geometry, start)
  }

  /** True when a turn would run something: entries queued and room for their completions. */
  hasWork(): boolean {
    if (!this.submissions.hasWork()) return false
    const room = this.completions.room()
    return room === RING_BROKEN || room > this.#owed
  }

  /** Deferred ops not completed yet. */
  get owed(): number {
    return this.#owed
  }

  /** Posts and publishes the completion of a deferred op (`onDeferred` named it). */
  complete(requestId: number, rc: number): void {
    this.#owed--
    this.completions.post(requestId, rc)
    this.completions.publish()
  }

  /**
   * Serves one turn; returns the entries served, or RING_BROKEN. Entries the client submitted
   * while the turn ran are served in it too, up to SHM_OPS_PER_TURN_MAX in all.
   */
  turn(): number {
    let served = 0
    while (served < SHM_OPS_PER_TURN_MAX) {
      const count = this.#batch(SHM_OPS_PER_TURN_MAX - served)
      if (count === RING_BROKEN) return RING_BROKEN
      served += count
      if (count === 0 || this.shouldYield?.() === true || !this.hasWork()) break
    }
    return served
  }

  /** Serves the entries queued now, at most `most`; their number, or RING_BROKEN. */
  #batch(most: number): number {
    const free = this.completions.room()
    if (free === RING_BROKEN) return RING_BROKEN
    // The client may have moved its head back (hostile): then nothing is taken.
    const room = Math.max(0, Math.min(most, free - this.#owed))
    let count = this.submissions.begin(room)
    if (count === RING_BROKEN) return RING_BROKEN
    if (free === 0 && this.submissions.hasWork()) this.counters.ringFull++
    const entry = this.#entry
    for (let i = 1; i <= count; i++) {
      this.submissions.takeWords(this.#entryWords)
      const rc = this.#serve(entry)
      if (rc !== OP_DEFERRED) this.completions.post(sqeRequestId(entry), rc)
      else if (this.onDeferred === null) this.completions.post(sqeRequestId(entry), -EFAULT)
      else {
        this.#owed++
        this.onDeferred(sqeRequestId(entry), this.#frameAt)
      }
      if (i < count && this.shouldYield?.() === true) count = i
      else if (i % SHM_PUBLISH_EVERY === 0 && i < count) {
        this.completions.publish()
        this.afterPublish?.()
      }
    }
    this.submissions.end()
    if (count > 0) this.completions.publish()
    return count
  }

  #serve(entry: Uint8Array): number {
    if (!sqeReservedClear(entry)) {
      this.counters.badReserved++
      return -EINVAL
    }
    let frameAt = -1
    this.#frameAt = -1
    if (isPageCommand(readU32LE(entry, 0))) {
      const frame = sqeFrame(entry, this.#layout, this.#geometry)
      if (frame < 0) {
        this.counters.badFrame++
        return -EFAULT
      }
      frameAt = this.#geometry.framesOffset + frame * PAGE_SIZE
      this.#frameAt = frameAt
    }
    this.counters.ops++
    return this.#execute(entry, frameAt)
  }
}
