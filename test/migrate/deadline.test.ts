/**
 * Every request a migration makes has a deadline (docs/migration.md, "Deadlines"): a target
 * that stops answering (SIGSTOP: its sockets stay open, nothing is ever answered) fails the
 * migration with causeCode ETIMEDOUT instead of hanging, and the client runs on at the source
 * with every page. The target is stopped from the progress callback at the end of the shell,
 * so the next request it gets (the pre-copy, pushed or relayed) is the one never answered.
 * No time is measured: the node:test timeout and the CLI helper's kill catch a hang.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { connect } from '../../src/client/mod.js'
import { MigrationError, migrateClient } from '../../src/migrate/mod.js'
import { runTmem } from '../helpers/cli.js'
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js'

const PAGES = 300
/** Generous, so that a loaded machine does not time out a request that is answered. */
const REQUEST_TIMEOUT_MS = 5_000

/** Runs `body` with two daemons, the target resumed before both stop. */
async function withPair(body: (a: DaemonHandle, b: DaemonHandle) => Promise<void>): Promise<void> {
  const [a, b] = await Promise.all([startDaemon(), startDaemon()])
  try {
    await body(a, b)
  } finally {
    b.process.kill('SIGCONT')
    await Promise.all([a.stop(), b.stop()])
  }
}

for (const push of [true, false]) {
  void test(
    `a target stopped mid-migration fails it as ETIMEDOUT and the client runs on (${push ? 'pushed' : 'relayed'})`,
    { timeout: 120_000 },
    async () => {
      await withPair(async (a, b) => {
        const client = await connect({ path: a.socketPath }, { name: 'stalled' })
        const pool = await client.newPool({ persistent: true })
        const pages = Array.from({ length: PAGES }, () => new Uint8Array(randomBytes(4096)))
        for (let i = 0; i < PAGES; i++) await client.put(pool, 1, i, pages[i]!)
        let stopped = false
        const error = await migrateClient({
          source: { path: a.controlPath },
          target: { path: b.controlPath },
          client: 'stalled',
          push,
          requestTimeoutMs: REQUEST_TIMEOUT_MS,
          progressIntervalMs: 0,
          onProgress: (progress) => {
            if (progress.phase !== 'shell' || stopped) return
            stopped = true
            b.process.kill('SIGSTOP')
          },
        }).then(
          () => null,
          (caught: unknown) => caught,
        )

        assert.equal(stopped, true)
        assert.ok(error instanceof MigrationError, `got ${String(error)}`)
        assert.equal(error.code, 'EMIGRATE')
        assert.equal(error.causeCode, 'ETIMEDOUT')
        assert.equal(error.phase, 'precopy')
        assert.equal(error.sourceIntact, true)
        assert.equal(error.targetCleanup, 'unreachable')
        assert.equal(client.address, `unix:${a.socketPath}`)
        for (let i = 0; i < PAGES; i += 17) assert.deepEqual(await client.get(pool, 1, i), pages[i])
        await client.put(pool, 2, 0, pages[0]!)
        await client.close()
      })
    },
  )
}

void test(
  'tmem migrate to a stopped target exits 3 with ETIMEDOUT; the client stays on the source',
  { timeout: 120_000 },
  async () => {
    await withPair(async (a, b) => {
      const client = await connect({ path: a.socketPath }, { name: 'stays' })
      const pool = await client.newPool({ persistent: true })
      await client.put(pool, 1, 1, new Uint8Array(4096).fill(7))
      b.process.kill('SIGSTOP')
      const result = await runTmem(
        ['migrate', 'stays', '--to', b.controlPath, '--request-timeout', '2s', '-q'],
        { controlPath: a.controlPath, killAfterMs: 100_000 },
      )
      assert.equal(result.code, 3, `exit ${result.code}: ${result.stderr}`)
      assert.match(result.stderr, /ETIMEDOUT|did not answer/)
      assert.equal(client.address, `unix:${a.socketPath}`)
      assert.deepEqual(await client.get(pool, 1, 1), new Uint8Array(4096).fill(7))
      await client.close()
    })
  },
)
