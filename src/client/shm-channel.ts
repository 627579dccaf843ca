/**
 * The client's end of a shared-memory region (`src/protocol/shm-region.ts`): ops go into the
 * submission ring in their ABI layout with `cmfn` naming one of the client's frames in the
 * region, and come back as (request id, rc) on the completion ring. No socket write per op,
 * and the page is copied once each way: the caller's page into the frame for a put, the frame
 * into the caller's buffer for a get (the daemon copies between the frame and its pool).
 *
 * In flight: at most `slots` ops (the smaller ring's size), each holding a slot of the
 * tables below and, for a page op, a frame (a free stack of frame numbers). The request id of
 * an op is its slot plus a generation in the bits above, so a completion for a slot that is
 * not in flight (a confused or hostile daemon) is caught, not matched to the wrong op.
 *
 * Ops that find no room wait in a FIFO of pumps (`ShmPump`), which keeps the order ops were
 * issued in: a pump submits as many of its ops as fit and stays at the head until done.
 *
 * When the connection drops, `detach` reads the completions the daemon posted and hands back
 * every op still in flight (its op bytes and page, kept on this side) and every queued pump,
 * for the client to re-send over the socket.
 */
import { PAGE_SIZE } from '../abi/constants.js'
import { type OpLayout, opLayout } from '../abi/layout.js'
import { assert } from '../util/assert.js'
import { copyBytes } from '../util/bytes.js'
import { ShmDoorbell, ShmPoller } from '../protocol/shm-doorbell.js'
import {
  SHM_WORD_CLIENT_SLEEPING,
  SHM_WORD_DAEMON_SLEEPING,
  SQE_BYTES,
  type ShmGeometry,
} from '../protocol/shm-region.js'
import {
  CompletionConsumer,
  RING_BROKEN,
  SHM_OPS_PER_TURN_MAX,
  type ShmViews,
  SubmissionProducer,
} from '../protocol/shm-ring.js'
import { EntryCopies } from './shm-entry.js'

/** Who hears how an op ended; `tag` is the caller's number for the op (a batch index). */
export interface ShmWaiter {
  /** The op finished with `rc`; a get's page is `bytes[pageAt..+4096]` during the call. */
  shmDone(tag: number, rc: number, bytes: Uint8Array, pageAt: number): void
  /** The op cannot finish: the connection failed and the op may not be sent again. */
  shmFailed(tag: number, error: Error): void
}

/**
 * Sends one op another way (over the socket): `op[opAt..]` the op, `page[pageAt..]` a put's
 * page or null; the outcome goes to `waiter` with `tag`.
 */
export type ShmResend = (
  op: Uint8Array,
  opAt: number,
  page: Uint8Array | null,
  pageAt: number,
  waiter: ShmWaiter,
  tag: number,
) => void

/** A source of ops waiting for room; `pump` submits what fits and says whether it is done. */
export interface ShmPump {
  pump(channel: ShmChannel): boolean
  /** The channel is gone: send every op not yet submitted through `resend`, in order. */
  drain(resend: ShmResend): void
}

/** An op still in flight when the channel was detached, for the socket to carry instead. */
export interface ShmOrphan {
  /** The op bytes as submitted (cmfn included), a copy. */
  op: Uint8Array
  /** The page of a put (a copy of the frame), or null. */
  page: Uint8Array | null
  waiter: ShmWaiter
  tag: number
}

/** What a channel did, for `client.sharedMemory.counters` (and tuning the doorbells). */
export interface ShmChannelCounters {
  /** Ops submitted through the ring. */
  ops: number
  /** SHM_KICK frames sent to a sleeping daemon. */
  kicksSent: number
  /** SHM_KICK notices the daemon sent this side. */
  kicksReceived: number
  /** Submissions that found the ring, the slots or the frames full and had to wait. */
  ringFull: number
  /** Times this side stopped polling and slept until kicked. */
  sleeps: number
}

export function newShmChannelCounters(): ShmChannelCounters {
  return { ops: 0, kicksSent: 0, kicksReceived: 0, ringFull: 0, sleeps: 0 }
}

/** Bits of a request id below the generation: slots are at most 4096. */
const SLOT_BITS = 12
const SLOT_MASK = (1 << SLOT_BITS) - 1
const SQE_WORDS = SQE_BYTES >>> 2

