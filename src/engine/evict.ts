/**
 * Eviction of ephemeral pages (docs/semantics.md "Eviction", "Minimum reserve", "Decision: eviction quota", "Decision: cap", "Decision: memory budget").
 *
 * Every ephemeral page sits on two intrusive lists: the global LRU and the LRU of the client
 * that owns its pool, oldest at the head. A new put appends at both tails; a shared-pool hit
 * moves the page to both tails; a duplicate put leaves it where it is. Each append stamps the
 * page with a counter that increases along the global LRU (`slotStamp`), so pages of
 * different clients can be compared by age without walking the list.
 *
 * To evict (docs/semantics.md "Eviction", "Decision: eviction quota"), with a client over
 * its weighted share when `C * T > G * W`:
 *  1. a caller over its share takes the oldest eligible page of its own LRU;
 *  2. a caller within its share takes the oldest eligible page among the clients that are
 *     over theirs: the head of each such client's LRU, the lowest stamp winning, so the
 *     order among them is the global one (only weighted clients can be over their share, and
 *     only they are looked at: none when no weight is set);
 *  3. otherwise, or when 1-2 find nothing, the oldest eligible page of the global LRU.
 * A page is not eligible while its object is the one the current put is writing (so a put
 * never evicts its own object) or while its pool is being destroyed. A client cap
 * (docs/semantics.md "Decision: cap") makes a put first evict that client's own oldest page.
 *
 * With dedup on, a page whose content is shared by more than one page gets a second chance:
 * the first time eviction reaches it, it moves to the LRU tails instead (docs/semantics.md "Eviction").
 *
 * Bound: each step inspects at most EVICT_SCAN_MAX pages and clients. Only pages of the object in flight,
 * of a dying pool, or taking their second chance are skipped, so the bound is reached only
 * when that many such pages sit at the head of the list; the eviction then fails as when no
 * page is eligible (a persistent put gets -ENOMEM, an ephemeral one evicts nothing more).
 * Without it one client writing one huge object could make every put walk all of memory.
 *
 * Eviction reaches the engine's state through `EvictionState`, which the core implements;
 * this file knows nothing of the core itself.
 */
import type { GlobalCounters } from './counters.js'
import type { Contents } from './dedup.js'
import type { Frames } from './frames.js'
import type { Client, Pool, PoolTable } from './model.js'
import type { ResolvedHostOptions } from './options.js'
import {
  type ListHead,
  listAppend,
  listUnlink,
  NONE,
  SLOT_CONTENT,
  SLOT_SECOND_CHANCE,
  type Store,
} from './store.js'
import { assert } from '../util/assert.js'

/** Failed evictions after which the minimum-reserve loop gives up (docs/semantics.md "Minimum reserve"). */
export const RESERVE_FAILURES_MAX = 11

/**
 * Most pages one eviction scan inspects before it gives up (see the module comment). 64 Ki
 * pages is 256 MiB of skipped pages, far more than any legitimate run of ineligible pages in
 * the tests and benchmarks, and a few hundred microseconds of walking at most.
 */
export const EVICT_SCAN_MAX = 1 << 16

/** What eviction reads and changes: the core's state, and its page removal. */
export interface EvictionState {
  readonly options: ResolvedHostOptions
  readonly store: Store
  readonly frames: Frames
  readonly counters: GlobalCounters
  readonly contents: Contents | null
  readonly globalLru: ListHead
  readonly pools: PoolTable
  /** Sum of all client weights. */
  readonly weightTotal: number
  /** The clients with a non-zero weight. */
  readonly weighted: readonly Client[]
  /** Removes a page completely (lists, payload, index, its object when it was the last). */
  removePage(pool: Pool, slot: number): void
  /** Told about each victim before its storage is freed (the remote tier's demotion hook). */
  readonly onEvict: ((pool: Pool, slot: number) => void) | null
}

/** The stamp at which every ephemeral page is stamped again from 0 in LRU order. */
const STAMP_LIMIT = 0xffffffff

