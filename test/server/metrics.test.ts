/**
 * The metrics endpoint's bounds: however many clients and pools there are, a scrape emits
 * labelled series for at most METRICS_LABELLED_CLIENTS_MAX clients (the top ones by pages,
 * checked against a plain sort), plus host-wide counts; and scrapes close together share one
 * snapshot. Series are counted, nothing is timed.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { pino } from 'pino'
import type { HostStats } from '../../src/protocol/stats.js'
import type { HostLike } from '../../src/server/host-like.js'
import { Daemon } from '../../src/server/daemon.js'
import { Host } from '../../src/engine/host.js'
import { withOtherWork } from '../helpers/other-work.js'
import {
  METRICS_CLIENTS_PER_TURN,
  METRICS_LABELLED_CLIENTS_MAX,
  Metrics,
  hostSamples,
  type Sample,
} from '../../src/server/metrics.js'

const POOLS_PER_CLIENT = 16

/** A daemon with no listener at all: only its samples() are asked for. */
const NO_LISTENERS = {
  socketPath: null,
  controlSocketPath: null,
  listen: null,
  controlListen: null,
  tokenFile: null,
  metrics: null,
  graceMs: 0,
  acceptV0: false,
  connectionCountMax: 1,
  controlConnectionCountMax: 1,
}

/** A stats snapshot shaped like host.stats(): client i holds a scrambled number of pages. */
function fakeStats(clients: number): { clients: unknown[]; pages: number } {
  const list: unknown[] = []
  for (let i = 0; i < clients; i++) {
    const pages = (i * 7919) % 1000
    const pools = Array.from({ length: POOLS_PER_CLIENT }, (_, slot) => ({
      slot,
      pages: slot === 0 ? pages : 0,
      puts: slot,
      persistent: false,
      uuid: ['0', '0'],
    }))
    list.push({ id: i + 1, weight: 0, frozen: false, pools })
  }
  return { clients: list, pages: 0 }
}

/** The oracle: every client sorted by pages (more first), ties by lower id. */
function expectedTop(clients: number, max: number): string[] {
  return Array.from({ length: clients }, (_, i) => ({ id: i + 1, pages: (i * 7919) % 1000 }))
    .sort((a, b) => b.pages - a.pages || a.id - b.id)
    .slice(0, max)
    .map((c) => String(c.id))
}

function labelledClients(samples: Sample[]): Set<string> {
  const ids = new Set<string>()
  for (const sample of samples)
    if (sample.labels['client'] !== undefined) ids.add(sample.labels['client'])
  return ids
}

function valueOf(samples: Sample[], name: string): number | undefined {
  return samples.find((sample) => sample.name === name && Object.keys(sample.labels).length === 0)
    ?.value
}

void describe('metrics bounds', () => {
  void test('only the top clients by pages get labelled series; the rest are counted', () => {
    const out: Sample[] = []
    hostSamples(fakeStats(3000), () => '', out)
    const labelled = labelledClients(out)
    assert.deepEqual([...labelled].sort(), expectedTop(3000, METRICS_LABELLED_CLIENTS_MAX).sort())
    assert.equal(valueOf(out, 'tmem_clients'), 3000)
    assert.equal(valueOf(out, 'tmem_pools'), 3000 * POOLS_PER_CLIENT)
    assert.equal(valueOf(out, 'tmem_clients_unlabelled'), 3000 - METRICS_LABELLED_CLIENTS_MAX)
    // Each labelled client keeps all its pools' series.
    const poolSeries = out.filter((sample) => sample.name === 'tmem_pool_puts')
    assert.equal(poolSeries.length, METRICS_LABELLED_CLIENTS_MAX * POOLS_PER_CLIENT)
  })

  void test('fewer clients than the limit: all of them, in any order of arrival', () => {
    const out: Sample[] = []
    hostSamples(fakeStats(5), () => '', out, 8)
    assert.deepEqual([...labelledClients(out)].sort(), ['1', '2', '3', '4', '5'])
    assert.equal(valueOf(out, 'tmem_clients_unlabelled'), 0)
  })

  void test('a daemon with 20 000 clients x 16 pools emits a bounded number of series', async () => {
    const stats = fakeStats(20_000)
    const totals = {
      clients: 20_000,
      pools: 20_000 * POOLS_PER_CLIENT,
      compressedPages: 0,
      compressedBytes: 0,
      compressPoor: 0,
    }
    const host: HostLike = {
      opBytes: () => 0,
      controlBytes: () => 0,
      hasClient: () => false,
      destroyClient: () => false,
      stats: () => stats as unknown as HostStats,
      // As the engine answers: only the labelled clients are snapshotted, counts come apart.
      statsOf: (ids: readonly number[]) =>
        ({
          ...stats,
          clients: stats.clients.filter((client) => ids.includes((client as { id: number }).id)),
        }) as unknown as HostStats,
      statsTotals: () => totals,
      // The walk in steps, as the engine's StatsPass: its answer only once it is done.
      statsPass: (max: number) => {
        let steps = 0
        return {
          step: () => ++steps === 3,
          totals,
          get topIds() {
            assert.equal(steps, 3, 'the top clients are asked for after the last step')
            return expectedTop(20_000, max).map(Number)
          },
        }
      },
    }
    const daemon = await Daemon.start(host, NO_LISTENERS, pino({ level: 'silent' }))
    try {
      const samples = await daemon.samples()
      assert.ok(labelledClients(samples).size <= METRICS_LABELLED_CLIENTS_MAX)
      const perClient = samples.filter((sample) => sample.labels['client'] !== undefined).length
      // One labelled client yields its client fields plus its pools' fields; 64 is far above both.
      assert.ok(
        perClient <= METRICS_LABELLED_CLIENTS_MAX * (1 + POOLS_PER_CLIENT) * 64,
        `${perClient} labelled samples`,
      )
      assert.equal(valueOf(samples, 'tmem_clients'), 20_000)
      assert.equal(valueOf(samples, 'tmem_pools'), 20_000 * POOLS_PER_CLIENT)
      assert.deepEqual(
        [...labelledClients(samples)].sort(),
        expectedTop(20_000, METRICS_LABELLED_CLIENTS_MAX).sort(),
      )
    } finally {
      await daemon.close()
    }
  })

  void test('a scrape walks the clients a turn at a time: other work runs in between', async () => {
    const host = new Host({ pages: 256 })
    const clients = 3 * METRICS_CLIENTS_PER_TURN + 5
    for (let id = 1; id <= clients; id++) host.client(id).newPool()
    const daemon = await Daemon.start(host, NO_LISTENERS, pino({ level: 'silent' }))
    try {
      const { value: samples, turns } = await withOtherWork(() => daemon.samples())
      assert.ok(turns >= 3, `the other work ran ${turns} times during the scrape`)
      assert.equal(valueOf(samples, 'tmem_clients'), clients)
      assert.equal(valueOf(samples, 'tmem_pools'), clients)
    } finally {
      await daemon.close()
    }
  })

  void test('scrapes close together share one snapshot', async () => {
    let collected = 0
    const metrics = new Metrics(() => {
      collected++
      return [{ name: 'tmem_test_value', help: 'test', labels: {}, value: collected }]
    }, 60_000)
    const [a, b] = await Promise.all([metrics.render(), metrics.render()])
    const c = await metrics.render()
    assert.equal(collected, 1)
    assert.equal(a, b)
    assert.equal(a, c)
    assert.match(a, /^tmem_test_value 1$/m)
  })
})
