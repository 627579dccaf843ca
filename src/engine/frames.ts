/**
 * Frame arenas: where page data lives. A frame is one 4096-byte slot inside an arena, a
 * 64 MiB ArrayBuffer (16384 frames). Arenas are created on demand, up to the host's page
 * budget, and an arena whose frames are all free can be handed back to the system
 * (TMEMC_FLUSH). Free frames sit on a stack over a Uint32Array, so taking or returning a
 * frame allocates nothing.
 *
 *   frame number:  [ arena (high bits) | frame in arena (low 14 bits) ]
 *
 * Invariants: `used + freeCount == arenaFrames`; a frame is on the free stack
 * iff it is not used; `used <= budget`. Never allocates after construction except an arena.
 */
import { PAGE_SIZE } from '../abi/constants.js'
import { assert } from '../util/assert.js'
import { registerCopyBuffer } from '../util/bytes.js'

export const ARENA_SHIFT = 14
export const ARENA_FRAMES = 1 << ARENA_SHIFT
export const FRAME_NONE = 0xffffffff

export class Frames {
  /** Frames in use (the `Fc` counter). */
  used = 0
  /** High-water mark of `used` (`Fm`). */
  usedMax = 0
  /** Frames in the arenas currently allocated (used plus free). */
  arenaFrames = 0
  readonly budget: number
  /** Arena buffers by number; null where an arena was released or never made. */
  readonly arenas: (Buffer | null)[]
  readonly #free: Uint32Array
  #freeCount = 0
  /**
   * Xen's tmem free list (docs/semantics.md "Memory", the `Ta` counter): frames that held tmem data and were
   * freed, not yet taken again nor handed back to the host. Arena frames never used count as
   * host memory, not as free list. The free list is taken first, so these are always the top
   * `#freeListed` entries of the free stack.
   */
  #freeListed = 0

  constructor(budget: number) {
    assert(Number.isInteger(budget) && budget > 0, 'Frames budget must be a positive integer')
    this.budget = budget
    const arenaCount = Math.ceil(budget / ARENA_FRAMES)
    this.arenas = new Array<Buffer | null>(arenaCount).fill(null)
    this.#free = new Uint32Array(arenaCount * ARENA_FRAMES)
  }

  /**
   * Makes every arena of the budget now and writes one byte in each of its pages, so that the
   * system maps them before the first put (host option `prefault`). Control plane.
   */
  prefault(): void {
    while (this.arenas.includes(null)) this.#addArena()
    for (const arena of this.arenas) {
      if (arena === null) continue
      for (let at = 0; at < arena.length; at += PAGE_SIZE) arena[at] = 0
    }
  }

  /** Free frames of the allocated arenas (free list plus never-used arena space). */
  get freeCount(): number {
    return this.#freeCount
  }

  /** Frames on tmem's free list (the `Ta` counter, docs/semantics.md "Memory", "Flush and freeable memory"). */
  get freeList(): number {
    return this.#freeListed
  }

  /** Hands the free list back to the host (TMEMC_FLUSH); returns how many frames it held. */
  handBackFreeList(): number {
    const count = this.#freeListed
    this.#freeListed = 0
    return count
  }

  /** Frames that can still be taken before the budget is exhausted. */
  get available(): number {
    return this.budget - this.used
  }

  /** Takes a free frame, or returns FRAME_NONE when the budget is used up. */
  alloc(): number {
    if (this.used >= this.budget) return FRAME_NONE
    if (this.#freeCount === 0) this.#addArena()
    assert(this.#freeCount > 0, 'Frames free stack empty after adding an arena')
    const frame = this.#free[--this.#freeCount]!
    if (this.#freeListed > 0) this.#freeListed--
    this.used++
    if (this.used > this.usedMax) this.usedMax = this.used
    return frame
  }

  /** Returns a frame to the free stack. */
  release(frame: number): void {
    assert(frame !== FRAME_NONE, 'Frames release of FRAME_NONE')
    assert(this.used > 0, 'Frames release with nothing used')
    this.#free[this.#freeCount++] = frame
    this.#freeListed++
    this.used--
  }

  /** The arena buffer holding a frame; the frame's bytes start at `frameOffset(frame)`. */
  arenaOf(frame: number): Buffer {
    const arena = this.arenas[frame >>> ARENA_SHIFT]
    assert(arena !== undefined && arena !== null, 'Frames frame in a missing arena')
    return arena
  }

  frameOffset(frame: number): number {
    return (frame & (ARENA_FRAMES - 1)) * PAGE_SIZE
  }

  /**
   * Hands every arena whose frames are all free back to the system. Control plane: rebuilds
   * the free stack. Returns the number of frames released.
   */
  releaseEmptyArenas(): number {
    if (this.#freeCount === 0) return 0
    // Rebuilding the stack would break the free-list order: hand the free list back first.
    this.#freeListed = 0
    const freePerArena = new Uint32Array(this.arenas.length)
    for (let i = 0; i < this.#freeCount; i++) freePerArena[this.#free[i]! >>> ARENA_SHIFT]!++
    let released = 0
    for (let a = 0; a < this.arenas.length; a++) {
      const size = this.#arenaSize(a)
      if (this.arenas[a] !== null && freePerArena[a] === size) {
        this.arenas[a] = null
        this.arenaFrames -= size
        released += size
      }
    }
    if (released === 0) return 0
    let kept = 0
    for (let i = 0; i < this.#freeCount; i++) {
      const frame = this.#free[i]!
      if (this.arenas[frame >>> ARENA_SHIFT] !== null) this.#free[kept++] = frame
    }
    this.#freeCount = kept
    return released
  }

  /** Walks the free stack for the invariant checker: calls `visit` with each free frame. */
  forEachFree(visit: (frame: number) => void): void {
    for (let i = 0; i < this.#freeCount; i++) visit(this.#free[i]!)
  }

  #addArena(): void {
    const index = this.arenas.indexOf(null)
    assert(index >= 0, 'Frames no arena slot left below the budget')
    const size = this.#arenaSize(index)
    this.arenas[index] = Buffer.from(new ArrayBuffer(size * PAGE_SIZE))
    registerCopyBuffer(this.arenas[index].buffer)
    this.arenaFrames += size
    // Push high frames first so that low frame numbers are handed out first.
    const base = index << ARENA_SHIFT
    for (let i = size - 1; i >= 0; i--) this.#free[this.#freeCount++] = base + i
  }

  /** Frames in arena `index`: ARENA_FRAMES, except a last arena cut to the budget. */
  #arenaSize(index: number): number {
    return Math.min(ARENA_FRAMES, this.budget - index * ARENA_FRAMES)
  }
}
