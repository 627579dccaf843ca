/**
 * Page contents for the density tests: one generator per payload kind the engine can choose
 * (spec §4.7, D13), so that every storage path and dedup sharing is exercised:
 *
 *   text      words from a small vocabulary: compresses well (a compressed chunk)
 *   heap      8-byte records of small integers and pointer-like values: compresses
 *   random    a PRNG stream: does not compress (stored plain, counted poor, `cn`)
 *   zero      all zero (a fill word, no payload)
 *   filled    one non-zero 32-bit word repeated, e.g. 0xABABABAB (a fill word)
 *   tze       random bytes then zeros; the prefix is short enough for a tze chunk (some just
 *             long enough that the random prefix does not compress into one)
 *   tzeLong   random bytes then zeros, the prefix too long for a chunk (stored plain)
 *   dup       one of DUP_VARIANTS fixed pages (text, random, tze, heap): equal contents
 *             across puts, pools and clients, so dedup shares them
 *
 * Every page except zero/filled/dup starts with a header naming its kind and seed, so a
 * wrong-bytes failure can say whose bytes came back (`describePage`).
 */

export const PAGE_BYTES = 4096

export const CONTENT_KINDS = [
  'text',
  'heap',
  'random',
  'zero',
  'filled',
  'tze',
  'tzeLong',
  'dup',
] as const
export type ContentKind = (typeof CONTENT_KINDS)[number]

/** Number of distinct `dup` pages. */
export const DUP_VARIANTS = 4

const HEADER_MAGIC = 0x5a444e44 // 'DNDZ'
const FILL_WORDS = [0xabababab, 0xffffffff, 0x01010101, 0x80000000, 0x00000001]
const VOCABULARY = [
  'page',
  'memory',
  'tmem',
  'guest',
  'host',
  'pool',
  'object',
  'index',
  'the',
  'a',
  'of',
  'and',
  'ephemeral',
  'persistent',
  'frontswap',
  'cleancache',
  'evict',
  'compress',
  'zero',
  'trailing',
]

export function mix32(a: number, b: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x632be5ab, 0xc2b2ae35)
  h ^= h >>> 16
  h = Math.imul(h, 0x7feb352d)
  return (h ^ (h >>> 15)) >>> 0
}

/** A xorshift32 stream seeded from `seed` (never zero). */
function stream(seed: number): () => number {
  let x = mix32(seed, 0x1234567) | 1
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return x >>> 0
  }
}

function writeHeader(page: Uint8Array, kind: ContentKind, seed: number): void {
  const view = new DataView(page.buffer, page.byteOffset, 16)
  view.setUint32(0, HEADER_MAGIC, true)
  view.setUint32(4, CONTENT_KINDS.indexOf(kind), true)
  view.setUint32(8, seed >>> 0, true)
}

function fillRandom(page: Uint8Array, from: number, to: number, next: () => number): void {
  for (let i = from; i < to; i++) page[i] = next() & 0xff
}

/**
 * Length of the non-zero prefix of a `tze` page (16..2040 bytes; a quarter of them 2016..2040,
 * where random bytes no longer compress into a chunk but still trim into one) and of a
 * `tzeLong` page (2100..3999 bytes: too long for a chunk).
 */
export function tzePrefix(kind: 'tze' | 'tzeLong', seed: number): number {
  const r = mix32(seed, 77)
  if (kind === 'tzeLong') return 2100 + (r % 1900)
  return r % 4 === 0 ? 2016 + ((r >>> 2) % 25) : 16 + ((r >>> 2) % 1985)
}

/** The page of `kind` for `seed`, written into `out` (a fresh page when omitted). */
export function makeContent(
  kind: ContentKind,
  seed: number,
  out: Uint8Array = new Uint8Array(PAGE_BYTES),
): Uint8Array {
  const page = out.subarray(0, PAGE_BYTES)
  page.fill(0)
  const next = stream(seed)
  switch (kind) {
    case 'zero':
      return out
    case 'filled': {
      const word = FILL_WORDS[seed % FILL_WORDS.length]!
      for (let i = 0; i < PAGE_BYTES; i += 4) {
        page[i] = word & 0xff
        page[i + 1] = (word >>> 8) & 0xff
        page[i + 2] = (word >>> 16) & 0xff
        page[i + 3] = word >>> 24
      }
      return out
    }
    case 'dup':
      return makeDup(seed % DUP_VARIANTS, out)
    case 'text': {
      let at = 16
      while (at < PAGE_BYTES) {
        const word = VOCABULARY[next() % VOCABULARY.length]!
        for (let i = 0; i < word.length && at < PAGE_BYTES; i++) page[at++] = word.charCodeAt(i)
        if (at < PAGE_BYTES) page[at++] = next() % 9 === 0 ? 10 : 32
      }
      break
    }
    case 'heap': {
      const view = new DataView(page.buffer, page.byteOffset, PAGE_BYTES)
      const base = 0x7f000000 + (seed & 0xfff) * 0x1000
      for (let at = 16; at + 8 <= PAGE_BYTES; at += 8) {
        const r = next()
        // Tagged small integers, pointers into one region, and zero words, as a JS heap has.
        if (r % 3 === 0) view.setUint32(at, (r >>> 8) & 0xff, true)
        else if (r % 3 === 1) view.setUint32(at, base + ((r >>> 4) & 0xff8), true)
        if (r % 3 === 1) view.setUint32(at + 4, 0x7f, true)
      }
      break
    }
    case 'random':
      fillRandom(page, 16, PAGE_BYTES, next)
      break
    case 'tze':
    case 'tzeLong':
      fillRandom(page, 16, tzePrefix(kind, seed), next)
      break
  }
  writeHeader(page, kind, seed)
  return out
}

/** The `dup` page number `variant`: the same bytes every time. */
function makeDup(variant: number, out: Uint8Array): Uint8Array {
  const kinds: ContentKind[] = ['text', 'random', 'tze', 'heap']
  makeContent(kinds[variant % kinds.length]!, 0xd0d0 + variant, out)
  // A header of its own, so a failure names the duplicate.
  new DataView(out.buffer, out.byteOffset, 16).setUint32(12, 0xd0000000 + variant, true)
  return out
}

/** Names a page for failure messages. */
export function describePage(bytes: Uint8Array): string {
  const page = bytes.subarray(0, PAGE_BYTES)
  if (page.length < 16) return `${page.length} bytes`
  if (page.every((b) => b === 0)) return 'a zero page'
  const view = new DataView(page.buffer, page.byteOffset, PAGE_BYTES)
  const first = view.getUint32(0, true)
  let same = true
  for (let i = 4; i < PAGE_BYTES && same; i += 4) same = view.getUint32(i, true) === first
  if (same) return `a page filled with 0x${first.toString(16)}`
  if (first === HEADER_MAGIC) {
    const kind = CONTENT_KINDS[view.getUint32(4, true)] ?? '?'
    const dup = view.getUint32(12, true)
    if (dup >>> 28 === 0xd) return `duplicate page #${dup & 0xff}`
    return `a ${kind} page, seed ${view.getUint32(8, true)}`
  }
  return 'unrecognised bytes'
}
