/**
 * Deduplication of ephemeral pages (docs/semantics.md "Space savers", Xen's page content descriptors, "pcd"): pages
 * with identical bytes share one stored payload. A content descriptor holds the payload's
 * place and kind, a reference count and the page's 32-bit fingerprint. Lookup goes through an
 * open-addressing table keyed by fingerprint; every fingerprint match is confirmed with a
 * full byte compare before it is shared, so a fingerprint collision can never mix pages.
 *
 * Eviction gives a page whose content is shared by more than one page a second chance
 * (docs/semantics.md "Eviction"): it is moved to the LRU tails once before it may go.
 */
import { assert } from '../util/assert.js'
import type { Payloads } from './payload.js'
import { NONE, tableDelete } from './store.js'

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

  /** The descriptor whose payload equals `payloads.page` (fingerprint `fp`), or NONE. */
  find(fp: number, payloads: Payloads): number {
    const table = this.#table
    const mask = this.#mask
    let at = this.#hash(fp)
    for (let probes = 0; probes <= mask; probes++) {
      const entry = table[at]!
      if (entry === 0) return NONE
      const id = entry - 1
      if (
        this.fingerprint[id] === fp &&
        payloads.equalsPage(this.frame[id]!, this.offset[id]!, this.bytes[id]!, this.kind[id]!)
      ) {
        return id
      }
      at = (at + 1) & mask
    }
    return NONE
  }

  /** A new descriptor for the payload just stored by `payloads`, with one reference. */
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
