/**
 * One bit per page of an export, in chunks made on first use: a swap export's "this page lives
 * in the backing file" marks. A 16 TiB export would need 512 MiB of bits at once; in chunks of
 * 32768 pages (4 KiB of bits) only the ranges that ever spilled cost memory.
 */
import { assert } from '../../util/assert.js'

const CHUNK_SHIFT = 15
const CHUNK_PAGES = 1 << CHUNK_SHIFT
const CHUNK_BYTES = CHUNK_PAGES / 8

export class PageBitmap {
  readonly pages: number
  readonly #chunks: (Uint8Array | null)[]
  /** Pages marked. */
  count = 0

  constructor(pages: number) {
    assert(
      Number.isInteger(pages) && pages > 0 && pages <= 2 ** 32,
      'A bitmap covers 1 to 2^32 pages',
    )
    this.pages = pages
    this.#chunks = new Array<Uint8Array | null>(Math.ceil(pages / CHUNK_PAGES)).fill(null)
  }

  has(page: number): boolean {
    const chunk = this.#chunks[Math.floor(page / CHUNK_PAGES)]
    if (chunk === null || chunk === undefined) return false
    const bit = page % CHUNK_PAGES
    return ((chunk[bit >>> 3] ?? 0) & (1 << (bit & 7))) !== 0
  }

  set(page: number): void {
    assert(page >= 0 && page < this.pages, 'Bitmap page in range')
    const at = Math.floor(page / CHUNK_PAGES)
    let chunk = this.#chunks[at] ?? null
    if (chunk === null) {
      chunk = new Uint8Array(CHUNK_BYTES)
      this.#chunks[at] = chunk
    }
    const bit = page % CHUNK_PAGES
    const mask = 1 << (bit & 7)
    const byte = chunk[bit >>> 3] ?? 0
    if ((byte & mask) === 0) this.count++
    chunk[bit >>> 3] = byte | mask
  }

  clear(page: number): void {
    const chunk = this.#chunks[Math.floor(page / CHUNK_PAGES)]
    if (chunk === null || chunk === undefined) return
    const bit = page % CHUNK_PAGES
    const mask = 1 << (bit & 7)
    const byte = chunk[bit >>> 3] ?? 0
    if ((byte & mask) !== 0) this.count--
    chunk[bit >>> 3] = byte & ~mask
  }

  clearAll(): void {
    this.#chunks.fill(null)
    this.count = 0
  }
}
