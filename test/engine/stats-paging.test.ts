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
