/**
 * The control verbs against a real daemon: `freeze` (a put then fails with EFROZEN and counts
 * as px), `thaw`, `destroy` (Xen's meaning: a thaw that keeps the pages), `set -w/-c/-p` (shown
 * by `list -l` as ww/ca/co; a cap over 100 is EINVAL, exit 1), `freeable` and `flush --kb`
 * (the host's counters move as the output says), `shared-auth` (a second client can join a
 * shared pool only once authorised, and not after a revoke), and unknown clients (exit 1).
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, type TmemClient } from '../../src/client/client.js'
import { connectControl, type TmemControlClient } from '../../src/client/control.js'
import type { TmemError } from '../../src/client/errors.js'
import type { ClientStats, HostStats } from '../../src/engine/stats.js'
import { type CliResult, runTmem } from '../helpers/cli.js'
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js'
import { xenLines, xenNumber, xenSharers, xenValue } from '../helpers/xen-list.js'
import { HANG_GUARD_MS } from '../helpers/hang.js'

const UUID = '11223344-5566-7788-99aa-bbccddeeff00'

function page(seed: number): Uint8Array {
  return new Uint8Array(4096).fill(seed & 0xff)
}

function ok(result: CliResult): string {
  assert.equal(result.code, 0, `exit ${result.code}: ${result.stderr}`)
  assert.equal(result.stderr, '')
  return result.stdout
}

void describe('tmem control verbs', { timeout: HANG_GUARD_MS }, () => {
  let daemon: DaemonHandle
  let control: TmemControlClient
  let web: TmemClient
  let tmem: (...args: string[]) => Promise<CliResult>

  async function clientStats(id: number): Promise<ClientStats> {
    const host = (await control.stats()).host as HostStats
    const found = host.clients.find((client) => client.id === id)
    assert.ok(found, `client ${id} in STATS`)
    return found
  }

  /** The C= line of `tmem list -l CLIENT`. */
  async function clientLine(client: string): Promise<string> {
    const line = xenLines(ok(await tmem('list', '-l', client))).find(
      (candidate) => candidate.tag === 'C',
    )
    assert.ok(line)
    return line.text
  }

  /** The same line read with the control library (fewer processes; list.test.ts covers the CLI). */
  async function clientLineDirect(id: number): Promise<string> {
    return (await control.list(id, true)).split('\n')[0] ?? ''
  }

  before(async () => {
    daemon = await startDaemon()
    control = await connectControl({ path: daemon.controlPath })
    tmem = (...args) => runTmem(args, { controlPath: daemon.controlPath })
    web = await connect({ path: daemon.socketPath }, { name: 'web-1' })
  })
  after(async () => {
    await web.close()
    await control.close()
    assert.equal(await daemon.stop(), 0)
  })

  void test('freeze makes puts fail with EFROZEN; thaw and destroy (= thaw) let them in again', async () => {
    // Persistent, so that the gets below do not take the page out (a private ephemeral hit does).
    const pool = await web.newPool({ persistent: true })
    await web.put(pool, 1n, 0, page(1))
    assert.equal(ok(await tmem('freeze', 'web-1')), `froze client ${web.clientId} (web-1)\n`)
    assert.equal((await clientStats(web.clientId)).frozen, true)
    assert.equal(xenNumber(await clientLine('web-1'), 'fr'), 1)
    await assert.rejects(
      web.put(pool, 1n, 1, page(2)),
      (error: TmemError) => error.code === 'EFROZEN',
    )
    assert.ok(await web.get(pool, 1n, 0), 'gets still work while frozen')
    const poolLine = xenLines(await control.list(web.clientId, true)).find(
      (line) => line.tag === 'P',
    )
    assert.equal(xenNumber(poolLine?.text ?? '', 'px'), 1, 'the frozen put counts as px')

    assert.equal(
      ok(await tmem('thaw', String(web.clientId))),
      `thawed client ${web.clientId} (web-1)\n`,
    )
    assert.equal(await web.put(pool, 1n, 1, page(2)), true)

    ok(await tmem('freeze', '-a'))
    await assert.rejects(
      web.put(pool, 1n, 2, page(3)),
      (error: TmemError) => error.code === 'EFROZEN',
    )
    const destroyed = ok(await tmem('destroy', 'web-1'))
    assert.match(
      destroyed,
      /^destroy: thawed client \d+ \(web-1\) \(TMEMC_DESTROY only thaws, as in Xen/,
    )
    assert.equal((await clientStats(web.clientId)).frozen, false)
    assert.equal(await web.put(pool, 1n, 2, page(3)), true)
    assert.ok(await web.get(pool, 1n, 0), 'destroy kept the pages')
    await web.destroyPool(pool)
  })

  void test('set -w -c -p shows in list -l as ww, ca, co; a cap over 100 is EINVAL', async () => {
    const line = ok(await tmem('set', 'web-1', '-w', '7', '-c', '25', '-p', '1'))
    assert.equal(line, `set client ${web.clientId} (web-1): weight 7, cap 25, compress 1\n`)
    let c = await clientLine('web-1')
    assert.deepEqual([xenNumber(c, 'ww'), xenNumber(c, 'ca'), xenNumber(c, 'co')], [7, 25, 1])
    const stats = await clientStats(web.clientId)
    assert.deepEqual([stats.weight, stats.cap, stats.compress], [7, 25, true])

    const refused = await tmem('set', 'web-1', '-w', '3', '-c', '101', '-p', '0')
    assert.equal(refused.code, 1)
    assert.equal(refused.stderr, 'tmem: set -c failed: EINVAL (-22)\n')
    c = await clientLineDirect(web.clientId)
    assert.deepEqual(
      [xenNumber(c, 'ww'), xenNumber(c, 'ca'), xenNumber(c, 'co')],
      [3, 25, 1],
      'stopped at -c',
    )

    ok(await tmem('set', '-a', '-w', '0', '-c', '0', '-p', 'off'))
    c = await clientLineDirect(web.clientId)
    assert.deepEqual([xenNumber(c, 'ww'), xenNumber(c, 'ca'), xenNumber(c, 'co')], [0, 0, 0])
  })

  void test('freeable and flush --kb: what they print is what the host did', async () => {
    const pool = await web.newPool()
    for (let i = 0; i < 600; i++) await web.put(pool, 5n, i, page(i))
    const start = (await control.stats()).host as HostStats
    const freeable = ok(await tmem('freeable'))
    assert.match(freeable, /^\d+\n$/)
    assert.equal(Number(freeable), start.freeableMb)
    assert.ok(Number(freeable) >= 2, 'about 600 ephemeral pages are 2 MiB')

    const ta = (text: string): number =>
      xenNumber(xenLines(text).find((line) => line.tag === 'G')?.text ?? '', 'Ta')
    const freeListBefore = ta(await control.list())
    const flushed = ok(await tmem('flush', '--kb', '1024'))
    const match = /^released (\d+) KiB \((\d+) pages\)\n$/.exec(flushed)
    assert.ok(match, flushed)
    assert.equal(Number(match[2]) * 4, Number(match[1]))
    assert.ok(Number(match[2]) >= 256, 'at least the 1024 KiB asked for')
    const end = (await control.stats()).host as HostStats
    const evicted = end.evicted - start.evicted
    assert.equal(
      Number(match[2]),
      freeListBefore + evicted,
      'released = the free list + the pages evicted for it',
    )
    assert.equal(end.ephemeralPages, start.ephemeralPages - evicted)
    assert.equal(ta(await control.list()), 0, 'the whole free list went back to the host')
    await web.destroyPool(pool)
  })

  void test('shared-auth lets a second client join a shared pool; -A 0 revokes', async () => {
    const a = await connect({ path: daemon.socketPath }, { name: 'share-a' })
    const b = await connect({ path: daemon.socketPath }, { name: 'share-b' })
    try {
      // A client exists in the engine after its first call (spec §5.6).
      const first = await b.newPool()
      await b.destroyPool(first)
      const unauthorised = await a.newPool({ shared: true, uuid: UUID })
      assert.equal(
        (await clientStats(a.clientId)).pools[0]?.shared,
        false,
        'without auth the pool is private',
      )
      await a.destroyPool(unauthorised)

      for (const name of ['share-a', 'share-b']) {
        const line = ok(await tmem('shared-auth', name, '-u', UUID, '-A', '1'))
        assert.match(
          line,
          new RegExp(`^authorised client \\d+ \\(${name}\\) for shared pool ${UUID}\n$`),
        )
      }
      const poolA = await a.newPool({ shared: true, uuid: UUID })
      const poolB = await b.newPool({ shared: true, uuid: UUID })
      await a.put(poolA, 42n, 0, page(42))
      assert.deepEqual(await b.get(poolB, 42n, 0), page(42), 'b reads what a put')

      const text = ok(await tmem('list', '-l'))
      const s = xenLines(text).find((line) => line.tag === 'S')
      assert.ok(s, text)
      assert.deepEqual(xenSharers(s.text), [a.clientId, b.clientId])
      assert.equal(xenValue(s.text, 'U1', true), 0x1122334455667788n)
      assert.equal(xenValue(s.text, 'U0', true), 0x99aabbccddeeff00n)

      assert.match(
        ok(await tmem('shared-auth', 'share-b', '-u', UUID, '-A', '0')),
        /^revoked client \d+ \(share-b\)/,
      )
      assert.match(
        ok(await tmem('shared-auth', 'share-b', '-u', UUID, '-A', '0')),
        /was not authorised/,
      )
      const again = await b.newPool({ shared: true, uuid: UUID })
      const joined = (await clientStats(b.clientId)).pools.find((pool) => pool.slot === again)
      assert.equal(joined?.shared, false, 'after the revoke a new join is a private pool')
    } finally {
      await a.close()
      await b.close()
    }
  })

  void test('unknown clients: exit 1 with the errno named', async () => {
    const [freeze, thaw, set, auth, name] = await Promise.all([
      tmem('freeze', '4321'),
      tmem('thaw', '4321'),
      tmem('set', '4321', '-w', '1'),
      tmem('shared-auth', '4321', '-u', UUID, '-A', '1'),
      tmem('destroy', 'nobody'),
    ])
    assert.equal(freeze.code, 1)
    assert.equal(
      freeze.stderr,
      'tmem: freeze failed: EPERM (-1): the host has no tmem client 4321\n',
    )
    assert.equal(thaw.code, 1)
    assert.match(thaw.stderr, /^tmem: thaw failed: EPERM \(-1\)/)
    assert.equal(set.code, 1)
    assert.match(set.stderr, /^tmem: set -w failed: EPERM \(-1\)/)
    assert.equal(auth.code, 1)
    assert.match(auth.stderr, /^tmem: shared-auth failed: EINVAL \(-22\)/)
    assert.equal(name.code, 1)
    assert.match(name.stderr, /^tmem: destroy failed: no client named "nobody"/)
    for (const result of [freeze, thaw, set, auth, name]) assert.equal(result.stdout, '')
  })
})
