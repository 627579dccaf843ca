/**
 * Sub-page storage for compressed and trailing-zero-trimmed payloads: a size-class allocator
 * in the zsmalloc family, over ordinary frames. A class frame is cut into `n` equal chunks
 * (n = 2..64, chunk size floor(4096 / n) rounded down to 8 bytes); a payload goes into the
 * smallest class whose chunk holds it. Each class keeps a list of its frames that still have
 * a free chunk; a frame whose chunks are all free goes back to the frame pool at once.
 *
 *   frame (4096 bytes), class n = 5 (chunk 816 bytes, 16 bytes of tail waste):
 *   +--------+--------+--------+--------+--------+--+
 *   | chunk0 | chunk1 | chunk2 | chunk3 | chunk4 |  |
 *   +--------+--------+--------+--------+--------+--+
 *   free chunks: a 64-bit bitmap per frame (two Uint32Array words), lowest free bit first.
 *
 * Per-frame metadata lives in typed arrays indexed by frame number; nothing is allocated
 * per payload. Payloads larger than `SUBPAGE_BYTES_MAX` are not stored here (a full frame
 * costs the same).
 */
import { PAGE_SIZE } from '../abi/constants.js'
import { assert } from '../util/assert.js'
import type { Frames } from './frames.js'
import { listAppend, listUnlink, NONE } from './store.js'

/** Largest payload stored in a chunk: half a page. A bigger one saves nothing. */
export const SUBPAGE_BYTES_MAX = PAGE_SIZE / 2
const CHUNKS_PER_FRAME_MAX = 64

/** Distinct chunk sizes, smallest first, and the chunks per frame of each. */
function buildClasses(): { sizes: number[]; counts: number[] } {
  const sizes: number[] = []
  const counts: number[] = []
  for (let n = CHUNKS_PER_FRAME_MAX; n >= 2; n--) {
    const size = Math.floor(PAGE_SIZE / n) & ~7
    if (sizes[sizes.length - 1] === size) continue
    // The largest chunk count that still gives this size.
    sizes.push(size)
    counts.push(Math.min(CHUNKS_PER_FRAME_MAX, Math.floor(PAGE_SIZE / size)))
  }
  return { sizes, counts }
}

const CLASSES = buildClasses()
export const CLASS_COUNT = CLASSES.sizes.length
/** Class index for each payload size 1..SUBPAGE_BYTES_MAX. */
const CLASS_OF_SIZE = new Uint8Array(SUBPAGE_BYTES_MAX + 1)
{
  let c = 0
  for (let size = 1; size <= SUBPAGE_BYTES_MAX; size++) {
    while (CLASSES.sizes[c]! < size) c++
    CLASS_OF_SIZE[size] = c
  }
  assert(
    CLASSES.sizes[CLASS_COUNT - 1] === SUBPAGE_BYTES_MAX,
    'Subpages largest class is half a page',
  )
}

export class Subpages {
  readonly #frames: Frames
  /** Class + 1 of a frame, 0 when the frame is not a class frame. */
  readonly frameClass: Uint8Array
  readonly #frameUsed: Uint8Array
  readonly #freeLow: Uint32Array
  readonly #freeHigh: Uint32Array
  readonly #prev: Uint32Array
  readonly #next: Uint32Array
  /** Per class: [head, tail] of its frames with a free chunk. */
  readonly #partial: Uint32Array[]
  /** Chunks in use, per class and in total (for stats). */
  readonly chunksUsed = new Float64Array(CLASS_COUNT)
  /** Class frames held, in total. */
  classFrames = 0
  /** Result of `alloc`: where the chunk is. */
  frame = NONE
  offset = 0

  constructor(frames: Frames) {
    this.#frames = frames
    const frameNumbers = frames.arenas.length * (1 << 14)
    this.frameClass = new Uint8Array(frameNumbers)
    this.#frameUsed = new Uint8Array(frameNumbers)
    this.#freeLow = new Uint32Array(frameNumbers)
    this.#freeHigh = new Uint32Array(frameNumbers)
    this.#prev = new Uint32Array(frameNumbers)
    this.#next = new Uint32Array(frameNumbers)
    this.#partial = CLASSES.sizes.map(() => new Uint32Array([NONE, NONE]))
  }

