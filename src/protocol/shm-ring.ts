/**
 * The two rings of a shared-memory region (`shm-region.ts` draws the layout), one class per
 * role:
 *
 *   client                                   daemon
 *   SubmissionProducer --- submission ring --> SubmissionConsumer
 *   CompletionConsumer <-- completion ring --- CompletionProducer
 *
 * Each side owns one cursor of each ring and keeps it in a private field; it publishes it
 * with `Atomics.store` and never reads it back from the region. The other side's cursor is
 * read with `Atomics.load` and checked: a ring can never hold more than its size, so a cursor
 * that says otherwise is corruption (a bug or a hostile peer), counted in `errors`, and the
 * ring is reported broken (-1) instead of being read. Slots are `cursor & (entries - 1)` of a
 * private cursor, so no value in the region can move a read or write out of the ring.
 *
 * The consumer of the submission ring copies each entry out once (`take`), and every check
 * after that reads the private copy (no double fetch: the client may rewrite the slot at any
 * time). A turn takes at most `SHM_OPS_PER_TURN_MAX` entries, so a peer that keeps refilling
 * a ring cannot hold the consumer in a loop; the daemon yields to its event loop between turns.
 *
 * Atomics work on an Int32Array over any ArrayBuffer; the region's is an external buffer
 * (not a SharedArrayBuffer: N-API cannot make one over a mapping), on which V8 emits the same
 * sequentially consistent instructions. Hot path: nothing here allocates.
 *
 * `start` is where a ring's cursors begin: 0, as a fresh header holds them (tests start both
 * sides near 2^32 to cross the wrap).
 */
import { type OpLayout } from '../abi/layout.js'
import { assert } from '../util/assert.js'
import { readU32LE, writeU32LE } from '../util/le.js'
import {
  CQE_BYTES,
  CQE_RC,
  CQE_REQUEST_ID,
  SHM_WORD_CQ_HEAD,
  SHM_WORD_CQ_TAIL,
  SHM_WORD_SQ_HEAD,
  SHM_WORD_SQ_TAIL,
  SQE_BYTES,
  SQE_REQUEST_ID,
  SQE_RESERVED,
  type ShmGeometry,
} from './shm-region.js'

/**
 * Most entries a consumer takes in one turn before it yields (to its event loop, and so to
 * every other connection of the daemon). 256 ops are about 0.2 ms of engine work.
 */
export const SHM_OPS_PER_TURN_MAX = 256

/** Returned by `begin`/`room` when the peer's cursor is impossible: the ring is broken. */
export const RING_BROKEN = -1

/** Faults found in the peer's half of the region. */
export interface RingErrors {
  /** A cursor of the other side said the ring held more than it can. */
  badCursor: number
}

/** Views of one mapped region shared by the ring endpoints. */
export interface ShmViews {
  /** The whole region. */
  readonly bytes: Uint8Array
  /** The same memory as i32 words, for Atomics on the cursors and flags. */
  readonly words: Int32Array
}

/** Makes the byte and word views of a region (its length a multiple of 4). */
export function shmViews(buffer: ArrayBuffer, regionBytes: number): ShmViews {
  assert(buffer.byteLength >= regionBytes && regionBytes % 4 === 0, 'Region views out of range')
  return {
    bytes: new Uint8Array(buffer, 0, regionBytes),
    words: new Int32Array(buffer, 0, regionBytes / 4),
  }
}

/** Entries between two free-running u32 cursors. */
function distance(tail: number, head: number): number {
  return (tail - head) >>> 0
}

/** Where a ring lives in the region and which header words hold its cursors. */
interface RingPlace {
  offset: number
  entries: number
  entryBytes: number
  headWord: number
  tailWord: number
}

/**
 * The consuming end of a ring: it owns the head, reads the other side's tail (hostile: an
 * impossible tail is RING_BROKEN, never a loop or an index out of the ring), takes a bounded
 * number of entries per turn and publishes the head with a release store. The two consumers
 * below differ only in their ring, their bound and what they do with an entry.
 */
class RingConsumer {
  readonly errors: RingErrors = { badCursor: 0 }
  protected readonly views: ShmViews
  readonly #ring: RingPlace
  readonly #mask: number
  #head = 0
  /** The head as last stored in the region; -1 (no u32) until the first `end` stores it. */
  #publishedHead = -1
  #left = 0

  constructor(views: ShmViews, ring: RingPlace, start: number) {
    this.views = views
    this.#ring = ring
    this.#mask = ring.entries - 1
    this.#head = start >>> 0
  }

