/**
 * Density benchmark (not a test; issue 4): how much memory a stored page costs with each
 * space saver, and how fast puts and gets run with it, on real page data gathered on this
 * machine when the benchmark runs (nothing large is committed):
 *
 *  - anon:  anonymous memory of a live process: a child node process builds a realistic heap
 *           (objects, strings, arrays, maps, typed arrays, JSON); its resident anonymous pages
 *           are read through /proc/<pid>/maps, /proc/<pid>/pagemap and /proc/<pid>/mem (root);
 *  - libs:  page-aligned pages of the shared libraries in /usr/lib/x86_64-linux-gnu;
 *  - text:  page-aligned pages of text files in /usr/share/doc and /usr/include, the last page
 *           of each file zero-padded as the page cache holds it;
 *  - zero:  all-zero pages;
 *  - half:  anonymous-memory pages whose second half is zero (tze's case).
 *
 * Configurations: no saver (plain), compression with each codec (zstd level 1, lz4 block,
 * zlib deflate level 1), zstd with tze, tze alone, dedup, dedup with tze. For each one and
 * each data set, in-process on one thread through `host.opBytes()` with preallocated op
 * buffers (a private ephemeral pool, budget large enough that nothing is evicted):
 *
 *  - ratio:       4096 x pages / payload bytes (chunk bytes incl. the 4-byte check, 4096 per
 *                 plain frame, 0 for a fill word; a shared content counted once);
 *  - bytes/page:  (frames used x 4096 + metadata) / pages, so allocator waste counts: a
 *                 class frame holds whole chunks of one size, the rest of it is waste;
 *                 metadata = the engine's per-entry columns of the live pages, objects,
 *                 content descriptors and frames, with hash tables at their design load;
 *  - put/s, get/s: medians of `--runs` timed passes over a host whose frames are resident (a
 *                 first pass fills it, verifies every byte and is reported as the first-fill
 *                 put rate, which includes the kernel's first touch of fresh arena memory).
 *                 Private ephemeral gets are destructive, so each timed get also frees.
 *
 * The zero-page payload (bytes and frames one zero page costs) is measured per configuration.
 * Results print as markdown and are appended to bench/results.md with date, commit, Node and
 * CPU. Run: `npm run bench:density` (or `node dist/bench/density.bench.js [--runs N]
 * [--repeat N] [--pages N] [--quick] [--no-append] [--only CONFIG] [--data SET]`): every cell
 * is measured in `--repeat` rounds (default 3) of `--runs` timed passes (default 5), and the
 * rates reported are medians, because the machine may be shared with other work.
 */
import { spawn } from 'node:child_process'
import { execFileSync } from 'node:child_process'
import {
  appendFileSync,
  closeSync,
  existsSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Host } from '../src/engine/host.js'
import type { HostOptions } from '../src/engine/options.js'
import { availableCodecs, fingerprintName, type CodecName } from '../src/engine/codecs.js'
import { encodeOp, poolFlags } from '../src/abi/codec.js'
import { PAGE_SIZE, TMEM_GET_PAGE, TMEM_NEW_POOL, TMEM_PUT_PAGE } from '../src/abi/constants.js'
import { OP_LAYOUT_V1 } from '../src/abi/layout.js'
import {
  NONE,
  SLOT_COMPRESSED,
  SLOT_CONTENT,
  SLOT_FILLED,
  SLOT_KIND_MASK,
  SLOT_TZE,
} from '../src/engine/store.js'

const CLIENT = 1
/** Minimum put time of one timed sample, in milliseconds. */
const SAMPLE_MS = 300

// ---------------------------------------------------------------------------------------------
// Page data.

interface Dataset {
  name: string
  bytes: Buffer
  pages: number
  describe: string
}

function dataset(name: string, pages: Uint8Array[], describe: string): Dataset {
  const bytes = Buffer.alloc(pages.length * PAGE_SIZE)
  pages.forEach((page, i) => bytes.set(page, i * PAGE_SIZE))
  return { name, bytes, pages: pages.length, describe }
}

