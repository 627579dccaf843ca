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
import { connect } from '../../src/client/mod.js'
import { migrateClient } from '../../src/migrate/mod.js'
import { HANG_GUARD_MS, page, daemonPair } from './live-helpers.js'

void test(
  'a client that was away during the migration is redirected when it comes back',
  { timeout: HANG_GUARD_MS },
  async () => {
    const [a, b] = await daemonPair()
    try {
      const first = await connect({ path: a.socketPath }, { name: 'sleeper' })
      const pool = await first.newPool({ persistent: true })
      for (let i = 0; i < 50; i++) await first.put(pool, 5, i, page(i))
      const secret = first.secret
      await first.disconnect() // the process went away; the client waits out its grace period
      const result = await migrateClient({
        source: { path: a.controlPath },
        target: { path: b.controlPath },
        client: 'sleeper',
      })
      assert.equal(result.notified, false)

      // The process comes back to the old daemon with its old secret and is sent on.
      const back = await connect({ path: a.socketPath }, { name: 'sleeper', secret })
      assert.equal(back.resumed, true)
      assert.equal(back.address, `unix:${b.socketPath}`)
      assert.notEqual(back.secret, secret, 'the new daemon gave the client its own secret')
      for (let i = 0; i < 50; i++) assert.deepEqual(await back.get(pool, 5, i), page(i))
      await back.close()
    } finally {
      await Promise.all([a.stop(), b.stop()])
    }
  },
)
