/**
 * `npm run bench:remote`: the remote tier (docs/remote.md) against a Redis Cluster on loopback
 * (3 masters, 3 replicas, started here as the tests do). The daemon runs in its own process
 * (`node dist/src/cli/tmem.js daemon --remote redis-cluster://...`, a fresh one per case and
 * round); the load (the tmem client, and the ioredis Cluster client of the direct runs, both
 * with auto-pipelining and the tier's other options) runs in this process. The daemon measures
 * its own event-loop delay (STATS `daemon.eventLoop`, 1 ms resolution here) and its CPU comes
 * from /proc/<pid>/stat, so neither counts the load's work. Same-run ratios; the machine is
 * shared.
 *
 * 1. Persistent pool 4x the local budget (1024 pages local, 4096 put): put and get rates
 *    through the daemon, and the same pages through ioredis Cluster directly (HSET/HGET of
 *    4 KiB values in one hash per object), both with 64 ops in flight.
 * 2. Local hits: a persistent pool that fits in memory, read back, with the tier and without.
 * 3. Ephemeral working set 3x local memory, put then read once: hit rate with the tier and
 *    without, and the daemon's largest event-loop delay over its whole run.
 *
 * BENCH_CPU_PROF=DIR writes a V8 CPU profile of every daemon into DIR (node --cpu-prof).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Cluster } from 'ioredis'
import { connect, type TmemClient } from '../src/client/client.js'
import { connectControl, type TmemControlClient } from '../src/client/control.js'
import type { DaemonStats } from '../src/protocol/stats.js'
import { parseRemoteUrl } from '../src/remote/mod.js'
import { startCluster, type TestCluster } from '../test/helpers/redis-cluster.js'
import { cpuSeconds } from './peers/servers.js'

const LOCAL_PAGES = 1024
const WINDOW = 64
const ROUNDS = 3
const TIMEOUT_MS = 1000
const TMEM_BIN = fileURLToPath(new URL('../src/cli/tmem.js', import.meta.url))

function page(n: number): Uint8Array {
  const bytes = new Uint8Array(4096)
  const view = new DataView(bytes.buffer)
  let x = (n * 2654435761) >>> 0 || 1
  for (let i = 0; i < 1024; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0
    view.setUint32(i * 4, x, true)
  }
  return bytes
}

/** Runs `op(0..count-1)` with `WINDOW` in flight; pages per second. */
async function rate(count: number, op: (i: number) => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint()
  let next = 0
  const lane = async (): Promise<void> => {
    while (next < count) await op(next++)
  }
  await Promise.all(Array.from({ length: WINDOW }, lane))
  return count / (Number(process.hrtime.bigint() - start) / 1e9)
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

interface Served {
  pid: number
  client: TmemClient
  control: TmemControlClient
  /** Runs `work` and returns its result with the daemon's CPU microseconds per op. */
  measure(ops: number, work: () => Promise<number>): Promise<{ rate: number; cpuUs: number }>
  stats(): Promise<DaemonStats>
  close(): Promise<void>
}

let served = 0

/** A daemon in its own process, with the tier when `cluster` is given; its client here. */
async function serve(cluster: TestCluster | null): Promise<Served> {
  const dir = mkdtempSync(join(tmpdir(), 'tmem-bench-remote-'))
  const profile = process.env['BENCH_CPU_PROF']
  const args = [
    ...(profile === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profile]),
    TMEM_BIN,
    'daemon',
    ...['--socket', join(dir, 'c.sock'), '--control-socket', join(dir, 'ctl.sock')],
    ...['--memory', `${LOCAL_PAGES * 4}K`, '--grace', '0', '--log-level', 'warn'],
    '--no-shm',
    ...(cluster === null
      ? []
      : [
          ...['--remote', cluster.url, '--remote-timeout', `${TIMEOUT_MS}ms`],
          ...['--remote-queue', '8192', '--remote-host-id', `bench${served++}`],
        ]),
  ]
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, TMEM_LOOP_RESOLUTION_MS: '1' },
  })
  await listening(child)
  const pid = child.pid!
  const client = await connect({ path: join(dir, 'c.sock') }, { sharedMemory: false })
  const control = await connectControl({ path: join(dir, 'ctl.sock') })
  const stats = (): Promise<DaemonStats> => control.stats()
  if (cluster !== null) while (remoteOf(await stats())?.health !== 'up') await turn(20)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return {
    pid,
    client,
    control,
    stats,
    measure: async (ops, work) => {
      const before = cpuSeconds(pid)
      const result = await work()
      return { rate: result, cpuUs: ((cpuSeconds(pid) - before) * 1e6) / ops }
    },
    close: async () => {
      await client.close()
      await control.close()
      child.kill('SIGTERM')
      await exited
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

function listening(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      out += text
      if (out.includes('clients')) resolve()
    })
    child.once('exit', (code) => reject(new Error(`The daemon exited (${code}): ${out}`)))
  })
}