/** The program of the child whose heap is read: a mix of what a JS service keeps alive. */
const HEAP_BUILDER = `
const keep = []
let seed = 12345
const rand = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 4294967296 }
const words = ['alpha', 'beta', 'gamma', 'delta', 'user', 'order', 'item', 'status', 'active', 'pending', 'shipped', 'price', 'quantity', 'total']
const word = () => words[Math.floor(rand() * words.length)]
// Records as a service keeps them: objects with strings, numbers, nested arrays.
const users = []
for (let i = 0; i < 120000; i++) {
  users.push({ id: i, name: word() + '_' + i, email: 'user' + i + '@example.com', score: rand() * 100,
    active: rand() < 0.7, tags: [word(), word()], created: new Date(1.6e12 + i * 1000).toISOString() })
}
keep.push(users)
// A cache: a Map of strings to parsed JSON documents.
const cache = new Map()
for (let i = 0; i < 20000; i++) {
  const doc = { order: i, items: Array.from({ length: 1 + (i % 5) }, (_, k) => ({ sku: 'SKU-' + (i * 7 + k), qty: k + 1, price: Math.round(rand() * 10000) / 100 })), status: word() }
  cache.set('order:' + i, JSON.parse(JSON.stringify(doc)))
}
keep.push(cache)
// Strings: log lines and a few large texts.
const lines = []
for (let i = 0; i < 60000; i++) lines.push(new Date(1.6e12 + i).toISOString() + ' INFO ' + word() + ' request ' + i + ' took ' + Math.floor(rand() * 500) + 'ms')
keep.push(lines)
keep.push(lines.slice(0, 5000).join('\\n'))
// Numbers: plain arrays of doubles and small ints, typed arrays (off-heap anonymous memory).
keep.push(Array.from({ length: 300000 }, (_, i) => i % 1000))
keep.push(Array.from({ length: 100000 }, () => rand()))
const f64 = new Float64Array(1 << 20); for (let i = 0; i < f64.length; i++) f64[i] = Math.sin(i / 100)
keep.push(f64)
const u8 = Buffer.alloc(8 << 20); for (let i = 0; i < u8.length; i += 64) u8.write('buffer row ' + i, i)
keep.push(u8)
globalThis.keep = keep
process.stdout.write('ready\\n')
setInterval(() => {}, 1 << 30)
`

/** Resident anonymous pages of a child node process that built a realistic heap. */
async function gatherAnon(maxPages: number): Promise<Dataset> {
  const child = spawn(process.execPath, ['-e', HEAP_BUILDER], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('error', reject)
      child.once('exit', (code) => reject(new Error(`heap builder exited with ${code}`)))
      child.stdout.once('data', () => resolve())
    })
    const pid = child.pid!
    const maps = readFileSync(`/proc/${pid}/maps`, 'utf8')
      .split('\n')
      .filter((line) => line !== '')
    const mem = openSync(`/proc/${pid}/mem`, 'r')
    const pagemap = openSync(`/proc/${pid}/pagemap`, 'r')
    const entry = Buffer.alloc(8)
    const addresses: number[] = []
    let mappings = 0
    for (const line of maps) {
      const fields = line.split(/\s+/)
      const [range, perms] = fields
      const path = fields[5] ?? ''
      if (range === undefined || perms === undefined || !perms.startsWith('rw')) continue
      // Anonymous: no backing file ([heap], [stack] and unnamed mappings).
      if (path !== '' && path !== '[heap]' && path !== '[stack]' && !path.startsWith('[anon'))
        continue
      const [start, end] = range.split('-').map((hex) => parseInt(hex, 16)) as [number, number]
      mappings++
      for (let address = start; address < end; address += PAGE_SIZE) {
        readSync(pagemap, entry, 0, 8, (address / PAGE_SIZE) * 8)
        if ((entry.readUInt32LE(4) & 0x80000000) !== 0) addresses.push(address) // present
      }
    }
    // An even sample across the whole address space when there are more than asked for.
    const step = Math.max(1, addresses.length / maxPages)
    const pages: Uint8Array[] = []
    for (let i = 0; i < addresses.length && pages.length < maxPages; i += step) {
      const page = Buffer.alloc(PAGE_SIZE)
      try {
        if (readSync(mem, page, 0, PAGE_SIZE, addresses[Math.floor(i)]!) === PAGE_SIZE)
          pages.push(page)
      } catch {
        // A page that went away between the maps and the read.
      }
    }
    closeSync(mem)
    closeSync(pagemap)
    return dataset(
      'anon',
      pages,
      `${pages.length} of ${addresses.length} resident anonymous pages (${mappings} mappings) of a node process with a ~150 MB heap`,
    )
  } finally {
    child.kill()
  }
}

