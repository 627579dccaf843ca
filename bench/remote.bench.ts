/**
 * `npm run bench:remote`: the remote tier (docs/remote.md) against a Redis Cluster on loopback
 * (3 masters, 3 replicas, started here as the tests do). The daemon runs in its own process
 * (`node dist/src/cli/tmem.js daemon --remote redis-cluster://...`, a fresh one per case and
 * round); the load (the tmem client, and the ioredis Cluster client of the direct runs, both
 * with auto-pipelining and the tier's other options) runs in this process. The daemon measures
 * its own event-loop delay (STATS `daemon.eventLoop`, 1 ms resolution here), and the remote
 * work of each turn (STATS `host.remote.turns`: by the wall clock, and bounded by the main
 * thread's CPU time in the turn); its CPU comes from /proc/<pid>/stat, so neither counts the
 * load's work. Only the ephemeral runs also count the loop's gaps and GC pauses in CPU time
 * (TMEM_LOOP_CPU=1: a getrusage a millisecond, about a tenth of the daemon's CPU here, which
 * the throughput runs must not pay when the direct client does not). Same-run ratios; the
 * machine is shared.
 *
 * 1. Persistent pool 4x the local budget (4096 pages local, 16,384 put): put and get rates
 *    through the daemon, and the same pages through ioredis Cluster directly (HSET/HGET of
 *    4 KiB values in one hash per object), both with 64 ops in flight. Here the Redis
 *    servers' CPU is read too, and each path's CPU per page over all its processes (daemon,
 *    client, servers) is printed, with their ratio: the machine's two cores run all of them,
 *    so if both paths kept both cores busy, their rates would be in that ratio ("ratio if
 *    CPU-bound"). A path that leaves a core idle (waiting on round trips) does better than
 *    its share, so the measured ratio can be above it.
 * 2. Local hits: a persistent pool that fits in memory (2048 pages), each page read 32 times,
 *    with the tier and without.
 * 3. Ephemeral working set 3x local memory, put then read once: hit rate with the tier and
 *    without, and the daemon's largest event-loop delay over its whole run.
 *
 * Every measurement lasts about a second (it was a quarter of that with 1024 local pages:
 * the first batches, a collection or a scheduling hiccup then moved a round by a third), and
 * five rounds are run by default (BENCH_ROUNDS).
 *
 * The tmem client maps a shared-memory region, as local clients do by default (docs/protocol.md,
 * "Shared memory"); BENCH_SOCKET=1 sends its ops over the Unix socket instead.
 *
 * BENCH_CPU_PROF=DIR writes a V8 CPU profile of every daemon into DIR (node --cpu-prof);
 * BENCH_NODE_FLAGS adds node flags to the daemons (e.g. --trace-gc), BENCH_TMEM_ARGS daemon
 * options (`--remote-turn-budget 600`), BENCH_DAEMON_OUT=FILE appends their standard output to
 * FILE.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Cluster } from 'ioredis'
import { connect, type TmemClient } from '../src/client/client.js'
import { connectControl, type TmemControlClient } from '../src/client/control.js'
import type { DaemonStats } from '../src/protocol/stats.js'
import { DAEMON_NODE_FLAGS } from '../src/cli/node-flags.js'
import type { BusySection } from '../src/server/event-loop.js'
import { parseRemoteUrl } from '../src/remote/mod.js'
import type { TurnsSection, TurnWork } from '../src/remote/turns.js'
import { startCluster, type TestCluster } from '../test/helpers/redis-cluster.js'
import { cpuSeconds } from './peers/servers.js'

const LOCAL_PAGES = 4096
const LOCAL_READS = 32
const WINDOW = 64
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 5)
const TIMEOUT_MS = 1000
/** BENCH_SOCKET=1: the tmem client talks over the socket only (no shared-memory region). */
const SOCKET_ONLY = process.env['BENCH_SOCKET'] === '1'
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
  /**
   * Runs `work` and returns its result with the daemon's CPU microseconds per op, and with
   * `loop`, the daemon's event-loop delay over the run (idle seconds before and after).
   */
  measure(ops: number, work: () => Promise<number>, loop?: boolean): Promise<Sample>
  stats(): Promise<DaemonStats>
  close(): Promise<void>
}

let served = 0

