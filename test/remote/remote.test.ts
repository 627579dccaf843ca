/**
 * The remote tier against a real Redis Cluster on loopback (3 masters, 3 replicas), one
 * cluster for the whole file. The oracle is a plain map of what each test put: every page a
 * get returns must be the last one put there (never an older copy), and the counts follow
 * from the memory budget (256 pages with --memory 1M).
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { connect, type TmemClient } from '../../src/client/client.js'
import { connectControl } from '../../src/client/control.js'
import type { RemoteSection } from '../../src/remote/mod.js'
import { execFileSync } from 'node:child_process'
import { type DaemonHandle, startDaemon, TMEM_BIN, waitFor } from '../helpers/daemon.js'
import { clusterUnavailable, startCluster, type TestCluster } from '../helpers/redis-cluster.js'
import { lcgPage } from '../helpers/remote-pages.js'
import { killShmClientMidBatch } from '../helpers/doomed-client.js'

const unavailable = clusterUnavailable()
if (unavailable !== null) console.log(`# remote tier tests skipped: ${unavailable}`)

const LOCAL_PAGES = 256

/** A page no other (oid, index, version) has: 1024 words from a small LCG. */
function page(oid: number, index: number, version = 1): Uint8Array {
  return lcgPage(oid * 7919 + index * 104729 + version * 1299709)
}

interface Remote {
  remote: RemoteSection
  pools: { poolId: number; pages: number; remotePages: number }[]
}

async function remoteStats(daemon: DaemonHandle): Promise<Remote> {
  const control = await connectControl({ path: daemon.controlPath })
  try {
    const stats = await control.stats()
    const host = stats.host as typeof stats.host & { remote: RemoteSection }
    const pools = stats.host.clients.flatMap((client) =>
      client.pools.map((pool) => ({
        poolId: pool.poolId,
        pages: pool.pages,
        remotePages: (pool as typeof pool & { remotePages: number }).remotePages,
      })),
    )
    return { remote: host.remote, pools }
  } finally {
    await control.close()
  }
}

/** Waits until every queued change reached the cluster. */
async function drained(daemon: DaemonHandle): Promise<void> {
  await waitFor(async () => (await remoteStats(daemon)).remote.queued === 0)
}

async function clientId(daemon: DaemonHandle, name: string): Promise<number> {
  const control = await connectControl({ path: daemon.controlPath })
  try {
    return (await control.stats()).sessions.find((s) => s.name === name)!.id
  } finally {
    await control.close()
  }
}

async function open(daemon: DaemonHandle, name: string): Promise<TmemClient> {
  return connect({ path: daemon.socketPath }, { name, sharedMemory: false })
}

