/**
 * The engine's data structures, all typed arrays sized once at construction:
 *
 *  - page slots (Xen's page descriptor, "pgp"). What a get or a put reads is one 16-byte row
 *    per slot in a single Uint32Array, so that it lies on one cache line:
 *
 *      row word:  0 object   1 index   2 frame   3 flags | bytes << 7 | (offset / 8) << 20
 *
 *    (flags 7 bits, payload bytes 0..4096 in 13 bits, sub-page offset 0..4088 in eighths, 9 bits).
 *    Colder fields stay in columns: the age stamp and three pairs of intrusive links —
 *      list:   the global ephemeral LRU, or the pool's persistent list (put order);
 *      client: the owning client's ephemeral LRU;
 *      chain:  the object's pages, so FLUSH_OBJECT needs no scan;
 *  - objects (Xen's object root): 192-bit oid as six u32 words, pool, page count, first page,
 *    and links in the pool's object list;
 *  - two open-addressing hash tables with linear probing over Uint32Array: (object, index) ->
 *    slot and (pool, oid) -> object. Entries are stored as id + 1 so that 0 means empty and a
 *    fresh table needs no fill; deletion shifts later entries back (no tombstones), so a probe
 *    never walks further than the cluster it is in. Tables are at least twice the capacity,
 *    so the load factor stays at or below one half. A page table entry is two words, the
 *    slot + 1 and the 30-bit hash of its key: a probe passes over other keys' entries
 *    without reading their slot rows, and a delete finds home buckets without them.
 *
 * On a large store every 4 KiB page copied pushes metadata out of the cache, so each
 * separate array a get reads is a miss to memory; with this layout a get reads the page
 * table entry and one slot row (docs/architecture.md "Store layout").
 *
 * Ids come from a bump counter and then from a free stack, so memory that was never used is
 * never touched (the OS keeps it unmapped). Nothing here allocates after construction.
 */
import { PAGE_SIZE } from '../abi/constants.js'
import { assert } from '../util/assert.js'
import { IdAllocator, NONE } from './ids.js'
import { type ListHead, listAppend, listUnlink } from './lists.js'

export { NONE }
export { type ListHead, listAppend, listUnlink, newListHead } from './lists.js'

/** Page hashes keep 30 bits (see `#pageHash`). */
const HASH_MASK = 0x3fffffff

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

function nextPowerOfTwo(value: number): number {
  let size = 1
  while (size < value) size *= 2
  return size
}

/** Words per slot row and the word of each field (see the header). */
const ROW = 4
const ROW_OBJECT = 0
const ROW_INDEX = 1
const ROW_FRAME = 2
const ROW_META = 3
const META_FLAGS = 0x7f
const META_BYTES_SHIFT = 7
const META_BYTES_MASK = 0x1fff
const META_OFFSET_SHIFT = 20
/** Sub-page offsets (multiples of 8, subpages.ts) in eighths: the word stays a V8 small integer. */
const META_OFFSET_UNIT_SHIFT = 3

export class Store {
  // Page slots.
  readonly slots: IdAllocator
  /** The hot slot fields, ROW words per slot. */
  readonly #rows: Uint32Array
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
  /** Two words per bucket: slot + 1 (0 = empty) and the key's 30-bit hash. */
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

  // Home buckets of stored objects, bound once so that deletes allocate nothing.
  readonly #objectHome = (object: number): number =>
    this.#objectHash(this.objectPool[object]!, this.objectOid, object * 6)

