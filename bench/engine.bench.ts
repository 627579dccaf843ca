/**
 * Engine benchmark (not a test): put and get rates of the in-process host through the
 * zero-allocation entry `host.opBytes()`, beside a bare slab-copy loop of the same size, at
 * 100k and 1M live pages; the put rate with the ephemeral budget full (every put evicts);
 * the share of wall time spent in GC; and process memory per stored page beyond 4096 bytes.
 *
 * Each case runs in a fresh child process so that memory readings are not polluted by the
 * previous case. Run: `npm run bench` (or `node dist/bench/engine.bench.js [--quick]`).
 *
 * Workload: pages carry varied data (a seeded pattern, not a repeated byte); handles follow
 * Linux frontswap's mapping (spec §8.3): oid = (type << 4) | (offset & 15), index = offset >> 4.
 */
import { spawnSync } from 'node:child_process'
import { PerformanceObserver } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { Host } from '../src/engine/host.js'
import { pageCopyMode, setPageCopyMode } from '../src/engine/page-copy.js'
import { encodeOp, poolFlags } from '../src/abi/codec.js'
import { PAGE_SIZE, TMEM_GET_PAGE, TMEM_NEW_POOL, TMEM_PUT_PAGE } from '../src/abi/constants.js'
import { OP_LAYOUT_V1 } from '../src/abi/layout.js'

type Kind = 'persistent' | 'ephemeral' | 'dedup'

interface CaseResult {
  name: string
  /** The engine's page copy in this case ('native' or 'wide', src/engine/page-copy.ts). */
  copy: string
  prefault: boolean
  pages: number
  putPerSecond: number
  getPerSecond: number
  copyPutPerSecond: number
  copyGetPerSecond: number
  /** The same four rates per CPU second of this process (steadier on a shared machine). */
  putPerCpuSecond: number
  getPerCpuSecond: number
  copyPutPerCpuSecond: number
  copyGetPerCpuSecond: number
  gcShare: number
  bytesPerPage: number
}

const CLIENT = 1

/** Wall and CPU milliseconds of a phase; add them up with `add`. */
class PhaseTime {
  wall = 0
  cpu = 0
  #wall = 0
  #cpu = 0

  start(): void {
    this.#wall = performance.now()
    const usage = process.cpuUsage()
    this.#cpu = (usage.user + usage.system) / 1000
  }

  stop(): void {
    this.wall += performance.now() - this.#wall
    const usage = process.cpuUsage()
    this.cpu += (usage.user + usage.system) / 1000 - this.#cpu
  }
}

function perSecond(count: number, ms: number): number {
  return count === 0 || ms === 0 ? 0 : (count / ms) * 1000
}

function gcTracker(): { stop(): number } {
  let total = 0
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) total += entry.duration
  })
  observer.observe({ entryTypes: ['gc'] })
  return {
    stop(): number {
      observer.disconnect()
      return total
    },
  }
}

function rssBytes(): number {
  globalThis.gc?.()
  return process.memoryUsage().rss
}

/** A buffer of `count` pages of varied content, the source of every put. */
function pageSource(count: number): Uint8Array {
  const bytes = new Uint8Array(count * PAGE_SIZE)
  let x = 0x9e3779b9
  for (let i = 0; i < bytes.length; i += 4) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    bytes[i] = x & 0xff
    bytes[i + 1] = (x >>> 8) & 0xff
  }
  return bytes
}

function writeU32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value & 0xff
  bytes[at + 1] = (value >>> 8) & 0xff
  bytes[at + 2] = (value >>> 16) & 0xff
  bytes[at + 3] = (value >>> 24) & 0xff
}

/** Points a preallocated v1 op at frontswap handle `offset`. */
function aim(op: Uint8Array, offset: number): void {
  writeU32(op, OP_LAYOUT_V1.genOid, offset & 15)
  writeU32(op, OP_LAYOUT_V1.genIndex, offset >>> 4)
}

