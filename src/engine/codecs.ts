/**
 * Page codecs and the page fingerprint, behind one interface that writes into caller
 * buffers. Native packages are optional dependencies, detected when this module loads:
 *
 *  - zstd level 1 (`zstd-napi`): the dense choice, ratio 3.6-5.4 on process memory;
 *  - lz4 block mode (`lz4`): the fast one, ratio 2.3-3.5;
 *  - deflate (`node:zlib`, raw, level 1): the fallback when neither native package built.
 *    It allocates a Buffer per call (zlib has no into-buffer API); the native two do not.
 *
 * The fingerprint is a JS hash over the page's 32-bit words (see `fingerprintPage` for why
 * not a native xxhash); dedup confirms every fingerprint match with a byte compare.
 */
import { createRequire } from 'node:module'
import { deflateRawSync, inflateRawSync, constants as zlibConstants } from 'node:zlib'
import { PAGE_SIZE } from '../abi/constants.js'
import { copyBytes } from '../util/bytes.js'

const require = createRequire(import.meta.url)

export type CodecName = 'zstd' | 'lz4' | 'zlib'

/**
 * A page codec. `compress` reads the whole 4096-byte `page` (a view of exactly one page)
 * and writes into `out` from offset 0, returning the size, or 0 when the result would not
 * fit. `decompress` reads `input[start..end]` and writes exactly one page into `page`,
 * returning the number of bytes produced (anything but 4096 means corrupt input).
 */
export interface PageCodec {
  readonly name: CodecName
  compress(page: Uint8Array, out: Uint8Array): number
  decompress(input: Uint8Array, start: number, end: number, page: Uint8Array): number
}

interface ZstdContext {
  setParameter(parameter: number, value: number): void
  compress2(dst: Uint8Array, src: Uint8Array): number
}

interface ZstdDecompressContext {
  decompress(dst: Uint8Array, src: Uint8Array): number
}

interface ZstdBinding {
  CCtx: new () => ZstdContext
  DCtx: new () => ZstdDecompressContext
  CParameter: Record<string, number>
}

interface Lz4Binding {
  encodeBlock(input: Uint8Array, output: Uint8Array, start?: number, end?: number): number
  decodeBlock(input: Uint8Array, output: Uint8Array, start?: number, end?: number): number
}

function tryRequire<T>(name: string): T | null {
  try {
    return require(name) as T
  } catch {
    return null
  }
}

const zstdBinding = tryRequire<ZstdBinding>('zstd-napi/binding')
const lz4Binding = tryRequire<Lz4Binding>('lz4')

/** Which codecs this installation can use, best first. */
export function availableCodecs(): CodecName[] {
  const names: CodecName[] = []
  if (zstdBinding !== null) names.push('zstd')
  if (lz4Binding !== null) names.push('lz4')
  names.push('zlib')
  return names
}

/** Views of lengths 0..PAGE_SIZE*2 over one scratch buffer, so zstd needs no view per call. */
class SizedViews {
  readonly bytes: Uint8Array
  readonly #views: (Uint8Array | undefined)[] = []

  constructor(size: number) {
    this.bytes = new Uint8Array(size)
  }

  /** A view of the first `length` bytes, made once per length and then reused. */
  view(length: number): Uint8Array {
    let view = this.#views[length]
    if (view === undefined) {
      view = this.bytes.subarray(0, length)
      this.#views[length] = view
    }
    return view
  }
}

class ZstdCodec implements PageCodec {
  readonly name = 'zstd' as const
  readonly #compressor: ZstdContext
  readonly #decompressor: ZstdDecompressContext
  readonly #input = new SizedViews(PAGE_SIZE * 2)

  constructor(binding: ZstdBinding, level: number) {
    this.#compressor = new binding.CCtx()
    const levelParameter = binding.CParameter['compressionLevel']
    if (levelParameter !== undefined) this.#compressor.setParameter(levelParameter, level)
    this.#decompressor = new binding.DCtx()
  }

  compress(page: Uint8Array, out: Uint8Array): number {
    try {
      return this.#compressor.compress2(out, page)
    } catch {
      return 0
    }
  }

