/**
 * Migration refusals before anything moves (unreachable target, a name the target already
 * has, an unknown client, a v0 client to a target without --accept-v0), a v0 client moved
 * between two --accept-v0 daemons, and the CLI verbs against real daemons: `tmem save` then
 * `tmem restore` through a file (the restored client is taken over with the printed secret),
 * and `tmem migrate` with the client following.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, connectControl, type TmemClient } from '../../src/client/mod.js'
import { MigrationError, migrateClient } from '../../src/migrate/mod.js'
import { type CliResult, type RunOptions, runTmem as runTmemWithKill } from '../helpers/cli.js'
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js'
import { HANG_GUARD_MS } from './live-helpers.js'

const PAGE = 4096

/** The CLI, with the hang guard instead of the helper's 15 s kill (a slow run is not a failure). */
function runTmem(args: string[], options: RunOptions = {}): Promise<CliResult> {
  return runTmemWithKill(args, { killAfterMs: HANG_GUARD_MS, ...options })
}

function page(tag: number): Uint8Array {
  const bytes = new Uint8Array(PAGE).fill(tag & 0xff)
  new DataView(bytes.buffer).setUint32(8, tag, true)
  return bytes
}

function ok(result: CliResult): string {
  assert.equal(result.code, 0, `exit ${result.code}: ${result.stderr}`)
  return result.stdout
}

async function refusal(promise: Promise<unknown>): Promise<MigrationError> {
  const error = await promise.then(
    () => null,
    (caught: unknown) => caught,
  )
  assert.ok(error instanceof MigrationError, `expected a MigrationError, got ${String(error)}`)
  return error
}

/** The client is untouched: not frozen, no save going on, its pages readable. */
async function assertUntouched(
  controlPath: string,
  client: TmemClient,
  pool: number,
  pages: number,
): Promise<void> {
  const control = await connectControl({ path: controlPath })
  const host = (await control.stats()).host as {
    clients: { id: number; frozen: boolean; liveMigrating: boolean }[]
  }
  const engine = host.clients.find((candidate) => candidate.id === client.clientId)
  assert.ok(engine)
  assert.equal(engine.frozen, false)
  assert.equal(engine.liveMigrating, false)
  await control.close()
  for (let i = 0; i < pages; i++) assert.deepEqual(await client.get(pool, 1, i), page(i))
  await client.put(pool, 1, pages, page(pages))
}

