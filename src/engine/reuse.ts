/**
 * A new page's and an evicted page's bookkeeping (lists, counters, object records), and the
 * evicting put that takes its victim over in place.
 *
 * With the budget full, a plain ephemeral put evicts the page eviction chooses and stores the
 * new page in the frame that frees. Done the long way, the victim's slot and frame go back on
 * their free stacks and the new page takes them straight off again (both stacks are LIFO, and
 * nothing else is taken in between), so the new page always ends up in the victim's slot and
 * frame. `putOverVictim` gets there directly: it tells the eviction hook, unlinks the victim
 * from its lists, its object chain and the page table and counts it off exactly as
 * `Core.removePage` would, copies the new page into the frame, gives the slot the new key and
 * appends it at the LRU tails exactly as a new page is. Nothing is freed and taken again, and
 * the outcome is the same state, field for field, as the long way's: which page is evicted,
 * every counter and list order, the stamps, the page table.
 *
 * It applies when the victim is a plain page (its own whole frame). A victim stored as a chunk
 * or a shared content frees no frame of its own: it is evicted the usual way and the put goes
 * on as usual (`REUSE_DECLINED`).
 */
import { ENOMEM, PAGE_SIZE } from '../abi/constants.js'
import { assert } from '../util/assert.js'
import type { GlobalCounters } from './counters.js'
import type { Eviction } from './evict.js'
import type { Frames } from './frames.js'
import type { Client, Pool, PoolTable } from './model.js'
import type { Fill, PageWindow, Placement } from './placement.js'
import {
  type ListHead,
  listAppend,
  listUnlink,
  NONE,
  SLOT_CONTENT,
  SLOT_KIND_MASK,
  SLOT_PERSISTENT,
  SLOT_USED,
  type Store,
} from './store.js'

/** `putOverVictim`'s answer when the put must go the usual way (never a put's result). */
export const REUSE_DECLINED = 0

/** What the page bookkeeping reads and changes: the core's state. */
export interface PageBooks {
  readonly store: Store
  readonly frames: Frames
  readonly counters: GlobalCounters
  readonly globalLru: ListHead
  readonly pools: PoolTable
  readonly eviction: Eviction
  readonly placement: Placement
  readonly onEvict: ((pool: Pool, slot: number) => void) | null
}

/** Creates the record of object `oid` in `pool`, counting it; NONE when records run out. */
export function createObject(books: PageBooks, pool: Pool, oid: Uint32Array): number {
  const object = books.store.objectInsert(pool.gid, oid, pool.objects)
  if (object === NONE) return NONE
  const counters = books.counters
  pool.objectCount++
  if (pool.objectCount > pool.objectMax) pool.objectMax = pool.objectCount
  if (++counters.objectCount > counters.objectMax) counters.objectMax++
  return object
}

/** Frees the record of an object that has no pages left, counting it off. */
export function removeObjectRecord(books: PageBooks, pool: Pool, object: number): void {
  books.store.objectRemove(object, pool.objects)
  pool.objectCount--
  books.counters.objectCount--
}

/** Links a new page of `pool` into its lists (LRU tails, or the persistent list) and counts it. */
export function linkNewPage(books: PageBooks, pool: Pool, slot: number): void {
  const { store, counters } = books
  const owner = pool.owner
  if (pool.persistent) {
    store.setSlotFlags(slot, store.slotFlags(slot) | SLOT_PERSISTENT)
    listAppend(store.listPrev, store.listNext, pool.persistentList, slot)
  } else {
    listAppend(store.listPrev, store.listNext, books.globalLru, slot)
    listAppend(store.clientPrev, store.clientNext, owner.lru, slot)
    books.eviction.stamp(slot)
    if (++counters.ephemeralCount > counters.ephemeralMax) counters.ephemeralMax++
    if (++owner.ephemeralCount > owner.ephemeralMax) owner.ephemeralMax++
  }
  if (++pool.pageCount > pool.pageMax) pool.pageMax++
  if (++counters.pageCount > counters.pageMax) counters.pageMax++
}

/**
 * Whether a new plain page needs an eviction first, and exactly one: every slot or every frame
 * is taken, while an object record is free (when the records are full too, the usual way may
 * need more than one victim).
 */
export function mustEvict(books: PageBooks): boolean {
  const { store, frames } = books
  return (
    (store.slots.inUse >= store.slots.capacity || frames.used >= frames.budget) &&
    store.objects.inUse < store.objects.capacity
  )
}

/**
 * A new ephemeral page (`object`, NONE when it has no record yet, `index`) of `pool` on the
 * plain path, when `mustEvict`: evicts for `caller` and stores the page in the victim's slot
 * and frame (see the module comment). Returns the put's result, or REUSE_DECLINED after
 * evicting a victim that is not a plain page (the put then goes on the usual way).
 */
export function putOverVictim(
  books: PageBooks,
  caller: Client,
  pool: Pool,
  object: number,
  oid: Uint32Array,
  index: number,
  source: Uint8Array | null,
  sourceOffset: number,
  fill: Fill,
  window: PageWindow,
): number {
  const { store, counters, eviction } = books
  assert(!pool.persistent, 'Reuse for a persistent pool')
  const victim = eviction.choose(caller, false, object)
  if (victim < 0) {
    // Counted where the usual way fails: needing a page descriptor, else a frame.
    if (store.slots.inUse >= store.slots.capacity) counters.failedSubpageAllocs++
    else counters.failedPageAllocs++
    pool.noMemoryPuts++
    return -ENOMEM
  }
  if ((store.slotFlags(victim) & (SLOT_KIND_MASK | SLOT_CONTENT)) !== 0) {
    eviction.evictChosen(victim)
    return REUSE_DECLINED
  }
  const victimPool = books.pools.byGid(store.objectPool[store.slotObject(victim)]!)
  assert(!victimPool.persistent, 'Reuse of a persistent page')
  if (books.onEvict !== null) books.onEvict(victimPool, victim)
  detachVictim(books, victimPool, victim)
  counters.evicted++
  // mustEvict left an object record free, and the victim may have freed one more.
  if (object === NONE) object = createObject(books, pool, oid)
  assert(object !== NONE, 'Reuse found no object record')
  store.pageAttach(victim, object, index)
  const frame = store.slotFrame(victim)
  store.setSlotPayload(victim, frame, 0, PAGE_SIZE, SLOT_USED)
  linkNewPage(books, pool, victim)
  if (pool.shared) store.objectLastClient[object] = pool.owner.id
  pool.goodPuts++
  counters.goodEphemeralPuts++
  // The copy comes last, so that it does not push the lines read above out of the cache.
  books.placement.fillFrame(frame, source, sourceOffset, fill, window)
  return 1
}

/**
 * Everything `Core.removePage` does to an ephemeral victim except giving back its payload:
 * out of both LRUs, the page table and its object's chain (the object record too when it was
 * the last page), counted off. The slot stays taken and keeps its frame.
 */
function detachVictim(books: PageBooks, pool: Pool, slot: number): void {
  const { store, counters } = books
  const owner = pool.owner
  const object = store.slotObject(slot)
  listUnlink(store.listPrev, store.listNext, books.globalLru, slot)
  listUnlink(store.clientPrev, store.clientNext, owner.lru, slot)
  counters.ephemeralCount--
  owner.ephemeralCount--
  store.pageDetach(slot)
  pool.pageCount--
  counters.pageCount--
  if (store.objectPages[object] === 0) removeObjectRecord(books, pool, object)
}
