/**
 * The pages every server stores: real 4 KiB pages read from files on this machine, the same
 * bytes for tmem, Redis and memcached.
 *
 * Mix (by page count): 70 % page-aligned chunks of shared objects (/usr/lib), 20 % text
 * (/usr/share: docs, scripts, man pages), 5 % all-zero pages and 5 % half-zero pages (real
 * data, then 2 KiB of zeros: a partly used page). Files are taken in sorted path order and at
 * most `PAGES_PER_FILE` pages come from one file, so the corpus spans many files. Chunks that
 * are one repeated byte are skipped (the zero pages are added on purpose). When the machine
 * has too few files, the rest is filled with seeded pseudo-text, and `describe` says so.
 *
 * Key k stores page `k % pages` of the corpus.
 */
import { closeSync, openSync, readSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

export const PAGE = 4096
const PAGES_PER_FILE = 48

export interface Corpus {
  /** All pages, back to back. */
  bytes: Buffer
  pages: number
  /** One line: where the pages came from. */
  describe: string
  page(key: number): Buffer
}

/** Builds `pages` pages (a multiple of 20 is exact; others round the mix). */
export function buildCorpus(pages: number): Corpus {
  const bytes = Buffer.alloc(pages * PAGE)
  const zeroCount = Math.round(pages * 0.05)
  const halfCount = Math.round(pages * 0.05)
  const textCount = Math.round(pages * 0.2)
  const binaryCount = pages - zeroCount - halfCount - textCount
  let at = 0
  const put = (chunk: Uint8Array): void => {
    bytes.set(chunk, at * PAGE)
    at++
  }
  const binary = collect(
    ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib'],
    /\.so(\.\d+)*$/,
    binaryCount + halfCount,
  )
  const text = collect(
    ['/usr/share/doc', '/usr/share/perl5', '/usr/share/man', '/usr/share'],
    /\.(txt|md|html|py|pm|pl|sh|xml|json|css|js|gz|1|5|8)$|copyright$|changelog/,
    textCount,
  )
  let synthetic = 0
  for (let i = 0; i < binaryCount; i++) put(binary.pages[i] ?? syntheticPage(synthetic++))
  for (let i = 0; i < textCount; i++) put(text.pages[i] ?? syntheticPage(synthetic++))
  for (let i = 0; i < halfCount; i++) {
    const source = binary.pages[binaryCount + i] ?? syntheticPage(synthetic++)
    const half = new Uint8Array(PAGE)
    half.set(source.subarray(0, PAGE / 2))
    put(half)
  }
  at += zeroCount // Buffer.alloc left them zero.
  // Interleave the kinds so that every key range sees the same mix.
  shuffle(bytes, pages, 0x9e3779b9)
  const describe =
    `${pages} pages: ${binaryCount} from ${binary.files} shared objects, ${textCount} from ` +
    `${text.files} text files, ${halfCount} half-zero, ${zeroCount} zero` +
    (synthetic > 0 ? `, ${synthetic} synthetic (too few files)` : '')
  return {
    bytes,
    pages,
    describe,
    page: (key: number) => bytes.subarray((key % pages) * PAGE, ((key % pages) + 1) * PAGE),
  }
}

/** Up to `wanted` distinct non-uniform pages from matching files under `roots`. */
function collect(
  roots: string[],
  pattern: RegExp,
  wanted: number,
): { pages: Uint8Array[]; files: number } {
  const pages: Uint8Array[] = []
  const seen = new Set<string>()
  let files = 0
  const chunk = Buffer.alloc(PAGE)
  for (const root of roots) {
    for (const path of walk(root, 6)) {
      if (pages.length >= wanted) return { pages, files }
      if (!pattern.test(path) || seen.has(path)) continue
      seen.add(path)
      let fd: number
      try {
        fd = openSync(path, 'r')
      } catch {
        continue
      }
      let taken = 0
      try {
        for (let offset = 0; taken < PAGES_PER_FILE && pages.length < wanted; offset += PAGE) {
          const got = readSync(fd, chunk, 0, PAGE, offset)
          if (got < PAGE) break
          if (isUniform(chunk)) continue
          pages.push(Uint8Array.from(chunk))
          taken++
        }
      } finally {
        closeSync(fd)
      }
      if (taken > 0) files++
    }
  }
  return { pages, files }
}

/** Regular files under `dir`, sorted, depth-first, at most `depth` levels down. */
function* walk(dir: string, depth: number): Generator<string> {
  let names: string[]
  try {
    names = readdirSync(dir).sort()
  } catch {
    return
  }
  for (const name of names) {
    const path = join(dir, name)
    let stat
    try {
      stat = statSync(path, { throwIfNoEntry: false })
    } catch {
      continue
    }
    if (stat === undefined) continue
    if (stat.isDirectory()) {
      if (depth > 0) yield* walk(path, depth - 1)
    } else if (stat.isFile() && stat.size >= PAGE) {
      yield path
    }
  }
}

function isUniform(page: Uint8Array): boolean {
  const first = page[0]
  for (let i = 1; i < page.length; i++) if (page[i] !== first) return false
  return true
}

/** Seeded pseudo-text for machines without enough files (never a repeated byte). */
function syntheticPage(seed: number): Uint8Array {
  const page = new Uint8Array(PAGE)
  let state = (seed * 2654435761 + 1) >>> 0
  const words = ['page', 'memory', 'tmem', 'frame', 'pool', 'object', 'index', 'the', 'of', 'a']
  let at = 0
  while (at < PAGE) {
    state = (state * 1664525 + 1013904223) >>> 0
    const word = words[state % words.length] ?? 'x'
    for (let i = 0; i < word.length && at < PAGE; i++) page[at++] = word.charCodeAt(i)
    if (at < PAGE) page[at++] = state % 13 === 0 ? 10 : 32
  }
  return page
}

/** Shuffles whole pages in place with a seeded generator (deterministic across runs). */
function shuffle(bytes: Buffer, pages: number, seed: number): void {
  const scratch = Buffer.alloc(PAGE)
  let state = seed >>> 0
  for (let i = pages - 1; i > 0; i--) {
    state = (state * 1664525 + 1013904223) >>> 0
    const j = state % (i + 1)
    if (j === i) continue
    bytes.copy(scratch, 0, i * PAGE, (i + 1) * PAGE)
    bytes.copy(bytes, i * PAGE, j * PAGE, (j + 1) * PAGE)
    scratch.copy(bytes, j * PAGE)
  }
}

/** A seeded permutation of 0..count-1: the order in which lanes visit keys. */
export function keyOrder(count: number, seed: number): Uint32Array {
  const order = new Uint32Array(count)
  for (let i = 0; i < count; i++) order[i] = i
  let state = seed >>> 0
  for (let i = count - 1; i > 0; i--) {
    state = (state * 1664525 + 1013904223) >>> 0
    const j = state % (i + 1)
    const t = order[i]!
    order[i] = order[j]!
    order[j] = t
  }
  return order
}
