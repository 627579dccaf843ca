/**
 * Where a put's page goes, and how a removed page's storage is given back.
 *
 * A plain put copies the caller's page straight into a frame. When the owner compresses, or
 * the host runs tze or dedup ("dense"), the page is first copied into the payload scratch and
 * goes through `payload.ts` (and `dedup.ts`), which may keep it compressed, trimmed, as a fill
 * word, or shared with other pages. Either way the outcome is written into a `StoredPage`, the
 * one reused result object the caller passes in, and from there into the slot's columns.
 *
 * Every function takes the page it works on as arguments: the caller's bytes (`source` at
 * `sourceOffset`, already resolved), the fill kind, the READ/WRITE window, the object eviction
 * must spare. Nothing here allocates per page.
 */
import { PAGE_SIZE } from '../abi/constants.js'
import { assert } from '../util/assert.js'
import type { GlobalCounters } from './counters.js'
import { type Contents, SAME_SAMPLE_MAX } from './dedup.js'
import type { Eviction } from './evict.js'
import type { Frames } from './frames.js'
import { type Client, type OpTimer, type Pool, TIME_COPY } from './model.js'
import type { ResolvedHostOptions } from './options.js'
import { copyPage } from './page-copy.js'
import { CHECK_BYTES, type Payloads, STORED } from './payload.js'
import {
  NONE,
  SLOT_COMPRESSED,
  SLOT_CONTENT,
  SLOT_FILLED,
  SLOT_KIND_MASK,
  SLOT_PERSISTENT,
  SLOT_SECOND_CHANCE,
  SLOT_TZE,
  SLOT_USED,
  type Store,
} from './store.js'

/** Put fills: copy the caller's page, a zero page (NEW_PAGE), or a range (WRITE). */
export const FILL_COPY = 0
export const FILL_ZERO = 1
export const FILL_RANGE = 2
export type Fill = typeof FILL_COPY | typeof FILL_ZERO | typeof FILL_RANGE

/**
 * The caller's side of a page op beyond its buffer: the guest frame number the frame resolver
 * takes when the op carries no buffer (docs/semantics.md "Decision: guest frames"), and the READ/WRITE window (docs/semantics.md "Put", "Get").
 * `OpScratch` is one; restore paths pass theirs.
 */
export interface PageWindow {
  readonly cmfn: bigint
  readonly tmemOffset: number
  readonly pfnOffset: number
  readonly len: number
}

/**
 * The caller's page: `data` when given (null when `dataOffset` does not leave a whole page in
 * it), else the embedder's frame resolver for frame `cmfn` (docs/semantics.md "Decision: guest
 * frames"), null for a bad frame.
 */
export function resolvePage(
  options: ResolvedHostOptions,
  caller: Client,
  data: Uint8Array | null,
  dataOffset: number,
  cmfn: bigint,
  writable: boolean,
): Uint8Array | null {
  if (data !== null) {
    if (!Number.isInteger(dataOffset) || dataOffset < 0 || dataOffset + PAGE_SIZE > data.length)
      return null
    return data
  }
  const resolver = options.frameResolver
  if (resolver === null) return null
  let frame: Uint8Array | null | undefined
  try {
    frame = resolver(caller.id, cmfn, writable)
  } catch {
    return null
  }
  if (frame === null || frame === undefined || frame.length < PAGE_SIZE) return null
  return frame
}

/** Where and how a put's payload was stored: the slot columns it goes into. */
export class StoredPage {
  frame = NONE
  offset = 0
  bytes = 0
  flags = 0

  set(frame: number, offset: number, bytes: number, flags: number): void {
    this.frame = frame
    this.offset = offset
    this.bytes = bytes
    this.flags = flags
  }
}

/** What placement reads and changes: the core's storage. */
export interface PlacementState {
  readonly options: ResolvedHostOptions
  readonly store: Store
  readonly frames: Frames
  readonly payloads: Payloads
  readonly contents: Contents | null
  readonly counters: GlobalCounters
  readonly timer: OpTimer
}

export class Placement {
  readonly #state: PlacementState
  readonly #eviction: Eviction

  constructor(state: PlacementState, eviction: Eviction) {
    this.#state = state
    this.#eviction = eviction
  }

  /** Whether `pool`'s pages go through the payload store (compression, tze, dedup). */
  isDense(pool: Pool): boolean {
    const options = this.#state.options
    return pool.owner.compress || options.tze || (options.dedup && !pool.persistent)
  }

  /**
   * Stores a new page for `caller` into `out`, evicting (never object `spared`) as needed.
   * `fresh` is false for a duplicate put, which counts neither `cn` nor `cm` (docs/semantics.md "Statistics").
   * False when there was no room.
   */
  store(
    caller: Client,
    pool: Pool,
    spared: number,
    source: Uint8Array | null,
    sourceOffset: number,
    fill: Fill,
    window: PageWindow,
    fresh: boolean,
    out: StoredPage,
  ): boolean {
    if (!this.isDense(pool)) {
      const frame = this.#eviction.allocFrame(caller, spared)
      if (frame === NONE) return false
      this.fillFrame(frame, source, sourceOffset, fill, window)
      out.set(frame, 0, PAGE_SIZE, 0)
      return true
    }
    this.#fillScratch(source, sourceOffset, fill, window)
    return this.#storeDense(caller, pool, spared, fresh, out)
  }