void describe(
  'remote tier on Redis Cluster',
  { skip: unavailable ?? false, timeout: 120_000 },
  () => {
    let cluster: TestCluster
    let durable: DaemonHandle
    let ephemeral: DaemonHandle
    let local: DaemonHandle
    const daemons: DaemonHandle[] = []

    const daemonOn = async (...extra: string[]): Promise<DaemonHandle> => {
      const daemon = await startDaemon({
        args: ['--memory', '1M', '--remote', cluster.url, '--remote-timeout', '1s', ...extra],
      })
      daemons.push(daemon)
      return daemon
    }

    before(async () => {
      const started = await startCluster()
      assert.ok(started !== null)
      cluster = started
      durable = await daemonOn(
        '--remote-durability',
        'replica',
        '--remote-host-id',
        'durable',
        '--metrics',
        '127.0.0.1:0',
      )
      ephemeral = await daemonOn('--remote-host-id', 'eph')
      local = await daemonOn('--remote-policy', 'off', '--remote-host-id', 'local')
    })

    after(async () => {
      for (const daemon of daemons) await daemon.stop()
      await cluster?.stop()
    })

    void test('a persistent pool 4x the memory: every page put reads back byte for byte', async () => {
      const client = await open(durable, 'p1')
      try {
        const pool = await client.newPool({ persistent: true })
        const oracle = new Map<string, Uint8Array>()
        for (let oid = 0; oid < 64; oid++) {
          const puts: Promise<boolean>[] = []
          for (let index = 0; index < 16; index++) {
            const bytes = page(oid, index)
            oracle.set(`${oid}:${index}`, bytes)
            puts.push(client.put(pool, oid, index, bytes))
          }
          assert.deepEqual(await Promise.all(puts), new Array<boolean>(16).fill(true))
        }
        const { remote, pools } = await remoteStats(durable)
        const stats = pools.find((p) => p.poolId === pool)!
        assert.equal(stats.pages + stats.remotePages, 64 * 16, 'local + remote = pages put')
        assert.ok(stats.pages <= LOCAL_PAGES && stats.remotePages >= 64 * 16 - LOCAL_PAGES)
        assert.equal(remote.health, 'up')
        // tmem list and the metrics show local and remote pages.
        const listed = execFileSync(process.execPath, [
          TMEM_BIN,
          'list',
          '--control-socket',
          durable.controlPath,
        ]).toString()
        assert.match(listed, /remote: {2}cluster up, \d+ pages/)
        const poolLine = listed
          .split('\n')
          .find((line) => line.includes('persistent') && /^\d/.test(line))
        assert.ok(
          poolLine?.includes(` ${stats.pages} `) && poolLine.includes(` ${stats.remotePages} `),
        )
        const metrics = await (
          await fetch(`http://127.0.0.1:${durable.metricsPort}/metrics`)
        ).text()
        assert.match(metrics, /^tmem_remote_up 1$/m)
        // The turn meter and its budget (docs/remote.md "Observing").
        assert.match(metrics, /^tmem_remote_turns_cpu_max_ms \d+(\.\d+)?$/m)
        assert.match(metrics, /^tmem_remote_turns_deferred_issue \d+$/m)
        assert.match(metrics, /^tmem_remote_turns_deferred_replies \d+$/m)
        assert.match(
          metrics,
          new RegExp(`^tmem_pool_remote_pages\\{[^}]*\\} ${stats.remotePages}$`, 'm'),
        )
        // The key layout: object 40 was put after memory filled, so its hash is in the cluster,
        // one field per index, and the pool's index set names it.
        const id = await clientId(durable, 'p1')
        const oid40 = (40).toString(16).padStart(48, '0')
        const port = cluster.nodes[0]!.port
        const key = `{tmem:durable:${id}:${pool}:${oid40}}`
        assert.equal((await cluster.cli(port, '-c', 'hexists', key, '5')).trim(), '1')
        const members = await cluster.cli(
          port,
          '-c',
          'smembers',
          `{tmem:durable:${id}:${pool}}:objects`,
        )
        assert.ok(members.includes(oid40))
        for (const [name, bytes] of oracle) {
          const [oid, index] = name.split(':').map(Number) as [number, number]
          assert.deepEqual(await client.get(pool, oid, index), bytes, `page ${name}`)
        }
        // Remote pages answer to flushes and newer puts like local ones.
        await client.flushPage(pool, 63, 15)
        assert.equal(await client.get(pool, 63, 15), null)
        await client.flushObject(pool, 62)
        for (let index = 0; index < 16; index++)
          assert.equal(await client.get(pool, 62, index), null)
        assert.equal(await client.put(pool, 61, 3, page(61, 3, 2)), true)
        assert.deepEqual(await client.get(pool, 61, 3), page(61, 3, 2))
        assert.equal(await client.put(pool, 61, 4, new Uint8Array(4096)), true)
        assert.deepEqual(await client.get(pool, 61, 4), new Uint8Array(4096))
        const after = (await remoteStats(durable)).pools.find((p) => p.poolId === pool)!
        assert.equal(after.pages + after.remotePages, 64 * 16 - 1 - 16)
        await client.destroyPool(pool)
        await drained(durable)
        // The pool's hashes and its index set went with it.
        assert.equal((await cluster.cli(port, '-c', 'exists', key)).trim(), '0')
      } finally {
        await client.close()
      }
    })

    void test('pipelined ops on remote pages keep their order; other pages go ahead', async () => {
      const client = await open(durable, 'p3')
      try {
        const pool = await client.newPool({ persistent: true })
        for (let oid = 0; oid < 20; oid++) {
          const puts = Array.from({ length: 16 }, (_, i) => client.put(pool, oid, i, page(oid, i)))
          assert.ok((await Promise.all(puts)).every((ok) => ok))
        }
        // Memory is full: these puts go to the cluster; the ops after each are not awaited.
        const replies = await Promise.all([
          client.put(pool, 500, 0, page(500, 0, 1)),
          client.get(pool, 500, 0),
          client.put(pool, 500, 0, page(500, 0, 2)),
          client.get(pool, 500, 0),
          client.flushPage(pool, 500, 0),
          client.get(pool, 500, 0),
          client.put(pool, 501, 0, page(501, 0, 1)),
          client.flushObject(pool, 501),
          client.get(pool, 501, 0),
          client.get(pool, 19, 15),
        ])
        assert.equal(replies[0], true)
        assert.deepEqual(replies[1], page(500, 0, 1))
        assert.equal(replies[2], true)
        assert.deepEqual(replies[3], page(500, 0, 2))
        assert.equal(replies[5], null)
        assert.equal(replies[6], true)
        assert.equal(replies[8], null)
        assert.deepEqual(replies[9], page(19, 15))
        await client.destroyPool(pool)
      } finally {
        await client.close()
      }
    })

    void test('a client over shared memory: remote puts and gets answer through the ring', async () => {
      const client = await connect({ path: durable.socketPath }, { name: 'shm1' })
      try {
        assert.equal(client.sharedMemory.active, true, client.sharedMemory.reason)
        const pool = await client.newPool({ persistent: true })
        const oracle = new Map<string, Uint8Array>()
        // 3x the memory, in batches (no promise per page) and in single ops, mixed.
        for (let oid = 0; oid < 48; oid++) {
          const entries = Array.from({ length: 16 }, (_, index) => ({
            oid,
            index,
            page: page(oid, index, 3),
          }))
          for (const entry of entries) oracle.set(`${oid}:${entry.index}`, entry.page)
          const stored =
            oid % 2 === 0
              ? await client.putMany(pool, entries)
              : await Promise.all(entries.map((e) => client.put(pool, e.oid, e.index, e.page)))
          assert.deepEqual(stored, new Array<boolean>(16).fill(true), `object ${oid}`)
        }
        const { pools } = await remoteStats(durable)
        const stats = pools.find((p) => p.poolId === pool)!
        assert.equal(stats.pages + stats.remotePages, 48 * 16)
        assert.ok(stats.remotePages >= 48 * 16 - LOCAL_PAGES, 'most pages went remote')
        for (let oid = 0; oid < 48; oid += 2) {
          const keys = Array.from({ length: 16 }, (_, index) => ({ oid, index }))
          const got = await client.getMany(pool, keys)
          for (let index = 0; index < 16; index++)
            assert.deepEqual(got[index], oracle.get(`${oid}:${index}`), `page ${oid}:${index}`)
        }
        for (let oid = 1; oid < 48; oid += 2)
          for (let index = 0; index < 16; index += 5)
            assert.deepEqual(await client.get(pool, oid, index), oracle.get(`${oid}:${index}`))
        // Ops on one remote page keep their order through the ring too.
        const replies = await Promise.all([
          client.put(pool, 40, 1, page(40, 1, 4)),
          client.get(pool, 40, 1),
          client.flushPage(pool, 40, 1),
          client.get(pool, 40, 1),
        ])
        assert.equal(replies[0], true)
        assert.deepEqual(replies[1], page(40, 1, 4))
        assert.equal(replies[3], null)
        assert.equal(client.sharedMemory.active, true, 'still on the ring')
        // The ring carried the ops (the daemon counts what its regions served).
        const control = await connectControl({ path: durable.controlPath })
        try {
          const served = (await control.stats()).daemon.shm?.opsServed ?? 0
          assert.ok(served >= 48 * 16 + 24 * 16 + 24 * 4, `${served} ops served from rings`)
        } finally {
          await control.close()
        }
        await client.destroyPool(pool)
      } finally {
        await client.close()
      }
    })

    void test('a shared-memory client killed while its puts wait on the cluster harms only itself', async () => {
      // Batches of 500 pages into 256 pages of memory: from the first, puts go remote.
      const out = await killShmClientMidBatch(durable.socketPath)
      assert.match(out, /^ready \d+ true\n/)
      // Its answers still on their way are dropped with its region; the daemon goes on.
      const control = await connectControl({ path: durable.controlPath })
      try {
        await waitFor(async () => (await control.stats()).daemon.deferredOps === 0)
      } finally {
        await control.close()
      }
      const next = await connect({ path: durable.socketPath }, { name: 'after-kill' })
      try {
        assert.equal(next.sharedMemory.active, true)
        const pool = await next.newPool({ persistent: true })
        const entries = Array.from({ length: 400 }, (_, index) => ({
          oid: 5,
          index,
          page: page(5, index, 9),
        }))
        assert.ok((await next.putMany(pool, entries)).every((ok) => ok))
        const got = await next.getMany(pool, entries)
        got.forEach((bytes, index) => assert.deepEqual(bytes, page(5, index, 9), `page ${index}`))
        await next.destroyPool(pool)
      } finally {
        await next.close()
      }
      assert.equal(durable.process.exitCode, null, 'the daemon is still running')
    })

    void test('ephemeral working set 3x memory: every page gets its second chance', async () => {
      const hits = async (daemon: DaemonHandle): Promise<number> => {
        const client = await open(daemon, 'e1')
        try {
          const pool = await client.newPool()
          for (let oid = 0; oid < 48; oid++) {
            await Promise.all(
              Array.from({ length: 16 }, (_, index) =>
                client.put(pool, oid, index, page(oid, index)),
              ),
            )
          }
          await drained(daemon)
          let found = 0
          for (let oid = 0; oid < 48; oid++) {
            for (let index = 0; index < 16; index++) {
              const got = await client.get(pool, oid, index)
              if (got === null) continue
              assert.deepEqual(got, page(oid, index), 'a hit is the page put')
              found++
            }
          }
          // A private ephemeral get is exclusive: the remote copy went with it.
          assert.equal(await client.get(pool, 0, 0), null)
          return found
        } finally {
          await client.close()
        }
      }
      const withRemote = await hits(ephemeral)
      const without = await hits(local)
      assert.equal(withRemote, 48 * 16)
      assert.ok(without <= LOCAL_PAGES, `no-remote hits ${without}`)
      assert.ok(withRemote >= 2 * without)
    })

    void test('a flush or a newer put never lets an older remote copy come back', async () => {
      const client = await open(ephemeral, 'e2')
      try {
        const pool = await client.newPool()
        const fill = async (from: number): Promise<void> => {
          for (let oid = from; oid < from + 20; oid++) {
            await Promise.all(
              Array.from({ length: 16 }, (_, i) => client.put(pool, oid, i, page(oid, i))),
            )
          }
          await drained(ephemeral)
        }
        await client.put(pool, 1000, 0, page(1000, 0, 1))
        await client.put(pool, 1001, 0, page(1001, 0, 1))
        await fill(0) // both now remote
        await client.put(pool, 1000, 0, page(1000, 0, 2)) // newer put, local
        await client.flushPage(pool, 1001, 0)
        await fill(100) // the newer 1000 is remote too now
        assert.deepEqual(await client.get(pool, 1000, 0), page(1000, 0, 2))
        assert.equal(await client.get(pool, 1001, 0), null)
      } finally {
        await client.close()
      }
    })

    void test('tmem set --remote off keeps a client local', async () => {
      const client = await open(ephemeral, 'e3')
      try {
        const pool = await client.newPool()
        const id = await clientId(ephemeral, 'e3')
        const out = execFileSync(process.execPath, [
          TMEM_BIN,
          'set',
          String(id),
          '--remote',
          'off',
          '--control-socket',
          ephemeral.controlPath,
        ]).toString()
        assert.match(out, /remote off/)
        for (let oid = 0; oid < 20; oid++) {
          await Promise.all(
            Array.from({ length: 16 }, (_, i) => client.put(pool, oid, i, page(oid, i))),
          )
        }
        const mine = (await remoteStats(ephemeral)).pools.find((p) => p.poolId === pool)!
        assert.equal(mine.remotePages, 0)
      } finally {
        await client.close()
      }
    })

    void test('a master killed: replica-acked pages read back after failover; no op hangs', async () => {
      const client = await open(durable, 'p2')
      try {
        const pool = await client.newPool({ persistent: true })
        const oids = Array.from({ length: 40 }, (_, i) => i)
        for (const oid of oids) {
          const puts = Array.from({ length: 16 }, (_, i) =>
            client.put(pool, oid, i, page(oid, i, 7)),
          )
          assert.ok((await Promise.all(puts)).every((ok) => ok))
        }
        const id = await clientId(durable, 'p2')
        const key = `{tmem:durable:${id}:${pool}:${(39).toString(16).padStart(48, '0')}}`
        // Gets during the failover: each settles (a page that is right, or an error).
        const during = cluster.failMasterOf(key)
        const reads: Promise<void>[] = []
        for (const oid of oids.slice(20)) {
          reads.push(
            client.get(pool, oid, 0).then(
              (got) => assert.ok(got === null || Buffer.from(got).equals(page(oid, 0, 7))),
              () => undefined,
            ),
          )
        }
        await Promise.all([during, ...reads])
        // After failover: byte for byte (the slot map refreshes on the first errors).
        await waitFor(async () => {
          try {
            return (await client.get(pool, 39, 0)) !== null
          } catch {
            return false
          }
        })
        for (const oid of oids) {
          for (let i = 0; i < 16; i++) {
            assert.deepEqual(await client.get(pool, oid, i), page(oid, i, 7), `page ${oid}:${i}`)
          }
        }
      } finally {
        await client.close()
      }
    })

    void test('cluster gone: the daemon serves local memory and reports it down', async () => {
      const client = await open(ephemeral, 'e4')
      try {
        const pool = await client.newPool({ persistent: true })
        await client.put(pool, 1, 1, page(1, 1))
        await cluster.stop()
        for (let i = 0; i < LOCAL_PAGES * 2; i++) {
          try {
            await client.put(pool, 2, i, page(2, i))
          } catch {
            // -ENOMEM once memory is full and the cluster cannot take more
          }
        }
        await waitFor(async () => (await remoteStats(ephemeral)).remote.health === 'down')
        assert.deepEqual(await client.get(pool, 1, 1), page(1, 1))
        await assert.rejects(client.put(pool, 3, 0, page(3, 0)), /ENOMEM/)
        const logs = ephemeral.logs().map((line) => String(line['msg']))
        assert.ok(logs.some((msg) => msg.includes('remote cluster down')))
      } finally {
        await client.close()
      }
    })
  },
)

void describe('remote tier, cluster unreachable at start', () => {
  void test('the daemon starts, says so, and serves local memory', async () => {
    const daemon = await startDaemon({
      args: [
        '--memory',
        '1M',
        '--remote',
        'redis-cluster://127.0.0.1:1',
        '--remote-timeout',
        '200ms',
      ],
    })
    try {
      const client = await open(daemon, 'x')
      const pool = await client.newPool({ persistent: true })
      assert.equal(await client.put(pool, 1, 0, page(1, 0)), true)
      assert.deepEqual(await client.get(pool, 1, 0), page(1, 0))
      const { remote } = await remoteStats(daemon)
      assert.equal(remote.health, 'down')
      const logs = daemon.logs().map((line) => String(line['msg']))
      assert.ok(
        logs.some((msg) => msg.includes('cluster unreachable')),
        logs.join('\n'),
      )
      await client.close()
    } finally {
      await daemon.stop()
    }
  })
})