/** Page-aligned pages of files, at most `perFile` from each, the last one zero-padded. */
function filePages(
  files: string[],
  maxPages: number,
  perFile: number,
): { pages: Uint8Array[]; files: number } {
  const pages: Uint8Array[] = []
  let used = 0
  for (const file of files) {
    if (pages.length >= maxPages) break
    let fd: number
    try {
      fd = openSync(file, 'r')
    } catch {
      continue
    }
    used++
    for (let i = 0; i < perFile && pages.length < maxPages; i++) {
      const page = Buffer.alloc(PAGE_SIZE)
      const read = readSync(fd, page, 0, PAGE_SIZE, i * PAGE_SIZE)
      if (read === 0) break
      pages.push(page)
      if (read < PAGE_SIZE) break
    }
    closeSync(fd)
  }
  return { pages, files: used }
}

function walk(
  dir: string,
  accept: (name: string) => boolean,
  out: string[],
  limit: number,
): string[] {
  let names: string[]
  try {
    names = readdirSync(dir).sort()
  } catch {
    return out
  }
  for (const name of names) {
    if (out.length >= limit) break
    const path = join(dir, name)
    const stat = lstatSync(path, { throwIfNoEntry: false })
    if (stat === undefined || stat.isSymbolicLink()) continue
    if (stat.isDirectory()) walk(path, accept, out, limit)
    else if (stat.isFile() && stat.size > 0 && accept(name)) out.push(path)
  }
  return out
}

function gatherLibs(maxPages: number): Dataset {
  const files = walk('/usr/lib/x86_64-linux-gnu', (name) => /\.so(\.\d+)*$/.test(name), [], 100000)
  const { pages, files: used } = filePages(files, maxPages, 32)
  return dataset(
    'libs',
    pages,
    `${pages.length} pages of ${used} shared libraries (/usr/lib/x86_64-linux-gnu, at most 32 pages each)`,
  )
}

function gatherText(maxPages: number): Dataset {
  const text = (name: string): boolean => !/\.(gz|xz|bz2|zst|png|jpg|gif|pdf|woff2?)$/.test(name)
  const files = [
    ...walk('/usr/include', text, [], 100000),
    ...walk('/usr/share/doc', text, [], 100000),
  ]
  // Interleave headers and docs so that a small sample has both.
  files.sort((a, b) => hash32(a) - hash32(b))
  const { pages, files: used } = filePages(files, maxPages, 8)
  return dataset(
    'text',
    pages,
    `${pages.length} pages of ${used} text files (/usr/include, /usr/share/doc; last page of each file zero-padded)`,
  )
}

function hash32(text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
  return h >>> 0
}

function zeroSet(count: number): Dataset {
  return dataset(
    'zero',
    Array.from({ length: count }, () => new Uint8Array(PAGE_SIZE)),
    `${count} all-zero pages`,
  )
}