export class ShmChannel {
  readonly geometry: ShmGeometry
  readonly views: ShmViews
  /** Completions that named no op in flight; the client treats any as a broken daemon. */
  badCompletions = 0
  readonly counters: ShmChannelCounters = newShmChannelCounters()
  readonly #layout: OpLayout
  readonly #sq: SubmissionProducer
  readonly #cq: CompletionConsumer
  readonly #doorbell: ShmDoorbell
  readonly #poller: ShmPoller
  readonly #kickDaemon: () => void
  readonly #onBroken: (why: string) => void
  readonly #slots: number
  readonly #slotGeneration: Uint32Array
  readonly #slotFrame: Int32Array
  readonly #slotTag: Float64Array
  readonly #slotSequence: Float64Array
  readonly #slotWaiter: (ShmWaiter | null)[]
  readonly #slotOps: EntryCopies
  readonly #freeSlots: Uint32Array
  #freeSlotCount: number
  readonly #freeFrames: Uint32Array
  #freeFrameCount: number
  /**
   * A view of each frame, made once: a completion hands the waiter its frame whole, so that
   * copying the page out (`copyBytes` of a whole source) is one native memcpy, not a loop.
   */
  readonly #frameViews: Uint8Array[]
  readonly #queue: ShmPump[] = []
  #sequence = 0
  #published = true
  #detached = false
  /**
   * The daemon broke the ring (an impossible cursor, a completion for no op in flight): from
   * then on nothing more is read from it and nothing submitted, whatever it writes next, until
   * the connection closes and `detach` hands the ops back for the socket.
   */
  #daemonBroke = false
  /** `whenIdle` resolvers: settled by the completion that empties the slots, or by detach. */
  readonly #idle: (() => void)[] = []

