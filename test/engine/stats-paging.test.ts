/**
 * The engine's side of paged listings and bounded metrics: `statsOf` (a snapshot of only the
 * named clients), `statsTotals` (host-wide sums without a snapshot of each) and
 * `topClientIds` (the clients holding the most pages). The oracle is what the test put: pages
 * and pools per client, sorted by a plain sort (most pages first, ties by lower id).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Host } from '../../src/engine/host.js'

/** Client id -> persistent pages put; made in this (not id) order. Clients 2 and 6 tie. */
const PAGES: [number, number][] = [
  [3, 5],
  [1, 0],
  [8, 9],
  [6, 4],
  [5, 12],
  [2, 4],
]

function host(): Host {
  const h = new Host({ pages: 256 })
  const page = new Uint8Array(4096).fill(1)
  for (const [id, pages] of PAGES) {
    const guest = h.client(id)
    const pool = guest.newPool({ persistent: true })
    guest.newPool()
    for (let i = 0; i < pages; i++) pool.put(1n, i, page)
  }
  return h
}

const byPages = [...PAGES].sort((a, b) => b[1] - a[1] || a[0] - b[0]).map(([id]) => id)

void test('topClientIds: the clients holding the most pages, ties by lower id', () => {
  const h = host()
  assert.deepEqual(h.topClientIds(3), byPages.slice(0, 3))
  assert.deepEqual(h.topClientIds(5), byPages.slice(0, 5), 'the tie of 2 and 6 in order')
  assert.deepEqual(h.topClientIds(100), byPages)
  assert.deepEqual(h.topClientIds(0), [])
})

void test('statsOf: only the named clients that exist, in the order named', () => {
  const h = host()
  const some = h.statsOf([8, 99, 3])
  assert.deepEqual(
    some.clients.map((client) => client.id),
    [8, 3],
  )
  assert.deepEqual(
    some.clients.map((client) => client.pools.map((pool) => pool.pages)),
    [
      [9, 0],
      [5, 0],
    ],
  )
  assert.deepEqual(h.statsOf([]).clients, [])
  assert.equal(h.statsOf([]).persistentPages, 5 + 9 + 4 + 12 + 4)
})

void test('statsTotals: clients and owned pools of the whole host', () => {
  const totals = host().statsTotals()
  assert.deepEqual(totals, {
    clients: PAGES.length,
    pools: 2 * PAGES.length,
    compressedPages: 0,
    compressedBytes: 0,
    compressPoor: 0,
  })
})

void test('StatsPass: any step size gives what a plain walk of the full snapshot gives', () => {
  // A bigger host with gaps in its ids, so steps end between clients and inside gaps.
  const h = new Host({ pages: 4096 })
  const page = new Uint8Array(4096).fill(2)
  for (let id = 1; id < 200; id += 1 + (id % 3)) {
    const guest = h.client(id)
    const pool = guest.newPool({ persistent: true })
    if (id % 4 === 0) guest.newPool()
    for (let i = 0; i < (id * 37) % 11; i++) pool.put(1n, i, page)
  }
  const snapshot = h.stats()
  const naive = snapshot.clients
    .map((client) => ({
      id: client.id,
      pages: client.pools.reduce((sum, pool) => sum + pool.pages, 0),
    }))
    .sort((a, b) => b.pages - a.pages || a.id - b.id)
  const pools = snapshot.clients.reduce(
    (sum, client) => sum + client.pools.filter((pool) => pool.ownerId === client.id).length,
    0,
  )
  for (const stepIds of [1, 3, 7, 64, 100_000]) {
    for (const max of [0, 1, 5, 16]) {
      const pass = h.statsPass(max)
      let steps = 1
      while (!pass.step(stepIds)) steps++
      assert.ok(steps >= Math.ceil(200 / stepIds) - 1, `${steps} steps of ${stepIds} ids`)
      assert.equal(pass.totals.clients, snapshot.clients.length)
      assert.equal(pass.totals.pools, pools)
      assert.deepEqual(
        pass.topIds,
        naive.slice(0, max).map((item) => item.id),
        `step ${stepIds}, max ${max}`,
      )
    }
  }
})