function halfSet(anon: Dataset, count: number): Dataset {
  const pages: Uint8Array[] = []
  // Non-zero anonymous pages, second half cleared (a partly used page).
  for (let i = 0; i < anon.pages && pages.length < count; i++) {
    const page = new Uint8Array(anon.bytes.subarray(i * PAGE_SIZE, i * PAGE_SIZE + PAGE_SIZE))
    if (page.subarray(0, PAGE_SIZE / 2).every((b) => b === 0)) continue
    page.fill(0, PAGE_SIZE / 2)
    pages.push(page)
  }
  return dataset(
    'half',
    pages,
    `${pages.length} anonymous-memory pages with the second half zeroed`,
  )
}

// ---------------------------------------------------------------------------------------------
// Configurations and measurements.

interface Config {
  name: string
  options: HostOptions
  codec?: CodecName
}

function configs(): { list: Config[]; skipped: string[] } {
  const codecs = availableCodecs()
  const all: Config[] = [
    { name: 'plain', options: {} },
    { name: 'zstd', options: { compress: true, codec: 'zstd' }, codec: 'zstd' },
    { name: 'lz4', options: { compress: true, codec: 'lz4' }, codec: 'lz4' },
    { name: 'zlib', options: { compress: true, codec: 'zlib' }, codec: 'zlib' },
    { name: 'zstd+tze', options: { compress: true, codec: 'zstd', tze: true }, codec: 'zstd' },
    { name: 'tze', options: { tze: true } },
    { name: 'dedup', options: { dedup: true } },
    { name: 'dedup+tze', options: { dedup: true, tze: true } },
  ]
  const list = all.filter((c) => c.codec === undefined || codecs.includes(c.codec))
  const skipped = all.filter((c) => !list.includes(c)).map((c) => `${c.name} (codec not installed)`)
  return { list, skipped }
}

/**
 * Engine metadata per live entry, from the column layouts of store.ts, dedup.ts, subpages.ts
 * and frames.ts (typed arrays; hash tables sized 2x capacity, 4 bytes an entry):
 *  - page slot: object, index, frame, 3 link pairs, free-stack entry (10 x u32), bytes and
 *    offset (2 x u16), flags (u8) = 45 B, plus 8 B of the (object, index) table;
 *  - object: oid (6 x u32), pool, page count, chain head, 2 pool links, free entry (6 x u32),
 *    last client (u16) = 50 B, plus 8 B of the (pool, oid) table;
 *  - content descriptor: frame, refs, fingerprint, free entry (4 x u32), offset, bytes
 *    (2 x u16), kind (u8) = 21 B, plus 8 B of the fingerprint table;
 *  - frame: free-stack entry (u32) and the sub-page columns (class, used count: 2 x u8;
 *    free bitmap and partial-list links: 4 x u32) = 22 B.
 * Capacity reserved but never touched stays unmapped (the OS maps zero pages lazily), so
 * only live entries are counted.
 */
const META = { slot: 53, object: 58, content: 29, frame: 22 }

interface Memory {
  frames: number
  payloadBytes: number
  metadata: number
  kinds: { plain: number; compressed: number; tze: number; filled: number; shared: number }
  compressedBytes: number
}

function memoryOf(host: Host): Memory {
  const store = host.core.store
  const contents = host.core.contents
  const kinds = { plain: 0, compressed: 0, tze: 0, filled: 0, shared: 0 }
  let payloadBytes = 0
  let compressedBytes = 0
  const seenContents = new Set<number>()
  for (const pool of host.core.pools.all()) {
    for (let object = pool.objects[0]!; object !== NONE; object = store.objectPoolNext[object]!) {
      for (let slot = store.objectChain[object]!; slot !== NONE; slot = store.chainNext[slot]!) {
        const flags = store.slotFlags(slot)
        let kind = flags & SLOT_KIND_MASK
        let bytes = store.slotBytes(slot)
        if ((flags & SLOT_CONTENT) !== 0) {
          const id = store.slotFrame(slot)
          kind = contents!.kind[id]!
          bytes = contents!.bytes[id]!
          if (seenContents.has(id)) {
            kinds.shared++
            bytes = 0
          }
          seenContents.add(id)
        }
        if (kind === SLOT_FILLED) kinds.filled++
        else if (kind === SLOT_COMPRESSED) {
          kinds.compressed++
          compressedBytes += bytes
        } else if (kind === SLOT_TZE) kinds.tze++
        else kinds.plain++
        payloadBytes += bytes
      }
    }
  }
  const metadata =
    store.slots.inUse * META.slot +
    store.objects.inUse * META.object +
    (contents === null ? 0 : contents.count * META.content) +
    host.core.frames.used * META.frame
  return { frames: host.core.frames.used, payloadBytes, metadata, kinds, compressedBytes }
}

