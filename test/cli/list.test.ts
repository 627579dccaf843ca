/**
 * `tmem list` against a real daemon: clients and pages made with the client library, then the
 * CLI run as a child process. `list -l` is read with a Xen-style parser (two letters + ':') and
 * every counter it carries is compared with the daemon's STATS; the short Xen form, the table,
 * `--json`, a single client by id and by name, an unknown client (exit 1), and the control
 * endpoint found through TMEM_CONTROL_SOCKET, the default path, and TCP with a token.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, type TmemClient } from '../../src/client/client.js'
import { connectControl, type TmemControlClient } from '../../src/client/control.js'
import type { ClientStats, DaemonStats, HostStats } from '../../src/protocol/stats.js'
import { runTmem } from '../helpers/cli.js'
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js'
import { xenLines, xenNumber, xenValue } from '../helpers/xen-list.js'
import { HANG_GUARD_MS } from '../helpers/hang.js'

function page(seed: number): Uint8Array {
  return new Uint8Array(4096).fill(seed & 0xff)
}

function host(stats: DaemonStats): HostStats {
  return stats.host
}

function engineClient(stats: DaemonStats, id: number): ClientStats {
  const found = host(stats).clients.find((client) => client.id === id)
  assert.ok(found, `client ${id} is in STATS`)
  return found
}

void describe('tmem list', { timeout: HANG_GUARD_MS }, () => {
  let runtime: string
  let daemon: DaemonHandle
  let controlPath: string
  let control: TmemControlClient
  let web: TmemClient
  let db: TmemClient

  before(async () => {
    // The control socket sits where a default daemon puts it under XDG_RUNTIME_DIR, so one
    // test can run `tmem list` with no option and no TMEM_* variable at all.
    runtime = mkdtempSync(join(tmpdir(), 'tmem-cli-xdg-'))
    mkdirSync(join(runtime, 'tmem'))
    daemon = await startDaemon({
      args: [
        '--control-socket',
        join(runtime, 'tmem', 'control.sock'),
        '--control-listen',
        '127.0.0.1:0',
        '--token-file',
        join(runtime, 'tmem', 'control.token'),
      ],
    })
    controlPath = join(runtime, 'tmem', 'control.sock')
    control = await connectControl({ path: controlPath })
    web = await connect({ path: daemon.socketPath }, { name: 'web-1' })
    db = await connect({ path: daemon.socketPath }, { name: 'db-1' })
    const cache = await web.newPool()
    const swap = await web.newPool({ persistent: true })
    for (let i = 0; i < 6; i++) await web.put(cache, 10n, i, page(i))
    await web.put(cache, 11n, 0, page(9))
    await web.put(cache, 10n, 0, page(1)) // a duplicate put
    for (let i = 0; i < 3; i++) await web.put(swap, [1n, 2n, 3n], i, page(40 + i))
    assert.ok(await web.get(cache, 10n, 2))
    assert.equal(await web.get(cache, 10n, 99), null)
    assert.ok(await web.get(swap, [1n, 2n, 3n], 1))
    await web.flushPage(cache, 10n, 5)
    await web.flushObject(cache, 11n)
    const dbPool = await db.newPool({ persistent: true })
    await db.put(dbPool, 1n, 0, page(77))
  })
  after(async () => {
    await web.close()
    await db.close()
    await control.close()
    assert.equal(await daemon.stop(), 0)
    rmSync(runtime, { recursive: true, force: true })
  })

  void test('list -l is the Xen LIST text, and its counters match STATS', async () => {
    const result = await runTmem(['list', '-l'], { controlPath })
    assert.equal(result.code, 0, result.stderr)
    assert.equal(result.stderr, '')
    const stats = await control.stats()
    const lines = xenLines(result.stdout)
    assert.equal(
      lines.length,
      result.stdout.trimEnd().split('\n').length,
      'every line is a Xen line',
    )
    assert.deepEqual(lines.map((line) => line.tag).join(''), 'GCPPCPT')
    assert.match(result.stdout, /^G=Tt:\d+,Te:\d+,Cf:0,/)

    const g = lines[0]!.text
    const h = host(stats)
    assert.ok(
      xenNumber(g, 'Tt') > 0 && xenNumber(g, 'Tt') <= h.totalOps,
      'Tt counts ops up to this LIST',
    )
    assert.equal(xenNumber(g, 'Ec'), h.ephemeralPages)
    assert.equal(xenNumber(g, 'Pc'), h.pages)
    assert.equal(xenNumber(g, 'Oc'), h.objects)
    assert.equal(xenNumber(g, 'Ep'), h.goodEphemeralPuts)
    assert.equal(xenNumber(g, 'Et'), h.evicted)

    const clientLines = lines.filter((line) => line.tag === 'C')
    assert.deepEqual(
      clientLines.map((line) => xenNumber(line.text, 'CI')),
      h.clients.map((client) => client.id),
    )
    for (const line of clientLines) {
      const client = engineClient(stats, xenNumber(line.text, 'CI'))
      assert.equal(xenNumber(line.text, 'ww'), client.weight)
      assert.equal(xenNumber(line.text, 'fr'), client.frozen ? 1 : 0)
      assert.equal(xenNumber(line.text, 'Ge'), client.succEphemeralGets)
      assert.equal(xenNumber(line.text, 'Pp'), client.succPersistentPuts)
      assert.equal(xenNumber(line.text, 'Gp'), client.succPersistentGets)
      assert.equal(xenNumber(line.text, 'Ec'), client.ephemeralPages)
    }
    for (const line of lines.filter((candidate) => candidate.tag === 'P')) {
      const client = engineClient(stats, xenNumber(line.text, 'CI'))
      const pool = client.pools.find((candidate) => candidate.poolId === xenNumber(line.text, 'PI'))
      assert.ok(pool, line.text)
      const expected: [string, number][] = [
        ['Pc', pool.pages],
        ['Oc', pool.objects],
        ['ps', pool.goodPuts],
        ['pt', pool.puts],
        ['pr', pool.dupPutsReplaced],
        ['pd', pool.dupPutsFlushed],
        ['gs', pool.foundGets],
        ['gt', pool.gets],
        ['fs', pool.flushesFound],
        ['ft', pool.flushes],
        ['os', pool.flushObjectsFound],
        ['ot', pool.flushObjects],
      ]
      for (const [key, value] of expected)
        assert.equal(xenNumber(line.text, key), value, `${key} in ${line.text}`)
      assert.equal(
        line.text.slice(line.text.indexOf('PT:') + 3, line.text.indexOf('PT:') + 5),
        pool.persistent ? 'PP' : 'EP',
      )
    }
    // The web client's pools as the workload left them (a hit in a private ephemeral pool takes
    // the page out: 7 pages, one hit, one flushed page, one flushed object of one page).
    const webId = web.clientId
    const cache = engineClient(stats, webId).pools[0]!
    assert.deepEqual(
      [cache.pages, cache.puts, cache.dupPutsReplaced, cache.gets, cache.foundGets],
      [4, 8, 1, 2, 1],
    )
  })

  void test('list --xen is the short form; list -l CLIENT only that client', async () => {
    const [short, one, byName] = await Promise.all([
      runTmem(['list', '--xen'], { controlPath }),
      runTmem(['list', '-l', String(db.clientId)], { controlPath }),
      runTmem(['list', '-l', 'db-1'], { controlPath }),
    ])
    assert.equal(short.code, 0, short.stderr)
    assert.match(
      short.stdout,
      /^G=Tt:\d+,Te:\d+,Cf:0,Af:0,Pf:0,Ta:\d+,Lm:0,Et:\d+,Ea:\d+,Rt:\d+,Ra:\d+,Rx:\d+,Fp:0\n/,
    )
    assert.ok(!short.stdout.includes('Ec:'), 'short form has no long group')
    assert.equal(one.code, 0, one.stderr)
    assert.deepEqual(
      xenLines(one.stdout).map((line) => line.tag),
      ['C', 'P'],
    )
    assert.equal(xenNumber(one.stdout, 'CI'), db.clientId)
    assert.equal(xenNumber(xenLines(one.stdout)[1]!.text, 'Pc'), 1)
    assert.equal(byName.code, 0, byName.stderr)
    assert.equal(byName.stdout, one.stdout, 'a name selects the same client as its id')
  })

  void test('list prints a readable table; --json prints host.stats() with names', async () => {
    const [table, json, one] = await Promise.all([
      runTmem(['list'], { controlPath }),
      runTmem(['list', '--json'], { controlPath }),
      runTmem(['list', 'web-1', '--json'], { controlPath }),
    ])
    assert.equal(table.code, 0, table.stderr)
    assert.match(
      table.stdout,
      /^tmem host: 64 MiB budget \(16384 pages\), 2 clients, 3 pools, \d+ ops/,
    )
    assert.match(table.stdout, /^memory: +\d+(\.\d)? KiB used of 64 MiB \(\d+ pages, /m)
    const rows = table.stdout.split('\n').map((line) => line.split(/\s+/))
    const header = rows.find((row) => row[0] === 'ID' && row[1] === 'NAME')
    assert.ok(header, table.stdout)
    const webRow = rows.find((row) => row[1] === 'web-1')
    assert.ok(webRow, table.stdout)
    const cell = (name: string): string => webRow[header.indexOf(name)] ?? ''
    assert.equal(cell('ID'), String(web.clientId))
    assert.equal(cell('STATE'), 'connected')
    assert.equal(cell('EPHEMERAL'), '4')
    assert.equal(cell('PERSISTENT'), '3')
    assert.equal(cell('GETS'), '3')
    assert.equal(cell('HIT'), '67%')
    const poolHeader = rows.find((row) => row[0] === 'ID' && row[1] === 'POOL')
    assert.ok(poolHeader)
    const poolRows = rows.filter(
      (row) => row[0] === String(web.clientId) && /^(ephemeral|persistent)/.test(row[2] ?? ''),
    )
    assert.deepEqual(
      poolRows.map((row) => [row[1], row[2], row[poolHeader.indexOf('PAGES')]]),
      [
        ['0', 'ephemeral', '4'],
        ['1', 'persistent', '3'],
      ],
    )

    assert.equal(json.code, 0, json.stderr)
    const document = JSON.parse(json.stdout) as Omit<HostStats, 'clients'> & {
      clients: (ClientStats & { name: string })[]
    }
    const stats = await control.stats()
    assert.equal(document.budgetPages, host(stats).budgetPages)
    assert.deepEqual(
      document.clients.map((client) => client.name),
      ['web-1', 'db-1'],
    )
    assert.deepEqual(document.clients[0]!.pools, engineClient(stats, web.clientId).pools)
    const single = JSON.parse(one.stdout) as { clients: { id: number }[] }
    assert.deepEqual(
      single.clients.map((client) => client.id),
      [web.clientId],
    )
  })

  void test('an unknown client fails with exit 1 and names the errno', async () => {
    const results = await Promise.all([
      runTmem(['list', '-l', '4321'], { controlPath }),
      runTmem(['list', '4321'], { controlPath }),
      runTmem(['list', 'no-such-client'], { controlPath }),
    ])
    for (const result of results.slice(0, 2)) {
      assert.equal(result.code, 1, result.stderr)
      assert.match(result.stderr, /^tmem: list failed: EPERM \(-1\)/)
      assert.equal(result.stdout, '')
    }
    assert.equal(results[2].code, 1)
    assert.match(
      results[2].stderr,
      /^tmem: list failed: no client named "no-such-client" \(known: web-1, db-1\)/,
    )
  })

  void test('the control endpoint: default path, TCP with the token, a wrong token', async () => {
    const tokenFile = join(runtime, 'tmem', 'control.token')
    const wrongToken = join(runtime, 'wrong.token')
    writeFileSync(wrongToken, 'not-the-token\n', { mode: 0o600 })
    const tcp = `127.0.0.1:${daemon.controlTcpPort}`
    const [byDefault, byTcp, byTcpEnv, wrong] = await Promise.all([
      runTmem(['list', '--xen'], { env: { XDG_RUNTIME_DIR: runtime } }),
      runTmem(['list', '--xen', '--control-listen', tcp, '--token-file', tokenFile]),
      runTmem(['list', '--xen'], { env: { TMEM_CONTROL_LISTEN: tcp, TMEM_TOKEN_FILE: tokenFile } }),
      runTmem(['list', '--control-listen', tcp, '--token-file', wrongToken]),
    ])
    for (const result of [byDefault, byTcp, byTcpEnv]) {
      assert.equal(result.code, 0, result.stderr)
      assert.equal(xenLines(result.stdout).filter((line) => line.tag === 'C').length, 2)
      assert.equal(xenValue(result.stdout, 'Cf'), 0n)
    }
    assert.equal(wrong.code, 3, 'a wrong token is an unreachable daemon')
    assert.match(wrong.stderr, /EBADTOKEN/)
  })
})
