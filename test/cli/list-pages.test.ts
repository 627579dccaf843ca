/**
 * The CLI at a host too big for one STATS reply (issue 13, item 3): 1,500 clients with 16 pools
 * each (about 8 MB of STATS JSON, where one reply carries at most 1 MiB). The old whole-host
 * STATS request is refused with ENOMEM there, which is what locked the operator out; `tmem
 * list`, `list -l`, `list --json` (with the default page and with small pages) and freeze,
 * thaw and set on one client must all work. The oracle is the set of client ids this test
 * created (with gaps between them, so the daemon's id scan is exercised) and the pool kinds
 * it gave each; every client must be listed exactly once.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { TMEMC_RESTORE_BEGIN } from '../../src/abi/constants.js'
import { controlOp } from '../../src/abi/codec.js'
import { poolFlags } from '../../src/abi/flags.js'
import { connect, type TmemClient } from '../../src/client/client.js'
import { connectControl, type TmemControlClient } from '../../src/client/control.js'
import { restoreNewOp } from '../../src/migrate/channel.js'
import type { ClientStats, HostStats } from '../../src/protocol/stats.js'
import { type CliResult, runTmem } from '../helpers/cli.js'
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js'
import { xenLines, xenNumber } from '../helpers/xen-list.js'
import { HANG_GUARD_MS } from '../helpers/hang.js'

const CLIENTS = 1500
const POOLS = 16
/** Ids 100, 103, 106, ...: gaps between clients. */
const FIRST_ID = 100
const ID_STEP = 3
/** Small pages: many requests per listing. */
const SMALL_PAGE_BYTES = 40_000

/** Pool slot `slot` of every made client is persistent when the slot is odd. */
function persistentSlot(slot: number): boolean {
  return slot % 2 === 1
}

function ok(result: CliResult): string {
  assert.equal(result.code, 0, `exit ${result.code}: ${result.stderr}`)
  assert.equal(result.stderr, '')
  return result.stdout
}

/** Every element once: the sorted list, or a failure naming a duplicate. */
function once(ids: number[]): number[] {
  const sorted = [...ids].sort((a, b) => a - b)
  for (let i = 1; i < sorted.length; i++)
    assert.notEqual(sorted[i], sorted[i - 1], `client ${sorted[i]} listed twice`)
  return sorted
}

