/**
 * A migration that fails names its real cause (docs/errors.md, docs/migration.md "Failures").
 * The oracle is the spec's errno table (ENOMEM is 12, spec §2.5, retyped here) and a target
 * too small for the client: whichever way the pages travel (pushed by the source daemon or
 * relayed), the error must say ENOMEM, on the target, and the client must run on at the
 * source with every page.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { connect } from '../../src/client/mod.js'
import { MigrationError, MigrationStepError, migrateClient } from '../../src/migrate/mod.js'
import { startDaemon } from '../helpers/daemon.js'

const ENOMEM = -12
/** Pages the client holds: 2.3 MiB of incompressible data, against a target of 1 MiB. */
const PAGES = 600

for (const push of [true, false]) {
  void test(
    `a target out of memory fails the migration as ENOMEM (${push ? 'pushed' : 'relayed'})`,
    { timeout: 60_000 },
    async () => {
      const [a, b] = await Promise.all([startDaemon(), startDaemon({ args: ['--memory', '1M'] })])
      try {
        const client = await connect({ path: a.socketPath }, { name: 'big' })
        const pool = await client.newPool({ persistent: true })
        const pages = Array.from({ length: PAGES }, () => new Uint8Array(randomBytes(4096)))
        for (let i = 0; i < PAGES; i++) await client.put(pool, 1, i, pages[i]!)
        const error = await migrateClient({
          source: { path: a.controlPath },
          target: { path: b.controlPath },
          client: 'big',
          push,
        }).then(
          () => null,
          (caught: unknown) => caught,
        )

        assert.ok(error instanceof MigrationError, `got ${String(error)}`)
        assert.equal(error.code, 'EMIGRATE')
        assert.equal(error.causeCode, 'ENOMEM')
        assert.equal(error.errno, ENOMEM)
        assert.match(error.message, /ENOMEM \(-12\)/)
        assert.doesNotMatch(error.message, /\bE5\b|EIO/)
        assert.ok(error.cause instanceof MigrationStepError, `cause ${String(error.cause)}`)
        assert.equal(error.cause.side, 'target')
        assert.equal(error.sourceIntact, true)
        assert.equal(error.targetCleanup, 'destroyed')
        // The client runs on at the source with every page.
        assert.equal(client.address, `unix:${a.socketPath}`)
        for (let i = 0; i < PAGES; i += 37) assert.deepEqual(await client.get(pool, 1, i), pages[i])
        await client.put(pool, 2, 0, pages[0]!)
        await client.close()
      } finally {
        await Promise.all([a.stop(), b.stop()])
      }
    },
  )
}
