/**
 * The page commands of docs/semantics.md "Guest commands" and eviction (docs/semantics.md "Eviction", "Minimum reserve", "Decision: eviction quota", "Decision: cap", "Decision: get with a bad frame", "Decision: memory budget"): put
 * (with the duplicate-put coherency rule), get (destructive on private ephemeral pools),
 * flush page, flush object, and the LRU bookkeeping they share.
 *
 * Eviction essay. Every ephemeral page sits on two intrusive lists: the global LRU and the
 * LRU of the client that owns its pool, oldest at the head. A new put appends at both tails;
 * a shared-pool hit moves the page to both tails; a duplicate put leaves it where it is. To
 * evict, the caller's own LRU is used when the caller holds more than its weighted share of
 * ephemeral pages (`C * T > G * W`, the documented intent, docs/semantics.md "Decision: eviction quota"); otherwise, or when none of
 * its pages is eligible, the global LRU. A page is not eligible while its object is the one
 * the current put is writing (so a put never evicts its own object) or while its pool is
 * being destroyed. A client cap (docs/semantics.md "Decision: cap") makes a put first evict that client's own oldest page.
 *
 * With dedup on, a page whose content is shared by more than one page gets a second chance:
 * the first time eviction reaches it, it moves to the LRU tails instead (docs/semantics.md "Eviction").
 *
 * Storage: a plain put copies the caller's page straight into a frame. When the owner
 * compresses, or the host runs tze or dedup, the page goes through `payload.ts` (and
 * `dedup.ts`) instead, which may keep it compressed, trimmed, as a fill word, or shared.
 *
 * Nothing here allocates per page: the caller's bytes are copied into frames with
 * Buffer.prototype.copy, and every list and index is a typed array.
 */
import { EEMPTY, EFAULT, EFROZEN, ENOMEM, ENOSPC, PAGE_SIZE } from '../abi/constants.js'
import { assert } from '../util/assert.js'
import { copyBytes } from '../util/bytes.js'
import type { Host } from './host.js'
import type { Client, Pool } from './model.js'
import { CHECK_BYTES, STORED } from './payload.js'
import {
  listAppend,
  listUnlink,
  NONE,
  SLOT_COMPRESSED,
  SLOT_CONTENT,
  SLOT_FILLED,
  SLOT_KIND_MASK,
  SLOT_PERSISTENT,
  SLOT_SECOND_CHANCE,
  SLOT_TZE,
  SLOT_USED,
} from './store.js'

/** Failed evictions after which the minimum-reserve loop gives up (docs/semantics.md "Minimum reserve"). */
const RESERVE_FAILURES_MAX = 11

export class Pages {
  /** Put fills: copy the guest page, a zero page (NEW_PAGE), or a range (WRITE). */
  static readonly FILL_COPY = 0
  static readonly FILL_ZERO = 1
  static readonly FILL_RANGE = 2

  readonly #host: Host
  /** The object the current put writes; its pages are not eviction candidates. */
  #protectedObject = NONE

  constructor(host: Host) {
    this.#host = host
  }

  // ---------------------------------------------------------------------------------------
  // Memory.

  /** The minimum-reserve step before PUT and NEW_PAGE (docs/semantics.md "Minimum reserve"). */
  reserve(caller: Client): void {
    const frames = this.#host.frames
    const reserve = this.#host.options.reservePages
    let failures = 0
    while (frames.available < reserve) {
      if (this.evict(caller, false)) continue
      if (++failures >= RESERVE_FAILURES_MAX) break
    }
  }

