/**
 * The engine's data structures, all typed-array columns sized once at construction:
 *
 *  - page slots (Xen's page descriptor, "pgp"): object, index, data frame, flags and three
 *    pairs of intrusive links —
 *      list:   the global ephemeral LRU, or the pool's persistent list (put order);
 *      client: the owning client's ephemeral LRU;
 *      chain:  the object's pages, so FLUSH_OBJECT needs no scan;
 *  - objects (Xen's object root): 192-bit oid as six u32 words, pool, page count, first page,
 *    and links in the pool's object list;
 *  - two open-addressing hash tables with linear probing over Uint32Array: (object, index) ->
 *    slot and (pool, oid) -> object. Entries are stored as id + 1 so that 0 means empty and a
 *    fresh table needs no fill; deletion shifts later entries back (no tombstones), so a probe
 *    never walks further than the cluster it is in. Tables are at least twice the capacity,
 *    so the load factor stays at or below one half.
 *
 * Ids come from a bump counter and then from a free stack, so memory that was never used is
 * never touched (the OS keeps it unmapped). Nothing here allocates after construction.
 */
import { assert } from '../util/assert.js'

export const NONE = 0xffffffff

/** Flags of a slot. */
export const SLOT_USED = 1
export const SLOT_PERSISTENT = 2
/** Dedup second chance already given (docs/semantics.md "Eviction"). */
export const SLOT_SECOND_CHANCE = 4
/** Payload kinds (at most one set; none = a plain frame of 4096 bytes). */
export const SLOT_COMPRESSED = 8
export const SLOT_TZE = 16
/** Same-filled page: no payload; the frame column holds the 32-bit fill word. */
export const SLOT_FILLED = 32
/** Deduplicated: the frame column holds a content descriptor id (see dedup.ts). */
export const SLOT_CONTENT = 64
export const SLOT_KIND_MASK = SLOT_COMPRESSED | SLOT_TZE | SLOT_FILLED

/** Head and tail of an intrusive list: a 2-element Uint32Array, [head, tail]. */
export type ListHead = Uint32Array

export function newListHead(): ListHead {
  return new Uint32Array([NONE, NONE])
}

function nextPowerOfTwo(value: number): number {
  let size = 1
  while (size < value) size *= 2
  return size
}

/** Pushes `id` onto the tail of a list whose links are `prev`/`next`. */
export function listAppend(prev: Uint32Array, next: Uint32Array, head: ListHead, id: number): void {
  const tail = head[1]!
  prev[id] = tail
  next[id] = NONE
  if (tail === NONE) head[0] = id
  else next[tail] = id
  head[1] = id
}

/** Removes `id` from a list whose links are `prev`/`next`. */
export function listUnlink(prev: Uint32Array, next: Uint32Array, head: ListHead, id: number): void {
  const before = prev[id]!
  const after = next[id]!
  if (before === NONE) head[0] = after
  else next[before] = after
  if (after === NONE) head[1] = before
  else prev[after] = before
  prev[id] = NONE
  next[id] = NONE
}

class IdAllocator {
  readonly capacity: number
  #bump = 0
  readonly #free: Uint32Array
  #freeCount = 0
  inUse = 0

  constructor(capacity: number) {
    this.capacity = capacity
    this.#free = new Uint32Array(capacity)
  }