/** A daemon in its own process, with the tier when `cluster` is given; its client here. */
async function serve(cluster: TestCluster | null, cpuWatch = true): Promise<Served> {
  const dir = mkdtempSync(join(tmpdir(), 'tmem-bench-remote-'))
  const profile = process.env['BENCH_CPU_PROF']
  const flags = process.env['BENCH_NODE_FLAGS']
  const args = [
    ...(profile === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profile]),
    ...DAEMON_NODE_FLAGS,
    ...(flags === undefined ? [] : flags.split(' ')),
    TMEM_BIN,
    'daemon',
    ...['--socket', join(dir, 'c.sock'), '--control-socket', join(dir, 'ctl.sock')],
    ...['--memory', `${LOCAL_PAGES * 4}K`, '--grace', '0', '--log-level', 'warn'],
    ...(SOCKET_ONLY ? ['--no-shm'] : []),
    // For A/B runs of daemon options (`--remote-turn-budget 600`); none by default.
    ...(process.env['BENCH_TMEM_ARGS'] ?? '').split(' ').filter((word) => word !== ''),
    ...(cluster === null
      ? []
      : [
          ...['--remote', cluster.url, '--remote-timeout', `${TIMEOUT_MS}ms`],
          ...['--remote-host-id', `bench${served++}`],
        ]),
  ]
  const nice = process.env['BENCH_NICE']
  const command = nice === undefined ? process.execPath : 'nice'
  const argv = nice === undefined ? args : ['-n', nice, process.execPath, ...args]
  const child = spawn(command, argv, {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: {
      ...process.env,
      TMEM_LOOP_RESOLUTION_MS: '1',
      ...(cpuWatch ? { TMEM_LOOP_CPU: '1' } : {}),
    },
  })
  await listening(child)
  const log = process.env['BENCH_DAEMON_OUT']
  if (log !== undefined) child.stdout?.pipe(createWriteStream(log, { flags: 'a' }))
  const pid = child.pid!
  const client = await connect({ path: join(dir, 'c.sock') }, { sharedMemory: !SOCKET_ONLY })
  if (!SOCKET_ONLY && !client.sharedMemory.active)
    throw new Error(`No shared memory: ${client.sharedMemory.reason} (BENCH_SOCKET=1 skips it)`)
  const control = await connectControl({ path: join(dir, 'ctl.sock') })
  const stats = (): Promise<DaemonStats> => control.stats()
  if (cluster !== null) while (remoteOf(await stats())?.health !== 'up') await turn(20)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return {
    pid,
    client,
    control,
    stats,
    measure: async (ops, work, loop = false) => {
      const delays = loop ? await watchLoop(stats) : null
      const before = cpuSeconds(pid)
      const client = await here(ops, work)
      const cpuUs = ((cpuSeconds(pid) - before) * 1e6) / ops
      const watched = delays === null ? {} : { loop: await delays() }
      return { rate: client.rate, cpuUs, clientUs: client.cpuUs, ...watched }
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
  turns?: TurnsSection
}

function remoteOf(stats: DaemonStats): RemotePart | undefined {
  return (stats.host as unknown as { remote?: RemotePart }).remote
}

interface Loop {
  maxMs: number
  p99Ms: number
  /** The largest delay counted in the daemon's CPU time (not the OS's scheduling). */
  busyMs: number
  /** The longest garbage collection pause. */
  gcMs: number
  /** The turn with the most remote work (the tier's own timing, STATS host.remote.turns). */
  remote: TurnWork
  /**
   * The turn with the largest remote work bounded by the main thread's CPU time in it
   * (`cpuMs`), its work by kind by the wall clock, and the GC pauses in its span (`gcMs`,
   * TMEM_LOOP_CPU=1 only).
   */
  remoteCpu: TurnWork
  /** Work the turn budget left for a later turn: issue stops, paused reply reads. */
  deferredIssue: number
  deferredReplies: number
}

/**
 * Watches the daemon's event-loop delay: the daemon reports each full second's largest delay
 * and 99th percentile (STATS daemon.eventLoop); polled four times a second from an idle second
 * before the run to a second after it, so every second of the run is seen. The result's
 * function ends the watch and returns the largest of each.
 */
async function watchLoop(stats: () => Promise<DaemonStats>): Promise<() => Promise<Loop>> {
  const seen: Loop = {
    maxMs: 0,
    p99Ms: 0,
    busyMs: 0,
    gcMs: 0,
    remote: noTurn(),
    remoteCpu: noTurn(),
    deferredIssue: 0,
    deferredReplies: 0,
  }
  const look = async (): Promise<void> => {
    const snapshot = await stats()
    const loop = snapshot.daemon.eventLoop as
      (NonNullable<DaemonStats['daemon']['eventLoop']> & BusySection) | undefined
    seen.maxMs = Math.max(seen.maxMs, loop?.lastSecondMaxMs ?? NaN)
    seen.p99Ms = Math.max(seen.p99Ms, loop?.lastSecondP99Ms ?? NaN)
    seen.busyMs = Math.max(seen.busyMs, loop?.lastSecondBusyMaxMs ?? NaN)
    seen.gcMs = Math.max(seen.gcMs, loop?.lastSecondGcMaxMs ?? NaN)
    const turns = remoteOf(snapshot)?.turns
    if (turns !== undefined && turns.lastSecond.totalMs > seen.remote.totalMs)
      seen.remote = turns.lastSecond
    if (turns !== undefined && turns.lastSecondCpuTurn.cpuMs > seen.remoteCpu.cpuMs)
      seen.remoteCpu = turns.lastSecondCpuTurn
    seen.deferredIssue = turns?.deferredIssue ?? 0
    seen.deferredReplies = turns?.deferredReplies ?? 0
  }
  await turn(1100)
  let watching = true
  const poller = (async () => {
    while (watching) {
      await look()
      await turn(250)
    }
  })()
  return async () => {
    await turn(1100)
    watching = false
    await poller
    await look()
    return seen
  }
}

interface Sample {
  rate: number
  /** CPU µs per op of the daemon (the direct runs: of this process, the ioredis client). */
  cpuUs: number
  /** Through the daemon: CPU µs per op of this process (the tmem client). */
  clientUs?: number
  /** CPU µs per op of the six Redis servers (the persistent case only). */
  clusterUs?: number
  loop?: Loop
}

function mid(samples: Sample[]): Sample {
  const loops = samples.flatMap((s) => (s.loop === undefined ? [] : [s.loop]))
  return {
    rate: median(samples.map((s) => s.rate)),
    cpuUs: median(samples.map((s) => s.cpuUs)),
    clientUs: median(samples.map((s) => s.clientUs ?? NaN)),
    clusterUs: median(samples.map((s) => s.clusterUs ?? NaN)),
    ...(loops.length === 0 ? {} : { loop: worst(loops) }),
  }
}

/**
 * Warms the daemon's code paths up (its JIT) with the run's own ops on a pool destroyed
 * after, so the measured run starts on compiled code as the direct client's later rounds do.
 */
async function warmUp(s: Served, persistent: boolean, count: number): Promise<void> {
  const pool = await s.client.newPool({ persistent })
  await rate(count, (i) => s.client.put(pool, i >> 4, i & 15, page(i)))
  await rate(count, (i) => s.client.get(pool, i >> 4, i & 15))
  await s.client.destroyPool(pool)
  while ((remoteOf(await s.stats())?.queued ?? 0) > 0) await turn(5)
}

async function persistentPool(cluster: TestCluster): Promise<Record<string, Sample>> {
  const count = LOCAL_PAGES * 4
  const put: Sample[] = []
  const get: Sample[] = []
  const directPut: Sample[] = []
  const directGet: Sample[] = []
  // The tier's own client options (remote/cluster.ts), auto-pipelining included.
  const direct = new Cluster(parseRemoteUrl(cluster.url), {
    enableAutoPipelining: true,
    enableOfflineQueue: false,
    slotsRefreshTimeout: TIMEOUT_MS,
    redisOptions: {
      commandTimeout: TIMEOUT_MS,
      connectTimeout: TIMEOUT_MS,
      maxRetriesPerRequest: 1,
    },
  })
  await new Promise<void>((resolve) => direct.once('ready', () => resolve()))
  for (let round = 0; round < ROUNDS; round++) {
    const s = await serve(cluster, false)
    await warmUp(s, true, count)
    const pool = await s.client.newPool({ persistent: true })
    const putAll = (): Promise<number> =>
      rate(count, (i) => s.client.put(pool, i >> 4, i & 15, page(i)))
    put.push(await withCluster(cluster, count, () => s.measure(count, putAll, true)))
    const getAll = (): Promise<number> => rate(count, (i) => s.client.get(pool, i >> 4, i & 15))
    get.push(await withCluster(cluster, count, () => s.measure(count, getAll, true)))
    await s.close()
    const key = (i: number): string => `{bench:direct:${round}:${i >> 4}}`
    const putDirect = (): Promise<number> =>
      rate(count, (i) => direct.hset(key(i), String(i & 15), Buffer.from(page(i))))
    directPut.push(await withCluster(cluster, count, () => here(count, putDirect)))
    const getDirect = (): Promise<number> =>
      rate(count, (i) => direct.hgetBuffer(key(i), String(i & 15)))
    directGet.push(await withCluster(cluster, count, () => here(count, getDirect)))
    for (let i = 0; i < count; i += 16) await direct.del(key(i))
  }
  await direct.quit()
  return {
    put: mid(put),
    get: mid(get),
    directPut: mid(directPut),
    directGet: mid(directGet),
  }
}

/** `measure`'s sample with the Redis servers' CPU microseconds per op added (`clusterUs`). */
async function withCluster(
  cluster: TestCluster,
  ops: number,
  measure: () => Promise<Sample>,
): Promise<Sample> {
  const cpu = (): number =>
    cluster.nodes.reduce((sum, node) => sum + cpuSeconds(node.process.pid ?? 0), 0)
  const before = cpu()
  const sample = await measure()
  return { ...sample, clusterUs: ((cpu() - before) * 1e6) / ops }
}

/** `work`'s result with this process's CPU microseconds per op (the direct client's). */
async function here(ops: number, work: () => Promise<number>): Promise<Sample> {
  const before = process.cpuUsage()
  const result = await work()
  const used = process.cpuUsage(before)
  return { rate: result, cpuUs: (used.user + used.system) / ops }
}

function worst(loops: Loop[]): Loop {
  return {
    maxMs: Math.max(...loops.map((l) => l.maxMs)),
    p99Ms: Math.max(...loops.map((l) => l.p99Ms)),
    busyMs: Math.max(...loops.map((l) => l.busyMs)),
    gcMs: Math.max(...loops.map((l) => l.gcMs)),
    remote: loops.map((l) => l.remote).reduce((a, b) => (b.totalMs > a.totalMs ? b : a)),
    remoteCpu: loops.map((l) => l.remoteCpu).reduce((a, b) => (b.cpuMs > a.cpuMs ? b : a)),
    deferredIssue: Math.max(...loops.map((l) => l.deferredIssue)),
    deferredReplies: Math.max(...loops.map((l) => l.deferredReplies)),
  }
}

function noTurn(): TurnWork {
  return { totalMs: 0, opsMs: 0, issueMs: 0, repliesMs: 0, cpuMs: 0, gcMs: 0 }
}

async function localHits(cluster: TestCluster): Promise<Record<string, Sample>> {
  const count = LOCAL_PAGES / 2
  const result: Record<string, Sample[]> = { withTier: [], without: [] }
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, on] of [
      ['withTier', cluster],
      ['without', null],
    ] as const) {
      const s = await serve(on, false)
      await warmUp(s, true, count)
      const pool = await s.client.newPool({ persistent: true })
      await rate(count, (i) => s.client.put(pool, i >> 4, i & 15, page(i)))
      // Each page read LOCAL_READS times: about a second at these rates.
      result[name]!.push(
        await s.measure(count * LOCAL_READS, () =>
          rate(count * LOCAL_READS, (i) => s.client.get(pool, (i % count) >> 4, i & 15)),
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
      await warmUp(s, false, count)
      const pool = await s.client.newPool()
      const putAll = async (): Promise<number> => {
        const r = await rate(count, (i) => s.client.put(pool, i >> 4, i & 15, page(i)))
        while ((remoteOf(await s.stats())?.queued ?? 0) > 0) await turn(5)
        return r
      }
      const put = await s.measure(count, putAll, true)
      let hits = 0
      const getAll = (): Promise<number> =>
        rate(count, async (i) => {
          if ((await s.client.get(pool, i >> 4, i & 15)) !== null) hits++
        })
      const get = await s.measure(count, getAll, true)
      runs.push({ hitRate: hits / count, put, get })
      await s.close()
    }
    out[name] = {
      hitRate: median(runs.map((r) => r.hitRate)),
      put: mid(runs.map((r) => r.put)),
      get: mid(runs.map((r) => r.get)),
    }
  }
  return out
}