export class Eviction {
  readonly #state: EvictionState
  /** The next age stamp (see `stamp`). */
  #stampNext = 0
  /** Stamp at which stamps are renumbered; tests lower it to exercise the renumbering. */
  stampLimit = STAMP_LIMIT
  /** Looks left to the current step of an eviction (EVICT_SCAN_MAX per step). */
  #looks = 0
  // The put the payload store's callback evicts for (see `callbackFor`).
  #putCaller: Client | null = null
  #putObject = NONE
  /** Eviction callback for the payload store, bound once. */
  readonly #evictForPut = (): boolean => this.evict(this.#putCaller, false, this.#putObject)

  constructor(state: EvictionState) {
    this.#state = state
  }

  /** The minimum-reserve step before PUT and NEW_PAGE (docs/semantics.md "Minimum reserve"). */
  reserve(caller: Client): void {
    const frames = this.#state.frames
    const reserve = this.#state.options.reservePages
    let failures = 0
    while (frames.available < reserve) {
      if (this.evict(caller, false, NONE)) continue
      if (++failures >= RESERVE_FAILURES_MAX) break
    }
  }

  /**
   * Evicts one ephemeral page (docs/semantics.md "Eviction", "Decision: eviction quota"). `ownOnly` restricts the choice to the
   * caller's own LRU (the cap rule); pages of object `spared` are skipped. Returns true when a
   * page was evicted.
   */
  evict(caller: Client | null, ownOnly: boolean, spared: number): boolean {
    const slot = this.choose(caller, ownOnly, spared)
    if (slot < 0) return false
    this.evictChosen(slot)
    return true
  }

  /**
   * The page `evict` would take, or -1 (not NONE: a value of 2^31 or more returned from a
   * call that is not inlined is a heap number, an allocation), counting the attempt. The
   * caller evicts it at once (`evictChosen`), or takes it over for a new page as an eviction
   * would (reuse.ts).
   */
  choose(caller: Client | null, ownOnly: boolean, spared: number): number {
    const state = this.#state
    const store = state.store
    state.counters.evictAttempts++
    let slot = NONE
    if (caller !== null) {
      this.#looks = EVICT_SCAN_MAX
      if (ownOnly || this.#overQuota(caller)) {
        slot = this.#firstEligible(store.clientNext, caller.lru[0]!, spared)
      } else if (state.weightTotal !== 0) {
        slot = this.#oldestOverShare(spared)
      }
    }
    if (slot === NONE && !ownOnly) {
      this.#looks = EVICT_SCAN_MAX
      slot = this.#firstEligible(store.listNext, state.globalLru[0]!, spared)
    }
    return slot === NONE ? -1 : slot
  }

  /** Evicts the page `choose` returned: the hook, the removal, the count. */
  evictChosen(slot: number): void {
    const state = this.#state
    const store = state.store
    const pool = state.pools.byGid(store.objectPool[store.slotObject(slot)]!)
    assert(!pool.persistent, 'Eviction chose a persistent page')
    if (state.onEvict !== null) state.onEvict(pool, slot)
    state.removePage(pool, slot)
    state.counters.evicted++
  }

  /** Step 2: the oldest eligible page of the clients over their share, or NONE. */
  #oldestOverShare(spared: number): number {
    const state = this.#state
    const store = state.store
    const stamps = store.slotStamp
    const weighted = state.weighted
    let oldest = NONE
    for (let i = 0; i < weighted.length && this.#looks > 0; i++) {
      const client = weighted[i]!
      this.#looks--
      if (!this.#overQuota(client)) continue
      const slot = this.#firstEligible(store.clientNext, client.lru[0]!, spared)
      if (slot !== NONE && (oldest === NONE || stamps[slot]! < stamps[oldest]!)) oldest = slot
    }
    return oldest
  }

