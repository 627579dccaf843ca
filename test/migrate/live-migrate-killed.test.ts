/**
 * Live migration between two real daemon processes while a writer (the client library) keeps
 * putting, replacing and flushing persistent pages. The oracle is a Map of what the writer
 * last put for each key: afterwards every such page is on the target with its bytes, nothing
 * the writer flushed reappears, and the writer's own connection followed the client (its
 * later ops land on the target). Then the same with the target killed mid-copy: the source
 * keeps every page and the writer keeps working there.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, connectControl } from '../../src/client/mod.js'
import { migrateClient, MigrationError } from '../../src/migrate/mod.js'
import { HANG_GUARD_MS, PAGE, Writer, fill, checkAgainstModel, daemonPair } from './live-helpers.js'

void test(
  'target killed mid-copy: the source keeps every page and the writer keeps working',
  { timeout: HANG_GUARD_MS },
  async () => {
    const [a, b] = await daemonPair()
    try {
      const client = await connect({ path: a.socketPath }, { name: 'survivor' })
      const pools = [await client.newPool({ persistent: true })]
      const writer = new Writer(client, pools)
      await fill(writer, 6000)
      writer.start(2)
      let killed = false
      const error = await migrateClient({
        source: { path: a.controlPath },
        target: { path: b.controlPath },
        client: 'survivor',
        batchBytes: 16 * (40 + PAGE),
        depth: 1,
        // The relay, whose progress moves batch by batch, so the kill lands mid-copy. A target
        // killed during a SESSION PUSH is push.test.ts's.
        push: false,
        onProgress: (progress) => {
          if (!killed && progress.phase === 'precopy' && progress.pages >= 1500) {
            killed = true
            b.process.kill('SIGKILL')
          }
        },
        progressIntervalMs: 0,
      }).then(
        () => null,
        (caught: unknown) => caught,
      )
      assert.ok(killed, 'the target was killed during the pre-copy')
      assert.ok(error instanceof MigrationError, `got ${String(error)}`)
      assert.equal(error.code, 'EMIGRATE')
      assert.equal(error.sourceIntact, true)
      assert.equal(error.targetCleanup, 'unreachable')
      assert.match(error.message, /keeps running on the source/)

      // The writer never noticed (no EFROZEN: the source was never frozen) and keeps going.
      await writer.reached(writer.ops + 200)
      await writer.stop()
      assert.deepEqual(writer.errors, [])
      assert.equal(writer.frozenSeen, 0)
      assert.equal(client.address, `unix:${a.socketPath}`)
      await writer.put({ pool: pools[0]!, oid: 77, index: 7 })
      await checkAgainstModel(client, writer)

      const control = await connectControl({ path: a.controlPath })
      const stats = await control.stats()
      const engine = (
        stats.host as { clients: { id: number; frozen: boolean; liveMigrating: boolean }[] }
      ).clients
      assert.equal(engine.length, 1)
      assert.equal(engine[0]!.frozen, false)
      assert.equal(engine[0]!.liveMigrating, false, 'SAVE_END ended the pre-copy')
      assert.equal((stats.host as { persistentPages: number }).persistentPages, writer.model.size)
      await control.close()
      await client.close()
    } finally {
      await Promise.all([a.stop(), b.stop()])
    }
  },
)
