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
import { migrateClient, type MigrateProgress } from '../../src/migrate/mod.js'
import {
  HANG_GUARD_MS,
  PAGE,
  page,
  Writer,
  fill,
  checkAgainstModel,
  daemonPair,
} from './live-helpers.js'

// The hang guard turns a stall into a reported failure instead of a hang. The stall this test
// used to hit (issue 5) has its own deterministic test in pipeline.test.ts.
void test(
  'live migration under a writer: every last put arrives, no flush reappears, the client follows',
  { timeout: HANG_GUARD_MS },
  async (t) => {
    const [a, b] = await daemonPair()
    try {
      const client = await connect({ path: a.socketPath }, { name: 'writer-1' })
      const pools = [
        await client.newPool({ persistent: true }),
        await client.newPool({ persistent: true }),
      ]
      const ephemeral = await client.newPool()
      await client.put(ephemeral, 1, 1, page(1))
      const writer = new Writer(client, pools)
      await fill(writer, 3000)
      const moved = new Promise<string>((resolve) => client.once('moved', resolve))

      writer.start(4)
      await writer.reached(200) // the writer is running before the migration starts
      const opsAtStart = writer.ops
      const reports: MigrateProgress[] = []
      const result = await migrateClient({
        source: { path: a.controlPath },
        target: { path: b.controlPath },
        client: 'writer-1',
        onProgress: (progress) => reports.push(progress),
        progressIntervalMs: 0,
        batchBytes: 64 * (40 + PAGE), // small batches: many round trips while the writer runs
      })
      const opsDuring = writer.ops - opsAtStart
      // The client follows (the MOVED notice), and the writer goes on there for 200 more ops,
      // which the statistics of both daemons below show landed on the target.
      assert.equal(await moved, `unix:${b.socketPath}`)
      await writer.reached(writer.ops + 200)
      await writer.stop()
      assert.deepEqual(writer.errors, [])
      await writer.put({ pool: pools[0]!, oid: 99_999, index: 1 })

      t.diagnostic(
        `${result.pagesAtStart} pages at start, ${result.pages} records moved in ${result.rounds} rounds, ` +
          `frozen ${result.frozenWindowMs.toFixed(1)} ms (${result.frozenPages} records), writer ${writer.ops} ops, ${writer.frozenSeen} EFROZEN`,
      )
      assert.equal(result.name, 'writer-1')
      assert.ok(result.pagesAtStart >= 1000, `${result.pagesAtStart} pages at start`)
      assert.ok(result.pages >= result.pagesAtStart)
      assert.ok(result.notified)
      assert.ok(result.pushedPages > 0, 'the source pushed the pre-copy straight to the target')
      // The frozen window carries only what the writer changed after the last round (one
      // change-log record per op; up to one op per lane in flight at either end), not a copy
      // of the client. Its length in ms is only reported: a threshold would test the machine.
      assert.ok(
        result.frozenPages <= opsDuring + 8,
        `${result.frozenPages} records frozen, ${opsDuring} writer ops`,
      )
      assert.ok(reports.some((r) => r.phase === 'precopy'))
      assert.ok(reports.at(-1)?.done)
      assert.equal(client.address, `unix:${b.socketPath}`)

      await checkAgainstModel(client, writer)
      // The ephemeral pool came along (empty, as Xen's save records ephemeral pools).
      assert.equal(await client.get(ephemeral, 1, 1), null)
      await client.put(ephemeral, 1, 2, page(2))

      const controlA = await connectControl({ path: a.controlPath })
      const controlB = await connectControl({ path: b.controlPath })
      const statsA = await controlA.stats()
      const statsB = await controlB.stats()
      assert.equal(statsA.sessions.length, 0, 'the source copy is destroyed')
      assert.equal((statsA.host as { persistentPages: number }).persistentPages, 0)
      const session = statsB.sessions.find((s) => s.name === 'writer-1')
      assert.ok(session?.connected, 'the writer is connected to the target')
      assert.equal((statsB.host as { persistentPages: number }).persistentPages, writer.model.size)
      await controlA.close()
      await controlB.close()
      await client.close()
    } finally {
      await Promise.all([a.stop(), b.stop()])
    }
  },
)