  alloc(): number {
    if (this.#freeCount > 0) {
      this.inUse++
      return this.#free[--this.#freeCount]!
    }
    if (this.#bump >= this.capacity) return NONE
    this.inUse++
    return this.#bump++
  }

  release(id: number): void {
    assert(id < this.#bump, 'Id release of an id never handed out')
    assert(this.inUse > 0, 'Id release with nothing in use')
    this.#free[this.#freeCount++] = id
    this.inUse--
  }

  /** Ids handed out at least once (the range the invariant checker walks). */
  get highWater(): number {
    return this.#bump
  }
}

export class Store {
  // Page slots.
  readonly slots: IdAllocator
  readonly slotObject: Uint32Array
  readonly slotIndex: Uint32Array
  readonly slotFrame: Uint32Array
  /** Bytes of page payload actually stored (4096 plain; less when compressed or tze). */
  readonly slotBytes: Uint16Array
  /** Offset of a sub-page payload inside its frame. */
  readonly slotOffset: Uint16Array
  readonly slotFlags: Uint8Array
  /**
   * Age of an ephemeral page: when it last reached the tail of the global LRU. Increases
   * along the global LRU, so it orders pages of different clients (see evict.ts).
   */
  readonly slotStamp: Uint32Array
  readonly listPrev: Uint32Array
  readonly listNext: Uint32Array
  readonly clientPrev: Uint32Array
  readonly clientNext: Uint32Array
  readonly chainPrev: Uint32Array
  readonly chainNext: Uint32Array
  readonly #pageTable: Uint32Array
  readonly #pageMask: number

  // Objects.
  readonly objects: IdAllocator
  readonly objectOid: Uint32Array
  readonly objectPool: Uint32Array
  readonly objectPages: Uint32Array
  readonly objectChain: Uint32Array
  readonly objectLastClient: Uint16Array
  readonly objectPoolPrev: Uint32Array
  readonly objectPoolNext: Uint32Array
  readonly #objectTable: Uint32Array
  readonly #objectMask: number

  /** Longest probe seen, for the benchmark and the invariant checker. */
  probeMax = 0

  // Home buckets of stored entries, bound once so that deletes allocate nothing.
  readonly #pageHome = (slot: number): number =>
    this.#pageHash(this.slotObject[slot]!, this.slotIndex[slot]!)
  readonly #objectHome = (object: number): number =>
    this.#objectHash(this.objectPool[object]!, this.objectOid, object * 6)

  constructor(slotCapacity: number, objectCapacity: number) {
    assert(slotCapacity > 0 && slotCapacity < NONE, 'Store slot capacity out of range')
    assert(objectCapacity > 0 && objectCapacity < NONE, 'Store object capacity out of range')
    this.slots = new IdAllocator(slotCapacity)
    this.slotObject = new Uint32Array(slotCapacity)
    this.slotIndex = new Uint32Array(slotCapacity)
    this.slotFrame = new Uint32Array(slotCapacity)
    this.slotBytes = new Uint16Array(slotCapacity)
    this.slotOffset = new Uint16Array(slotCapacity)
    this.slotFlags = new Uint8Array(slotCapacity)
    this.slotStamp = new Uint32Array(slotCapacity)
    this.listPrev = new Uint32Array(slotCapacity)
    this.listNext = new Uint32Array(slotCapacity)
    this.clientPrev = new Uint32Array(slotCapacity)
    this.clientNext = new Uint32Array(slotCapacity)
    this.chainPrev = new Uint32Array(slotCapacity)
    this.chainNext = new Uint32Array(slotCapacity)
    const pageTableSize = nextPowerOfTwo(slotCapacity * 2)
    this.#pageTable = new Uint32Array(pageTableSize)
    this.#pageMask = pageTableSize - 1

    this.objects = new IdAllocator(objectCapacity)
    this.objectOid = new Uint32Array(objectCapacity * 6)
    this.objectPool = new Uint32Array(objectCapacity)
    this.objectPages = new Uint32Array(objectCapacity)
    this.objectChain = new Uint32Array(objectCapacity)
    this.objectLastClient = new Uint16Array(objectCapacity)
    this.objectPoolPrev = new Uint32Array(objectCapacity)
    this.objectPoolNext = new Uint32Array(objectCapacity)
    const objectTableSize = nextPowerOfTwo(objectCapacity * 2)
    this.#objectTable = new Uint32Array(objectTableSize)
    this.#objectMask = objectTableSize - 1
  }

  // ---------------------------------------------------------------------------------------
  // Objects: (pool, oid) -> object.

  #objectHash(pool: number, oid: Uint32Array, base: number): number {
    let h = Math.imul(pool ^ 0x27d4eb2f, 0x9e3779b1)
    for (let i = 0; i < 6; i++) {
      h = Math.imul(h ^ oid[base + i]!, 0x85ebca77)
      h ^= h >>> 13
    }
    h = Math.imul(h ^ (h >>> 16), 0xc2b2ae3d)
    return (h ^ (h >>> 15)) & this.#objectMask
  }

  #objectMatches(object: number, pool: number, oid: Uint32Array): boolean {
    if (this.objectPool[object] !== pool) return false
    const base = object * 6
    const words = this.objectOid
    return (
      words[base] === oid[0] &&
      words[base + 1] === oid[1] &&
      words[base + 2] === oid[2] &&
      words[base + 3] === oid[3] &&
      words[base + 4] === oid[4] &&
      words[base + 5] === oid[5]
    )
  }