  /**
   * A duplicate put's new data for `slot`: in place for a plain page on the plain path; kept
   * when it repeats the shared content the slot already points at; else the old payload is
   * released and the new one stored. False when there was no room (the slot then holds no
   * payload and must be removed).
   */
  replace(
    caller: Client,
    pool: Pool,
    slot: number,
    source: Uint8Array | null,
    sourceOffset: number,
    fill: Fill,
    window: PageWindow,
    out: StoredPage,
  ): boolean {
    const store = this.#state.store
    const flags = store.slotFlags(slot)
    if (!this.isDense(pool) && (flags & (SLOT_KIND_MASK | SLOT_CONTENT)) === 0) {
      this.fillFrame(store.slotFrame(slot), source, sourceOffset, fill, window)
      return true
    }
    if (fill === FILL_COPY && source !== null && this.#repeatsContent(slot, source, sourceOffset))
      return true
    this.releaseSlot(pool.owner, slot)
    // Until the new payload is in, the slot holds none (a fill word releases nothing).
    const kept = flags & ~(SLOT_KIND_MASK | SLOT_CONTENT | SLOT_SECOND_CHANCE)
    store.setSlotPayload(slot, 0, 0, 0, kept | SLOT_FILLED)
    const spared = store.slotObject(slot)
    if (!this.store(caller, pool, spared, source, sourceOffset, fill, window, false, out))
      return false
    this.apply(slot, SLOT_PERSISTENT | SLOT_USED, out)
    return true
  }

  /**
   * A duplicate put of the very bytes of the plain shared content `slot` points at: the
   * outcome release-then-store would reach (the same descriptor found again, one more
   * `dedupPuts`, the second chance cleared) without the scratch copy, fingerprint and lookup.
   * Only while another page shares the content: a sole owner's page goes the long way, which
   * may store it in another form (compression turned on since, say). A changed page usually
   * differs early, so the compare that fails costs little.
   */
  #repeatsContent(slot: number, source: Uint8Array, sourceOffset: number): boolean {
    const { store, contents, frames, counters } = this.#state
    const flags = store.slotFlags(slot)
    if ((flags & SLOT_CONTENT) === 0 || contents === null) return false
    const id = store.slotFrame(slot)
    if (contents.kind[id] !== 0 || contents.refs[id]! < 2) return false
    const frame = contents.frame[id]!
    const at = frames.frameOffset(frame)
    const arena = frames.arenaOf(frame)
    if (arena.compare(source, sourceOffset, sourceOffset + PAGE_SIZE, at, at + PAGE_SIZE) !== 0)
      return false
    counters.dedupPuts++
    store.setSlotFlags(slot, flags & ~SLOT_SECOND_CHANCE)
    return true
  }

  /** Writes a stored payload into a slot, keeping the slot's flags in `keep`. */
  apply(slot: number, keep: number, stored: StoredPage): void {
    const store = this.#state.store
    const flags = (store.slotFlags(slot) & keep) | stored.flags
    store.setSlotPayload(slot, stored.frame, stored.offset, stored.bytes, flags)
  }

  /** Writes a slot's page into `target[targetOffset]`; false when storage fails its check. */
  loadInto(slot: number, target: Uint8Array, targetOffset: number): boolean {
    const { store, payloads, contents } = this.#state
    const flags = store.slotFlags(slot)
    const frame = store.slotFrame(slot)
    if ((flags & SLOT_CONTENT) !== 0) {
      assert(contents !== null, 'Placement content slot without dedup')
      return payloads.load(
        contents.frame[frame]!,
        contents.offset[frame]!,
        contents.bytes[frame]!,
        contents.kind[frame]!,
        target,
        targetOffset,
      )
    }
    const kind = flags & SLOT_KIND_MASK
    // A plain page needs only its frame: reading the offset and size columns as well would
    // cost two more cache misses per get on a large store.
    if (kind === 0) return payloads.load(frame, 0, PAGE_SIZE, 0, target, targetOffset)
    return payloads.load(
      frame,
      store.slotOffset(slot),
      store.slotBytes(slot),
      kind,
      target,
      targetOffset,
    )
  }

  /** Releases a slot's payload (its content reference when deduplicated). */
  releaseSlot(owner: Client, slot: number): void {
    const store = this.#state.store
    this.release(
      owner,
      store.slotFrame(slot),
      store.slotOffset(slot),
      store.slotBytes(slot),
      store.slotFlags(slot),
    )
  }

  /** Releases a stored payload described by slot columns, counting it off its owner. */
  release(owner: Client, frame: number, offset: number, bytes: number, flags: number): void {
    const { payloads, contents } = this.#state
    if ((flags & SLOT_CONTENT) !== 0) {
      assert(contents !== null, 'Placement content release without dedup')
      // Read before the release, which forgets a descriptor whose last reference goes.
      const kind = contents.kind[frame]!
      const stored = contents.bytes[frame]!
      if (contents.release(frame, payloads)) this.#countContent(kind, stored, -1)
      return
    }
    const kind = flags & SLOT_KIND_MASK
    if (kind === SLOT_COMPRESSED) {
      owner.compressedPages--
      owner.compressedBytes -= bytes - CHECK_BYTES
    }
    payloads.release(frame, offset, kind)
  }