/** A host for `kind`: persistent (all pages fit), ephemeral or dedup (half the pages fit). */
function makeHost(kind: Kind, pages: number, prefault: boolean): { host: Host; pool: number } {
  const persistent = kind === 'persistent'
  const host = new Host({
    pages: persistent ? pages : Math.floor(pages / 2),
    reservePages: 0,
    dedup: kind === 'dedup',
    prefault,
  })
  const create = encodeOp({
    cmd: TMEM_NEW_POOL,
    poolId: 0,
    creat: { uuid: [0n, 0n], flags: poolFlags({ persistent }), arg1: 0 },
  })
  return { host, pool: host.opBytes(CLIENT, create, 0, 1, null, 0) }
}

function caseName(kind: Kind, pages: number): string {
  if (kind === 'persistent') return `persistent ${pages} pages`
  const what = kind === 'dedup' ? 'dedup (256 distinct pages)' : 'ephemeral full'
  return `${what}, ${pages} puts into ${pages >> 1} frames`
}

function runHostCase(kind: Kind, pages: number, passes: number, prefault: boolean): CaseResult {
  const sourcePages = 256
  const source = pageSource(sourcePages)
  const target = new Uint8Array(PAGE_SIZE)
  const rssBefore = rssBytes()
  const { host, pool } = makeHost(kind, pages, prefault)
  const persistent = kind === 'persistent'
  const gen = {
    oid: [0n, 0n, 0n] as [bigint, bigint, bigint],
    index: 0,
    tmemOffset: 0,
    pfnOffset: 0,
    len: 0,
    cmfn: 0n,
  }
  const put = encodeOp({ cmd: TMEM_PUT_PAGE, poolId: pool, gen })
  const get = encodeOp({ cmd: TMEM_GET_PAGE, poolId: pool, gen })
  const gc = gcTracker()
  const wallStart = performance.now()
  // Fill: the first pass creates every page, later passes replace them (duplicate puts).
  const putTime = new PhaseTime()
  let putCount = 0
  for (let pass = 0; pass < passes; pass++) {
    putTime.start()
    for (let i = 0; i < pages; i++) {
      aim(put, i)
      const rc = host.opBytes(CLIENT, put, 0, 1, source, (i % sourcePages) * PAGE_SIZE)
      if (rc !== 1) throw new Error(`Put failed with ${rc}`)
    }
    putTime.stop()
    putCount += pages
  }
  const rssAfter = rssBytes()
  const getTime = new PhaseTime()
  let getCount = 0
  if (persistent) {
    for (let pass = 0; pass < passes; pass++) {
      getTime.start()
      for (let i = 0; i < pages; i++) {
        aim(get, (i * 7919) % pages)
        if (host.opBytes(CLIENT, get, 0, 1, target, 0) !== 1) throw new Error('Get missed')
      }
      getTime.stop()
      getCount += pages
    }
  }
  const wall = performance.now() - wallStart
  const gcTime = gc.stop()
  const copy = copyBaseline(pages, passes, source, prefault)
  return {
    name: caseName(kind, pages),
    copy: pageCopyMode(),
    prefault,
    pages,
    putPerSecond: perSecond(putCount, putTime.wall),
    getPerSecond: perSecond(getCount, getTime.wall),
    copyPutPerSecond: perSecond(copy.count, copy.put.wall),
    copyGetPerSecond: perSecond(copy.count, copy.get.wall),
    putPerCpuSecond: perSecond(putCount, putTime.cpu),
    getPerCpuSecond: perSecond(getCount, getTime.cpu),
    copyPutPerCpuSecond: perSecond(copy.count, copy.put.cpu),
    copyGetPerCpuSecond: perSecond(copy.count, copy.get.cpu),
    gcShare: gcTime / wall,
    bytesPerPage: persistent && !prefault ? (rssAfter - rssBefore) / pages - PAGE_SIZE : -1,
  }
}

