/**
 * The engine core: the one owner of the page store, the frames and payloads, the LRU heads,
 * the client and pool tables and the counters, and the page commands of docs/semantics.md "Guest commands" on them:
 * put (with the duplicate-put coherency rule), get (destructive on private ephemeral pools),
 * flush page and flush object, and the page removal they share with eviction and pool
 * destruction.
 *
 * Every page command takes its page as arguments — the calling client, the pool, the oid
 * words, the index, the caller's buffer and offset, and for READ/WRITE and frame resolution a
 * `PageWindow` — and returns the spec's value. A put's stored payload goes through one reused
 * `StoredPage`. Nothing here allocates per page: bytes are copied with copyPage between the
 * caller's buffer and a frame, and every list and index is a typed array.
 *
 *   Host (ABI decoding, dispatch, timing)
 *     └─ Core: put / get / flushPage / flushObject / removePage
 *          ├─ Eviction  (evict.ts: LRU scans, reserve, cap, EVICT_SCAN_MAX)
 *          ├─ Placement (placement.ts: plain frame or payload store, release)
 *          └─ changeLog (a ChangeHook set by whoever runs a live migration)
 *
 * Memory (docs/semantics.md "Memory", "Decision: eviction quota", "Decision: cap", "Decision: memory budget"): the host has a budget of frames. Ephemeral pages are on a
 * global LRU and their owner's LRU; persistent pages are never evicted. When a frame is needed
 * and none is free, eviction makes room; a persistent put that still finds no room returns
 * -ENOMEM.
 */
import { EEMPTY, EFAULT, EFROZEN, ENOMEM, ENOSPC } from '../abi/constants.js'
import { copyPage } from './page-copy.js'
import { createCodec } from './codecs.js'
import { GlobalCounters } from './counters.js'
import { Contents } from './dedup.js'
import { Eviction } from './evict.js'
import { Frames } from './frames.js'
import { Client, OpTimer, type Pool, PoolTable, type TimeStats } from './model.js'
import type { ResolvedHostOptions } from './options.js'
import { Payloads } from './payload.js'
import {
  type Fill,
  FILL_ZERO,
  type PageWindow,
  Placement,
  resolvePage,
  StoredPage,
} from './placement.js'
import {
  createObject,
  linkNewPage,
  mustEvict,
  putOverVictim,
  removeObjectRecord,
  REUSE_DECLINED,
} from './reuse.js'
import {
  listAppend,
  listUnlink,
  newListHead,
  NONE,
  SLOT_PERSISTENT,
  SLOT_USED,
  Store,
} from './store.js'

export { FILL_COPY, FILL_RANGE, FILL_ZERO, type Fill, type PageWindow } from './placement.js'

/**
 * The core's hook for live migration: told about every persistent page put, replaced or
 * removed while its owner is being migrated (docs/semantics.md "Save subops", widened to puts for pre-copy). The
 * page is named by pool, the oid words at `oid[base..base+6]`, and its index.
 */
export interface ChangeHook {
  pageChanged(pool: Pool, oid: Uint32Array, base: number, index: number): void
}

export class Core {
  readonly options: ResolvedHostOptions
  readonly frames: Frames
  readonly store: Store
  /** Payload storage: frames, sub-page chunks, the codec. */
  readonly payloads: Payloads
  /** Dedup content descriptors, when dedup is on. */
  readonly contents: Contents | null
  readonly counters = new GlobalCounters()
  /** The cycle statistics' clock and sampling (the LIST `T=` line and every `Tc`). */
  readonly timer: OpTimer
  readonly times: TimeStats
  /** The global ephemeral LRU, oldest at the head. */
  readonly globalLru = newListHead()
  /** Clients by id. */
  readonly clientsById: (Client | undefined)[] = []
  /** Clients in creation order. */
  readonly clientOrder: Client[] = []
  readonly pools = new PoolTable()
  /** Sum of all client weights. */
  weightTotal = 0
  /** Clients with a non-zero weight (the only ones that can be over their share), any order. */
  readonly weighted: Client[] = []
  /** Global shared-pool authorisation ("global auth", TMEM_AUTH to all clients). */
  globalAuth = false
  /** Where persistent page changes of migrating clients go; set by whoever runs a migration. */
  changeLog: ChangeHook | null = null
  /** Reasons for refusals a person should see (v0 guest refused, and so on). */
  onDiagnostic: ((clientId: number, message: string) => void) | null = null
  /** Told about each evicted ephemeral page before its storage is freed (see victim.ts). */
  onEvict: ((pool: Pool, slot: number) => void) | null = null
  readonly eviction: Eviction
  readonly placement: Placement
  /** The result of storing a put's payload; reused by every put. */
  readonly #stored = new StoredPage()