  /** Bytes of a chunk holding `size` payload bytes. */
  static chunkBytes(size: number): number {
    return CLASSES.sizes[CLASS_OF_SIZE[size]!]!
  }

  /**
   * Takes a chunk for `size` bytes (1..SUBPAGE_BYTES_MAX) and leaves its place in `frame` and
   * `offset`. Returns false when a new class frame was needed and no frame was free.
   */
  alloc(size: number): boolean {
    assert(size > 0 && size <= SUBPAGE_BYTES_MAX, 'Subpages size out of range')
    const cls = CLASS_OF_SIZE[size]!
    const partial = this.#partial[cls]!
    let frame = partial[0]!
    if (frame === NONE) {
      frame = this.#frames.alloc()
      if (frame === NONE) return false
      this.#initFrame(frame, cls)
      listAppend(this.#prev, this.#next, partial, frame)
    }
    const low = this.#freeLow[frame]!
    let chunk: number
    if (low !== 0) {
      chunk = 31 - Math.clz32(low & -low)
      this.#freeLow[frame] = low & (low - 1)
    } else {
      const high = this.#freeHigh[frame]!
      assert(high !== 0, 'Subpages partial frame has no free chunk')
      chunk = 63 - Math.clz32(high & -high)
      this.#freeHigh[frame] = high & (high - 1)
    }
    this.#frameUsed[frame]!++
    this.chunksUsed[cls]!++
    if (this.#freeLow[frame] === 0 && this.#freeHigh[frame] === 0) {
      listUnlink(this.#prev, this.#next, partial, frame)
    }
    this.frame = frame
    this.offset = chunk * CLASSES.sizes[cls]!
    return true
  }

  /** Returns a chunk; a class frame left empty goes back to the frame pool. */
  free(frame: number, offset: number): void {
    const cls = this.frameClass[frame]! - 1
    assert(cls >= 0, 'Subpages free in a frame that is not a class frame')
    const chunk = offset / CLASSES.sizes[cls]!
    assert(Number.isInteger(chunk), 'Subpages free at an offset that is not a chunk')
    const partial = this.#partial[cls]!
    const wasFull = this.#freeLow[frame] === 0 && this.#freeHigh[frame] === 0
    if (chunk < 32) {
      assert((this.#freeLow[frame]! & (1 << chunk)) === 0, 'Subpages double free')
      this.#freeLow[frame] = (this.#freeLow[frame]! | (1 << chunk)) >>> 0
    } else {
      assert((this.#freeHigh[frame]! & (1 << (chunk - 32))) === 0, 'Subpages double free')
      this.#freeHigh[frame] = (this.#freeHigh[frame]! | (1 << (chunk - 32))) >>> 0
    }
    this.#frameUsed[frame]!--
    this.chunksUsed[cls]!--
    if (wasFull) listAppend(this.#prev, this.#next, partial, frame)
    if (this.#frameUsed[frame] === 0) {
      listUnlink(this.#prev, this.#next, partial, frame)
      this.frameClass[frame] = 0
      this.classFrames--
      this.#frames.release(frame)
    }
  }

  /** Chunks in use in a frame (for the invariant checker). */
  usedIn(frame: number): number {
    return this.#frameUsed[frame]!
  }

  #initFrame(frame: number, cls: number): void {
    const count = CLASSES.counts[cls]!
    this.frameClass[frame] = cls + 1
    this.#frameUsed[frame] = 0
    this.#freeLow[frame] = count >= 32 ? 0xffffffff : ((1 << count) - 1) >>> 0
    this.#freeHigh[frame] =
      count <= 32 ? 0 : count === 64 ? 0xffffffff : ((1 << (count - 32)) - 1) >>> 0
    this.classFrames++
  }
}