interface Result {
  config: string
  data: string
  pages: number
  memory: Memory
  /** The first fill, frames touched for the first time. */
  coldPutPerSecond: number
  putPerSecond: number
  getPerSecond: number
  /** The same passes per CPU second of this process (less sensitive to a shared machine). */
  putPerCpuSecond: number
  getPerCpuSecond: number
}

/** CPU seconds (user + system, all threads of this process) since `since`. */
function cpuSeconds(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since)
  return (used.user + used.system) / 1e6
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

function writeU32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value & 0xff
  bytes[at + 1] = (value >>> 8) & 0xff
  bytes[at + 2] = (value >>> 16) & 0xff
  bytes[at + 3] = (value >>> 24) & 0xff
}

/** Points a preallocated v1 op at page `i`: object i >> 8, index i & 255. */
function aim(op: Uint8Array, i: number): void {
  writeU32(op, OP_LAYOUT_V1.genOid, i >>> 8)
  writeU32(op, OP_LAYOUT_V1.genIndex, i & 255)
}

function newHost(config: Config, pages: number): { host: Host; put: Uint8Array; get: Uint8Array } {
  const host = new Host({ pages: pages + 64, reservePages: 0, ...config.options })
  const create = encodeOp({
    cmd: TMEM_NEW_POOL,
    poolId: 0,
    creat: { uuid: [0n, 0n], flags: poolFlags({}), arg1: 0 },
  })
  const pool = host.opBytes(CLIENT, create, 0, 1, null, 0)
  if (pool < 0) throw new Error(`NEW_POOL failed with ${pool}`)
  const gen = {
    oid: [0n, 0n, 0n] as [bigint, bigint, bigint],
    index: 0,
    tmemOffset: 0,
    pfnOffset: 0,
    len: 0,
    cmfn: 0n,
  }
  return {
    host,
    put: encodeOp({ cmd: TMEM_PUT_PAGE, poolId: pool, gen }),
    get: encodeOp({ cmd: TMEM_GET_PAGE, poolId: pool, gen }),
  }
}

/**
 * Fills a host with the data set and reads it back: the first pass (frames touched for the
 * first time) verifies every byte and is timed as the cold put rate; then `runs` passes of
 * timed puts and timed gets over the same host, whose frames are now resident, as a running
 * daemon's are. Gets empty the pool again (private ephemeral gets are destructive).
 */