  decompress(input: Uint8Array, start: number, end: number, page: Uint8Array): number {
    const length = end - start
    if (length <= 0 || length > this.#input.bytes.length) return -1
    copyBytes(input, start, this.#input.bytes, 0, length)
    try {
      return this.#decompressor.decompress(page, this.#input.view(length))
    } catch {
      return -1
    }
  }
}

class Lz4Codec implements PageCodec {
  readonly name = 'lz4' as const
  readonly #binding: Lz4Binding

  constructor(binding: Lz4Binding) {
    this.#binding = binding
  }

  compress(page: Uint8Array, out: Uint8Array): number {
    return this.#binding.encodeBlock(page, out, 0, out.length)
  }

  decompress(input: Uint8Array, start: number, end: number, page: Uint8Array): number {
    return this.#binding.decodeBlock(input, page, start, end)
  }
}

class ZlibCodec implements PageCodec {
  readonly name = 'zlib' as const

  compress(page: Uint8Array, out: Uint8Array): number {
    const result = deflateRawSync(page, { level: 1, strategy: zlibConstants.Z_DEFAULT_STRATEGY })
    if (result.length > out.length) return 0
    out.set(result)
    return result.length
  }

  decompress(input: Uint8Array, start: number, end: number, page: Uint8Array): number {
    try {
      const result = inflateRawSync(input.subarray(start, end), { maxOutputLength: PAGE_SIZE + 1 })
      if (result.length !== PAGE_SIZE) return result.length
      page.set(result)
      return PAGE_SIZE
    } catch {
      return -1
    }
  }
}

/** A codec by name, or the best available when `name` is undefined; null if unavailable. */
export function createCodec(name?: CodecName): PageCodec | null {
  const chosen = name ?? availableCodecs()[0]
  if (chosen === 'zstd') return zstdBinding === null ? null : new ZstdCodec(zstdBinding, 1)
  if (chosen === 'lz4') return lz4Binding === null ? null : new Lz4Codec(lz4Binding)
  return new ZlibCodec()
}

/**
 * The 32-bit fingerprint of one page, from its 1024 words: four independent multiply-xor
 * lanes (so the CPU overlaps them), folded at the end. It is a hash-table key and a chunk
 * check, not a cryptographic digest: dedup confirms every match with a byte compare.
 * Measured here against xxh32 from `@node-rs/xxhash`: about 0.4 us per page against 1.5 us,
 * and it allocates nothing, where a native call returning a u32 above 2^31 makes a
 * HeapNumber (16 collections per million calls). `page` is unused; kept for the signature.
 */
export function fingerprintPage(_page: Uint8Array, words: Int32Array): number {
  return fingerprintLanes(words, 4, 1, 2, 3)
}

/** Words of a page `fingerprintSample` reads: four of every 32 (see `sampledWord`). */
export const SAMPLE_WORDS = 128

/** Whether word `word` (0..1023) of a page is one `fingerprintSample` reads. */
export function sampledWord(word: number): boolean {
  const offset = word & 31
  return offset === 0 || offset === 1 || offset === 13 || offset === 22
}

/**
 * A 32-bit fingerprint of a sample of the page: words 0, 1, 13 and 22 of every 32-word
 * block (128 of the 1024, the first two of each 128 bytes so that headers count), about an
 * eighth of `fingerprintPage`. Only for the dedup table, which confirms every match with a
 * full byte compare and bounds how many pages may share one sample (dedup.ts): two pages
 * that differ only outside the sample share a fingerprint. Chunk checks use the full one.
 */
export function fingerprintSample(words: Int32Array): number {
  return fingerprintLanes(words, 32, 1, 13, 22)
}

/**
 * Four multiply-xor lanes over words `i`, `i + b`, `i + c`, `i + d` of every `step` words,
 * folded at the end: the whole page with step 4 (1, 2, 3), the sample with step 32.
 */
function fingerprintLanes(words: Int32Array, step: number, b1: number, c1: number, d1: number) {
  let a = 0x9e3779b1 | 0
  let b = 0x85ebca77 | 0
  let c = 0xc2b2ae3d | 0
  let d = 0x27d4eb2f | 0
  for (let i = 0; i < words.length; i += step) {
    a = Math.imul(a ^ words[i]!, 0x01000193)
    b = Math.imul(b ^ words[i + b1]!, 0x01000193)
    c = Math.imul(c ^ words[i + c1]!, 0x01000193)
    d = Math.imul(d ^ words[i + d1]!, 0x01000193)
    a ^= a >>> 15
    b ^= b >>> 15
    c ^= c >>> 15
    d ^= d >>> 15
  }
  let h = Math.imul(a ^ (b >>> 7), 0x9e3779b1) ^ Math.imul(c ^ (d >>> 13), 0x85ebca77)
  h ^= h >>> 15
  return h >>> 0
}

/** Which fingerprint implementation is in use, for the benchmark and the docs. */
export function fingerprintName(): string {
  return 'js 4-lane multiply-xor (32-bit)'
}
