/**
 * STATS bodies that need the host-wide sums (the whole host, the first page of a listing)
 * count them a step at a time, so other work runs while they are counted; and a whole-host
 * request for a host too big for one reply is answered -ENOMEM (null) from the counts alone.
 * The oracle is the engine's full snapshot, summed here by hand.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { pino } from 'pino'
import { Host } from '../../src/engine/host.js'
import { SessionTable } from '../../src/server/sessions.js'
import { statsBody } from '../../src/server/stats-pages.js'
import { withOtherWork } from '../helpers/other-work.js'
import type { DaemonSection, DaemonStats, StatsPage } from '../../src/protocol/stats.js'

function sources(host: Host): Parameters<typeof statsBody>[0] {
  const sessions = new SessionTable(host, 0, pino({ level: 'silent' }))
  return { host, sessions, daemonSection: () => ({}) as DaemonSection }
}

void test('a first page counts the host in steps and carries the sums of the full snapshot', async () => {
  const host = new Host({ pages: 256 })
  for (let id = 1; id <= 600; id++) {
    const guest = host.client(id)
    guest.newPool()
    if (id % 3 === 0) guest.newPool({ persistent: true })
  }
  const snapshot = host.stats()
  const pools = snapshot.clients.reduce((sum, client) => sum + client.pools.length, 0)
  const { value, turns } = await withOtherWork(async () => {
    const body = statsBody(
      sources(host),
      { form: 'page', first: 0, maxBytes: 0 },
      () => {
        throw new Error('a page never builds the whole snapshot')
      },
      50,
    )
    assert.ok(body instanceof Promise, 'a first page answers later')
    return (await body)!
  })
  const page = JSON.parse(value) as StatsPage
  assert.equal(page.page.totals?.clients, snapshot.clients.length)
  assert.equal(page.page.totals?.pools, pools)
  assert.ok(turns >= 600 / 50 - 1, `other work ran ${turns} times while the sums were counted`)
})

void test('pages after the first and one-client requests answer at once', () => {
  const host = new Host({ pages: 256 })
  host.client(7).newPool()
  const body = statsBody(sources(host), { form: 'id', id: 7 }, () => ({}) as DaemonStats, 50)
  assert.equal(typeof body, 'string')
  const later = statsBody(
    sources(host),
    { form: 'page', first: 8, maxBytes: 0 },
    () => {
      throw new Error('no snapshot')
    },
    50,
  )
  assert.equal(typeof later, 'string')
})

void test('the whole host: its snapshot when it fits, null (-ENOMEM) from the counts when not', async () => {
  const small = new Host({ pages: 256 })
  small.client(1).newPool()
  const fits = await statsBody(
    sources(small),
    null,
    () => ({ host: small.stats() }) as DaemonStats,
    50,
  )
  assert.ok(fits !== null && fits.includes('"clients"'))
  const big = new Host({ pages: 256 })
  for (let id = 1; id <= 3000; id++) big.client(id).newPool()
  let built = false
  const body = await statsBody(
    sources(big),
    null,
    () => {
      built = true
      return {} as DaemonStats
    },
    500,
  )
  assert.equal(body, null)
  assert.equal(built, false, 'the snapshot of a host that cannot fit is never built')
})