function turn(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

interface RemotePart {
  health: string
  queued: number
}

function remoteOf(stats: DaemonStats): RemotePart | undefined {
  return (stats.host as unknown as { remote?: RemotePart }).remote
}

interface Loop {
  maxMs: number
  p99Ms: number
}

function loopOf(stats: DaemonStats): Loop {
  const loop = stats.daemon.eventLoop
  return { maxMs: loop?.maxMs ?? NaN, p99Ms: loop?.p99Ms ?? NaN }
}

interface Sample {
  rate: number
  cpuUs: number
}

function mid(samples: Sample[]): Sample {
  return { rate: median(samples.map((s) => s.rate)), cpuUs: median(samples.map((s) => s.cpuUs)) }
}

async function persistentPool(cluster: TestCluster): Promise<Record<string, Sample | Loop>> {
  const count = LOCAL_PAGES * 4
  const put: Sample[] = []
  const get: Sample[] = []
  const loops: Loop[] = []
  const directPut: number[] = []
  const directGet: number[] = []
  // The tier's own client options (remote/cluster.ts), auto-pipelining included.
  const direct = new Cluster(parseRemoteUrl(cluster.url), {
    enableAutoPipelining: true,
    enableOfflineQueue: false,
    slotsRefreshTimeout: TIMEOUT_MS,
    redisOptions: { commandTimeout: TIMEOUT_MS, connectTimeout: TIMEOUT_MS, maxRetriesPerRequest: 1 },
  })
  await new Promise<void>((resolve) => direct.once('ready', () => resolve()))
  for (let round = 0; round < ROUNDS; round++) {
    const s = await serve(cluster)
    const pool = await s.client.newPool({ persistent: true })
    put.push(
      await s.measure(count, () => rate(count, (i) => s.client.put(pool, i >> 4, i & 15, page(i)))),
    )
    get.push(await s.measure(count, () => rate(count, (i) => s.client.get(pool, i >> 4, i & 15))))
    loops.push(loopOf(await s.stats()))
    await s.close()
    const key = (i: number): string => `{bench:direct:${round}:${i >> 4}}`
    directPut.push(
      await rate(count, (i) => direct.hset(key(i), String(i & 15), Buffer.from(page(i)))),
    )
    directGet.push(await rate(count, (i) => direct.hgetBuffer(key(i), String(i & 15))))
    for (let i = 0; i < count; i += 16) await direct.del(key(i))
  }
  await direct.quit()
  return {
    put: mid(put),
    get: mid(get),
    directPut: { rate: median(directPut), cpuUs: NaN },
    directGet: { rate: median(directGet), cpuUs: NaN },
    loop: worst(loops),
  }
}

function worst(loops: Loop[]): Loop {
  return {
    maxMs: Math.max(...loops.map((l) => l.maxMs)),
    p99Ms: Math.max(...loops.map((l) => l.p99Ms)),
  }
}

async function localHits(cluster: TestCluster): Promise<Record<string, Sample>> {
  const count = LOCAL_PAGES / 2
  const result: Record<string, Sample[]> = { withTier: [], without: [] }
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, on] of [
      ['withTier', cluster],
      ['without', null],
    ] as const) {
      const s = await serve(on)
      const pool = await s.client.newPool({ persistent: true })
      await rate(count, (i) => s.client.put(pool, i >> 4, i & 15, page(i)))
      result[name]!.push(
        await s.measure(count * 8, () =>
          rate(count * 8, (i) => s.client.get(pool, (i % count) >> 4, i & 15)),
        ),
      )
      await s.close()
    }
  }
  return { withTier: mid(result['withTier']!), without: mid(result['without']!) }
}