void describe('migration refusals and the CLI verbs', { timeout: HANG_GUARD_MS }, () => {
  let a: DaemonHandle
  let b: DaemonHandle
  let dir: string

  before(async () => {
    ;[a, b] = await Promise.all([startDaemon(), startDaemon()])
    dir = mkdtempSync(join(tmpdir(), 'tmem-cli-'))
  })
  after(async () => {
    await Promise.all([a.stop(), b.stop()])
    rmSync(dir, { recursive: true, force: true })
  })

  void test('refused before anything moves: unreachable target, name on target, unknown client', async () => {
    const client = await connect({ path: a.socketPath }, { name: 'pinned' })
    const pool = await client.newPool({ persistent: true })
    for (let i = 0; i < 20; i++) await client.put(pool, 1, i, page(i))

    const missing = join(dir, 'nobody', 'control.sock')
    const unreachable = await refusal(
      migrateClient({
        source: { path: a.controlPath },
        target: { path: missing },
        client: 'pinned',
      }),
    )
    assert.equal(unreachable.code, 'EUNREACHABLE')
    assert.match(unreachable.message, /target daemon .* is unreachable.*nothing was moved/)
    const cliUnreachable = await runTmem(['migrate', 'pinned', '--to', missing], {
      controlPath: a.controlPath,
    })
    assert.equal(cliUnreachable.code, 3, cliUnreachable.stderr)
    assert.match(cliUnreachable.stderr, /unreachable/)

    const squatter = await connect({ path: b.socketPath }, { name: 'pinned' })
    const taken = await refusal(
      migrateClient({
        source: { path: a.controlPath },
        target: { path: b.controlPath },
        client: 'pinned',
      }),
    )
    assert.equal(taken.code, 'EEXIST')
    assert.match(taken.message, /target already has a client named pinned/)
    const cliTaken = await runTmem(['migrate', 'pinned', '--to', b.controlPath], {
      controlPath: a.controlPath,
    })
    assert.equal(cliTaken.code, 1)
    assert.match(cliTaken.stderr, /already has a client named pinned/)
    await squatter.close()

    const unknown = await refusal(
      migrateClient({
        source: { path: a.controlPath },
        target: { path: b.controlPath },
        client: 'ghost',
      }),
    )
    assert.equal(unknown.code, 'ENOCLIENT')
    const cliUsage = await runTmem(['migrate', 'pinned'], { controlPath: a.controlPath })
    assert.equal(cliUsage.code, 2)

    await assertUntouched(a.controlPath, client, pool, 20)
    assert.equal(client.address, `unix:${a.socketPath}`)
    await client.close()
  })

  void test('v0 clients: refused by a target without --accept-v0, moved between two that accept v0', async () => {
    const [v0a, v0b] = await Promise.all([
      startDaemon({ args: ['--accept-v0'] }),
      startDaemon({ args: ['--accept-v0'] }),
    ])
    try {
      const client = await connect({ path: v0a.socketPath }, { name: 'old-guest', abi: 0 })
      const pool = await client.newPool({ persistent: true })
      for (let i = 0; i < 20; i++) await client.put(pool, 1, i, page(i))
      const refused = await refusal(
        migrateClient({
          source: { path: v0a.controlPath },
          target: { path: b.controlPath },
          client: 'old-guest',
        }),
      )
      assert.equal(refused.code, 'EABI')
      assert.match(refused.message, /--accept-v0/)
      await assertUntouched(v0a.controlPath, client, pool, 20)

      const result = await migrateClient({
        source: { path: v0a.controlPath },
        target: { path: v0b.controlPath },
        client: 'old-guest',
      })
      assert.equal(result.abi, 0)
      for (let i = 0; i <= 20; i++) assert.deepEqual(await client.get(pool, 1, i), page(i))
      await client.put(pool, 2, 0, page(99))
      assert.equal(client.address, `unix:${v0b.socketPath}`)
      await client.close()
    } finally {
      await Promise.all([v0a.stop(), v0b.stop()])
    }
  })

  void test('tmem save then tmem restore through a file; the restored client is taken over with its secret', async () => {
    const client = await connect({ path: a.socketPath }, { name: 'app' })
    const persistent = await client.newPool({ persistent: true })
    const ephemeral = await client.newPool()
    for (let i = 0; i < 300; i++) await client.put(persistent, BigInt(i % 7) << 70n, i, page(i))
    await client.put(ephemeral, 5, 5, page(5))
    const file = join(dir, 'app.tmem')

    const saved = ok(await runTmem(['save', 'app', file], { controlPath: a.controlPath }))
    assert.match(saved, /^saved client \d+ \(app\): 2 pools, 300 pages, .* to .*app\.tmem/)
    assert.ok(statSync(file).size > 300 * PAGE)
    // The client was frozen for the save and got its state back.
    await client.put(persistent, 1n, 9999, page(9999))

    const restored = ok(
      await runTmem(['restore', 'app-copy', file], { controlPath: b.controlPath }),
    )
    assert.match(restored, /^restored client \d+ \(app-copy\): 2 pools, 300 pages from a v1 stream/)
    const secret = /^secret: ([0-9a-f]{64})$/m.exec(restored)?.[1]
    assert.ok(secret, restored)
    const again = await runTmem(['restore', 'app-copy', file], { controlPath: b.controlPath })
    assert.equal(again.code, 1)
    assert.match(again.stderr, /already has a client named app-copy/)
    const byId = ok(await runTmem(['restore', '77', file], { controlPath: b.controlPath }))
    assert.match(byId, /^restored client 77: 2 pools, 300 pages/)

    const copy = await connect({ path: b.socketPath }, { name: 'app-copy', secret })
    assert.equal(copy.resumed, true)
    for (let i = 0; i < 300; i++)
      assert.deepEqual(await copy.get(persistent, BigInt(i % 7) << 70n, i), page(i))
    assert.equal(await copy.get(ephemeral, 5, 5), null, 'ephemeral pools come back empty')
    assert.equal(
      await copy.get(persistent, 1n, 9999),
      null,
      'the put after the save is not in the file',
    )
    await copy.close()

    const liveFile = join(dir, 'app-live.tmem')
    const live = ok(
      await runTmem(['save', 'app', liveFile, '--live', '-q'], { controlPath: a.controlPath }),
    )
    assert.match(live, /^saved client \d+ \(app\): 2 pools, 301 pages, 0 invalidations/)
    const liveBack = ok(
      await runTmem(['restore', 'app-live', liveFile, '-q'], { controlPath: b.controlPath }),
    )
    assert.match(liveBack, /^restored client \d+ \(app-live\): 2 pools, 301 pages from a v1 stream/)
    const badFile = join(dir, 'missing.tmem')
    const missing = await runTmem(['restore', 'nope', badFile], { controlPath: b.controlPath })
    assert.equal(missing.code, 1)
    const nothing = await runTmem(['save', 'ghost', join(dir, 'ghost.tmem')], {
      controlPath: a.controlPath,
    })
    assert.equal(nothing.code, 1)
    assert.equal(existsSync(join(dir, 'ghost.tmem')), false)
    await client.close()
  })

  void test('over loopback TCP: --to host:port with the token file, the client follows to the TCP endpoint', async () => {
    const tcp = (tag: string): string[] => [
      '--listen',
      '127.0.0.1:0',
      '--control-listen',
      '127.0.0.1:0',
      '--token-file',
      join(dir, `${tag}.token`),
    ]
    const [ta, tb] = await Promise.all([
      startDaemon({ args: tcp('a') }),
      startDaemon({ args: tcp('b') }),
    ])
    try {
      assert.ok(
        ta.tcpPort !== null &&
          tb.tcpPort !== null &&
          tb.controlTcpPort !== null &&
          tb.tokenFile !== null,
      )
      const client = await connect({ host: '127.0.0.1', port: ta.tcpPort }, { name: 'tcp-guest' })
      const pool = await client.newPool({ persistent: true })
      for (let i = 0; i < 100; i++) await client.put(pool, 4, i, page(i))
      const noToken = await runTmem(
        ['migrate', 'tcp-guest', '--to', `127.0.0.1:${tb.controlTcpPort}`],
        { controlPath: ta.controlPath },
      )
      assert.equal(noToken.code, 2)
      assert.match(noToken.stderr, /--to-token-file/)
      const moved = ok(
        await runTmem(
          [
            'migrate',
            'tcp-guest',
            '--to',
            `127.0.0.1:${tb.controlTcpPort}`,
            '--to-token-file',
            tb.tokenFile,
          ],
          { controlPath: ta.controlPath },
        ),
      )
      assert.match(moved, new RegExp(`to tcp:127\\.0\\.0\\.1:${tb.tcpPort} as client`))
      // The source daemon dialled the target's TCP control endpoint itself, with the token.
      assert.match(moved, /100 pages pushed by the source/)
      assert.equal(client.address, `tcp:127.0.0.1:${tb.tcpPort}`)
      for (let i = 0; i < 100; i += 10) assert.deepEqual(await client.get(pool, 4, i), page(i))
      await client.close()
    } finally {
      await Promise.all([ta.stop(), tb.stop()])
    }
  })

  void test('tmem migrate: progress on stderr, summary on stdout, the client follows', async () => {
    const client = await connect({ path: a.socketPath }, { name: 'mover' })
    const pool = await client.newPool({ persistent: true })
    for (let i = 0; i < 500; i++) await client.put(pool, 3, i, page(i))
    const result = ok(
      await runTmem(['migrate', 'mover', '--to', b.controlPath], { controlPath: a.controlPath }),
    )
    assert.match(
      result,
      /^migrated client \d+ \(mover\) to unix:\S+ as client \d+: \d+ records, .* frozen [\d.]+ ms, 500 pages pushed by the source\n?$/,
    )
    for (let i = 0; i < 500; i += 50) assert.deepEqual(await client.get(pool, 3, i), page(i))
    assert.equal(client.address, `unix:${b.socketPath}`)
    await client.put(pool, 3, 500, page(500))
    // And back, with --no-push: every page relayed through the command.
    const back = ok(
      await runTmem(['migrate', 'mover', '--to', a.controlPath, '--no-push'], {
        controlPath: b.controlPath,
      }),
    )
    assert.match(back, /, relayed\n?$/)
    assert.equal(client.address, `unix:${a.socketPath}`)
    for (let i = 0; i <= 500; i += 50) assert.deepEqual(await client.get(pool, 3, i), page(i))
    await client.close()
  })
})