function measure(config: Config, data: Dataset, runs: number): Result {
  const puts: number[] = []
  const gets: number[] = []
  const putsCpu: number[] = []
  const getsCpu: number[] = []
  const target = Buffer.alloc(PAGE_SIZE)
  const source = data.bytes
  const count = data.pages
  const { host, put, get } = newHost(config, count)
  const putPass = (): void => {
    for (let i = 0; i < count; i++) {
      aim(put, i)
      const rc = host.opBytes(CLIENT, put, 0, 1, source, i * PAGE_SIZE)
      if (rc !== 1) throw new Error(`${config.name}/${data.name}: put ${i} returned ${rc}`)
    }
  }
  const getPass = (): void => {
    for (let i = 0; i < count; i++) {
      aim(get, i)
      if (host.opBytes(CLIENT, get, 0, 1, target, 0) !== 1)
        throw new Error(`${config.name}/${data.name}: get ${i} missed`)
    }
  }
  let start = performance.now()
  putPass()
  const coldMs = performance.now() - start
  const coldPut = (count / coldMs) * 1000
  const memory = memoryOf(host)
  for (let i = 0; i < count; i++) {
    aim(get, i)
    if (host.opBytes(CLIENT, get, 0, 1, target, 0) !== 1)
      throw new Error(`${config.name}/${data.name}: get ${i} missed`)
    if (source.compare(target, 0, PAGE_SIZE, i * PAGE_SIZE, i * PAGE_SIZE + PAGE_SIZE) !== 0) {
      throw new Error(`${config.name}/${data.name}: page ${i} came back different`)
    }
  }
  // A sample is enough passes for about SAMPLE_MS of puts, so that CPU-time readings (kernel
  // tick accounting) are not dominated by their granularity.
  const passes = Math.max(1, Math.ceil(SAMPLE_MS / coldMs))
  for (let run = 0; run < runs; run++) {
    let putMs = 0
    let getMs = 0
    let putCpu = 0
    let getCpu = 0
    for (let pass = 0; pass < passes; pass++) {
      let cpu = process.cpuUsage()
      start = performance.now()
      putPass()
      putMs += performance.now() - start
      putCpu += cpuSeconds(cpu)
      cpu = process.cpuUsage()
      start = performance.now()
      getPass()
      getMs += performance.now() - start
      getCpu += cpuSeconds(cpu)
    }
    puts.push(((count * passes) / putMs) * 1000)
    gets.push(((count * passes) / getMs) * 1000)
    putsCpu.push((count * passes) / putCpu)
    getsCpu.push((count * passes) / getCpu)
  }
  return {
    config: config.name,
    data: data.name,
    pages: count,
    memory,
    coldPutPerSecond: coldPut,
    putPerSecond: median(puts),
    getPerSecond: median(gets),
    putPerCpuSecond: median(putsCpu),
    getPerCpuSecond: median(getsCpu),
  }
}

/** What one zero page costs: payload bytes and frames. */
function zeroPageCost(config: Config): { payload: number; frames: number } {
  const { host, put } = newHost(config, 4)
  aim(put, 0)
  if (host.opBytes(CLIENT, put, 0, 1, new Uint8Array(PAGE_SIZE), 0) !== 1)
    throw new Error('zero put failed')
  const memory = memoryOf(host)
  return { payload: memory.payloadBytes, frames: memory.frames }
}

// ---------------------------------------------------------------------------------------------
// Report.

function rate(perSecond: number): string {
  return perSecond >= 1e6
    ? `${(perSecond / 1e6).toFixed(2)} M`
    : `${(perSecond / 1e3).toFixed(0)} k`
}

function row(r: Result): string {
  const m = r.memory
  const ratio = m.payloadBytes === 0 ? '∞' : ((r.pages * PAGE_SIZE) / m.payloadBytes).toFixed(2)
  const perPage = (m.frames * PAGE_SIZE + m.metadata) / r.pages
  const k = m.kinds
  const kinds = [
    `P${k.plain}`,
    k.compressed > 0 ? `C${k.compressed}` : '',
    k.tze > 0 ? `T${k.tze}` : '',
    k.filled > 0 ? `F${k.filled}` : '',
    k.shared > 0 ? `S${k.shared}` : '',
  ]
    .filter((s) => s !== '')
    .join(' ')
  const waste = m.frames === 0 ? 0 : 1 - m.payloadBytes / (m.frames * PAGE_SIZE)
  return `| ${r.config} | ${r.data} | ${r.pages} | ${ratio} | ${perPage.toFixed(0)} | ${m.frames} | ${(waste * 100).toFixed(1)} % | ${kinds} | ${rate(r.putPerSecond)} | ${rate(r.getPerSecond)} | ${rate(r.putPerCpuSecond)} | ${rate(r.getPerCpuSecond)} | ${rate(r.coldPutPerSecond)} |`
}