  constructor(options: ResolvedHostOptions) {
    this.options = options
    this.timer = new OpTimer(options.clockNs, options.timingSample)
    this.times = this.timer.times
    this.frames = new Frames(options.pages)
    if (options.prefault) this.frames.prefault()
    this.store = new Store(options.descriptors, options.descriptors)
    this.payloads = new Payloads(this.frames, createCodec(options.codec), this.timer)
    this.contents = options.dedup ? new Contents(options.descriptors) : null
    this.eviction = new Eviction(this)
    this.placement = new Placement(this, this.eviction)
  }

  /** The client with this id, created on first use as in Xen. */
  clientFor(clientId: number, version: 0 | 1): Client {
    let client = this.clientsById[clientId]
    if (client === undefined) {
      client = new Client(clientId, version, this.options.compress && !this.options.dedup)
      this.clientsById[clientId] = client
      this.clientOrder.push(client)
    }
    return client
  }

  /** Sets a client's weight (TMEMC_SET_WEIGHT; 0 when the client goes), keeping the totals. */
  setWeight(client: Client, weight: number): void {
    this.weightTotal += weight - client.weight
    const listed = this.weighted.indexOf(client)
    if (weight !== 0 && listed < 0) this.weighted.push(client)
    if (weight === 0 && listed >= 0) this.weighted.splice(listed, 1)
    client.weight = weight
  }

  // ---------------------------------------------------------------------------------------
  // Commands.

  /**
   * PUT_PAGE / NEW_PAGE / WRITE and restore puts (docs/semantics.md "Put"): page (`oid`, `index`) of `pool`
   * from `data[dataOffset..]` (or the frame `window.cmfn` resolves to when `data` is null).
   */
  put(
    caller: Client,
    pool: Pool,
    oid: Uint32Array,
    index: number,
    data: Uint8Array | null,
    dataOffset: number,
    fill: Fill,
    window: PageWindow,
  ): number {
    const store = this.store
    const owner = pool.owner
    pool.puts++
    const object = store.objectLookup(pool.gid, oid)
    if (object !== NONE) {
      const slot = store.pageLookup(object, index)
      if (slot !== NONE)
        return this.#duplicatePut(caller, pool, slot, data, dataOffset, fill, window)
    }
    if (owner.frozen) {
      pool.noMemoryPuts++
      return -EFROZEN
    }
    const source =
      fill === FILL_ZERO
        ? null
        : resolvePage(this.options, caller, data, dataOffset, window.cmfn, false)
    if (fill !== FILL_ZERO && source === null) {
      this.counters.failedCopies++
      pool.noMemoryPuts++
      return -EFAULT
    }
    const sourceOffset = data === null ? 0 : dataOffset
    // The object being written is spared by the cap's evictions too (docs/semantics.md "Decision: eviction quota"): evicting its last
    // page would free the object this put is about to insert into.
    if (!pool.persistent && !this.eviction.makeRoomUnderCap(owner, object)) {
      pool.noMemoryPuts++
      return -ENOMEM
    }
    // A put that must evict takes its victim over in place when it can (reuse.ts).
    if (!pool.persistent && mustEvict(this) && !this.placement.isDense(pool)) {
      const rc = putOverVictim(
        this,
        caller,
        pool,
        object,
        oid,
        index,
        source,
        sourceOffset,
        fill,
        window,
      )
      if (rc !== REUSE_DECLINED) return rc
    }
    if (!this.eviction.ensureDescriptors(caller, object)) {
      pool.noMemoryPuts++
      return -ENOMEM
    }
    const stored = this.#stored
    if (
      !this.placement.store(caller, pool, object, source, sourceOffset, fill, window, true, stored)
    ) {
      pool.noMemoryPuts++
      return -ENOMEM
    }
    return this.#insertStored(pool, object, oid, index, stored)
  }