/** The floor: copying the same pages in and out of one slab, with no index at all. */
function copyBaseline(
  pages: number,
  passes: number,
  source: Uint8Array,
  prefault: boolean,
): { put: PhaseTime; get: PhaseTime; count: number } {
  // Fresh memory, faulted in by the first pass as the engine's arenas are; or touched
  // beforehand, as a prefaulted host's arenas are.
  const slab = Buffer.alloc(pages * PAGE_SIZE)
  if (prefault) for (let at = 0; at < slab.length; at += PAGE_SIZE) slab[at] = 0
  const target = new Uint8Array(PAGE_SIZE)
  const sourcePages = source.length / PAGE_SIZE
  const sourceBuffer = Buffer.from(source.buffer, source.byteOffset, source.length)
  const put = new PhaseTime()
  put.start()
  for (let pass = 0; pass < passes; pass++) {
    for (let i = 0; i < pages; i++) {
      const from = (i % sourcePages) * PAGE_SIZE
      sourceBuffer.copy(slab, i * PAGE_SIZE, from, from + PAGE_SIZE)
    }
  }
  put.stop()
  const get = new PhaseTime()
  get.start()
  for (let pass = 0; pass < passes; pass++) {
    for (let i = 0; i < pages; i++) {
      const at = ((i * 7919) % pages) * PAGE_SIZE
      slab.copy(target, 0, at, at + PAGE_SIZE)
    }
  }
  get.stop()
  return { put, get, count: pages * passes }
}

function formatRate(perSecond: number): string {
  return perSecond === 0 ? '-' : `${(perSecond / 1e6).toFixed(2)} M/s`
}

