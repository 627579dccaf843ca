/**
 * Live migration of a client with remote pages, against a real Redis Cluster on loopback (one
 * cluster for the file). The oracle is a plain map of what was put. Between two daemons on
 * the same cluster the keys stay where they are: the cluster's key count (DBSIZE summed over
 * the masters) is the same before and after, no key appears in the target's namespace, and
 * the source lists no remote page afterwards; every page still reads back through the moved
 * client. To a daemon without a tier, the pages come in the stream and land in its memory.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { connect, type TmemClient } from '../../src/client/client.js'
import { connectControl } from '../../src/client/control.js'
import { controlOp } from '../../src/abi/codec.js'
import { migrateClient } from '../../src/migrate/live.js'
import { networkChannel } from '../../src/migrate/net.js'
import { CONTROL_DATA_BYTES_MAX } from '../../src/protocol/frame.js'
import {
  POLICY_EPHEMERAL,
  TMEMC_REMOTE_ADOPT,
  TMEMC_REMOTE_EXPORT,
  TMEMC_SET_REMOTE,
  TMEMC_SET_REMOTE_QUOTA,
} from '../../src/remote/policy.js'
import type { RemoteSection } from '../../src/remote/mod.js'
import { type DaemonHandle, startDaemon, waitFor } from '../helpers/daemon.js'
import { clusterUnavailable, startCluster, type TestCluster } from '../helpers/redis-cluster.js'
import { lcgPage, readAll } from '../helpers/remote-pages.js'

const unavailable = clusterUnavailable()
if (unavailable !== null) console.log(`# remote migration tests skipped: ${unavailable}`)

/** --memory 1M holds 256 pages; each client puts four times that. */
const OBJECTS = 64
const PER_OBJECT = 16

function page(seed: number, oid: number, index: number): Uint8Array {
  return lcgPage(seed * 31337 + oid * 7919 + index * 104729)
}

interface Counts {
  pages: number
  remotePages: number
  queued: number
}

/** Local and remote pages of every pool of the daemon, and its queue. */
async function counts(daemon: DaemonHandle): Promise<Counts> {
  const control = await connectControl({ path: daemon.controlPath })
  try {
    const stats = await control.stats()
    const host = stats.host as typeof stats.host & { remote?: RemoteSection }
    const result = { pages: 0, remotePages: 0, queued: host.remote?.queued ?? 0 }
    for (const client of host.clients)
      for (const pool of client.pools) {
        result.pages += pool.pages
        result.remotePages += (pool as typeof pool & { remotePages?: number }).remotePages ?? 0
      }
    return result
  } finally {
    await control.close()
  }
}

/** The remote policy and quota STATS shows for the client named `name`. */
async function remoteSettings(
  daemon: DaemonHandle,
  name: string,
): Promise<{ id: number; policy: unknown; quota: unknown }> {
  const control = await connectControl({ path: daemon.controlPath })
  try {
    const stats = await control.stats()
    const session = stats.sessions.find((entry) => entry.name === name && !entry.moved)
    assert.ok(session !== undefined, `client ${name} has a session`)
    const client = stats.host.clients.find((entry) => entry.id === session.id)
    assert.ok(client !== undefined, `client ${name} listed`)
    const extra = client as typeof client & Record<string, unknown>
    return { id: client.id, policy: extra['remotePolicy'], quota: extra['remoteQuotaBytes'] }
  } finally {
    await control.close()
  }
}

/** A TMEMC_SET_REMOTE(_QUOTA) subop on one client, through the control socket. */
async function setRemote(daemon: DaemonHandle, id: number, subop: number, value: number) {
  const control = await connectControl({ path: daemon.controlPath })
  try {
    assert.equal((await control.control(controlOp(subop, id, 0, value))).rc, 0)
  } finally {
    await control.close()
  }
}

