/**
 * `npm run bench:remote`: the remote tier (docs/remote.md) against a Redis Cluster on loopback
 * (3 masters, 3 replicas, started here as the tests do), with the daemon in this process so
 * the event-loop delay it measures is the daemon's (the client's work is in it too: an upper
 * bound). Same-run ratios; the machine is shared.
 *
 * 1. Persistent pool 4x the local budget (1024 pages local, 4096 put): put and get rates
 *    through the daemon, and the same pages through ioredis Cluster directly (HSET/HGET of
 *    4 KiB values in one hash per object), both with 64 ops in flight.
 * 2. Local hits: a persistent pool that fits in memory, read back, with the tier and without.
 * 3. Ephemeral working set 3x local memory, put then read once: hit rate with the tier and
 *    without, and the largest event-loop delay during the run with the tier.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { Cluster } from 'ioredis'
import pino from 'pino'
import { connect, type TmemClient } from '../src/client/client.js'
import { Host } from '../src/engine/host.js'
import { parseRemoteUrl, RemoteStore, RemoteTier } from '../src/remote/mod.js'
import { Daemon } from '../src/server/daemon.js'
import type { HostLike } from '../src/server/host-like.js'
import { startCluster, type TestCluster } from '../test/helpers/redis-cluster.js'

const LOCAL_PAGES = 1024
const WINDOW = 64
const ROUNDS = 3

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
  client: TmemClient
  tier: RemoteTier | null
  close(): Promise<void>
}

let served = 0

async function serve(cluster: TestCluster | null): Promise<Served> {
  const dir = mkdtempSync(join(tmpdir(), 'tmem-bench-remote-'))
  const log = pino({ level: 'silent' })
  const host = new Host({ pages: LOCAL_PAGES })
  let tier: RemoteTier | null = null
  if (cluster !== null) {
    const store = new RemoteStore({ seeds: parseRemoteUrl(cluster.url), timeoutMs: 1000, log })
    await store.ready(5000)
    tier = new RemoteTier(host, {
      store,
      hostId: `bench${served++}`,
      replicas: 0,
      defaultPolicy: 2,
      queueMax: 8192,
      log,
    })
  }
  const target: HostLike = tier ?? host
  const daemon = await Daemon.start(
    target,
    {
      socketPath: join(dir, 'c.sock'),
      controlSocketPath: null,
      listen: null,
      controlListen: null,
      tokenFile: null,
      metrics: null,
      graceMs: 0,
      acceptV0: false,
      sharedMemory: false,
      connectionCountMax: 16,
      controlConnectionCountMax: 4,
    },
    log,
  )
  const client = await connect({ path: join(dir, 'c.sock') }, { sharedMemory: false })
  return {
    client,
    tier,
    close: async () => {
      await client.close()
      await daemon.close()
      await tier?.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

async function persistentPool(cluster: TestCluster): Promise<Record<string, number>> {
  const count = LOCAL_PAGES * 4
  const tierPut: number[] = []
  const tierGet: number[] = []
  const directPut: number[] = []
  const directGet: number[] = []
  const direct = new Cluster(parseRemoteUrl(cluster.url), { enableAutoPipelining: true })
  for (let round = 0; round < ROUNDS; round++) {
    const s = await serve(cluster)
    const pool = await s.client.newPool({ persistent: true })
    tierPut.push(await rate(count, (i) => s.client.put(pool, i >> 4, i & 15, page(i))))
    tierGet.push(await rate(count, (i) => s.client.get(pool, i >> 4, i & 15)))
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
    tierPut: median(tierPut),
    tierGet: median(tierGet),
    directPut: median(directPut),
    directGet: median(directGet),
  }
}

async function localHits(cluster: TestCluster): Promise<Record<string, number>> {
  const count = LOCAL_PAGES / 2
  const result: Record<string, number[]> = { withTier: [], without: [] }
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, on] of [
      ['withTier', cluster],
      ['without', null],
    ] as const) {
      const s = await serve(on)
      const pool = await s.client.newPool({ persistent: true })
      await rate(count, (i) => s.client.put(pool, i >> 4, i & 15, page(i)))
      result[name]!.push(await rate(count * 8, (i) => s.client.get(pool, (i % count) >> 4, i & 15)))
      await s.close()
    }
  }
  return { withTier: median(result['withTier']!), without: median(result['without']!) }
}

async function ephemeralHits(cluster: TestCluster): Promise<Record<string, number>> {
  const count = LOCAL_PAGES * 3
  const out: Record<string, number> = {}
  for (const [name, on] of [
    ['withTier', cluster],
    ['without', null],
  ] as const) {
    const s = await serve(on)
    const pool = await s.client.newPool()
    const delay = monitorEventLoopDelay({ resolution: 1 })
    delay.enable()
    await rate(count, (i) => s.client.put(pool, i >> 4, i & 15, page(i)))
    while ((s.tier?.queue.length ?? 0) > 0) await new Promise((resolve) => setImmediate(resolve))
    let hits = 0
    await rate(count, async (i) => {
      if ((await s.client.get(pool, i >> 4, i & 15)) !== null) hits++
    })
    delay.disable()
    out[`${name}HitRate`] = hits / count
    out[`${name}MaxDelayMs`] = delay.max / 1e6
    await s.close()
  }
  return out
}

async function main(): Promise<void> {
  const cluster = await startCluster()
  if (cluster === null) {
    console.log('bench:remote needs redis-server and redis-cli (apt-get install redis-server)')
    return
  }
  try {
    const persistent = await persistentPool(cluster)
    const local = await localHits(cluster)
    const ephemeral = await ephemeralHits(cluster)
    const k = (n: number): string => `${(n / 1000).toFixed(1)} k/s`
    console.log(`remote tier, node ${process.version}, ${new Date().toISOString()}`)
    console.log(
      `persistent 4x budget: put ${k(persistent.tierPut!)} vs ioredis ${k(persistent.directPut!)} ` +
        `(${(persistent.tierPut! / persistent.directPut!).toFixed(2)}x); get ${k(persistent.tierGet!)} ` +
        `vs ${k(persistent.directGet!)} (${(persistent.tierGet! / persistent.directGet!).toFixed(2)}x)`,
    )
    console.log(
      `local hits: ${k(local.withTier!)} with the tier vs ${k(local.without!)} without ` +
        `(${(local.withTier! / local.without!).toFixed(2)}x)`,
    )
    console.log(
      `ephemeral 3x memory: hit rate ${(ephemeral.withTierHitRate! * 100).toFixed(1)} % vs ` +
        `${(ephemeral.withoutHitRate! * 100).toFixed(1)} % without ` +
        `(${(ephemeral.withTierHitRate! / ephemeral.withoutHitRate!).toFixed(2)}x); ` +
        `max event-loop delay ${ephemeral.withTierMaxDelayMs!.toFixed(1)} ms with the tier, ` +
        `${ephemeral.withoutMaxDelayMs!.toFixed(1)} ms without`,
    )
  } finally {
    await cluster.stop()
  }
}

await main()