  constructor(
    views: ShmViews,
    geometry: ShmGeometry,
    kickDaemon: () => void,
    onBroken: (why: string) => void,
  ) {
    this.views = views
    this.geometry = geometry
    this.#layout = opLayout(geometry.abi)
    this.#sq = new SubmissionProducer(views, geometry)
    this.#cq = new CompletionConsumer(views, geometry)
    this.#kickDaemon = kickDaemon
    this.#onBroken = onBroken
    this.#doorbell = new ShmDoorbell(
      views.words,
      SHM_WORD_CLIENT_SLEEPING,
      SHM_WORD_DAEMON_SLEEPING,
    )
    this.#poller = new ShmPoller(
      this.#doorbell,
      { turn: () => this.#turn(), hasWork: () => this.#cq.hasWork() },
      {
        onSleep: () => this.counters.sleeps++,
        expecting: () => this.inFlight > 0,
        // A lone op in flight: the client polls for its reply whatever the gap score, since
        // its caller waits on that op alone (sleeping would cost the daemon a kick per op and
        // the op a wake-up). With more in flight the score decides: with 64 single ops in
        // flight the daemon takes longer than the bound to answer a batch, so polling for it
        // burnt up to 50 us of the client's CPU per batch (bench:shm: client CPU per put
        // 3.2-3.9 -> 2.3-2.8 us in alternating runs, kicks to the daemon 9 -> 4-5 per 1000).
        adaptive: () => this.inFlight > 1,
      },
    )
    const slots = Math.min(geometry.sqEntries, geometry.cqEntries)
    assert(slots <= SLOT_MASK + 1, 'Too many slots for the request id')
    this.#slots = slots
    this.#slotGeneration = new Uint32Array(slots)
    this.#slotFrame = new Int32Array(slots)
    this.#slotTag = new Float64Array(slots)
    this.#slotSequence = new Float64Array(slots)
    this.#slotWaiter = new Array<ShmWaiter | null>(slots).fill(null)
    this.#slotOps = new EntryCopies(slots, this.#layout)
    this.#freeSlots = new Uint32Array(slots)
    for (let i = 0; i < slots; i++) this.#freeSlots[i] = slots - 1 - i
    this.#freeSlotCount = slots
    this.#freeFrames = new Uint32Array(geometry.frameCount)
    for (let i = 0; i < geometry.frameCount; i++) this.#freeFrames[i] = geometry.frameCount - 1 - i
    this.#freeFrameCount = geometry.frameCount
    this.#frameViews = Array.from(
      { length: geometry.frameCount },
      (_, frame) =>
        new Uint8Array(
          views.bytes.buffer,
          views.bytes.byteOffset + this.#frameAt(frame),
          PAGE_SIZE,
        ),
    )
  }

  get detached(): boolean {
    return this.#detached
  }

  /** Ops in flight. */
  get inFlight(): number {
    return this.#slots - this.#freeSlotCount
  }

  /**
   * Resolves once no op is in flight or the channel is detached. It waits on completions and
   * never polls, so a daemon that stops answering costs the waiting client no CPU.
   */
  whenIdle(): Promise<void> {
    if (this.inFlight === 0 || this.#detached) return Promise.resolve()
    return new Promise((resolve) => this.#idle.push(resolve))
  }

  /** The daemon kicked: completions are waiting. */
  kicked(): void {
    this.counters.kicksReceived++
    this.#poller.wake()
  }

  /**
   * Submits one op if there is room now and no pump is waiting (which keeps the order):
   * `op[opAt..+opBytes]` is the op (its cmfn is set here), `page` the page of a put (copied
   * into the frame) or null, `needsFrame` whether it names a frame (put, get, read, write).
   * False: no room; queue a pump instead.
   */
  trySubmit(
    op: Uint8Array,
    opAt: number,
    page: Uint8Array | null,
    pageAt: number,
    needsFrame: boolean,
    waiter: ShmWaiter,
    tag: number,
  ): boolean {
    if (this.#detached || this.#queue.length > 0) return false
    return this.submitNow(op, opAt, page, pageAt, needsFrame, waiter, tag)
  }

  /** `trySubmit` for pumps, which run at the head of the queue. */
  submitNow(
    op: Uint8Array,
    opAt: number,
    page: Uint8Array | null,
    pageAt: number,
    needsFrame: boolean,
    waiter: ShmWaiter,
    tag: number,
  ): boolean {
    if (this.#detached || this.#daemonBroke) return false
    const room = this.#sq.room()
    if (room === RING_BROKEN) {
      this.#broken('the daemon published an impossible submission head')
      return false
    }
    if (room === 0 || this.#freeSlotCount === 0 || (needsFrame && this.#freeFrameCount === 0)) {
      this.counters.ringFull++
      return false
    }
    const slot = this.#freeSlots[--this.#freeSlotCount]!
    const frame = needsFrame ? this.#freeFrames[--this.#freeFrameCount]! : -1
    // The entry is made in the slot's private copy (kept for a re-send after a detach), then
    // goes into the ring as sixteen word stores.
    const id = ((this.#slotGeneration[slot]! << SLOT_BITS) | slot) >>> 0
    this.#slotOps.compose(slot, op, opAt, frame, id)
    if (page !== null && frame >= 0) {
      const bytes = this.views.bytes
      // A whole caller's page goes by TypedArray set (the builtin memcpy, no checks in JS).
      if (pageAt === 0 && page.length === PAGE_SIZE) bytes.set(page, this.#frameAt(frame))
      else copyBytes(page, pageAt, bytes, this.#frameAt(frame), PAGE_SIZE)
    }
    this.#sq.pushWords(this.#slotOps.words, slot * SQE_WORDS)
    this.#slotFrame[slot] = frame
    this.#slotTag[slot] = tag
    this.#slotWaiter[slot] = waiter
    this.#slotSequence[slot] = this.#sequence++
    this.counters.ops++
    this.#published = false
    this.#schedulePublish()
    return true
  }

  /** Queues a pump behind the others; it runs as completions free room. */
  enqueue(pump: ShmPump): void {
    if (this.#detached) return
    if (this.#queue.length === 0 && pump.pump(this)) return
    this.#queue.push(pump)
  }

  /**
   * Stops using the region: reads the completions already posted, then hands back the ops
   * still in flight (in the order they were submitted) and the pumps still queued.
   */
  detach(): { orphans: ShmOrphan[]; pumps: ShmPump[] } {
    if (this.#detached) return { orphans: [], pumps: [] }
    // At most the ops in flight can complete; a daemon that keeps posting more (another
    // process, writing while this loop reads) is stopped by the first bad one, and the turn
    // count bounds the loop whatever the ring says.
    this.#drainCompletions(Math.ceil(this.#slots / SHM_OPS_PER_TURN_MAX) + 1)
    this.#detached = true
    this.#poller.stop()
    for (const resolve of this.#idle.splice(0)) resolve()
    const inFlight: number[] = []
    for (let slot = 0; slot < this.#slots; slot++)
      if (this.#slotWaiter[slot] !== null) inFlight.push(slot)
    inFlight.sort((a, b) => this.#slotSequence[a]! - this.#slotSequence[b]!)
    const orphans = inFlight.map((slot) => this.#orphan(slot))
    const pumps = this.#queue.splice(0)
    return { orphans, pumps }
  }

  #orphan(slot: number): ShmOrphan {
    const frame = this.#slotFrame[slot]!
    const op = this.#slotOps.bytes.slice(slot * SQE_BYTES, slot * SQE_BYTES + this.#layout.bytes)
    const page =
      frame >= 0
        ? this.views.bytes.slice(this.#frameAt(frame), this.#frameAt(frame) + PAGE_SIZE)
        : null
    const orphan = { op, page, waiter: this.#slotWaiter[slot]!, tag: this.#slotTag[slot]! }
    this.#slotWaiter[slot] = null
    return orphan
  }

  #frameAt(frame: number): number {
    return this.geometry.framesOffset + frame * PAGE_SIZE
  }

  /**
   * Publishes at the end of this tick (every op issued in it in one publish and at most one
   * kick), and wakes the completion poller.
   */
  #schedulePublish(): void {
    if (!this.#publishScheduled) {
      this.#publishScheduled = true
      queueMicrotask(this.#publishNow)
    }
    this.#poller.kick()
  }

  #publishScheduled = false
  readonly #publishNow = (): void => {
    this.#publishScheduled = false
    if (!this.#detached) this.#publish()
  }

  /** Publishes submissions (and kicks a sleeping daemon); called once per turn. */
  #publish(): void {
    if (this.#published) return
    this.#published = true
    this.#sq.publish()
    if (this.#doorbell.peerNeedsKick()) this.#kick()
  }

  /** One poller turn: publish what was submitted, read completions, run queued pumps. */
  #turn(): number {
    if (this.#detached) return 0
    this.#publish()
    const handled = this.#drainCompletions(1)
    if (handled < 0) return RING_BROKEN
    while (this.#queue.length > 0 && this.#queue[0]!.pump(this)) this.#queue.shift()
    this.#publish()
    return handled
  }

  /** Reads up to `turns` turns of completions; returns how many, or RING_BROKEN. */
  #drainCompletions(turns: number): number {
    let handled = 0
    if (this.#daemonBroke) return RING_BROKEN
    for (let turn = 0; turn < turns; turn++) {
      const count = this.#cq.begin()
      if (count === RING_BROKEN) {
        this.#broken('the daemon published an impossible completion tail')
        return RING_BROKEN
      }
      if (count === 0) break
      for (let i = 0; i < count; i++) {
        this.#cq.take()
        // A bad completion breaks the ring: the entries after it are not believed either.
        if (!this.#complete(this.#cq.requestId, this.#cq.rc)) return RING_BROKEN
      }
      this.#cq.end()
      handled += count
      // Room in the completion ring matters to a sleeping daemon only when submissions wait
      // for it; with none waiting, the daemon sleeps on an empty ring and the next publish
      // kicks it (its flag stays set until then). Kicking here regardless cost an unpipelined
      // op two kicks instead of one (bench:shm).
      if (this.#sq.room() !== this.geometry.sqEntries && this.#doorbell.peerNeedsKick())
        this.#kick()
    }
    return handled
  }

  /** Hands a completion to its op's waiter; false (the ring broken) when no op was in flight. */
  #complete(requestId: number, rc: number): boolean {
    const slot = requestId & SLOT_MASK
    const waiter = slot < this.#slots ? this.#slotWaiter[slot] : null
    if (
      waiter === null ||
      waiter === undefined ||
      requestId >>> SLOT_BITS !== this.#slotGeneration[slot]
    ) {
      this.badCompletions++
      this.#broken(`a completion for request ${requestId}, which is not in flight`)
      return false
    }
    const frame = this.#slotFrame[slot]!
    const tag = this.#slotTag[slot]!
    this.#slotWaiter[slot] = null
    this.#slotGeneration[slot] = (this.#slotGeneration[slot] + 1) & 0xfffff
    this.#freeSlots[this.#freeSlotCount++] = slot
    if (this.#idle.length > 0 && this.#freeSlotCount === this.#slots)
      for (const resolve of this.#idle.splice(0)) resolve()
    try {
      if (frame >= 0) waiter.shmDone(tag, rc, this.#frameViews[frame]!, 0)
      else waiter.shmDone(tag, rc, this.views.bytes, -1)
    } finally {
      if (frame >= 0) this.#freeFrames[this.#freeFrameCount++] = frame
    }
    return true
  }

  #kick(): void {
    this.counters.kicksSent++
    this.#kickDaemon()
  }

  #broken(why: string): void {
    if (this.#detached || this.#daemonBroke) return
    this.#daemonBroke = true
    this.#onBroken(why)
  }
}