function bytesPerPage(r: Result): number {
  return (r.memory.frames * PAGE_SIZE + r.memory.metadata) / r.pages
}

function cpuModel(): string {
  const line = readFileSync('/proc/cpuinfo', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('model name'))
  const cores = readFileSync('/proc/cpuinfo', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('processor')).length
  return `${line?.split(':')[1]?.trim() ?? 'unknown'} (${cores} cores)`
}

/** The commit measured: HEAD when the run starts, `-dirty` when the code it measures differs from it. */
function gitHead(): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()
    const dirty =
      execFileSync(
        'git',
        [
          'status',
          '--porcelain',
          '--',
          'src/engine',
          'src/abi',
          'src/util',
          'bench/density.bench.ts',
        ],
        { encoding: 'utf8' },
      ).trim() !== ''
    return dirty ? `${head}-dirty` : head
  } catch {
    return 'unknown'
  }
}

interface Target {
  what: string
  goal: string
  measured: string
  met: boolean
  /** Missed on wall-clock time, met per CPU second (the machine was busy). */
  cpuOnly?: boolean
}

function targets(
  results: Result[],
  zero: Map<string, { payload: number; frames: number }>,
): Target[] {
  const find = (config: string, data: string): Result | undefined =>
    results.find((r) => r.config === config && r.data === data)
  const list: Target[] = []
  const zstdAnon = find('zstd', 'anon')
  if (zstdAnon !== undefined) {
    const value = bytesPerPage(zstdAnon)
    list.push({
      what: 'memory per anonymous-memory page, zstd',
      goal: '<= 1,600 B',
      measured: `${value.toFixed(0)} B`,
      met: value <= 1600,
    })
  }
  for (const [config, cost] of zero) {
    if (config === 'plain') continue
    list.push({
      what: `zero page payload, ${config}`,
      goal: '0 B',
      measured: `${cost.payload} B, ${cost.frames} frames`,
      met: cost.payload === 0 && cost.frames === 0,
    })
  }
  // Rates: met on wall-clock time; on a shared machine the CPU-time rate says what one thread
  // does when it has the core to itself.
  const rateTarget = (what: string, goal: number, wall: number, cpu: number): Target => ({
    what,
    goal: `>= ${rate(goal)}/s`,
    measured: `${rate(wall)}/s (${rate(cpu)}/cpu-s)`,
    met: wall >= goal,
    cpuOnly: wall < goal && cpu >= goal,
  })
  for (const data of ['anon', 'libs', 'text']) {
    const dedup = find('dedup', data)
    if (dedup !== undefined)
      list.push(
        rateTarget(`puts with dedup on, ${data}`, 0.7e6, dedup.putPerSecond, dedup.putPerCpuSecond),
      )
  }
  if (zstdAnon !== undefined) {
    list.push(
      rateTarget('puts with zstd, anon', 60e3, zstdAnon.putPerSecond, zstdAnon.putPerCpuSecond),
    )
    list.push(
      rateTarget('gets with zstd, anon', 120e3, zstdAnon.getPerSecond, zstdAnon.getPerCpuSecond),
    )
  }
  return list
}

