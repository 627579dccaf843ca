/**
 * Ids for the store's slots and objects: a bump counter first, then a stack of released ids,
 * so that memory behind ids never handed out is never touched. Allocates nothing after
 * construction.
 */
import { assert } from '../util/assert.js'

/** No id: the allocator is full; also the store's 'no slot / no link' value. */
export const NONE = 0xffffffff

export class IdAllocator {
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
