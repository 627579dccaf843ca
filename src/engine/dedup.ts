/**
 * Deduplication of ephemeral pages (docs/semantics.md "Space savers", Xen's page content descriptors, "pcd"): pages
 * with identical bytes share one stored payload. A content descriptor holds the payload's
 * place and kind, a reference count and the page's 32-bit sampled fingerprint (`fingerprintSample`:
 * 128 of its 1024 words). Lookup goes through an open-addressing table keyed by fingerprint;
 * every fingerprint match is confirmed with a full byte compare before it is shared, so a
 * fingerprint collision can never mix pages.
 *
 * Pages that agree on the sample but differ elsewhere share a fingerprint, and a hostile
 * client can write any number of them. So at most SAME_SAMPLE_MAX descriptors may hold one
 * fingerprint: a lookup makes at most that many full compares, and a page whose fingerprint
 * already has that many is stored without dedup (placement.ts). The cost of such pages stays
 * with the put that writes them and never reaches another client's lookups beyond the bound.
 *
 * Eviction gives a page whose content is shared by more than one page a second chance
 * (docs/semantics.md "Eviction"): it is moved to the LRU tails once before it may go.
 */
import { assert } from '../util/assert.js'
import type { Payloads } from './payload.js'
import { NONE, tableDelete } from './store.js'

/** Most content descriptors that may share one fingerprint (so most full compares per lookup). */
export const SAME_SAMPLE_MAX = 4

function nextPowerOfTwo(value: number): number {
  let size = 1
  while (size < value) size *= 2
  return size
}

export class Contents {
  readonly capacity: number
  readonly frame: Uint32Array
  readonly offset: Uint16Array
  readonly bytes: Uint16Array
  readonly kind: Uint8Array
  readonly refs: Uint32Array
  readonly fingerprint: Uint32Array
  readonly #table: Uint32Array
  readonly #mask: number
  readonly #free: Uint32Array
  #freeCount = 0
  #bump = 0
  /** Live descriptors (`Sc`) and their high-water mark (`Sm`). */
  count = 0
  countMax = 0
  /** Full page compares made by lookups (for tests of the bound). */
  compares = 0
  /** Descriptors with the fingerprint of the last `find` that found none. */
  sameSample = 0
  readonly #home = (id: number): number => this.#hash(this.fingerprint[id]!)

  constructor(capacity: number) {
    this.capacity = capacity
    this.frame = new Uint32Array(capacity)
    this.offset = new Uint16Array(capacity)
    this.bytes = new Uint16Array(capacity)
    this.kind = new Uint8Array(capacity)
    this.refs = new Uint32Array(capacity)
    this.fingerprint = new Uint32Array(capacity)
    const size = nextPowerOfTwo(capacity * 2)
    this.#table = new Uint32Array(size)
    this.#mask = size - 1
    this.#free = new Uint32Array(capacity)
  }

  #hash(fingerprint: number): number {
    const h = Math.imul(fingerprint ^ (fingerprint >>> 16), 0x45d9f3b)
    return (h ^ (h >>> 16)) & this.#mask
  }

  /**
   * The descriptor whose payload equals `payloads.page` (fingerprint `fp`), or NONE; then
   * `sameSample` tells how many descriptors have `fp` (at most SAME_SAMPLE_MAX, each one
   * compared in full).
   */
  find(fp: number, payloads: Payloads): number {
    const table = this.#table
    const mask = this.#mask
    let same = 0
    let at = this.#hash(fp)
    for (let probes = 0; probes <= mask; probes++) {
      const entry = table[at]!
      if (entry === 0) break
      const id = entry - 1
      if (this.fingerprint[id] === fp) {
        same++
        this.compares++
        if (payloads.equalsPage(this.frame[id]!, this.offset[id]!, this.bytes[id]!, this.kind[id]!))
          return id
      }
      at = (at + 1) & mask
    }
    this.sameSample = same
    return NONE
  }

  /**
   * A new descriptor for the payload just stored by `payloads`, with one reference; NONE when
   * descriptors run out. The caller checked with `find` that fewer than SAME_SAMPLE_MAX
   * descriptors have `fp`.
   */
  add(fp: number, payloads: Payloads): number {
    let id: number
    if (this.#freeCount > 0) id = this.#free[--this.#freeCount]!
    else if (this.#bump < this.capacity) id = this.#bump++
    else return NONE
    this.frame[id] = payloads.frame
    this.offset[id] = payloads.offset
    this.bytes[id] = payloads.bytes
    this.kind[id] = payloads.kind
    this.refs[id] = 1
    this.fingerprint[id] = fp
    let at = this.#hash(fp)
    while (this.#table[at] !== 0) at = (at + 1) & this.#mask
    this.#table[at] = id + 1
    if (++this.count > this.countMax) this.countMax = this.count
    return id
  }

  /** Drops one reference; when it was the last, frees the payload and the descriptor. */
  release(id: number, payloads: Payloads): boolean {
    assert(this.refs[id]! > 0, 'Contents release of a dead descriptor')
    if (--this.refs[id]! > 0) return false
    tableDelete(this.#table, this.#mask, id, this.#home)
    payloads.release(this.frame[id]!, this.offset[id]!, this.kind[id]!)
    this.#free[this.#freeCount++] = id
    this.count--
    return true
  }
}