async function main(): Promise<void> {
  const args = process.argv.slice(2)
  const option = (name: string): string | undefined => {
    const at = args.indexOf(name)
    return at >= 0 ? args[at + 1] : undefined
  }
  const quick = args.includes('--quick')
  const runs = Number(option('--runs') ?? (quick ? 1 : 5))
  const repeat = Number(option('--repeat') ?? (quick ? 1 : 3))
  const maxPages = Number(option('--pages') ?? (quick ? 2048 : 16384))
  const only = option('--only')
  const onlyData = option('--data')

  const started = Date.now()
  const commit = gitHead()
  const anon = await gatherAnon(maxPages)
  const sets = [
    anon,
    gatherLibs(maxPages >> 1),
    gatherText(maxPages >> 1),
    zeroSet(maxPages >> 3),
    halfSet(anon, maxPages >> 2),
  ].filter((set) => onlyData === undefined || set.name === onlyData)
  const { list, skipped } = configs()
  const chosen = list.filter((c) => only === undefined || c.name === only)
  const results: Result[] = []
  const zero = new Map<string, { payload: number; frames: number }>()
  // Each cell is measured `repeat` times on a fresh host, in rounds over all cells, so that a
  // burst of other work on a shared machine hits one round, not one cell; rates are the median.
  const rounds: Result[][] = []
  for (let round = 0; round < repeat; round++) {
    const cells: Result[] = []
    for (const config of chosen) {
      if (round === 0) zero.set(config.name, zeroPageCost(config))
      for (const set of sets) cells.push(measure(config, set, runs))
    }
    rounds.push(cells)
    process.stderr.write(`round ${round + 1} of ${repeat} done\n`)
  }
  rounds[0]!.forEach((first, i) => {
    const all = rounds.map((cells) => cells[i]!)
    results.push({
      ...first,
      putPerSecond: median(all.map((r) => r.putPerSecond)),
      getPerSecond: median(all.map((r) => r.getPerSecond)),
      putPerCpuSecond: median(all.map((r) => r.putPerCpuSecond)),
      getPerCpuSecond: median(all.map((r) => r.getPerCpuSecond)),
      coldPutPerSecond: median(all.map((r) => r.coldPutPerSecond)),
    })
  })
  process.stderr.write('\n')

  const lines: string[] = []
  lines.push(
    `### Density benchmark, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`,
  )
  lines.push('')
  lines.push(
    `- commit ${commit}, Node ${process.version}, ${cpuModel()}; fingerprint ${fingerprintName()}`,
  )
  lines.push(
    `- one thread, in-process \`host.opBytes()\`, private ephemeral pool, each cell measured in ${repeat} rounds of (a verifying first fill, then ${runs} timed passes): median of the rounds' medians; ${((Date.now() - started) / 1000).toFixed(0)} s`,
  )
  for (const set of sets) lines.push(`- ${set.name}: ${set.describe}`)
  if (skipped.length > 0) lines.push(`- skipped: ${skipped.join(', ')}`)
  lines.push('')
  lines.push(
    '| config | data | pages | ratio | bytes/page | frames | waste | kinds | put/s | get/s | put/cpu-s | get/cpu-s | first-fill put/s |',
  )
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
  for (const r of results) lines.push(row(r))
  lines.push('')
  lines.push(
    "Kinds: P plain frames, C compressed chunks, T tze chunks, F fill words (zero/same-filled), S pages sharing another page's content (dedup). Ratio = 4096 x pages / payload bytes; bytes/page = (frames x 4096 + metadata) / pages; waste = share of the frames not holding payload (the unused rest of size-class chunks and class frames). put/s and get/s are wall-clock rates, put/cpu-s and get/cpu-s the same passes per CPU second of this process (all its threads), less sensitive to other work on the machine.",
  )
  lines.push('')
  const checks = targets(results, zero)
  if (checks.length > 0) {
    lines.push('| target | goal | measured | |')
    lines.push('|---|---|---|---|')
    for (const t of checks)
      lines.push(
        `| ${t.what} | ${t.goal} | ${t.measured} | ${t.met ? 'met' : t.cpuOnly === true ? 'met per CPU second, **missed** on wall clock' : '**missed**'} |`,
      )
    lines.push('')
  }
  const text = lines.join('\n')
  console.log(text)
  if (!args.includes('--no-append') && only === undefined && onlyData === undefined) {
    const file = fileURLToPath(new URL('../../bench/results.md', import.meta.url))
    if (!existsSync(file))
      writeFileSync(
        file,
        '# Benchmark results\n\nEach entry: date, commit, Node version and CPU model; newest last.\n\n',
      )
    appendFileSync(file, `\n${text}\n`)
    console.error(`appended to ${file}`)
  }
}

void main()