  /** The object for (pool, oid), or NONE. */
  objectLookup(pool: number, oid: Uint32Array): number {
    const table = this.#objectTable
    const mask = this.#objectMask
    let at = this.#objectHash(pool, oid, 0)
    for (let probes = 0; probes <= mask; probes++) {
      const entry = table[at]!
      if (entry === 0) return NONE
      if (this.#objectMatches(entry - 1, pool, oid)) return entry - 1
      at = (at + 1) & mask
    }
    return NONE
  }

  /**
   * Creates the object for (pool, oid); the caller has checked it is absent. Links it at the
   * head of the pool's object list. Returns NONE when the object capacity is exhausted.
   */
  objectInsert(pool: number, oid: Uint32Array, poolObjects: ListHead): number {
    const object = this.objects.alloc()
    if (object === NONE) return NONE
    assert(this.objectPages[object] === 0, 'Store new object has pages')
    this.objectPool[object] = pool
    this.objectOid.set(oid, object * 6)
    this.objectChain[object] = NONE
    this.objectLastClient[object] = 0
    const table = this.#objectTable
    const mask = this.#objectMask
    let at = this.#objectHash(pool, oid, 0)
    let probes = 0
    while (table[at] !== 0) {
      at = (at + 1) & mask
      probes++
    }
    if (probes > this.probeMax) this.probeMax = probes
    table[at] = object + 1
    listAppend(this.objectPoolPrev, this.objectPoolNext, poolObjects, object)
    return object
  }

  /** Frees an object that has no pages left. */
  objectRemove(object: number, poolObjects: ListHead): void {
    assert(this.objectPages[object] === 0, 'Store object removed with pages')
    assert(this.objectChain[object] === NONE, 'Store object removed with a chain')
    tableDelete(this.#objectTable, this.#objectMask, object, this.#objectHome)
    listUnlink(this.objectPoolPrev, this.objectPoolNext, poolObjects, object)
    this.objects.release(object)
  }

  // ---------------------------------------------------------------------------------------
  // Pages: (object, index) -> slot.

  #pageHash(object: number, index: number): number {
    let h = Math.imul(object ^ 0x165667b1, 0x9e3779b1) ^ Math.imul(index, 0x85ebca77)
    h ^= h >>> 15
    h = Math.imul(h, 0xc2b2ae3d)
    return (h ^ (h >>> 13)) & this.#pageMask
  }

  /** The slot holding page `index` of `object`, or NONE. */
  pageLookup(object: number, index: number): number {
    const table = this.#pageTable
    const mask = this.#pageMask
    let at = this.#pageHash(object, index)
    for (let probes = 0; probes <= mask; probes++) {
      const entry = table[at]!
      if (entry === 0) return NONE
      const slot = entry - 1
      if (this.slotObject[slot] === object && this.slotIndex[slot] === index) return slot
      at = (at + 1) & mask
    }
    return NONE
  }

  /**
   * Takes a slot for page `index` of `object` and links it into the index and the object's
   * chain. The caller has checked the page is absent. Returns NONE when slots run out.
   */
  pageInsert(object: number, index: number): number {
    const slot = this.slots.alloc()
    if (slot === NONE) return NONE
    assert(this.slotFlags[slot] === 0, 'Store new slot is in use')
    this.slotObject[slot] = object
    this.slotIndex[slot] = index
    this.slotFrame[slot] = NONE
    this.slotBytes[slot] = 0
    this.slotOffset[slot] = 0
    this.slotFlags[slot] = SLOT_USED
    this.listPrev[slot] = NONE
    this.listNext[slot] = NONE
    this.clientPrev[slot] = NONE
    this.clientNext[slot] = NONE
    const table = this.#pageTable
    const mask = this.#pageMask
    let at = this.#pageHash(object, index)
    let probes = 0
    while (table[at] !== 0) {
      at = (at + 1) & mask
      probes++
    }
    if (probes > this.probeMax) this.probeMax = probes
    table[at] = slot + 1
    const first = this.objectChain[object]!
    this.chainPrev[slot] = NONE
    this.chainNext[slot] = first
    if (first !== NONE) this.chainPrev[first] = slot
    this.objectChain[object] = slot
    this.objectPages[object]!++
    return slot
  }

  /**
   * Unlinks a slot from the index and its object's chain and frees it. The caller has
   * already removed it from any LRU or persistent list and released its data.
   */
  pageRemove(slot: number): void {
    assert((this.slotFlags[slot]! & SLOT_USED) !== 0, 'Store removing a free slot')
    assert(this.listPrev[slot] === NONE && this.listNext[slot] === NONE, 'Store slot still listed')
    const object = this.slotObject[slot]!
    tableDelete(this.#pageTable, this.#pageMask, slot, this.#pageHome)
    const before = this.chainPrev[slot]!
    const after = this.chainNext[slot]!
    if (before === NONE) this.objectChain[object] = after
    else this.chainNext[before] = after
    if (after !== NONE) this.chainPrev[after] = before
    assert(this.objectPages[object]! > 0, 'Store object page count underflow')
    this.objectPages[object]!--
    this.slotFlags[slot] = 0
    this.slotFrame[slot] = NONE
    this.slots.release(slot)
  }
}

/**
 * Deletes `id` from a linear-probing table starting at its home bucket, then shifts later
 * members of the cluster back so that every entry stays reachable from its home bucket.
 */
export function tableDelete(
  table: Uint32Array,
  mask: number,
  id: number,
  homeOf: (id: number) => number,
): void {
  let at = homeOf(id)
  let probes = 0
  while (table[at] !== id + 1) {
    assert(table[at] !== 0, 'Store table delete of a missing entry')
    at = (at + 1) & mask
    probes++
    assert(probes <= mask, 'Store table delete ran around the table')
  }
  let hole = at
  let next = (at + 1) & mask
  while (table[next] !== 0) {
    const entryHome = homeOf(table[next]! - 1)
    // Move the entry into the hole unless its home lies cyclically in (hole, next].
    const distanceToHole = (hole - entryHome) & mask
    const distanceToNext = (next - entryHome) & mask
    if (distanceToHole < distanceToNext) {
      table[hole] = table[next]!
      hole = next
    }
    next = (next + 1) & mask
  }
  table[hole] = 0
}
