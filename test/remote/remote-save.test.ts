/**
 * `tmem save` of a client with remote pages, against a real Redis Cluster on loopback (one
 * cluster for the file). The oracle is a plain map of what was put: the saved stream, restored
 * onto a daemon without a tier, gives back every page byte for byte; the save leaves the
 * source's remote pages where they were; a save without prefetch (SAVE_GET_NEXT_PAGE one page
 * at a time) writes the same bytes as one with it (SAVE_GET_PAGES batches).
 */
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { connect } from '../../src/client/client.js'
import { connectControl } from '../../src/client/control.js'
import { networkChannel } from '../../src/migrate/net.js'
import { saveClient, saveClientToFile, saveInvalidations } from '../../src/migrate/save.js'
import { memorySink } from '../../src/migrate/sink.js'
import type { RemoteSection } from '../../src/remote/mod.js'
import { runTmem } from '../helpers/cli.js'
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js'
import { clusterUnavailable, startCluster, type TestCluster } from '../helpers/redis-cluster.js'
import { lcgPage, readAll } from '../helpers/remote-pages.js'

const unavailable = clusterUnavailable()
if (unavailable !== null) console.log(`# remote save tests skipped: ${unavailable}`)

/** --memory 1M: 256 local pages; the pool gets four times that. */
const LOCAL_PAGES = 256
const OBJECTS = 64
const PER_OBJECT = 16

function page(oid: number, index: number): Uint8Array {
  return lcgPage(oid * 7919 + index * 104729 + 1299709)
}

async function poolCounts(daemon: DaemonHandle): Promise<{ pages: number; remote: number }> {
  const control = await connectControl({ path: daemon.controlPath })
  try {
    const stats = await control.stats()
    const host = stats.host as typeof stats.host & { remote?: RemoteSection }
    let pages = 0
    let remote = 0
    for (const client of host.clients)
      for (const pool of client.pools) {
        pages += pool.pages
        remote += (pool as typeof pool & { remotePages?: number }).remotePages ?? 0
      }
    return { pages, remote }
  } finally {
    await control.close()
  }
}