  /** True when the ring looks non-empty (or broken: the caller then finds out in `begin`). */
  hasWork(): boolean {
    return Atomics.load(this.views.words, this.#ring.tailWord) >>> 0 !== this.#head
  }

  /**
   * Publishes the head: the producer may reuse the slots taken. A turn that took nothing
   * stores nothing: the store would take the line holding the head away from the producer's
   * cache (it reads the head before each submission) for no news.
   */
  end(): void {
    this.#left = 0
    if (this.#head === this.#publishedHead) return
    this.#publishedHead = this.#head
    Atomics.store(this.views.words, this.#ring.headWord, this.#head | 0)
  }

  /** Entries to take this turn, at most `limit` and SHM_OPS_PER_TURN_MAX; or RING_BROKEN. */
  protected turn(limit: number): number {
    const queued = distance(Atomics.load(this.views.words, this.#ring.tailWord), this.#head)
    if (queued > this.#ring.entries) {
      this.errors.badCursor++
      this.#left = 0
      return RING_BROKEN
    }
    this.#left = Math.min(queued, limit, SHM_OPS_PER_TURN_MAX)
    return this.#left
  }

  /** The byte offset of the next entry in the region; consumes it. */
  protected next(): number {
    assert(this.#left > 0, 'Take past the turn')
    const at = this.#ring.offset + (this.#head & this.#mask) * this.#ring.entryBytes
    this.#head = (this.#head + 1) >>> 0
    this.#left--
    return at
  }
}

/** Daemon side of the submission ring: copies ops out, one turn at a time. */
export class SubmissionConsumer extends RingConsumer {
  constructor(views: ShmViews, geometry: ShmGeometry, start = 0) {
    super(
      views,
      {
        offset: geometry.sqOffset,
        entries: geometry.sqEntries,
        entryBytes: SQE_BYTES,
        headWord: SHM_WORD_SQ_HEAD,
        tailWord: SHM_WORD_SQ_TAIL,
      },
      start,
    )
  }

  /**
   * Starts a turn: how many entries `take` may copy out now, at most `room` (the completion
   * ring's free slots) and `SHM_OPS_PER_TURN_MAX`; RING_BROKEN when the tail is impossible.
   */
  begin(room: number): number {
    return this.turn(room)
  }

  /** Copies the next entry (64 bytes) into `into` at 0 and consumes it. */
  take(into: Uint8Array): void {
    assert(into.length >= SQE_BYTES, 'Entry copy too small')
    copyShort(this.views.bytes, this.next(), into, 0, SQE_BYTES)
  }

  /** `take` into the word view of the copy (`into[0..16)`): the daemon's way, per op. */
  takeWords(into: Int32Array): void {
    copyWords(this.views.words, this.next() >>> 2, into, 0, SQE_BYTES >>> 2)
  }
}

/**
 * The producing end of a ring: it owns the tail, reads the other side's head (hostile: an
 * impossible head is RING_BROKEN, never a loop or an index out of the ring) and publishes the
 * tail with a release store. The two producers below differ only in their ring and entry.
 */
class RingProducer {
  readonly errors: RingErrors = { badCursor: 0 }
  protected readonly views: ShmViews
  protected tail = 0
  readonly #offset: number
  readonly #mask: number
  readonly #entries: number
  readonly #entryBytes: number
  readonly #headWord: number
  readonly #tailWord: number

  constructor(views: ShmViews, ring: RingPlace, start: number) {
    this.views = views
    this.tail = start >>> 0
    this.#offset = ring.offset
    this.#entries = ring.entries
    this.#mask = ring.entries - 1
    this.#entryBytes = ring.entryBytes
    this.#headWord = ring.headWord
    this.#tailWord = ring.tailWord
  }

  /** Free slots; RING_BROKEN when the other side's head is impossible. */
  room(): number {
    const used = distance(this.tail, Atomics.load(this.views.words, this.#headWord))
    if (used > this.#entries) {
      this.errors.badCursor++
      return RING_BROKEN
    }
    return this.#entries - used
  }

  /** Byte offset (in the region) of the slot the tail names. */
  protected slot(): number {
    return this.#offset + (this.tail & this.#mask) * this.#entryBytes
  }

  publish(): void {
    Atomics.store(this.views.words, this.#tailWord, this.tail | 0)
  }
}

/** Daemon side of the completion ring. */
export class CompletionProducer extends RingProducer {
  constructor(views: ShmViews, geometry: ShmGeometry, start = 0) {
    const ring = { offset: geometry.cqOffset, entries: geometry.cqEntries, entryBytes: CQE_BYTES }
    super(views, { ...ring, headWord: SHM_WORD_CQ_HEAD, tailWord: SHM_WORD_CQ_TAIL }, start)
  }

  /** Writes one completion (the caller checked `room`); visible after `publish`. */
  post(requestId: number, rc: number): void {
    const at = this.slot()
    writeU32LE(this.views.bytes, at + CQE_REQUEST_ID, requestId)
    writeU32LE(this.views.bytes, at + CQE_RC, rc >>> 0)
    this.tail = (this.tail + 1) >>> 0
  }
}

/**
 * Copies `words` i32 words between two word views: for the 64-byte entries, where `copyBytes`
 * (two `.buffer` reads, each a call into the runtime, then its wide-view lookup) cost 250-400 ns
 * against about 20 here (measured on a mapped region, 2026-12-07).
 */
export function copyWords(
  source: Int32Array,
  sourceWord: number,
  target: Int32Array,
  targetWord: number,
  words: number,
): void {
  for (let i = 0; i < words; i++) target[targetWord + i] = source[sourceWord + i]!
}

/** Copies a few dozen bytes (an op) with a plain loop, for the same reason as `copyWords`. */
export function copyShort(
  source: Uint8Array,
  sourceAt: number,
  target: Uint8Array,
  targetAt: number,
  length: number,
): void {
  for (let i = 0; i < length; i++) target[targetAt + i] = source[sourceAt + i]!
}

/**
 * Zeroes `bytes[from, to)` for a few bytes (a cmfn): a plain loop, where `fill` is a call into
 * the runtime (measured: 16 ns for 8 bytes against 41; from about 32 bytes on, `fill` wins).
 */
export function zeroShort(bytes: Uint8Array, from: number, to: number): void {
  for (let at = from; at < to; at++) bytes[at] = 0
}

/** Client side of the submission ring: ops are written straight into their slots. */
export class SubmissionProducer extends RingProducer {
  constructor(views: ShmViews, geometry: ShmGeometry, start = 0) {
    const ring = { offset: geometry.sqOffset, entries: geometry.sqEntries, entryBytes: SQE_BYTES }
    super(views, { ...ring, headWord: SHM_WORD_SQ_HEAD, tailWord: SHM_WORD_SQ_TAIL }, start)
  }

  /**
   * Byte offset (in the region) of the next slot, for the caller to write the op into: all of
   * bytes [0, SQE_REQUEST_ID) (nothing is zeroed here: a `fill` is a call into the runtime, and
   * the caller writes every byte anyway); `push` then seals it with the request id and a zero
   * reserved word. The caller checked `room`.
   */
  next(): number {
    return this.slot()
  }

  /**
   * Writes a whole entry, `entry[entryWord..+16)` (the op, its cmfn, the request id and a zero
   * reserved word, composed by the caller in private memory), into the next slot: sixteen word
   * stores into the region instead of the byte stores `next`/`push` take. The caller checked
   * `room`; visible after `publish`.
   */
  pushWords(entry: Int32Array, entryWord: number): void {
    copyWords(entry, entryWord, this.views.words, this.slot() >>> 2, SQE_BYTES >>> 2)
    this.tail = (this.tail + 1) >>> 0
  }

  /** Completes the slot `next` returned with `requestId`; visible after `publish`. */
  push(requestId: number): void {
    const at = this.slot()
    writeU32LE(this.views.bytes, at + SQE_REQUEST_ID, requestId)
    writeU32LE(this.views.bytes, at + SQE_RESERVED, 0)
    this.tail = (this.tail + 1) >>> 0
  }
}

/** Client side of the completion ring. */
export class CompletionConsumer extends RingConsumer {
  /** The entry `take` read last. */
  requestId = 0
  rc = 0

  constructor(views: ShmViews, geometry: ShmGeometry, start = 0) {
    super(
      views,
      {
        offset: geometry.cqOffset,
        entries: geometry.cqEntries,
        entryBytes: CQE_BYTES,
        headWord: SHM_WORD_CQ_HEAD,
        tailWord: SHM_WORD_CQ_TAIL,
      },
      start,
    )
  }

  /** Completions to read this turn (at most SHM_OPS_PER_TURN_MAX); RING_BROKEN if impossible. */
  begin(): number {
    return this.turn(SHM_OPS_PER_TURN_MAX)
  }

  /** Reads the next completion into `requestId` and `rc`. */
  take(): void {
    const at = this.next()
    this.requestId = readU32LE(this.views.bytes, at + CQE_REQUEST_ID)
    this.rc = readU32LE(this.views.bytes, at + CQE_RC) | 0
  }
}

/** The request id of an entry copied out by `SubmissionConsumer.take`. */
export function sqeRequestId(entry: Uint8Array): number {
  return readU32LE(entry, SQE_REQUEST_ID)
}

/** True when the entry's reserved word is zero, as a well-formed client leaves it. */
export function sqeReservedClear(entry: Uint8Array): boolean {
  return readU32LE(entry, SQE_RESERVED) === 0
}

/**
 * The frame an op (copied out of the ring) names with its `cmfn`, or -1 when that is not a
 * frame of the region: the high word must be 0 and the low word below `frameCount`.
 */
export function sqeFrame(entry: Uint8Array, layout: OpLayout, geometry: ShmGeometry): number {
  const low = readU32LE(entry, layout.genCmfn)
  const high = readU32LE(entry, layout.genCmfn + 4)
  if (high !== 0 || low >= geometry.frameCount) return -1
  return low
}