  constructor(slotCapacity: number, objectCapacity: number) {
    assert(slotCapacity > 0 && slotCapacity < NONE, 'Store slot capacity out of range')
    assert(objectCapacity > 0 && objectCapacity < NONE, 'Store object capacity out of range')
    this.slots = new IdAllocator(slotCapacity)
    this.#rows = new Uint32Array(slotCapacity * ROW)
    this.slotStamp = new Uint32Array(slotCapacity)
    this.listPrev = new Uint32Array(slotCapacity)
    this.listNext = new Uint32Array(slotCapacity)
    this.clientPrev = new Uint32Array(slotCapacity)
    this.clientNext = new Uint32Array(slotCapacity)
    this.chainPrev = new Uint32Array(slotCapacity)
    this.chainNext = new Uint32Array(slotCapacity)
    const pageTableSize = nextPowerOfTwo(slotCapacity * 2)
    this.#pageTable = new Uint32Array(pageTableSize * 2)
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
  // Slot fields, read and written through these small methods (V8 inlines them).

  slotObject(slot: number): number {
    return this.#rows[slot * ROW + ROW_OBJECT]!
  }

  slotIndex(slot: number): number {
    return this.#rows[slot * ROW + ROW_INDEX]!
  }

  /** The data frame; a fill word for SLOT_FILLED, a content id for SLOT_CONTENT. */
  slotFrame(slot: number): number {
    return this.#rows[slot * ROW + ROW_FRAME]!
  }

  slotFlags(slot: number): number {
    return this.#rows[slot * ROW + ROW_META]! & META_FLAGS
  }

  /** Bytes of page payload actually stored (4096 plain; less when compressed or tze). */
  slotBytes(slot: number): number {
    return (this.#rows[slot * ROW + ROW_META]! >>> META_BYTES_SHIFT) & META_BYTES_MASK
  }

  /** Offset of a sub-page payload inside its frame. */
  slotOffset(slot: number): number {
    return (this.#rows[slot * ROW + ROW_META]! >>> META_OFFSET_SHIFT) << META_OFFSET_UNIT_SHIFT
  }

  setSlotFlags(slot: number, flags: number): void {
    const at = slot * ROW + ROW_META
    this.#rows[at] = (this.#rows[at]! & ~META_FLAGS) | flags
  }

  setSlotFrame(slot: number, frame: number): void {
    this.#rows[slot * ROW + ROW_FRAME] = frame
  }

  /** Sets a slot's payload fields and flags at once. */
  setSlotPayload(slot: number, frame: number, offset: number, bytes: number, flags: number): void {
    assert((offset & 7) === 0 && offset < PAGE_SIZE, 'Store sub-page offset is a multiple of 8')
    const row = slot * ROW
    this.#rows[row + ROW_FRAME] = frame
    this.#rows[row + ROW_META] =
      flags |
      (bytes << META_BYTES_SHIFT) |
      ((offset >>> META_OFFSET_UNIT_SHIFT) << META_OFFSET_SHIFT)
  }

  // ---------------------------------------------------------------------------------------
  // Pages: (object, index) -> slot.

  /**
   * The hash of a page key, 30 bits; its low bits are the home bucket. Kept below 2^30 so that
   * it is a small integer to V8 wherever it travels: a 32-bit value of 2^31 or more is a heap
   * number when a call returning it is not inlined, and the allocation test caught those.
   */
  #pageHash(object: number, index: number): number {
    let h = Math.imul(object ^ 0x165667b1, 0x9e3779b1) ^ Math.imul(index, 0x85ebca77)
    h ^= h >>> 15
    h = Math.imul(h, 0xc2b2ae3d)
    return (h ^ (h >>> 13)) & HASH_MASK
  }

  /** The slot holding page `index` of `object`, or NONE. */
  pageLookup(object: number, index: number): number {
    const table = this.#pageTable
    const rows = this.#rows
    const mask = this.#pageMask
    const hash = this.#pageHash(object, index)
    let at = hash & mask
    for (let probes = 0; probes <= mask; probes++) {
      const entry = table[at * 2]!
      if (entry === 0) return NONE
      if (table[at * 2 + 1] === hash) {
        const row = (entry - 1) * ROW
        if (rows[row + ROW_OBJECT] === object && rows[row + ROW_INDEX] === index) return entry - 1
      }
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
    const row = slot * ROW
    assert(this.#rows[row + ROW_META] === 0, 'Store new slot is in use')
    this.#rows[row + ROW_FRAME] = NONE
    this.#rows[row + ROW_META] = SLOT_USED
    this.listPrev[slot] = NONE
    this.listNext[slot] = NONE
    this.clientPrev[slot] = NONE
    this.clientNext[slot] = NONE
    this.pageAttach(slot, object, index)
    return slot
  }

  /**
   * Gives a detached slot (see `pageDetach`) the key (object, index): writes it into the row
   * and links the slot into the index and at the head of the object's chain. Leaves the
   * payload fields and the list links as they are. The caller has checked the key is absent.
   */
  pageAttach(slot: number, object: number, index: number): void {
    const row = slot * ROW
    this.#rows[row + ROW_OBJECT] = object
    this.#rows[row + ROW_INDEX] = index
    const table = this.#pageTable
    const mask = this.#pageMask
    const hash = this.#pageHash(object, index)
    let at = hash & mask
    let probes = 0
    while (table[at * 2] !== 0) {
      at = (at + 1) & mask
      probes++
    }
    if (probes > this.probeMax) this.probeMax = probes
    table[at * 2] = slot + 1
    table[at * 2 + 1] = hash
    const first = this.objectChain[object]!
    this.chainPrev[slot] = NONE
    this.chainNext[slot] = first
    if (first !== NONE) this.chainPrev[first] = slot
    this.objectChain[object] = slot
    this.objectPages[object]!++
  }

  /**
   * Unlinks a slot from the index and its object's chain and frees it. The caller has
   * already removed it from any LRU or persistent list and released its data.
   */
  pageRemove(slot: number): void {
    assert(this.listPrev[slot] === NONE && this.listNext[slot] === NONE, 'Store slot still listed')
    this.pageDetach(slot)
    this.slotFree(slot)
  }

  /** Frees a detached, unlisted slot (see `pageDetach`). */
  slotFree(slot: number): void {
    this.setSlotPayload(slot, NONE, 0, 0, 0)
    this.slots.release(slot)
  }

  /**
   * Unlinks a slot from the index and from its object's chain, counting the page off the
   * object, and keeps everything else: the slot stays taken, with its old key in the row, its
   * payload and its list links, until `pageAttach` gives it a new key or `pageRemove`'s
   * caller frees it (an evicting put reuses its victim's slot this way, see reuse.ts).
   */
  pageDetach(slot: number): void {
    assert((this.slotFlags(slot) & SLOT_USED) !== 0, 'Store detaching a free slot')
    const object = this.slotObject(slot)
    this.#pageTableDelete(slot, this.#pageHash(object, this.slotIndex(slot)))
    const before = this.chainPrev[slot]!
    const after = this.chainNext[slot]!
    if (before === NONE) this.objectChain[object] = after
    else this.chainNext[before] = after
    if (after !== NONE) this.chainPrev[after] = before
    assert(this.objectPages[object]! > 0, 'Store object page count underflow')
    this.objectPages[object]!--
  }

  /** tableDelete for the page table, whose entries carry their hash (no row reads). */
  #pageTableDelete(slot: number, hash: number): void {
    const table = this.#pageTable
    const mask = this.#pageMask
    let at = hash & mask
    let probes = 0
    while (table[at * 2] !== slot + 1) {
      assert(table[at * 2] !== 0, 'Store table delete of a missing entry')
      at = (at + 1) & mask
      probes++
      assert(probes <= mask, 'Store table delete ran around the table')
    }
    let hole = at
    let next = (at + 1) & mask
    while (table[next * 2] !== 0) {
      const entryHome = table[next * 2 + 1]! & mask
      // Move the entry into the hole unless its home lies cyclically in (hole, next].
      if (((hole - entryHome) & mask) < ((next - entryHome) & mask)) {
        table[hole * 2] = table[next * 2]!
        table[hole * 2 + 1] = table[next * 2 + 1]!
        hole = next
      }
      next = (next + 1) & mask
    }
    table[hole * 2] = 0
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
