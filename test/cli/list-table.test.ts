/**
 * The readable `tmem list` pieces a newcomer reads first, from a STATS reply built here: a
 * restored client kept without a grace timer is not shown as counting down (`detached-41s`),
 * and "pages free" is the budget minus the frames in use (not only the free frames of the
 * arenas made so far). The host part comes from a real engine; the expected numbers are
 * worked out from the budget and the pages put. Also `--timeout` help of the long verbs.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Host } from '../../src/engine/host.js'
import type { DaemonStats } from '../../src/protocol/stats.js'
import { listTable } from '../../src/cli/list-table.js'
import { runTmem } from '../helpers/cli.js'

/** More than one arena (16384 frames), so arenas are made as needed. */
const BUDGET = 65536

function stats(sessions: Record<string, unknown>[]): DaemonStats {
  const host = new Host({ pages: BUDGET })
  const guest = host.client(1)
  const pool = guest.newPool({ persistent: true })
  const page = new Uint8Array(4096).fill(7)
  for (let i = 0; i < 10; i++) pool.put(1n, i, page)
  host.client(2).newPool({ persistent: false })
  return {
    daemon: {
      framesRejected: 0,
      framesReceived: 0,
      framesRejectedByReason: {},
    } as unknown as DaemonStats['daemon'],
    sessions: sessions as unknown as DaemonStats['sessions'],
    host: host.stats(),
  }
}

function stateOf(table: string, id: number): string | undefined {
  const row = table.split('\n').find((line) => line.startsWith(`${id} `))
  return row?.split(/\s+/)[2]
}

void describe('tmem list table', () => {
  void test('a restored client with no grace timer is "restored"; a dropped one counts its time', () => {
    const table = listTable(
      stats([
        {
          id: 1,
          name: 'web-1',
          abi: 1,
          connected: false,
          detachedMs: 41_000,
          pending: false,
          moved: false,
          held: true,
        },
        {
          id: 2,
          name: 'db-1',
          abi: 1,
          connected: false,
          detachedMs: 12_000,
          pending: false,
          moved: false,
          held: false,
        },
      ]),
      null,
    )
    assert.equal(stateOf(table, 1), 'restored')
    assert.equal(stateOf(table, 2), 'detached-12s')
  })

  void test('"pages free" is the budget less the frames in use', () => {
    const table = listTable(stats([]), null)
    const memory = table.split('\n').find((line) => line.startsWith('memory:')) ?? ''
    const used = Number(/\((\d+) pages?, /.exec(memory)?.[1])
    assert.ok(used >= 10, memory)
    assert.match(memory, new RegExp(`, ${BUDGET - used} pages free,`))
  })

  void test('the summary has a shared-memory line when STATS has daemon.shm, and none without', () => {
    const base = stats([])
    const shmLine = (table: string): string | undefined =>
      table.split('\n').find((line) => line.startsWith('shm:'))
    assert.equal(shmLine(listTable(base, null)), undefined)
    const shm = {
      available: true,
      reason: '',
      regions: 2,
      bytesMapped: 2 * 1024 * 1024,
      regionsAttached: 5,
      regionsRefused: 1,
      regionsBroken: 0,
      opsServed: 12345,
      opsRefused: 3,
      kicksSent: 40,
      kicksReceived: 41,
      ringFull: 7,
      sleeps: 9,
    }
    const on = { ...base, daemon: { ...base.daemon, shm } }
    assert.equal(
      shmLine(listTable(on, null)),
      'shm:     2 regions mapped (2 MiB), 5 attached so far, 1 refused, 0 broken; ' +
        '12345 ops via rings (3 refused); kicks 40 sent, 41 received; 7 ring full',
    )
    const off = {
      ...base,
      daemon: {
        ...base.daemon,
        shm: { ...shm, available: false, reason: 'unavailable: --no-shm' },
      },
    }
    assert.equal(shmLine(listTable(off, null)), 'shm:     off (unavailable: --no-shm)')
    assert.equal(shmLine(listTable(on, 1)), undefined, 'one client: no host summary')
  })
})

void describe('long verbs and --timeout', () => {
  void test('save, restore and migrate --help say the timeout defaults to none', async () => {
    for (const verb of ['save', 'restore', 'migrate']) {
      const result = await runTmem([verb, '--help'])
      assert.equal(result.code, 0)
      const help = result.stdout.replace(/\s+/g, ' ')
      assert.match(help, /--timeout <duration> .*\(default: none, env: TMEM_TIMEOUT\)/, verb)
      assert.doesNotMatch(help, /default: "10s"/, verb)
    }
  })
})
