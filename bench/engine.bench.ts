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
import { encodeOp, poolFlags } from '../src/abi/codec.js'
import { PAGE_SIZE, TMEM_GET_PAGE, TMEM_NEW_POOL, TMEM_PUT_PAGE } from '../src/abi/constants.js'
import { OP_LAYOUT_V1 } from '../src/abi/layout.js'

interface CaseResult {
  name: string
  pages: number
  putPerSecond: number
  getPerSecond: number
  copyPutPerSecond: number
  copyGetPerSecond: number
  gcShare: number
  bytesPerPage: number
}

const CLIENT = 1

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

function runHostCase(pages: number, persistent: boolean, passes: number): CaseResult {
  const sourcePages = 256
  const source = pageSource(sourcePages)
  const target = new Uint8Array(PAGE_SIZE)
  const rssBefore = rssBytes()
  const host = new Host({ pages: persistent ? pages : Math.floor(pages / 2), reservePages: 0 })
  const create = encodeOp({
    cmd: TMEM_NEW_POOL,
    poolId: 0,
    creat: { uuid: [0n, 0n], flags: poolFlags({ persistent }), arg1: 0 },
  })
  const pool = host.opBytes(CLIENT, create, 0, 1, null, 0)
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
  let putTime = 0
  let putCount = 0
  for (let pass = 0; pass < passes; pass++) {
    const start = performance.now()
    for (let i = 0; i < pages; i++) {
      aim(put, i)
      const rc = host.opBytes(CLIENT, put, 0, 1, source, (i % sourcePages) * PAGE_SIZE)
      if (rc !== 1) throw new Error(`Put failed with ${rc}`)
    }
    putTime += performance.now() - start
    putCount += pages
  }
  const rssAfter = rssBytes()
  let getTime = 0
  let getCount = 0
  if (persistent) {
    for (let pass = 0; pass < passes; pass++) {
      const start = performance.now()
      for (let i = 0; i < pages; i++) {
        aim(get, (i * 7919) % pages)
        if (host.opBytes(CLIENT, get, 0, 1, target, 0) !== 1) throw new Error('Get missed')
      }
      getTime += performance.now() - start
      getCount += pages
    }
  }
  const wall = performance.now() - wallStart
  const gcTime = gc.stop()
  const copy = copyBaseline(pages, passes, source)
  return {
    name: persistent
      ? `persistent ${pages} pages`
      : `ephemeral full, ${pages} puts into ${pages >> 1} frames`,
    pages,
    putPerSecond: (putCount / putTime) * 1000,
    getPerSecond: getCount === 0 ? 0 : (getCount / getTime) * 1000,
    copyPutPerSecond: copy.put,
    copyGetPerSecond: copy.get,
    gcShare: gcTime / wall,
    bytesPerPage: persistent ? (rssAfter - rssBefore) / pages - PAGE_SIZE : -1,
  }
}

/** The floor: copying the same pages in and out of one slab, with no index at all. */
function copyBaseline(
  pages: number,
  passes: number,
  source: Uint8Array,
): { put: number; get: number } {
  const slab = Buffer.alloc(pages * PAGE_SIZE)
  const target = new Uint8Array(PAGE_SIZE)
  const sourcePages = source.length / PAGE_SIZE
  const sourceBuffer = Buffer.from(source.buffer, source.byteOffset, source.length)
  let start = performance.now()
  for (let pass = 0; pass < passes; pass++) {
    for (let i = 0; i < pages; i++) {
      const from = (i % sourcePages) * PAGE_SIZE
      sourceBuffer.copy(slab, i * PAGE_SIZE, from, from + PAGE_SIZE)
    }
  }
  const put = ((pages * passes) / (performance.now() - start)) * 1000
  start = performance.now()
  for (let pass = 0; pass < passes; pass++) {
    for (let i = 0; i < pages; i++) {
      const at = ((i * 7919) % pages) * PAGE_SIZE
      slab.copy(target, 0, at, at + PAGE_SIZE)
    }
  }
  const get = ((pages * passes) / (performance.now() - start)) * 1000
  return { put, get }
}

function formatRate(perSecond: number): string {
  return perSecond === 0 ? '-' : `${(perSecond / 1e6).toFixed(2)} M/s`
}

function main(): void {
  const args = process.argv.slice(2)
  const child = args.indexOf('--case')
  if (child >= 0) {
    const [kind, pages, passes] = (args[child + 1] ?? '').split(':')
    const result = runHostCase(Number(pages), kind === 'persistent', Number(passes))
    process.stdout.write(JSON.stringify(result))
    return
  }
  const quick = args.includes('--quick')
  const cases = quick
    ? ['persistent:100000:2', 'ephemeral:100000:2']
    : ['persistent:100000:5', 'persistent:1000000:2', 'ephemeral:1000000:2']
  const results: CaseResult[] = []
  for (const spec of cases) {
    const run = spawnSync(
      process.execPath,
      ['--expose-gc', fileURLToPath(import.meta.url), '--case', spec],
      {
        encoding: 'utf8',
        maxBuffer: 1 << 20,
      },
    )
    if (run.status !== 0) throw new Error(`Case ${spec} failed: ${run.stderr}`)
    results.push(JSON.parse(run.stdout) as CaseResult)
  }
  console.log(`Node ${process.version}, ${new Date().toISOString()}`)
  console.log(
    '| case | put | get | slab-copy put | slab-copy get | GC share | bytes/page beyond 4096 |',
  )
  console.log('|---|---|---|---|---|---|---|')
  for (const r of results) {
    console.log(
      `| ${r.name} | ${formatRate(r.putPerSecond)} | ${formatRate(r.getPerSecond)} | ` +
        `${formatRate(r.copyPutPerSecond)} | ${formatRate(r.copyGetPerSecond)} | ` +
        `${(r.gcShare * 100).toFixed(2)} % | ${r.bytesPerPage < 0 ? '-' : r.bytesPerPage.toFixed(0)} |`,
    )
  }
}

main()