const k = (n: number): string => `${(n / 1000).toFixed(1)} k/s`
const us = (s: Sample): string =>
  `${s.cpuUs.toFixed(1)}${Number.isNaN(s.clientUs) ? '' : ` + client ${s.clientUs!.toFixed(1)}`} µs CPU/op`
const ms = (s: Sample): string =>
  s.loop === undefined
    ? ''
    : `, loop max ${s.loop.maxMs.toFixed(1)} ms p99 ${s.loop.p99Ms.toFixed(1)} ms` +
      ` busy max ${s.loop.busyMs.toFixed(1)} ms gc max ${s.loop.gcMs.toFixed(1)} ms` +
      remoteTurn(s.loop)

/** The largest turn's remote work, split by kind (absent without the tier). */
function remoteTurn(loop: Loop): string {
  const t = loop.remote
  const c = loop.remoteCpu
  if (t.totalMs === 0) return ''
  const f = (n: number): string => n.toFixed(2)
  return (
    ` remote turn max ${f(t.totalMs)} ms (ops ${f(t.opsMs)} issue ${f(t.issueMs)}` +
    ` replies ${f(t.repliesMs)}; bounded by CPU ${f(t.cpuMs)}; GC pauses in it ${f(t.gcMs)})` +
    `, max bounded by CPU ${f(c.cpuMs)} ms (ops ${f(c.opsMs)} issue ${f(c.issueMs)}` +
    ` replies ${f(c.repliesMs)}; GC pauses in it ${f(c.gcMs)})` +
    `, deferred: issue ${loop.deferredIssue} replies ${loop.deferredReplies}`
  )
}