function ratio(engine: number, loop: number): string {
  return engine === 0 ? '-' : `${(engine / loop).toFixed(2)}x`
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

/** Runs one case in a fresh child process. */
function runChild(spec: string): CaseResult {
  const run = spawnSync(
    process.execPath,
    ['--expose-gc', fileURLToPath(import.meta.url), '--case', spec],
    { encoding: 'utf8', maxBuffer: 1 << 20 },
  )
  if (run.status !== 0) throw new Error(`Case ${spec} failed: ${run.stderr}`)
  return JSON.parse(run.stdout) as CaseResult
}

/** The median of each rate over `results` (runs of one case), keeping the first's labels. */
function medianResult(results: CaseResult[]): CaseResult {
  const pick = (key: keyof CaseResult): number => median(results.map((r) => r[key] as number))
  return {
    ...results[0]!,
    putPerSecond: pick('putPerSecond'),
    getPerSecond: pick('getPerSecond'),
    copyPutPerSecond: pick('copyPutPerSecond'),
    copyGetPerSecond: pick('copyGetPerSecond'),
    putPerCpuSecond: pick('putPerCpuSecond'),
    getPerCpuSecond: pick('getPerCpuSecond'),
    copyPutPerCpuSecond: pick('copyPutPerCpuSecond'),
    copyGetPerCpuSecond: pick('copyGetPerCpuSecond'),
    gcShare: pick('gcShare'),
    bytesPerPage: pick('bytesPerPage'),
  }
}

/**
 * `--profile put|get:pages:passes`: only that op in a loop over a persistent pool, for
 * `node --cpu-prof`; prints ns per op, so that a profile's self-time shares turn into ns.
 */
function profileCase(spec: string): void {
  const [op, pagesText, passesText] = spec.split(':')
  const pages = Number(pagesText)
  const passes = Number(passesText)
  const source = pageSource(256)
  const target = new Uint8Array(PAGE_SIZE)
  const { host, pool } = makeHost('persistent', pages, false)
  const gen = { oid: [0n, 0n, 0n] as [bigint, bigint, bigint], index: 0 }
  const put = encodeOp({
    cmd: TMEM_PUT_PAGE,
    poolId: pool,
    gen: { ...gen, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
  })
  const get = encodeOp({
    cmd: TMEM_GET_PAGE,
    poolId: pool,
    gen: { ...gen, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
  })
  for (let i = 0; i < pages; i++) {
    aim(put, i)
    host.opBytes(CLIENT, put, 0, 1, source, (i % 256) * PAGE_SIZE)
  }
  const start = performance.now()
  for (let pass = 0; pass < passes; pass++) {
    for (let i = 0; i < pages; i++) {
      if (op === 'put') {
        aim(put, i)
        host.opBytes(CLIENT, put, 0, 1, source, (i % 256) * PAGE_SIZE)
      } else {
        aim(get, (i * 7919) % pages)
        host.opBytes(CLIENT, get, 0, 1, target, 0)
      }
    }
  }
  const ns = ((performance.now() - start) * 1e6) / (pages * passes)
  console.log(`${op}: ${ns.toFixed(0)} ns per op (${pageCopyMode()} copy)`)
}

function main(): void {
  const args = process.argv.slice(2)
  const profile = args.indexOf('--profile')
  if (profile >= 0) return profileCase(args[profile + 1] ?? 'get:100000:5')
  const child = args.indexOf('--case')
  if (child >= 0) {
    const [kind, pages, passes, copy, prefault] = (args[child + 1] ?? '').split(':')
    setPageCopyMode(copy === 'wide' ? 'wide' : 'native')
    const result = runHostCase(kind as Kind, Number(pages), Number(passes), prefault === 'prefault')
    process.stdout.write(JSON.stringify(result))
    return
  }
  const quick = args.includes('--quick')
  const repeats = quick ? 1 : 3
  // Every case with the engine's native page copy and with the wide-loop copy it replaced,
  // alternating, so that before and after are measured in the same run.
  const cases = quick
    ? ['persistent:100000:2', 'ephemeral:100000:2', 'dedup:100000:2']
    : [
        'persistent:100000:5',
        'ephemeral:400000:2',
        'dedup:400000:2',
        'persistent:1000000:1',
        'persistent:1000000:1::prefault',
      ]
  const rows: CaseResult[] = []
  for (const spec of cases) {
    const [kind, pages, passes, , prefault] = spec.split(':')
    const runs = spec.startsWith('persistent:1000000') ? 1 : repeats
    for (const copy of ['wide', 'native']) {
      const results: CaseResult[] = []
      for (let r = 0; r < runs; r++) {
        results.push(runChild(`${kind}:${pages}:${passes}:${copy}:${prefault ?? ''}`))
      }
      rows.push(medianResult(results))
    }
  }
  console.log(`Node ${process.version}, ${new Date().toISOString()}, medians of ${repeats} runs`)
  console.log(
    '| case | copy | put | get | slab-copy put | slab-copy get | put / loop | get / loop | ' +
      'put / loop (cpu) | get / loop (cpu) | GC share | bytes/page beyond 4096 |',
  )
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|')
  for (const r of rows) {
    console.log(
      `| ${r.name}${r.prefault ? ', prefaulted' : ''} | ${r.copy} | ${formatRate(r.putPerSecond)} | ` +
        `${formatRate(r.getPerSecond)} | ${formatRate(r.copyPutPerSecond)} | ` +
        `${formatRate(r.copyGetPerSecond)} | ${ratio(r.putPerSecond, r.copyPutPerSecond)} | ` +
        `${ratio(r.getPerSecond, r.copyGetPerSecond)} | ` +
        `${ratio(r.putPerCpuSecond, r.copyPutPerCpuSecond)} | ` +
        `${ratio(r.getPerCpuSecond, r.copyGetPerCpuSecond)} | ${(r.gcShare * 100).toFixed(2)} % | ` +
        `${r.bytesPerPage < 0 ? '-' : r.bytesPerPage.toFixed(0)} |`,
    )
  }
}

main()