  /**
   * Evicts one ephemeral page (docs/semantics.md "Eviction", "Decision: eviction quota"). `ownOnly` restricts the choice to the
   * caller's own LRU (the cap rule). Returns true when a page was evicted.
   */
  evict(caller: Client | null, ownOnly: boolean): boolean {
    const host = this.#host
    const store = host.store
    host.counters.evictAttempts++
    let slot = NONE
    if (caller !== null && (ownOnly || this.#overQuota(caller))) {
      slot = this.#firstEligible(store.clientNext, caller.lru[0]!)
    }
    if (slot === NONE && !ownOnly) slot = this.#firstEligible(store.listNext, host.globalLru[0]!)
    if (slot === NONE) return false
    const pool = host.pools.byGid(store.objectPool[store.slotObject[slot]!]!)
    this.removePage(pool, slot)
    host.counters.evicted++
    return true
  }

  #overQuota(client: Client): boolean {
    const total = this.#host.weightTotal
    const weight = client.weight
    const count = client.ephemeralCount
    if (total === 0 || weight === 0 || count === 0) return false
    const global = this.#host.counters.ephemeralCount
    const left = count * total
    const right = global * weight
    if (left < Number.MAX_SAFE_INTEGER && right < Number.MAX_SAFE_INTEGER) return left > right
    return BigInt(count) * BigInt(total) > BigInt(global) * BigInt(weight)
  }

  #firstEligible(next: Uint32Array, head: number): number {
    const host = this.#host
    const store = host.store
    let slot = head
    while (slot !== NONE) {
      const following = next[slot]!
      const object = store.slotObject[slot]!
      const pool = host.pools.byGid(store.objectPool[object]!)
      if (object !== this.#protectedObject && !pool.destroying) {
        if (!this.#takesSecondChance(pool, slot)) return slot
        // A page moved to the tail comes round again later in this scan, unless it already
        // was the tail: look at it again now, or an eviction with an evictable page left
        // would fail (and a cap or persistent put with it, docs/semantics.md "Decision: cap", "Decision: memory budget").
        if (following === NONE) continue
      }
      slot = following
    }
    return NONE
  }