  /** A new put's payload is stored: index it under (object, index), creating the object. */
  #insertStored(
    pool: Pool,
    object: number,
    oid: Uint32Array,
    index: number,
    stored: StoredPage,
  ): number {
    const store = this.store
    const owner = pool.owner
    const created = object === NONE
    if (created) {
      object = createObject(this, pool, oid)
      if (object === NONE) return this.#failAfterStore(pool, NONE, stored)
    }
    const slot = store.pageInsert(object, index)
    if (slot === NONE) return this.#failAfterStore(pool, created ? object : NONE, stored)
    this.placement.apply(slot, SLOT_USED, stored)
    linkNewPage(this, pool, slot)
    if (pool.shared) store.objectLastClient[object] = owner.id
    pool.goodPuts++
    if (pool.persistent) owner.succPersistentPuts++
    else this.counters.goodEphemeralPuts++
    if (owner.precopy && pool.persistent) this.#logChange(pool, slot)
    return 1
  }

  /** The duplicate-put rule (docs/semantics.md "Duplicate put"): replace and return 1, or fail and drop the page. */
  #duplicatePut(
    caller: Client,
    pool: Pool,
    slot: number,
    data: Uint8Array | null,
    dataOffset: number,
    fill: Fill,
    window: PageWindow,
  ): number {
    const owner = pool.owner
    let rc = 1
    let source: Uint8Array | null = null
    if (owner.liveMigrating && !owner.precopy) rc = -ENOSPC
    else if (fill !== FILL_ZERO) {
      source = resolvePage(this.options, caller, data, dataOffset, window.cmfn, false)
      if (source === null) {
        this.counters.failedCopies++
        rc = -EFAULT
      }
    }
    if (rc === 1) {
      const sourceOffset = data === null ? 0 : dataOffset
      if (
        !this.placement.replace(
          caller,
          pool,
          slot,
          source,
          sourceOffset,
          fill,
          window,
          this.#stored,
        )
      )
        rc = -ENOSPC
    }
    if (rc !== 1) {
      this.removePage(pool, slot)
      pool.dupPutsFlushed++
      return rc
    }
    if (pool.shared) this.store.objectLastClient[this.store.slotObject(slot)] = owner.id
    pool.dupPutsReplaced++
    pool.goodPuts++
    if (pool.persistent) owner.succPersistentPuts++
    if (owner.precopy && pool.persistent) this.#logChange(pool, slot)
    return 1
  }

  /** A put stored its payload but found no object or slot: undo and fail with -ENOMEM. */
  #failAfterStore(pool: Pool, createdObject: number, stored: StoredPage): number {
    this.counters.failedSubpageAllocs++
    pool.noMemoryPuts++
    this.placement.release(pool.owner, stored.frame, stored.offset, stored.bytes, stored.flags)
    if (createdObject !== NONE) removeObjectRecord(this, pool, createdObject)
    return -ENOMEM
  }

  /** GET_PAGE / READ (docs/semantics.md "Get", "Decision: get with a bad frame"): page (`oid`, `index`) of `pool` into `data[dataOffset..]`. */
  get(
    caller: Client,
    pool: Pool,
    oid: Uint32Array,
    index: number,
    data: Uint8Array | null,
    dataOffset: number,
    range: boolean,
    window: PageWindow,
  ): number {
    const store = this.store
    if (pool.pageCount === 0) return -EEMPTY
    pool.gets++
    const object = store.objectLookup(pool.gid, oid)
    if (object === NONE) return 0
    const slot = store.pageLookup(object, index)
    if (slot === NONE) return 0
    const privateEphemeral = !pool.persistent && !pool.shared
    const target = resolvePage(this.options, caller, data, dataOffset, window.cmfn, true)
    if (target === null) {
      this.counters.failedCopies++
      if (privateEphemeral) this.removePage(pool, slot)
      return -EFAULT
    }
    const targetOffset = data === null ? 0 : dataOffset
    const page = this.payloads.page
    if (
      !(range
        ? this.placement.loadInto(slot, page, 0)
        : this.placement.loadInto(slot, target, targetOffset))
    ) {
      // The stored page failed its check: never serve it (ephemeral: drop it, a miss).
      this.counters.corruptPages++
      if (pool.persistent) return -EFAULT
      this.removePage(pool, slot)
      return 0
    }
    if (range)
      copyPage(page, window.tmemOffset, target, targetOffset + window.pfnOffset, window.len)
    const owner = pool.owner
    if (privateEphemeral) this.removePage(pool, slot)
    else if (pool.shared && !pool.persistent) {
      this.#touch(owner, slot)
      store.objectLastClient[object] = caller.id
    }
    pool.foundGets++
    if (pool.persistent) owner.succPersistentGets++
    else owner.succEphemeralGets++
    return 1
  }

  /** Moves an ephemeral page to the tails of the global LRU and its owner's LRU. */
  #touch(owner: Client, slot: number): void {
    const store = this.store
    listUnlink(store.listPrev, store.listNext, this.globalLru, slot)
    listAppend(store.listPrev, store.listNext, this.globalLru, slot)
    listUnlink(store.clientPrev, store.clientNext, owner.lru, slot)
    listAppend(store.clientPrev, store.clientNext, owner.lru, slot)
    this.eviction.stamp(slot)
  }

  /** FLUSH_PAGE (docs/semantics.md "Flush page"): performed even for a frozen owner, which then gets -EFROZEN. */
  flushPage(pool: Pool, oid: Uint32Array, index: number): number {
    const store = this.store
    pool.flushes++
    const object = store.objectLookup(pool.gid, oid)
    if (object !== NONE) {
      const slot = store.pageLookup(object, index)
      if (slot !== NONE) {
        this.removePage(pool, slot)
        pool.flushesFound++
      }
    }
    return pool.owner.frozen ? -EFROZEN : 1
  }

  /** FLUSH_OBJECT (docs/semantics.md "Flush object"). */
  flushObject(pool: Pool, oid: Uint32Array): number {
    pool.flushObjects++
    const object = this.store.objectLookup(pool.gid, oid)
    if (object !== NONE) {
      this.removeObject(pool, object)
      pool.flushObjectsFound++
    }
    return pool.owner.frozen ? -EFROZEN : 1
  }

  /** Writes a slot's page into `target[targetOffset]`; false when storage fails its check. */
  loadInto(slot: number, target: Uint8Array, targetOffset: number): boolean {
    return this.placement.loadInto(slot, target, targetOffset)
  }

  // ---------------------------------------------------------------------------------------
  // Page removal, shared by flush, eviction, destruction and failed duplicate puts.

  /** Removes a page completely: lists, data, index, and its object when it was the last. */
  removePage(pool: Pool, slot: number): void {
    const store = this.store
    const object = store.slotObject(slot)
    const owner = pool.owner
    if ((store.slotFlags(slot) & SLOT_PERSISTENT) !== 0) {
      if (pool.saveCursor === slot) pool.saveCursor = store.listPrev[slot]!
      listUnlink(store.listPrev, store.listNext, pool.persistentList, slot)
      if (owner.liveMigrating && !pool.destroying) this.#logChange(pool, slot)
    } else {
      listUnlink(store.listPrev, store.listNext, this.globalLru, slot)
      listUnlink(store.clientPrev, store.clientNext, owner.lru, slot)
      this.counters.ephemeralCount--
      owner.ephemeralCount--
    }
    this.placement.releaseSlot(owner, slot)
    store.pageRemove(slot)
    pool.pageCount--
    this.counters.pageCount--
    if (store.objectPages[object] === 0) removeObjectRecord(this, pool, object)
  }

  /** Removes every page of an object, then the object (FLUSH_OBJECT, pool destruction). */
  removeObject(pool: Pool, object: number): void {
    const store = this.store
    let slot = store.objectChain[object]!
    while (slot !== NONE) {
      const next = store.chainNext[slot]!
      const last = next === NONE
      this.removePage(pool, slot)
      if (last) return
      slot = next
    }
  }

  /** Tells the change log about a persistent page of a migrating owner. */
  #logChange(pool: Pool, slot: number): void {
    const hook = this.changeLog
    if (hook === null) return
    const store = this.store
    hook.pageChanged(pool, store.objectOid, store.slotObject(slot) * 6, store.slotIndex(slot))
  }
}