  /**
   * Stamps a page that was just appended to the global LRU's tail with the next age. When
   * the stamps run out, every ephemeral page is stamped again in LRU order first (once per
   * 4 billion appends).
   */
  stamp(slot: number): void {
    if (this.#stampNext >= this.stampLimit) this.#restamp()
    this.#state.store.slotStamp[slot] = this.#stampNext++
  }

  #restamp(): void {
    const store = this.#state.store
    let next = 0
    for (let slot = this.#state.globalLru[0]!; slot !== NONE; slot = store.listNext[slot]!) {
      store.slotStamp[slot] = next++
    }
    this.#stampNext = next
  }

  /**
   * The callback the payload store calls when it needs room, evicting for `caller` and
   * sparing `object`. Valid until the next call; allocates nothing.
   */
  callbackFor(caller: Client, object: number): () => boolean {
    this.#putCaller = caller
    this.#putObject = object
    return this.#evictForPut
  }

  /** A frame for new data, evicting as needed. NONE when nothing more can be evicted. */
  allocFrame(caller: Client, spared: number): number {
    const frames = this.#state.frames
    let frame = frames.alloc()
    while (frame === NONE) {
      if (!this.evict(caller, false, spared)) {
        this.#state.counters.failedPageAllocs++
        return NONE
      }
      frame = frames.alloc()
    }
    return frame
  }

  /** The cap rule (docs/semantics.md "Decision: cap"): returns false when the owner is at its cap and cannot evict its own. */
  makeRoomUnderCap(owner: Client, spared: number): boolean {
    const cap = owner.cap
    if (cap === 0) return true
    const limit = Math.floor((Math.min(cap, 100) * this.#state.options.pages) / 100)
    while (owner.ephemeralCount >= limit) {
      if (!this.evict(owner, true, spared)) return false
    }
    return true
  }

  /**
   * Makes sure a page descriptor and an object record are free, evicting ephemeral pages
   * when they are not (they run out before frames when pages are stored compressed).
   */
  ensureDescriptors(caller: Client, spared: number): boolean {
    const store = this.#state.store
    while (
      store.slots.inUse >= store.slots.capacity ||
      store.objects.inUse >= store.objects.capacity
    ) {
      if (!this.evict(caller, false, spared)) {
        this.#state.counters.failedSubpageAllocs++
        return false
      }
    }
    return true
  }

  #overQuota(client: Client): boolean {
    const total = this.#state.weightTotal
    const weight = client.weight
    const count = client.ephemeralCount
    if (total === 0 || weight === 0 || count === 0) return false
    const global = this.#state.counters.ephemeralCount
    const left = count * total
    const right = global * weight
    if (left < Number.MAX_SAFE_INTEGER && right < Number.MAX_SAFE_INTEGER) return left > right
    return BigInt(count) * BigInt(total) > BigInt(global) * BigInt(weight)
  }

  /** The first eligible page from `head` along `next`, or NONE (uses up the step's looks). */
  #firstEligible(next: Uint32Array, head: number, spared: number): number {
    const state = this.#state
    const store = state.store
    let slot = head
    for (; slot !== NONE && this.#looks > 0; this.#looks--) {
      const following = next[slot]!
      const object = store.slotObject(slot)
      const pool = state.pools.byGid(store.objectPool[object]!)
      if (object !== spared && !pool.destroying) {
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
    const state = this.#state
    const store = state.store
    const flags = store.slotFlags(slot)
    const contents = state.contents
    if ((flags & SLOT_CONTENT) === 0 || (flags & SLOT_SECOND_CHANCE) !== 0 || contents === null) {
      return false
    }
    if (contents.refs[store.slotFrame(slot)]! < 2) return false
    store.setSlotFlags(slot, flags | SLOT_SECOND_CHANCE)
    listUnlink(store.listPrev, store.listNext, state.globalLru, slot)
    listAppend(store.listPrev, store.listNext, state.globalLru, slot)
    listUnlink(store.clientPrev, store.clientNext, pool.owner.lru, slot)
    listAppend(store.clientPrev, store.clientNext, pool.owner.lru, slot)
    this.stamp(slot)
    return true
  }
}