interface Ephemeral {
  hitRate: number
  put: Sample
  get: Sample
  loop: Loop
}

async function ephemeralHits(cluster: TestCluster): Promise<Record<string, Ephemeral>> {
  const count = LOCAL_PAGES * 3
  const out: Record<string, Ephemeral> = {}
  for (const [name, on] of [
    ['withTier', cluster],
    ['without', null],
  ] as const) {
    const runs: Ephemeral[] = []
    for (let round = 0; round < ROUNDS; round++) {
      const s = await serve(on)
      const pool = await s.client.newPool()
      const put = await s.measure(count, async () => {
        const r = await rate(count, (i) => s.client.put(pool, i >> 4, i & 15, page(i)))
        while ((remoteOf(await s.stats())?.queued ?? 0) > 0) await turn(5)
        return r
      })
      let hits = 0
      const get = await s.measure(count, () =>
        rate(count, async (i) => {
          if ((await s.client.get(pool, i >> 4, i & 15)) !== null) hits++
        }),
      )
      runs.push({ hitRate: hits / count, put, get, loop: loopOf(await s.stats()) })
      await s.close()
    }
    out[name] = {
      hitRate: median(runs.map((r) => r.hitRate)),
      put: mid(runs.map((r) => r.put)),
      get: mid(runs.map((r) => r.get)),
      loop: worst(runs.map((r) => r.loop)),
    }
  }
  return out
}

const k = (n: number): string => `${(n / 1000).toFixed(1)} k/s`
const us = (s: Sample): string => `${s.cpuUs.toFixed(1)} µs CPU/op`
const ms = (l: Loop): string => `max ${l.maxMs.toFixed(1)} ms, p99 ${l.p99Ms.toFixed(2)} ms`

function report(
  persistent: Record<string, Sample | Loop>,
  local: Record<string, Sample>,
  ephemeral: Record<string, Ephemeral>,
): void {
  const p = persistent as { put: Sample; get: Sample; directPut: Sample; directGet: Sample }
  const pl = persistent['loop'] as Loop
  const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}x`
  console.log(
    `persistent 4x budget: put ${k(p.put.rate)} (${us(p.put)}) vs ioredis ${k(p.directPut.rate)}` +
      ` = ${ratio(p.put.rate, p.directPut.rate)}; get ${k(p.get.rate)} (${us(p.get)}) vs ` +
      `${k(p.directGet.rate)} = ${ratio(p.get.rate, p.directGet.rate)}; daemon loop ${ms(pl)}`,
  )
  const lw = local['withTier']!
  const lo = local['without']!
  console.log(
    `local hits: ${k(lw.rate)} (${us(lw)}) with the tier vs ${k(lo.rate)} (${us(lo)}) ` +
      `without = ${ratio(lw.rate, lo.rate)}`,
  )
  const ew = ephemeral['withTier']!
  const eo = ephemeral['without']!
  console.log(
    `ephemeral 3x memory: hit rate ${(ew.hitRate * 100).toFixed(1)} % vs ` +
      `${(eo.hitRate * 100).toFixed(1)} % without = ${ratio(ew.hitRate, eo.hitRate)}; ` +
      `put ${k(ew.put.rate)} (${us(ew.put)}) vs ${k(eo.put.rate)} (${us(eo.put)}); ` +
      `get ${k(ew.get.rate)} (${us(ew.get)}) vs ${k(eo.get.rate)} (${us(eo.get)}); ` +
      `daemon loop with the tier ${ms(ew.loop)}, without ${ms(eo.loop)}`,
  )
}

async function main(): Promise<void> {
  const cluster = await startCluster()
  if (cluster === null) {
    console.log('bench:remote needs redis-server and redis-cli (apt-get install redis-server)')
    return
  }
  const load = loadavg().map((n) => n.toFixed(2))
  try {
    const persistent = await persistentPool(cluster)
    const local = await localHits(cluster)
    const ephemeral = await ephemeralHits(cluster)
    console.log(
      `remote tier, node ${process.version}, ${new Date().toISOString()}, load ` +
        `${load.join(' ')} before, ${loadavg()
          .map((n) => n.toFixed(2))
          .join(' ')} after`,
    )
    report(persistent, local, ephemeral)
  } finally {
    await cluster.stop()
  }
}

await main()