void describe(
  'tmem save with remote pages',
  { skip: unavailable ?? false, timeout: 60_000 },
  () => {
    let cluster: TestCluster
    let source: DaemonHandle
    let plain: DaemonHandle

    before(async () => {
      const started = await startCluster()
      assert.ok(started !== null)
      cluster = started
      source = await startDaemon({
        args: ['--memory', '1M', '--remote', cluster.url, '--remote-host-id', 'save-src'],
      })
      plain = await startDaemon({ args: ['--memory', '16M'] })
    })

    after(async () => {
      await source?.stop()
      await plain?.stop()
      await cluster?.stop()
    })

    void test('a persistent pool 4x local memory saves and restores byte for byte', async () => {
      const client = await connect(
        { path: source.socketPath },
        { name: 'big', sharedMemory: false },
      )
      const oracle = new Map<string, Uint8Array>()
      let pool: number
      try {
        pool = await client.newPool({ persistent: true })
        for (let oid = 0; oid < OBJECTS; oid++) {
          const puts: Promise<boolean>[] = []
          for (let index = 0; index < PER_OBJECT; index++) {
            const bytes = page(oid, index)
            oracle.set(`${oid}:${index}`, bytes)
            puts.push(client.put(pool, oid, index, bytes))
          }
          assert.ok((await Promise.all(puts)).every(Boolean))
        }
        // One all-zero page among the remote ones (listed, never sent): it must come back too.
        const zero = new Uint8Array(4096)
        assert.equal(await client.put(pool, 999, 0, zero), true)
        oracle.set('999:0', zero)
        const before = await poolCounts(source)
        assert.equal(before.pages + before.remote, oracle.size)
        assert.ok(before.remote >= oracle.size - LOCAL_PAGES, 'most pages are remote')

        const file = join(source.dir, 'big.tmem')
        const saved = await runTmem(['save', 'big', file], { controlPath: source.controlPath })
        assert.equal(saved.code, 0, saved.stderr)
        // The same stream one page per round trip (SAVE_GET_NEXT_PAGE instead of batches).
        const control = await connectControl({ path: source.controlPath })
        const single = join(source.dir, 'single.tmem')
        try {
          const id = (await control.stats()).sessions.find((s) => s.name === 'big')!.id
          const result = await saveClientToFile(
            networkChannel(control, { prefetch: false }),
            id,
            single,
          )
          assert.equal(result.pages, oracle.size)
        } finally {
          await control.close()
        }
        const bytes = readFileSync(file)
        assert.ok(bytes.equals(readFileSync(single)), 'batched and one-by-one saves agree')
        // Header 32 + pool record 28 + a v1 record per page (28 + 4096) + end word 4.
        assert.equal(bytes.length, 32 + 28 + oracle.size * 4124 + 4)

        // The save changed nothing on the source: same counts, every page still reads back.
        assert.deepEqual(await poolCounts(source), before)
        await readAll(client, pool, oracle)

        const restored = await runTmem(['restore', 'copy', file], {
          controlPath: plain.controlPath,
        })
        assert.equal(restored.code, 0, restored.stderr)
        const secret = /secret: ([0-9a-f]{64})/.exec(restored.stdout)![1]!
        const copy = await connect(
          { path: plain.socketPath },
          { name: 'copy', secret, sharedMemory: false },
        )
        try {
          await readAll(copy, pool, oracle)
          assert.equal((await poolCounts(plain)).pages, oracle.size)
        } finally {
          await copy.close()
        }
      } finally {
        await client.close()
      }
    })

    void test('a live save lists the remote pages flushed after they were written', async () => {
      const client = await connect(
        { path: source.socketPath },
        { name: 'live', sharedMemory: false },
      )
      const control = await connectControl({ path: source.controlPath })
      try {
        const pool = await client.newPool({ persistent: true })
        const oracle = new Map<string, Uint8Array>()
        for (let oid = 0; oid < OBJECTS; oid++) {
          const puts: Promise<boolean>[] = []
          for (let index = 0; index < PER_OBJECT; index++) {
            const bytes = page(oid + 1000, index)
            oracle.set(`${oid}:${index}`, bytes)
            puts.push(client.put(pool, oid, index, bytes))
          }
          assert.ok((await Promise.all(puts)).every(Boolean))
        }
        const id = (await control.stats()).sessions.find((s) => s.name === 'live')!.id
        const channel = networkChannel(control)
        const memory = memorySink()
        const saved = await saveClient(channel, id, memory.sink, { live: true })
        assert.equal(saved.pages, oracle.size)
        // The last two objects went to the cluster (local memory was full by then).
        const before = await poolCounts(source)
        // A frozen client's flush is done and answered EFROZEN (docs/semantics.md).
        const frozen = (error: Error): void => assert.match(error.message, /EFROZEN/)
        await client.flushObject(pool, OBJECTS - 1).then(() => undefined, frozen)
        await client.flushObject(pool, OBJECTS - 2).then(() => undefined, frozen)
        const after = await poolCounts(source)
        assert.equal(before.remote - after.remote, 2 * PER_OBJECT, 'the flushed pages were remote')
        for (let index = 0; index < PER_OBJECT; index++) {
          oracle.delete(`${OBJECTS - 1}:${index}`)
          oracle.delete(`${OBJECTS - 2}:${index}`)
        }
        const extra = await saveInvalidations(channel, id, memory.sink)
        assert.equal(extra.invalidations, 2 * PER_OBJECT)

        const file = join(source.dir, 'live.tmem')
        writeFileSync(file, memory.bytes())
        const restored = await runTmem(['restore', 'livecopy', file], {
          controlPath: plain.controlPath,
        })
        assert.equal(restored.code, 0, restored.stderr)
        const secret = /secret: ([0-9a-f]{64})/.exec(restored.stdout)![1]!
        const copy = await connect(
          { path: plain.socketPath },
          { name: 'livecopy', secret, sharedMemory: false },
        )
        try {
          await readAll(copy, pool, oracle)
          for (let index = 0; index < PER_OBJECT; index++)
            assert.equal(await copy.get(pool, OBJECTS - 1, index), null, 'a flushed page came back')
        } finally {
          await copy.close()
        }
      } finally {
        await control.close()
        await client.close()
      }
    })
  },
)