  /** Dedup second chance: a shared content's page moves to the LRU tails once (docs/semantics.md "Eviction"). */
  #takesSecondChance(pool: Pool, slot: number): boolean {
    const host = this.#host
    const store = host.store
    const flags = store.slotFlags[slot]!
    const contents = host.contents
    if ((flags & SLOT_CONTENT) === 0 || (flags & SLOT_SECOND_CHANCE) !== 0 || contents === null) {
      return false
    }
    if (contents.refs[store.slotFrame[slot]!]! < 2) return false
    store.slotFlags[slot] = flags | SLOT_SECOND_CHANCE
    listUnlink(store.listPrev, store.listNext, host.globalLru, slot)
    listAppend(store.listPrev, store.listNext, host.globalLru, slot)
    listUnlink(store.clientPrev, store.clientNext, pool.owner.lru, slot)
    listAppend(store.clientPrev, store.clientNext, pool.owner.lru, slot)
    return true
  }

  /** A frame for new data, evicting as needed. NONE when nothing more can be evicted. */
  #allocFrame(caller: Client): number {
    const frames = this.#host.frames
    let frame = frames.alloc()
    while (frame === NONE) {
      if (!this.evict(caller, false)) {
        this.#host.counters.failedPageAllocs++
        return NONE
      }
      frame = frames.alloc()
    }
    return frame
  }

  /** The cap rule (docs/semantics.md "Decision: cap"): returns false when the owner is at its cap and cannot evict its own. */
  #makeRoomUnderCap(owner: Client): boolean {
    const cap = owner.cap
    if (cap === 0) return true
    const limit = Math.floor((Math.min(cap, 100) * this.#host.options.pages) / 100)
    while (owner.ephemeralCount >= limit) {
      if (!this.evict(owner, true)) return false
    }
    return true
  }

  // ---------------------------------------------------------------------------------------
  // Page removal, shared by flush, eviction, destruction and failed duplicate puts.

  /** Removes a page completely: lists, data, index, and its object when it was the last. */
  removePage(pool: Pool, slot: number): void {
    const host = this.#host
    const store = host.store
    const object = store.slotObject[slot]!
    const owner = pool.owner
    if ((store.slotFlags[slot]! & SLOT_PERSISTENT) !== 0) {
      if (pool.saveCursor === slot) pool.saveCursor = store.listPrev[slot]!
      listUnlink(store.listPrev, store.listNext, pool.persistentList, slot)
      if (owner.liveMigrating && !pool.destroying) host.control_.recordInvalidation(pool, slot)
    } else {
      listUnlink(store.listPrev, store.listNext, host.globalLru, slot)
      listUnlink(store.clientPrev, store.clientNext, owner.lru, slot)
      host.counters.ephemeralCount--
      owner.ephemeralCount--
    }
    this.#releasePayload(owner, slot)
    store.pageRemove(slot)
    pool.pageCount--
    host.counters.pageCount--
    if (store.objectPages[object] === 0) this.#removeObject(pool, object)
  }

  #removeObject(pool: Pool, object: number): void {
    this.#host.store.objectRemove(object, pool.objects)
    pool.objectCount--
    this.#host.counters.objectCount--
  }

  /** Removes every page of an object, then the object (FLUSH_OBJECT, pool destruction). */
  removeObject(pool: Pool, object: number): void {
    const store = this.#host.store
    let slot = store.objectChain[object]!
    while (slot !== NONE) {
      const next = store.chainNext[slot]!
      const last = next === NONE
      this.removePage(pool, slot)
      if (last) return
      slot = next
    }
  }

  // ---------------------------------------------------------------------------------------
  // Commands.

  /** PUT_PAGE / NEW_PAGE / WRITE and restore puts (docs/semantics.md "Put"). */
  put(caller: Client, pool: Pool, data: Uint8Array | null, dataOffset: number, fill: number): number {
    const host = this.#host
    const store = host.store
    const s = host.scratch
    const owner = pool.owner
    pool.puts++
    let object = store.objectLookup(pool.gid, s.oid)
    if (object !== NONE) {
      const slot = store.pageLookup(object, s.index)
      if (slot !== NONE) return this.#duplicatePut(caller, pool, slot, data, dataOffset, fill)
    }
    if (owner.frozen) {
      pool.noMemoryPuts++
      return -EFROZEN
    }
    if (fill !== Pages.FILL_ZERO && !this.#resolve(caller, data, dataOffset, false)) {
      host.counters.failedCopies++
      pool.noMemoryPuts++
      return -EFAULT
    }
    // The object being written is protected from the cap's evictions too (docs/semantics.md "Decision: eviction quota"): evicting its
    // last page would free the object this put is about to insert into.
    this.#protectedObject = object
    if (!pool.persistent && !this.#makeRoomUnderCap(owner)) {
      this.#protectedObject = NONE
      pool.noMemoryPuts++
      return -ENOMEM
    }
    this.#caller = caller
    const stored =
      this.#ensureDescriptors(caller) &&
      (this.#isDense(pool) ? this.#storeDense(pool, fill, true) : this.#storePlain(caller, fill))
    this.#protectedObject = NONE
    if (!stored) {
      pool.noMemoryPuts++
      return -ENOMEM
    }
    const created = object === NONE
    if (created) {
      object = store.objectInsert(pool.gid, s.oid, pool.objects)
      if (object === NONE) return this.#failAfterStore(pool, NONE)
      pool.objectCount++
      if (pool.objectCount > pool.objectMax) pool.objectMax = pool.objectCount
      if (++host.counters.objectCount > host.counters.objectMax) host.counters.objectMax++
    }
    const slot = store.pageInsert(object, s.index)
    if (slot === NONE) return this.#failAfterStore(pool, created ? object : NONE)
    this.#applyResult(slot, SLOT_USED)
    this.#linkNewPage(pool, slot)
    if (pool.shared) store.objectLastClient[object] = owner.id
    pool.goodPuts++
    if (pool.persistent) owner.succPersistentPuts++
    else host.counters.goodEphemeralPuts++
    if (owner.precopy && pool.persistent) host.control_.recordInvalidation(pool, slot)
    return 1
  }

  #linkNewPage(pool: Pool, slot: number): void {
    const host = this.#host
    const store = host.store
    const counters = host.counters
    const owner = pool.owner
    if (pool.persistent) {
      store.slotFlags[slot]! |= SLOT_PERSISTENT
      listAppend(store.listPrev, store.listNext, pool.persistentList, slot)
    } else {
      listAppend(store.listPrev, store.listNext, host.globalLru, slot)
      listAppend(store.clientPrev, store.clientNext, owner.lru, slot)
      if (++counters.ephemeralCount > counters.ephemeralMax) counters.ephemeralMax++
      if (++owner.ephemeralCount > owner.ephemeralMax) owner.ephemeralMax++
    }
    if (++pool.pageCount > pool.pageMax) pool.pageMax++
    if (++counters.pageCount > counters.pageMax) counters.pageMax++
  }

  /** The duplicate-put rule (docs/semantics.md "Duplicate put"): replace and return 1, or fail and drop the page. */
  #duplicatePut(
    caller: Client,
    pool: Pool,
    slot: number,
    data: Uint8Array | null,
    dataOffset: number,
    fill: number,
  ): number {
    const host = this.#host
    const store = host.store
    const owner = pool.owner
    let rc = 1
    if (owner.liveMigrating && !owner.precopy) rc = -ENOSPC
    else if (fill !== Pages.FILL_ZERO && !this.#resolve(caller, data, dataOffset, false)) {
      host.counters.failedCopies++
      rc = -EFAULT
    }
    if (rc !== 1) {
      this.removePage(pool, slot)
      pool.dupPutsFlushed++
      return rc
    }
    if (!this.#replacePayload(caller, pool, slot, fill)) {
      this.removePage(pool, slot)
      pool.dupPutsFlushed++
      return -ENOSPC
    }
    if (pool.shared) store.objectLastClient[store.slotObject[slot]!] = owner.id
    pool.dupPutsReplaced++
    pool.goodPuts++
    if (pool.persistent) owner.succPersistentPuts++
    if (owner.precopy && pool.persistent) host.control_.recordInvalidation(pool, slot)
    return 1
  }

  /**
   * Resolves the caller's page into `#view`/`#viewOffset`: `data` at `dataOffset` when given,
   * else the embedder's frame resolver (docs/semantics.md "Decision: guest frames"). Returns false for a bad frame.
   */
  #resolve(caller: Client, data: Uint8Array | null, dataOffset: number, writable: boolean): boolean {
    this.#view = null
    if (data !== null) {
      if (!Number.isInteger(dataOffset) || dataOffset < 0 || dataOffset + PAGE_SIZE > data.length) {
        return false
      }
      this.#view = data
      this.#viewOffset = dataOffset
      return true
    }
    const resolver = this.#host.options.frameResolver
    if (resolver === null) return false
    let frame: Uint8Array | null | undefined
    try {
      frame = resolver(caller.id, this.#host.scratch.cmfn, writable)
    } catch {
      return false
    }
    if (frame === null || frame === undefined || frame.length < PAGE_SIZE) return false
    this.#view = frame
    this.#viewOffset = 0
    return true
  }

  /** The caller's page for the op in flight, set by `#resolve`. */
  #view: Uint8Array | null = null
  #viewOffset = 0

  #fillFrame(frame: number, fill: number): void {
    const frames = this.#host.frames
    const arena = frames.arenaOf(frame)
    const at = frames.frameOffset(frame)
    const source = this.#view
    const sourceOffset = this.#viewOffset
    if (fill === Pages.FILL_COPY) {
      assert(source !== null, 'Pages copy without a source')
      copyBytes(source, sourceOffset, arena, at, PAGE_SIZE)
      return
    }
    arena.fill(0, at, at + PAGE_SIZE)
    if (fill === Pages.FILL_RANGE && source !== null) {
      const s = this.#host.scratch
      const from = sourceOffset + s.pfnOffset
      copyBytes(source, from, arena, at + s.tmemOffset, s.len)
    }
  }


  // ---------------------------------------------------------------------------------------
  // Payloads.

  /** The client whose put is in flight (eviction runs on its behalf). */
  #caller: Client | null = null
  /** Eviction callback for the payload store, bound once. */
  readonly #evictForPut = (): boolean => this.evict(this.#caller, false)
  // Where the payload of the put in flight was stored.
  #resultFrame = NONE
  #resultOffset = 0
  #resultBytes = 0
  #resultFlags = 0

  /**
   * Makes sure a page descriptor and an object record are free, evicting ephemeral pages
   * when they are not (they run out before frames when pages are stored compressed).
   */
  #ensureDescriptors(caller: Client): boolean {
    const store = this.#host.store
    while (store.slots.inUse >= store.slots.capacity || store.objects.inUse >= store.objects.capacity) {
      if (!this.evict(caller, false)) {
        this.#host.counters.failedSubpageAllocs++
        return false
      }
    }
    return true
  }

  #isDense(pool: Pool): boolean {
    const options = this.#host.options
    return pool.owner.compress || options.tze || (options.dedup && !pool.persistent)
  }

  #storePlain(caller: Client, fill: number): boolean {
    const frame = this.#allocFrame(caller)
    if (frame === NONE) return false
    this.#fillFrame(frame, fill)
    this.#setResult(frame, 0, PAGE_SIZE, 0)
    return true
  }

  /**
   * Stores through the density path: dedup, fill word, compression, tze (docs/semantics.md "Space savers"). `fresh`
   * is false for a duplicate put, which counts neither `cn` nor `cm` (docs/semantics.md "Statistics": non-duplicate
   * puts only).
   */
  #storeDense(pool: Pool, fill: number, fresh: boolean): boolean {
    const host = this.#host
    const payloads = host.payloads
    const owner = pool.owner
    this.#fillScratch(fill)
    const contents = host.contents
    if (contents !== null && !pool.persistent) {
      const fingerprint = payloads.fingerprint()
      let id = contents.find(fingerprint, payloads)
      if (id !== NONE) {
        contents.refs[id]!++
        host.counters.dedupPuts++
        this.#setResult(id, 0, 0, SLOT_CONTENT)
        return true
      }
      if (!this.#storePayload(owner, fresh)) return false
      id = contents.add(fingerprint, payloads)
      if (id === NONE) {
        payloads.release(payloads.frame, payloads.offset, payloads.kind)
        host.counters.failedSubpageAllocs++
        return false
      }
      this.#countContent(id, 1)
      this.#setResult(id, 0, 0, SLOT_CONTENT)
      return true
    }
    if (!this.#storePayload(owner, fresh)) return false
    if (payloads.compressedBytes > 0) {
      owner.compressedPages++
      owner.compressedBytes += payloads.compressedBytes
    }
    this.#setResult(payloads.frame, payloads.offset, payloads.bytes, payloads.kind)
    return true
  }

  /**
   * Stores the scratch page as a payload (fill word, compressed chunk, tze chunk or plain
   * frame), counting a fresh put's `cn` (no memory to compress into) and `cm` (poor ratio).
   */
  #storePayload(owner: Client, fresh: boolean): boolean {
    const payloads = this.#host.payloads
    if (payloads.store(owner.compress, this.#host.options.tze, this.#evictForPut) !== STORED) {
      if (owner.compress && fresh) owner.compressNoMemory++
      return false
    }
    if (payloads.poor && fresh) owner.compressPoor++
    return true
  }

  /** Copies the caller's page (or zeros, or a range) into the payload scratch page. */
  #fillScratch(fill: number): void {
    const page = this.#host.payloads.page
    if (fill === Pages.FILL_COPY) {
      assert(this.#view !== null, 'Pages copy without a source')
      copyBytes(this.#view, this.#viewOffset, page, 0, PAGE_SIZE)
      return
    }
    page.fill(0)
    if (fill === Pages.FILL_RANGE && this.#view !== null) {
      const s = this.#host.scratch
      copyBytes(this.#view, this.#viewOffset + s.pfnOffset, page, s.tmemOffset, s.len)
    }
  }

  /** Adds (+1) or removes (-1) a content descriptor's bytes from `Gz`/`Zt`. */
  #countContent(id: number, sign: number): void {
    const host = this.#host
    const contents = host.contents!
    const kind = contents.kind[id]!
    const bytes = contents.bytes[id]! - CHECK_BYTES
    if (kind === SLOT_COMPRESSED) host.counters.compressedBytes += sign * bytes
    else if (kind === SLOT_TZE) host.counters.tzeBytes += sign * bytes
    host.counters.contentCount = contents.count
    host.counters.contentMax = contents.countMax
  }

  #setResult(frame: number, offset: number, bytes: number, flags: number): void {
    this.#resultFrame = frame
    this.#resultOffset = offset
    this.#resultBytes = bytes
    this.#resultFlags = flags
  }

  /** Writes the stored payload into a slot, keeping the slot's other flags. */
  #applyResult(slot: number, keep: number): void {
    const store = this.#host.store
    store.slotFrame[slot] = this.#resultFrame
    store.slotOffset[slot] = this.#resultOffset
    store.slotBytes[slot] = this.#resultBytes
    store.slotFlags[slot] = (store.slotFlags[slot]! & keep) | this.#resultFlags
  }

  /** A put stored its payload but found no object or slot: undo and fail with -ENOMEM. */
  #failAfterStore(pool: Pool, createdObject: number): number {
    const host = this.#host
    host.counters.failedSubpageAllocs++
    pool.noMemoryPuts++
    this.#releaseStored(pool.owner, this.#resultFrame, this.#resultOffset, this.#resultBytes, this.#resultFlags)
    if (createdObject !== NONE) this.#removeObject(pool, createdObject)
    return -ENOMEM
  }

  /** Releases a slot's payload (its content reference when deduplicated). */
  #releasePayload(owner: Client, slot: number): void {
    const store = this.#host.store
    this.#releaseStored(owner, store.slotFrame[slot]!, store.slotOffset[slot]!, store.slotBytes[slot]!, store.slotFlags[slot]!)
  }

  #releaseStored(owner: Client, frame: number, offset: number, bytes: number, flags: number): void {
    const host = this.#host
    if ((flags & SLOT_CONTENT) !== 0) {
      const contents = host.contents!
      const kind = contents.kind[frame]!
      const stored = contents.bytes[frame]!
      if (contents.release(frame, host.payloads)) {
        const sign = -1
        if (kind === SLOT_COMPRESSED) host.counters.compressedBytes += sign * (stored - CHECK_BYTES)
        else if (kind === SLOT_TZE) host.counters.tzeBytes += sign * (stored - CHECK_BYTES)
        host.counters.contentCount = contents.count
      }
      return
    }
    const kind = flags & SLOT_KIND_MASK
    if (kind === SLOT_COMPRESSED) {
      owner.compressedPages--
      owner.compressedBytes -= bytes - CHECK_BYTES
    }
    host.payloads.release(frame, offset, kind)
  }

  /**
   * A duplicate put's new data: in place for a plain page on the plain path, else the old
   * payload is released and the new one stored. False when there was no room.
   */
  #replacePayload(caller: Client, pool: Pool, slot: number, fill: number): boolean {
    const store = this.#host.store
    const flags = store.slotFlags[slot]!
    const dense = this.#isDense(pool)
    if (!dense && (flags & (SLOT_KIND_MASK | SLOT_CONTENT)) === 0) {
      this.#fillFrame(store.slotFrame[slot]!, fill)
      return true
    }
    this.#releasePayload(pool.owner, slot)
    // Until the new payload is in, the slot holds none (a fill word releases nothing).
    store.slotFlags[slot] = (flags & ~(SLOT_KIND_MASK | SLOT_CONTENT | SLOT_SECOND_CHANCE)) | SLOT_FILLED
    store.slotFrame[slot] = 0
    store.slotBytes[slot] = 0
    this.#protectedObject = store.slotObject[slot]!
    this.#caller = caller
    const stored = dense ? this.#storeDense(pool, fill, false) : this.#storePlain(caller, fill)
    this.#protectedObject = NONE
    if (!stored) return false
    this.#applyResult(slot, SLOT_PERSISTENT | SLOT_USED)
    return true
  }

  /** Writes a slot's page into `target[targetOffset]`; false when storage fails its check. */
  loadInto(slot: number, target: Uint8Array, targetOffset: number): boolean {
    const host = this.#host
    const store = host.store
    const flags = store.slotFlags[slot]!
    const payloads = host.payloads
    if ((flags & SLOT_CONTENT) !== 0) {
      const contents = host.contents!
      const id = store.slotFrame[slot]!
      return payloads.load(contents.frame[id]!, contents.offset[id]!, contents.bytes[id]!, contents.kind[id]!, target, targetOffset)
    }
    return payloads.load(store.slotFrame[slot]!, store.slotOffset[slot]!, store.slotBytes[slot]!, flags & SLOT_KIND_MASK, target, targetOffset)
  }

  /** GET_PAGE / READ (docs/semantics.md "Get", "Decision: get with a bad frame"). */
  get(caller: Client, pool: Pool, data: Uint8Array | null, dataOffset: number, range: boolean): number {
    const host = this.#host
    const store = host.store
    const s = host.scratch
    if (pool.pageCount === 0) return -EEMPTY
    pool.gets++
    const object = store.objectLookup(pool.gid, s.oid)
    if (object === NONE) return 0
    const slot = store.pageLookup(object, s.index)
    if (slot === NONE) return 0
    const privateEphemeral = !pool.persistent && !pool.shared
    if (!this.#resolve(caller, data, dataOffset, true)) {
      host.counters.failedCopies++
      if (privateEphemeral) this.removePage(pool, slot)
      return -EFAULT
    }
    const target = this.#view!
    const targetOffset = this.#viewOffset
    const page = host.payloads.page
    if (!(range ? this.loadInto(slot, page, 0) : this.loadInto(slot, target, targetOffset))) {
      // The stored page failed its check: never serve it (ephemeral: drop it, a miss).
      host.counters.corruptPages++
      if (pool.persistent) return -EFAULT
      this.removePage(pool, slot)
      return 0
    }
    if (range) copyBytes(page, s.tmemOffset, target, targetOffset + s.pfnOffset, s.len)
    const owner = pool.owner
    if (privateEphemeral) this.removePage(pool, slot)
    else if (pool.shared && !pool.persistent) {
      listUnlink(store.listPrev, store.listNext, host.globalLru, slot)
      listAppend(store.listPrev, store.listNext, host.globalLru, slot)
      listUnlink(store.clientPrev, store.clientNext, owner.lru, slot)
      listAppend(store.clientPrev, store.clientNext, owner.lru, slot)
      store.objectLastClient[object] = caller.id
    }
    pool.foundGets++
    if (pool.persistent) owner.succPersistentGets++
    else owner.succEphemeralGets++
    return 1
  }

  /** FLUSH_PAGE (docs/semantics.md "Flush page"): performed even for a frozen owner, which then gets -EFROZEN. */
  flushPage(pool: Pool): number {
    const store = this.#host.store
    pool.flushes++
    const object = store.objectLookup(pool.gid, this.#host.scratch.oid)
    if (object !== NONE) {
      const slot = store.pageLookup(object, this.#host.scratch.index)
      if (slot !== NONE) {
        this.removePage(pool, slot)
        pool.flushesFound++
      }
    }
    return pool.owner.frozen ? -EFROZEN : 1
  }

  /** FLUSH_OBJECT (docs/semantics.md "Flush object"). */
  flushObject(pool: Pool): number {
    const store = this.#host.store
    pool.flushObjects++
    const object = store.objectLookup(pool.gid, this.#host.scratch.oid)
    if (object !== NONE) {
      this.removeObject(pool, object)
      pool.flushObjectsFound++
    }
    return pool.owner.frozen ? -EFROZEN : 1
  }
}