function report(
  persistent: Record<string, Sample>,
  local: Record<string, Sample>,
  ephemeral: Record<string, Ephemeral>,
): void {
  const p = persistent as { put: Sample; get: Sample; directPut: Sample; directGet: Sample }
  const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}x`
  console.log(
    `persistent 4x budget: put ${k(p.put.rate)} (${us(p.put)}${ms(p.put)}) vs ioredis ${k(p.directPut.rate)}` +
      ` (client ${us(p.directPut)})` +
      ` = ${ratio(p.put.rate, p.directPut.rate)}; get ${k(p.get.rate)} (${us(p.get)}${ms(p.get)})` +
      ` vs ${k(p.directGet.rate)} (client ${us(p.directGet)}) = ` +
      `${ratio(p.get.rate, p.directGet.rate)}`,
  )
  // Every process on this 2-core machine is on the path: if both paths kept the two cores
  // busy, their rates would be in the ratio of the CPU each spends on a page, all summed.
  const all = (x: Sample): number =>
    x.cpuUs + (Number.isNaN(x.clientUs) ? 0 : x.clientUs!) + x.clusterUs!
  const line = (op: string, tier: Sample, direct: Sample): string =>
    `${op} ${all(tier).toFixed(1)} µs (daemon ${tier.cpuUs.toFixed(1)}, client ` +
    `${tier.clientUs!.toFixed(1)}, Redis ${tier.clusterUs!.toFixed(1)}) vs direct ` +
    `${all(direct).toFixed(1)} µs (client ${direct.cpuUs.toFixed(1)}, Redis ` +
    `${direct.clusterUs!.toFixed(1)}): ratio if CPU-bound ${ratio(all(direct), all(tier))}`
  console.log(
    `CPU per page, all processes: ${line('put', p.put, p.directPut)}; ` +
      line('get', p.get, p.directGet),
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
      `with the tier put ${k(ew.put.rate)} (${us(ew.put)}${ms(ew.put)}), ` +
      `get ${k(ew.get.rate)} (${us(ew.get)}${ms(ew.get)}); without put ${k(eo.put.rate)} ` +
      `(${us(eo.put)}${ms(eo.put)}), get ${k(eo.get.rate)} (${us(eo.get)}${ms(eo.get)})`,
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
          .join(' ')} after, tmem client over ${SOCKET_ONLY ? 'the socket' : 'shared memory'}`,
    )
    report(persistent, local, ephemeral)
  } finally {
    await cluster.stop()
  }
}

await main()
