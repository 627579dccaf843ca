/**
 * The bound on ops waiting on the network (server/deferred-ops.ts): a client with 1000
 * persistent puts in flight that overflow into a cluster whose masters hold every write
 * (CLIENT PAUSE ... WRITE: no failover, the writes just wait). The daemon must stop reading
 * that connection at DEFERRED_PER_CONNECTION_MAX ops, keep serving other clients, and answer
 * every op once the cluster takes writes again. The oracle: the bound's constant, and a map of
 * the pages put (each reads back byte for byte).
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { connect, type TmemClient } from '../../src/client/client.js'
import { connectControl, type TmemControlClient } from '../../src/client/control.js'
import type { RemoteSection } from '../../src/remote/mod.js'
import { DEFERRED_PER_CONNECTION_MAX } from '../../src/server/deferred-ops.js'
import { type DaemonHandle, startDaemon, waitFor } from '../helpers/daemon.js'
import { clusterUnavailable, startCluster, type TestCluster } from '../helpers/redis-cluster.js'
import { lcgPage } from '../helpers/remote-pages.js'

const unavailable = clusterUnavailable()
if (unavailable !== null) console.log(`# remote bound tests skipped: ${unavailable}`)

const PUTS = 1000

interface Load {
  deferred: number
  queued: number
}

async function load(control: TmemControlClient): Promise<Load> {
  const stats = await control.stats()
  const remote = (stats.host as typeof stats.host & { remote: RemoteSection }).remote
  return { deferred: stats.daemon.deferredOps ?? -1, queued: remote.queued }
}

void describe(
  'remote tier: ops waiting on the network are bounded per connection',
  { skip: unavailable ?? false, timeout: 120_000 },
  () => {
    let cluster: TestCluster
    let daemon: DaemonHandle
    let control: TmemControlClient
    const clients: TmemClient[] = []

    const pauseWrites = (on: boolean): Promise<string[]> =>
      Promise.all(
        cluster.nodes.map((node) =>
          on
            ? cluster.cli(node.port, 'CLIENT', 'PAUSE', '60000', 'WRITE')
            : cluster.cli(node.port, 'CLIENT', 'UNPAUSE'),
        ),
      )

    before(async () => {
      const started = await startCluster()
      assert.ok(started !== null)
      cluster = started
      // A deadline longer than the test: every put waits for the cluster, none times out.
      daemon = await startDaemon({
        args: ['--memory', '1M', '--remote', cluster.url, '--remote-timeout', '100s'],
      })
      control = await connectControl({ path: daemon.controlPath })
      await waitFor(async () => (await control.stats()).host.clients !== undefined)
    })

    after(async () => {
      for (const client of clients) await client.close()
      await control?.close()
      if (cluster !== undefined) await pauseWrites(false).catch(() => undefined)
      await daemon?.stop()
      await cluster?.stop()
    })

    void test('a flood of remote puts holds at most the bound; every put is answered', async () => {
      const flooder = await connect({ path: daemon.socketPath }, { sharedMemory: false })
      const other = await connect({ path: daemon.socketPath }, { sharedMemory: false })
      clients.push(flooder, other)
      const pool = await flooder.newPool({ persistent: true })
      const otherPool = await other.newPool()
      // The tier is up (it answered once) before the cluster stops taking writes.
      await waitFor(async () => {
        const stats = await control.stats()
        return (stats.host as typeof stats.host & { remote: RemoteSection }).remote.up
      })
      await pauseWrites(true)
      const oracle = new Map<number, Uint8Array>()
      const puts: Promise<boolean>[] = []
      for (let i = 0; i < PUTS; i++) {
        const bytes = lcgPage(i * 7919 + 17)
        oracle.set(i, bytes)
        puts.push(flooder.put(pool, i >> 4, i & 15, bytes))
      }
      // The daemon reads until the bound and no further while the cluster holds the writes.
      await waitFor(async () => (await load(control)).deferred >= DEFERRED_PER_CONNECTION_MAX)
      for (let look = 0; look < 5; look++) {
        const now = await load(control)
        assert.equal(now.deferred, DEFERRED_PER_CONNECTION_MAX)
        // Queued changes: the held puts and at most one index SADD per object.
        assert.ok(now.queued <= DEFERRED_PER_CONNECTION_MAX * 2, `${now.queued} queued`)
        // Another client is served meanwhile: a miss answered locally.
        assert.equal(await other.get(otherPool, look, 0), null)
      }
      await pauseWrites(false)
      const answered = await Promise.all(puts)
      assert.deepEqual(answered, new Array<boolean>(PUTS).fill(true))
      assert.equal((await load(control)).deferred, 0)
      for (let i = 0; i < PUTS; i += 37) {
        const back = await flooder.get(pool, i >> 4, i & 15)
        assert.deepEqual(back, oracle.get(i), `page ${i}`)
      }
    })

    void test('with a turn budget of 0, everything that can wait waits, and nothing is lost', async () => {
      // Every turn that did remote work defers the rest: one command issued per turn, a Redis
      // connection paused after each read, a client's next frame left for the check phase.
      const strict = await startDaemon({
        args: ['--memory', '1M', '--remote', cluster.url, '--remote-turn-budget', '0'],
      })
      const strictControl = await connectControl({ path: strict.controlPath })
      const client = await connect({ path: strict.socketPath }, { sharedMemory: false })
      try {
        const remoteOf = async (): Promise<RemoteSection> => {
          const stats = await strictControl.stats()
          return (stats.host as typeof stats.host & { remote: RemoteSection }).remote
        }
        await waitFor(async () => (await remoteOf()).up)
        const pool = await client.newPool({ persistent: true })
        const pages = Array.from({ length: 600 }, (_, i) => lcgPage(i * 104729 + 3))
        // 600 pages against 256 of local memory: most overflow, all in flight at once.
        const put = await Promise.all(
          pages.map((page, i) => client.put(pool, i >> 4, i & 15, page)),
        )
        assert.deepEqual(put, new Array<boolean>(pages.length).fill(true))
        const back = await Promise.all(pages.map((_, i) => client.get(pool, i >> 4, i & 15)))
        back.forEach((page, i) => assert.deepEqual(page, pages[i], `page ${i}`))
        const remote = await remoteOf()
        assert.ok(remote.persistentPages > 0, 'some pages overflowed')
        assert.ok(remote.turns.deferredIssue > 0, `issue deferred ${remote.turns.deferredIssue}`)
        assert.ok(remote.turns.deferredReplies > 0, `replies ${remote.turns.deferredReplies}`)
      } finally {
        await client.close()
        await strictControl.close()
        await strict.stop()
      }
    })
  },
)
