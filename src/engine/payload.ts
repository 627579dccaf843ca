/**
 * Page payloads: how one page's bytes are kept, and the space savers of docs/semantics.md "Space savers", "Decision: compression".
 *
 *   kind        where                         stored bytes
 *   plain       a whole frame                 4096
 *   filled      nowhere (fill word in the     0    (zero and same-filled pages)
 *               slot's frame column)
 *   compressed  a chunk: [u32 xxh32][u32 0][codec]   8 + codec output  (<= SUBPAGE_BYTES_MAX)
 *   tze         a chunk: [u32 xxh32][u32 0][prefix]  8 + bytes before the trailing zero words
 *
 * Zero and same-filled pages are detected on every dense path (compression, tze or dedup).
 *
 * A chunk payload carries the fingerprint of the whole original page, checked on every read:
 * corrupt compressed storage is reported, never served as data. A page that does not shrink
 * to half a page or less is stored plain; for compression that counts as poor (`cn`).
 *
 * The encoder works on `page`, a 4096-byte scratch the caller fills first; `load` writes a
 * page into any buffer. Nothing is allocated per page (the zlib fallback codec excepted).
 */
import { PAGE_SIZE } from '../abi/constants.js'
import { assert } from '../util/assert.js'
import { registerCopyBuffer } from '../util/bytes.js'
import { type PageCodec, fingerprintPage, fingerprintSample } from './codecs.js'
import type { Frames } from './frames.js'
import { type OpTimer, TIME_COMPRESS, TIME_COPY, TIME_DECOMPRESS } from './model.js'
import { copyPage } from './page-copy.js'
import { NONE, SLOT_COMPRESSED, SLOT_FILLED, SLOT_TZE } from './store.js'
import { SUBPAGE_BYTES_MAX, Subpages } from './subpages.js'

/**
 * Bytes before a chunk's payload: the u32 check, then 4 zero bytes, so that the payload starts
 * 8-byte aligned (chunks are 8-byte aligned) and copies in and out of it take copyBytes' wide
 * path instead of its byte loop (about 6x faster for a 1 KiB chunk).
 */
export const CHECK_BYTES = 8
/** Payload result codes of `store`. */
export const STORED = 0
export const STORE_NO_MEMORY = 1

export class Payloads {
  readonly frames: Frames
  readonly subpages: Subpages
  readonly codec: PageCodec | null
  /** Times copies out of storage and codec calls of sampled ops (`C`, `c`, `d`). */
  readonly timer: OpTimer
  /** The page being stored, or the page just loaded. Exactly one page long. */
  readonly page: Buffer
  readonly #words: Int32Array
  readonly #out = new Uint8Array(PAGE_SIZE * 2)
  /** A second page for dedup compares. */
  readonly compare: Buffer
  // The result of `store`: where and how the payload was kept.
  frame = NONE
  offset = 0
  bytes = 0
  kind = 0
  /** Codec output size of the last store (0 when not compressed). */
  compressedBytes = 0
  /** The last compression attempt did not shrink the page enough. */
  poor = false