void describe(
  'tmem list and one-client verbs on a host bigger than one STATS reply',
  { timeout: HANG_GUARD_MS },
  () => {
    let daemon: DaemonHandle
    let control: TmemControlClient
    let web: TmemClient
    /** The oracle: every client id there is. */
    let expected: number[]
    let tmem: (...args: string[]) => Promise<CliResult>

    async function makeClient(id: number): Promise<void> {
      assert.equal((await control.control(controlOp(TMEMC_RESTORE_BEGIN, id))).rc, 1)
      const made = await Promise.all(
        Array.from({ length: POOLS }, (_, slot) =>
          control.control(
            restoreNewOp(id, slot, poolFlags({ persistent: persistentSlot(slot) }), [0n, 0n]),
          ),
        ),
      )
      assert.deepEqual(
        made.map((result) => result.rc),
        Array.from({ length: POOLS }, (_, slot) => slot),
      )
    }

    before(async () => {
      daemon = await startDaemon()
      control = await connectControl({ path: daemon.controlPath })
      web = await connect({ path: daemon.socketPath }, { name: 'web-1' })
      await web.newPool()
      const made = Array.from({ length: CLIENTS }, (_, i) => FIRST_ID + ID_STEP * i)
      for (let i = 0; i < made.length; i += 100)
        await Promise.all(made.slice(i, i + 100).map((id) => makeClient(id)))
      expected = once([web.clientId, ...made])
      tmem = (...args) => runTmem(args, { controlPath: daemon.controlPath })
    })
    after(async () => {
      await web.close()
      await control.close()
      assert.equal(await daemon.stop(), 0)
    })

    async function oneClient(id: number): Promise<ClientStats> {
      const page = await control.statsPage({ form: 'id', id })
      assert.equal(page.host.clients.length, 1)
      return page.host.clients[0]!
    }

    void test('the whole-host STATS request is refused with ENOMEM (why the CLI pages)', async () => {
      await assert.rejects(control.stats(), { code: 'ENOMEM' })
    })

    void test('tmem list shows every client once, with its pools, at any page size', async () => {
      for (const pageArgs of [[], ['--page-size', String(SMALL_PAGE_BYTES)]]) {
        const out = ok(await tmem('list', ...pageArgs))
        assert.match(
          out,
          new RegExp(`^tmem host: .*, ${expected.length} clients, ${CLIENTS * POOLS + 1} pools, `),
        )
        const rows = out.split('\n').map((line) => line.split(/\s+/))
        const clientHeader = rows.findIndex((row) => row[0] === 'ID' && row[1] === 'NAME')
        const poolHeader = rows.findIndex((row) => row[0] === 'ID' && row[1] === 'POOL')
        assert.ok(clientHeader >= 0 && poolHeader > clientHeader, 'one client and one pool table')
        assert.equal(rows.filter((row) => row[0] === 'ID').length, 2, 'each header once')
        const clientRows = rows.slice(clientHeader + 1, poolHeader).filter((row) => row[0] !== '')
        assert.deepEqual(once(clientRows.map((row) => Number(row[0]))), expected)
        const poolRows = rows.slice(poolHeader + 1).filter((row) => row[0] !== '')
        assert.equal(poolRows.length, CLIENTS * POOLS + 1)
        for (const row of poolRows.filter((candidate) => Number(candidate[0]) >= FIRST_ID)) {
          const kind = persistentSlot(Number(row[1])) ? 'persistent' : 'ephemeral'
          assert.equal(row[2], kind, row.join(' '))
        }
      }
    })

    void test('tmem list -l pages the Xen text: G= first, T= last, each client once', async () => {
      for (const pageArgs of [[], ['--page-size', String(SMALL_PAGE_BYTES)]]) {
        const lines = xenLines(ok(await tmem('list', '-l', ...pageArgs)))
        assert.equal(lines[0]?.tag, 'G')
        assert.equal(lines.at(-1)?.tag, 'T')
        assert.equal(lines.filter((line) => line.tag === 'G' || line.tag === 'T').length, 2)
        const clientIds = lines
          .filter((line) => line.tag === 'C')
          .map((line) => xenNumber(line.text, 'CI'))
        assert.deepEqual(once(clientIds), expected)
        const poolLines = lines.filter((line) => line.tag === 'P')
        assert.equal(poolLines.length, CLIENTS * POOLS + 1)
        for (const line of poolLines) {
          if (xenNumber(line.text, 'CI') < FIRST_ID) continue
          const persistent = line.text.includes('PT:PP')
          assert.equal(persistent, persistentSlot(xenNumber(line.text, 'PI')), line.text)
        }
      }
    })

    void test('tmem list --json is one document with every client, named', async () => {
      const out = ok(await tmem('list', '--json', '--page-size', String(SMALL_PAGE_BYTES)))
      const document = JSON.parse(out) as Omit<HostStats, 'clients'> & {
        clients: (ClientStats & { name: string | null })[]
      }
      assert.deepEqual(once(document.clients.map((client) => client.id)), expected)
      assert.equal(document.clients.find((client) => client.id === web.clientId)?.name, 'web-1')
      const sample = document.clients.find((client) => client.id === FIRST_ID + ID_STEP * 700)
      assert.deepEqual(
        sample?.pools.map((pool) => [pool.slot, pool.persistent]),
        Array.from({ length: POOLS }, (_, slot) => [slot, persistentSlot(slot)]),
      )
    })

    void test('freeze, thaw and set act on one client, by id and by name', async () => {
      const id = FIRST_ID + ID_STEP * 1234
      assert.equal(ok(await tmem('freeze', String(id))), `froze client ${id}\n`)
      assert.equal((await oneClient(id)).frozen, true)
      assert.equal((await oneClient(id + ID_STEP)).frozen, false, 'only that client')
      assert.equal(ok(await tmem('thaw', String(id))), `thawed client ${id}\n`)
      assert.equal((await oneClient(id)).frozen, false)
      ok(await tmem('set', String(id), '-w', '7', '-c', '30'))
      const set = await oneClient(id)
      assert.deepEqual([set.weight, set.cap], [7, 30])
      ok(await tmem('freeze', 'web-1'))
      assert.equal((await oneClient(web.clientId)).frozen, true)
      ok(await tmem('thaw', 'web-1'))
      const unknown = await tmem('freeze', 'no-such-client')
      assert.equal(unknown.code, 1)
      assert.match(unknown.stderr, /no client named "no-such-client" \(known: web-1\)/)
      const missing = await tmem('freeze', String(FIRST_ID + 1))
      assert.equal(missing.code, 1)
      assert.match(missing.stderr, /EPERM \(-1\): the host has no tmem client/)
    })
  },
)