async function fill(client: TmemClient, seed: number): Promise<[number, Map<string, Uint8Array>]> {
  const pool = await client.newPool({ persistent: true })
  const oracle = new Map<string, Uint8Array>()
  for (let oid = 0; oid < OBJECTS; oid++) {
    const puts: Promise<boolean>[] = []
    for (let index = 0; index < PER_OBJECT; index++) {
      const bytes = page(seed, oid, index)
      oracle.set(`${oid}:${index}`, bytes)
      puts.push(client.put(pool, oid, index, bytes))
    }
    assert.ok((await Promise.all(puts)).every(Boolean))
  }
  return [pool, oracle]
}

void describe(
  'live migration with remote pages',
  { skip: unavailable ?? false, timeout: 90_000 },
  () => {
    let cluster: TestCluster
    let a: DaemonHandle
    let b: DaemonHandle
    let plain: DaemonHandle

    /** The master nodes' ports. */
    const masters = async (): Promise<number[]> => {
      const ports: number[] = []
      for (const node of cluster.nodes) {
        const role = await cluster.cli(node.port, 'ROLE')
        if (role.startsWith('master')) ports.push(node.port)
      }
      return ports
    }
    /** Keys of pages in the cluster (over the masters), and those matching `pattern`. */
    const keys = async (pattern: string): Promise<{ all: number; matching: number }> => {
      let all = 0
      let matching = 0
      for (const port of await masters()) {
        all += Number((await cluster.cli(port, 'DBSIZE')).trim())
        // The cluster's name, set by the first handover (src/remote/cluster.ts), is not a page.
        all -= Number((await cluster.cli(port, 'EXISTS', 'tmem:cluster-id')).trim())
        const found = await cluster.cli(port, '--scan', '--pattern', pattern)
        matching += found.split('\n').filter((line) => line !== '').length
      }
      return { all, matching }
    }
    const drained = async (daemon: DaemonHandle): Promise<void> =>
      waitFor(async () => (await counts(daemon)).queued === 0)

    before(async () => {
      const started = await startCluster()
      assert.ok(started !== null)
      cluster = started
      const tier = (id: string): string[] => [
        '--memory',
        '1M',
        '--remote',
        cluster.url,
        '--remote-timeout',
        '2s',
        '--remote-host-id',
        id,
      ]
      a = await startDaemon({ args: tier('mig-a') })
      b = await startDaemon({ args: [...tier('mig-b'), '--memory', '2M'] })
      plain = await startDaemon({ args: ['--memory', '16M'] })
    })

    after(async () => {
      for (const daemon of [a, b, plain]) await daemon?.stop()
      await cluster?.stop()
    })

    void test('same cluster: the target adopts the keys; none is copied or deleted', async () => {
      const client = await connect({ path: a.socketPath }, { name: 'same', sharedMemory: false })
      try {
        const [pool, oracle] = await fill(client, 1)
        await drained(a)
        const before = await counts(a)
        assert.ok(before.remotePages >= oracle.size - 256, 'most pages are remote')
        const keysBefore = await keys('{tmem:mig-a:*')
        assert.ok(keysBefore.matching > 0)
        // Settings that differ from the target's defaults (policy all, no quota) travel too.
        const { id } = await remoteSettings(a, 'same')
        await setRemote(a, id, TMEMC_SET_REMOTE_QUOTA, 5000)
        await setRemote(a, id, TMEMC_SET_REMOTE, POLICY_EPHEMERAL)

        const result = await migrateClient({
          source: { path: a.controlPath },
          target: { path: b.controlPath },
          client: 'same',
        })
        assert.ok(result.pages < oracle.size, 'the remote pages did not travel in the stream')
        await readAll(client, pool, oracle) // the client followed to b
        assert.equal(client.address.includes(b.dir), true)
        const moved = await remoteSettings(b, 'same')
        assert.equal(moved.policy, 'ephemeral', 'the remote policy travelled')
        assert.equal(moved.quota, 5000 * 4096, 'the remote quota travelled')

        await drained(a)
        await drained(b)
        const afterA = await counts(a)
        assert.equal(afterA.pages + afterA.remotePages, 0, 'the source lists nothing')
        const afterB = await counts(b)
        assert.equal(afterB.pages + afterB.remotePages, oracle.size)
        const keysAfter = await keys('{tmem:mig-a:*')
        assert.equal(keysAfter.all, keysBefore.all, 'no key copied, none deleted')
        assert.equal(keysAfter.matching, keysBefore.matching, 'the source namespace is intact')
        assert.equal((await keys('{tmem:mig-b:*')).matching, 0, 'nothing in the target namespace')

        // The target owns the pages now: a flush there removes the key's field, and its
        // destroy removes the keys (the adoption was committed).
        await client.flushObject(pool, 0)
        for (let index = 0; index < PER_OBJECT; index++)
          assert.equal(await client.get(pool, 0, index), null, 'flushed on the target')
        await readAll(client, pool, new Map([...oracle].filter(([key]) => !key.startsWith('0:'))))
      } finally {
        await client.close()
      }
    })

    void test('to a daemon without a tier: the remote pages come in the stream', async () => {
      const client = await connect({ path: a.socketPath }, { name: 'away', sharedMemory: false })
      try {
        const [pool, oracle] = await fill(client, 2)
        await drained(a)
        const before = await counts(a)
        assert.ok(before.remotePages >= oracle.size - 256)
        const result = await migrateClient({
          source: { path: a.controlPath },
          target: { path: plain.controlPath },
          client: 'away',
        })
        assert.ok(result.pages >= oracle.size, 'every page travelled in the stream')
        await readAll(client, pool, oracle)
        const there = await counts(plain)
        assert.equal(there.pages, oracle.size, 'all of them in the target memory')
        await drained(a)
        assert.equal((await counts(a)).remotePages, 0, 'the source dropped its copies')
      } finally {
        await client.close()
      }
    })

    void test('rollback after ADOPT: the target lets go of the keys, the source keeps them', async () => {
      // The steps of a migration that fails after the handover and before ACTIVATE, by hand:
      // EXPORT on the source, ADOPT on a target client, then the rollback's SESSION DESTROY.
      const client = await connect({ path: a.socketPath }, { name: 'back', sharedMemory: false })
      const other = await connect({ path: b.socketPath }, { name: 'half', sharedMemory: false })
      const source = await connectControl({ path: a.controlPath })
      const target = await connectControl({ path: b.controlPath })
      try {
        const [pool, oracle] = await fill(client, 3)
        assert.equal(await other.newPool({ persistent: true }), pool)
        await drained(a)
        const keysBefore = await keys('{tmem:mig-a:*')
        const sourceId = (await source.stats()).sessions.find((s) => s.name === 'back')!.id
        const targetId = (await target.stats()).sessions.find((s) => s.name === 'half')!.id
        const exported = await source.control(
          controlOp(TMEMC_REMOTE_EXPORT, sourceId, 0, CONTROL_DATA_BYTES_MAX, 0),
          null,
          CONTROL_DATA_BYTES_MAX,
        )
        assert.ok(exported.rc > 0)
        const input = exported.data.slice(0, exported.rc)
        const adopted = await target.control(controlOp(TMEMC_REMOTE_ADOPT, targetId), input, 0)
        assert.equal(adopted.rc, 0)
        assert.ok((await counts(b)).remotePages >= oracle.size - 256, 'b lists the pages')
        await other.close()
        // A clean goodbye destroys the client; SESSION DESTROY (the rollback's) if it did not.
        await networkChannel(target).destroyClient(targetId)
        assert.equal((await target.stats()).host.clients.length, 0)
        await drained(b)
        assert.equal((await counts(b)).remotePages, 0)
        assert.deepEqual(await keys('{tmem:mig-a:*'), keysBefore, 'no key deleted')
        await readAll(client, pool, oracle)
      } finally {
        await source.close()
        await target.close()
        await client.close()
      }
    })
  },
)