  constructor(frames: Frames, codec: PageCodec | null, timer: OpTimer) {
    this.frames = frames
    this.timer = timer
    this.subpages = new Subpages(frames)
    this.codec = codec
    const scratch = new ArrayBuffer(PAGE_SIZE * 2)
    registerCopyBuffer(scratch)
    registerCopyBuffer(this.#out.buffer)
    this.page = Buffer.from(scratch, 0, PAGE_SIZE)
    this.compare = Buffer.from(scratch, PAGE_SIZE, PAGE_SIZE)
    this.#words = new Int32Array(scratch, 0, PAGE_SIZE / 4)
  }

  /** The fingerprint of `page` (all of it: chunk checks). */
  fingerprint(): number {
    return fingerprintPage(this.page, this.#words)
  }

  /** The sampled fingerprint of `page` (the dedup table's key, see `fingerprintSample`). */
  sampleFingerprint(): number {
    return fingerprintSample(this.#words)
  }

  /** If `page` is one 32-bit word repeated, that word; else null is signalled by false. */
  #sameFilled(): boolean {
    const words = this.#words
    const first = words[0]!
    for (let i = 1; i < words.length; i++) if (words[i] !== first) return false
    return true
  }

  /** Bytes of `page` before its trailing zero 64-bit words. */
  #trimmedLength(): number {
    const words = this.#words
    let end = words.length
    while (end >= 2 && words[end - 1] === 0 && words[end - 2] === 0) end -= 2
    return end * 4
  }

  /**
   * Stores `page` in the cheapest form the flags allow and leaves the result in `frame`,
   * `offset`, `bytes`, `kind`. `evict` is called to make room when no frame is free; it
   * returns false when nothing more can be evicted.
   */
  store(compress: boolean, tze: boolean, evict: () => boolean): number {
    this.compressedBytes = 0
    this.poor = false
    // Zero and same-filled pages need no payload on any dense path (as zswap's same-filled
    // pages), not only with tze: the issue asks 0 bytes for a zero page with compression too.
    if (this.#sameFilled()) {
      this.#result(this.#words[0]! >>> 0, 0, 0, SLOT_FILLED)
      return STORED
    }
    if (compress && this.codec !== null) {
      const started = this.timer.start()
      const size = this.codec.compress(this.page, this.#out)
      this.timer.end(TIME_COMPRESS, started)
      if (size > 0 && size + CHECK_BYTES <= SUBPAGE_BYTES_MAX) {
        if (!this.#storeChunk(this.#out, size, SLOT_COMPRESSED, evict)) return STORE_NO_MEMORY
        this.compressedBytes = size
        return STORED
      }
      this.poor = true
    }
    if (tze) {
      const length = this.#trimmedLength()
      if (length + CHECK_BYTES <= SUBPAGE_BYTES_MAX) {
        return this.#storeChunk(this.page, length, SLOT_TZE, evict) ? STORED : STORE_NO_MEMORY
      }
    }
    let frame = this.frames.alloc()
    while (frame === NONE) {
      if (!evict()) return STORE_NO_MEMORY
      frame = this.frames.alloc()
    }
    copyPage(this.page, 0, this.frames.arenaOf(frame), this.frames.frameOffset(frame), PAGE_SIZE)
    this.#result(frame, 0, PAGE_SIZE, 0)
    return STORED
  }

  #storeChunk(source: Uint8Array, length: number, kind: number, evict: () => boolean): boolean {
    const check = this.fingerprint()
    const size = length + CHECK_BYTES
    while (!this.subpages.alloc(size)) {
      if (!evict()) return false
    }
    const frame = this.subpages.frame
    const arena = this.frames.arenaOf(frame)
    const at = this.frames.frameOffset(frame) + this.subpages.offset
    arena.writeUInt32LE(check, at)
    arena.writeUInt32LE(0, at + 4)
    copyPage(source, 0, arena, at + CHECK_BYTES, length)
    this.#result(frame, this.subpages.offset, size, kind)
    return true
  }

  #result(frame: number, offset: number, bytes: number, kind: number): void {
    this.frame = frame
    this.offset = offset
    this.bytes = bytes
    this.kind = kind
  }

  /**
   * Writes the page kept as (frame, offset, bytes, kind) into `target[targetOffset]`.
   * Returns false when a chunk payload fails its check (corrupt storage): nothing is
   * written then.
   */
  load(
    frame: number,
    offset: number,
    bytes: number,
    kind: number,
    target: Uint8Array,
    targetOffset: number,
  ): boolean {
    const timer = this.timer
    if (kind === 0) {
      const started = timer.start()
      copyPage(
        this.frames.arenaOf(frame),
        this.frames.frameOffset(frame),
        target,
        targetOffset,
        PAGE_SIZE,
      )
      timer.end(TIME_COPY, started)
      return true
    }
    if (!this.expand(frame, offset, bytes, kind)) return false
    const started = timer.start()
    copyPage(this.page, 0, target, targetOffset, PAGE_SIZE)
    timer.end(TIME_COPY, started)
    return true
  }

  /** Rebuilds a non-plain payload into `page`; false when it fails its check. */
  expand(frame: number, offset: number, bytes: number, kind: number): boolean {
    if (kind === SLOT_FILLED) {
      this.#words.fill(frame | 0)
      return true
    }
    const arena = this.frames.arenaOf(frame)
    const at = this.frames.frameOffset(frame) + offset
    if (kind === SLOT_COMPRESSED) {
      assert(this.codec !== null, 'Payloads compressed page without a codec')
      const started = this.timer.start()
      const produced = this.codec.decompress(arena, at + CHECK_BYTES, at + bytes, this.page)
      this.timer.end(TIME_DECOMPRESS, started)
      if (produced !== PAGE_SIZE) return false
    } else {
      assert(kind === SLOT_TZE, 'Payloads unknown payload kind')
      const length = bytes - CHECK_BYTES
      copyPage(arena, at + CHECK_BYTES, this.page, 0, length)
      this.page.fill(0, length, PAGE_SIZE)
    }
    return this.fingerprint() === arena.readUInt32LE(at)
  }

  /** Frees the storage of a payload. */
  release(frame: number, offset: number, kind: number): void {
    if (kind === SLOT_FILLED) return
    if (kind === 0) this.frames.release(frame)
    else this.subpages.free(frame, offset)
  }

  /** Does the payload hold the same page as `page`? (dedup confirmation) */
  equalsPage(frame: number, offset: number, bytes: number, kind: number): boolean {
    if (kind === 0) {
      const arena = this.frames.arenaOf(frame)
      const at = this.frames.frameOffset(frame)
      return arena.compare(this.page, 0, PAGE_SIZE, at, at + PAGE_SIZE) === 0
    }
    // Expand into `compare` by swapping roles: save the incoming page first.
    copyPage(this.page, 0, this.compare, 0, PAGE_SIZE)
    const ok = this.expand(frame, offset, bytes, kind)
    const same = ok && this.page.compare(this.compare, 0, PAGE_SIZE, 0, PAGE_SIZE) === 0
    copyPage(this.compare, 0, this.page, 0, PAGE_SIZE)
    return same
  }
}