  /** The density path: dedup, fill word, compression, tze (docs/semantics.md "Space savers"). */
  #storeDense(
    caller: Client,
    pool: Pool,
    spared: number,
    fresh: boolean,
    out: StoredPage,
  ): boolean {
    const { payloads, contents, counters } = this.#state
    const owner = pool.owner
    // A page whose sampled fingerprint SAME_SAMPLE_MAX contents already have is stored on
    // its own, without dedup (dedup.ts).
    if (contents !== null && !pool.persistent) {
      const fingerprint = payloads.sampleFingerprint()
      let id = contents.find(fingerprint, payloads)
      if (id !== NONE) {
        contents.refs[id]!++
        counters.dedupPuts++
        out.set(id, 0, 0, SLOT_CONTENT)
        return true
      }
      if (contents.sameSample >= SAME_SAMPLE_MAX)
        return this.#storeOwn(caller, owner, spared, fresh, out)
      if (!this.#storePayload(caller, owner, spared, fresh)) return false
      id = contents.add(fingerprint, payloads)
      if (id === NONE) {
        payloads.release(payloads.frame, payloads.offset, payloads.kind)
        counters.failedSubpageAllocs++
        return false
      }
      this.#countContent(contents.kind[id]!, contents.bytes[id]!, 1)
      out.set(id, 0, 0, SLOT_CONTENT)
      return true
    }
    return this.#storeOwn(caller, owner, spared, fresh, out)
  }

  /** Stores the scratch page as a payload of its own (not shared), counting compression. */
  #storeOwn(
    caller: Client,
    owner: Client,
    spared: number,
    fresh: boolean,
    out: StoredPage,
  ): boolean {
    const payloads = this.#state.payloads
    if (!this.#storePayload(caller, owner, spared, fresh)) return false
    if (payloads.compressedBytes > 0) {
      owner.compressedPages++
      owner.compressedBytes += payloads.compressedBytes
    }
    out.set(payloads.frame, payloads.offset, payloads.bytes, payloads.kind)
    return true
  }

  /**
   * Stores the scratch page as a payload (fill word, compressed chunk, tze chunk or plain
   * frame), counting a fresh put's `cn` (no memory to compress into) and `cm` (poor ratio).
   */
  #storePayload(caller: Client, owner: Client, spared: number, fresh: boolean): boolean {
    const payloads = this.#state.payloads
    const evict = this.#eviction.callbackFor(caller, spared)
    if (payloads.store(owner.compress, this.#state.options.tze, evict) !== STORED) {
      if (owner.compress && fresh) owner.compressNoMemory++
      return false
    }
    if (payloads.poor && fresh) owner.compressPoor++
    return true
  }

  /** Copies the caller's page (or zeros, or a range) into frame `frame`. */
  fillFrame(
    frame: number,
    source: Uint8Array | null,
    sourceOffset: number,
    fill: Fill,
    window: PageWindow,
  ): void {
    const frames = this.#state.frames
    this.#fill(frames.arenaOf(frame), frames.frameOffset(frame), source, sourceOffset, fill, window)
  }

  /** Copies the caller's page (or zeros, or a range) into the payload scratch page. */
  #fillScratch(
    source: Uint8Array | null,
    sourceOffset: number,
    fill: Fill,
    window: PageWindow,
  ): void {
    this.#fill(this.#state.payloads.page, 0, source, sourceOffset, fill, window)
  }

  #fill(
    target: Uint8Array,
    at: number,
    source: Uint8Array | null,
    sourceOffset: number,
    fill: Fill,
    window: PageWindow,
  ): void {
    const timer = this.#state.timer
    if (fill === FILL_COPY) {
      assert(source !== null, 'Placement copy without a source')
      const started = timer.start()
      copyPage(source, sourceOffset, target, at, PAGE_SIZE)
      timer.end(TIME_COPY, started)
      return
    }
    target.fill(0, at, at + PAGE_SIZE)
    if (fill === FILL_RANGE && source !== null) {
      const started = timer.start()
      copyPage(source, sourceOffset + window.pfnOffset, target, at + window.tmemOffset, window.len)
      timer.end(TIME_COPY, started)
    }
  }

  /** Adds (+1) or removes (-1) a content descriptor's bytes from `Gz`/`Zt`; updates `Sc`/`Sm`. */
  #countContent(kind: number, stored: number, sign: number): void {
    const { contents, counters } = this.#state
    assert(contents !== null, 'Placement counts content without dedup')
    const bytes = stored - CHECK_BYTES
    if (kind === SLOT_COMPRESSED) counters.compressedBytes += sign * bytes
    else if (kind === SLOT_TZE) counters.tzeBytes += sign * bytes
    counters.contentCount = contents.count
    if (sign > 0) counters.contentMax = contents.countMax
  }
}
