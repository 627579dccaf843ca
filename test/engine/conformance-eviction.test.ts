/**
 * Conformance, Appendix B item 11 with the project decisions: eviction order (§4.2, §4.3), the
 * minimum reserve (§4.4), the weighted quota rule (D5: a client holding more than its weighted
 * share, C·T > G·W, evicts its own oldest page; otherwise the global oldest; fallback to the
 * global LRU when none of its own pages is eligible), the cap (D6), and persistent pages under
 * pressure (§4.6, D12). Which page went is observed through GET results (and the Et counter).
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { E, F, Harness, lineValue, page, samePage, SUB } from './conformance-helpers.js'

/** Non-destructive presence check for a persistent or shared pool, destructive for private. */
function present(h: Harness, cli: number, poolId: number, oid: number, index = 0): boolean {
  const rc = h.get(cli, poolId, oid, index)
  assert.ok(rc === 1 || rc === 0 || rc === E.EMPTY, `unexpected get result ${rc}`)
  return rc === 1
}

void describe('conformance: eviction order (spec §4.2, §4.3)', () => {
  void test('reservePages 0: exact capacity, then the oldest global-LRU page goes first', () => {
    const h = new Harness({ pages: 4, reservePages: 0 })
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
    assert.equal(h.newPool(2, F.PRIVATE_EPH), 0)
    for (let i = 1; i <= 4; i++) assert.equal(h.put(1, 0, i, 0, page(i)), 1)
    assert.equal(lineValue(h.list(), 'G=', 'Et'), 0)
    // A fifth page (from another client) evicts client 1's oldest page.
    assert.equal(h.put(2, 0, 5, 0, page(5)), 1)
    assert.equal(h.put(1, 0, 6, 0, page(6)), 1)
    const text = h.list(0xffff, true)
    assert.equal(lineValue(text, 'G=', 'Et'), 2)
    assert.equal(lineValue(text, 'G=', 'Ec'), 4)
    assert.equal(lineValue(text, 'C=CI:1,', 'Ec'), 3)
    assert.equal(lineValue(text, 'C=CI:2,', 'Ec'), 1)
    assert.equal(present(h, 1, 0, 1), false)
    assert.equal(present(h, 1, 0, 2), false)
    for (const oid of [3, 4, 6]) assert.equal(present(h, 1, 0, oid), true, `oid ${oid}`)
    assert.equal(present(h, 2, 0, 5), true)
    h.check()
  })

  void test('a shared-pool hit moves the page to the LRU tail', () => {
    const h = new Harness({ pages: 4, reservePages: 0, sharedAuth: false })
    assert.equal(h.newPool(1, F.SHARED_EPH, [1n, 1n]), 0)
    for (let i = 1; i <= 4; i++) assert.equal(h.put(1, 0, i, 0, page(i)), 1)
    assert.equal(h.get(1, 0, 1, 0), 1) // 1 becomes the newest
    assert.equal(h.put(1, 0, 5, 0, page(5)), 1) // evicts 2
    assert.equal(h.put(1, 0, 6, 0, page(6)), 1) // evicts 3
    assert.equal(present(h, 1, 0, 1), true)
    assert.equal(present(h, 1, 0, 2), false)
    assert.equal(present(h, 1, 0, 3), false)
    assert.equal(present(h, 1, 0, 4), true)
  })

  void test('a hit by another sharer refreshes the page too', () => {
    const h = new Harness({ pages: 3, reservePages: 0, sharedAuth: false })
    assert.equal(h.newPool(1, F.SHARED_EPH, [1n, 1n]), 0)
    assert.equal(h.newPool(2, F.SHARED_EPH, [1n, 1n]), 0)
    for (let i = 1; i <= 3; i++) assert.equal(h.put(1, 0, i, 0, page(i)), 1)
    assert.equal(h.get(2, 0, 1, 0), 1)
    assert.equal(h.put(2, 0, 4, 0, page(4)), 1)
    assert.equal(present(h, 1, 0, 1), true)
    assert.equal(present(h, 1, 0, 2), false)
  })

  void test('a put never evicts pages of the object it writes: a full budget of one object → -ENOMEM', () => {
    const h = new Harness({ pages: 3, reservePages: 0 })
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
    for (let i = 0; i < 3; i++) assert.equal(h.put(1, 0, 7, i, page(i)), 1)
    assert.equal(h.put(1, 0, 7, 3, page(3)), E.NOMEM)
    const text = h.list(0xffff, true)
    assert.equal(lineValue(text, 'P=CI:1,PI:0,', 'px'), 1)
    assert.equal(lineValue(text, 'P=CI:1,PI:0,', 'Pc'), 3)
    assert.equal(lineValue(text, 'G=', 'Et'), 0)
    // Another object can still be written: it evicts the oldest page of object 7.
    assert.equal(h.put(1, 0, 8, 0, page(8)), 1)
    assert.equal(present(h, 1, 0, 7, 0), false)
    assert.equal(present(h, 1, 0, 7, 1), true)
    h.check()
  })

  void test('flushing frees room: no eviction needed afterwards', () => {
    const h = new Harness({ pages: 2, reservePages: 0 })
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
    assert.equal(h.put(1, 0, 1, 0, page(1)), 1)
    assert.equal(h.put(1, 0, 2, 0, page(2)), 1)
    assert.equal(h.flushPage(1, 0, 2, 0), 1)
    assert.equal(h.put(1, 0, 3, 0, page(3)), 1)
    assert.equal(lineValue(h.list(), 'G=', 'Et'), 0)
    assert.equal(present(h, 1, 0, 1), true)
  })
})

void describe('conformance: minimum reserve (spec §4.4, default reservePages)', () => {
  void test('default reserve min(256, pages >> 4): 64 pages keep 4 free before each put', () => {
    // Before each put, evict while fewer than 4 frames are free. Puts 1..61 find ≥ 4 free;
    // from put 62 on each put evicts the oldest page first. After 70 puts: 61 pages, 9 evicted.
    const h = new Harness({ pages: 64 })
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
    for (let i = 1; i <= 70; i++) assert.equal(h.put(1, 0, i, 0, page(i)), 1)
    const text = h.list(0xffff, true)
    assert.equal(lineValue(text, 'G=', 'Et'), 9)
    assert.equal(lineValue(text, 'G=', 'Ec'), 61)
    for (let i = 1; i <= 9; i++) assert.equal(present(h, 1, 0, i), false, `oid ${i}`)
    for (let i = 10; i <= 70; i++)
      assert.ok(samePage(h.fetch(1, 0, i, 0).data, page(i)), `oid ${i}`)
  })

  void test('the reserve step evicts before a persistent put as well (ephemeral pages only)', () => {
    const h = new Harness({ pages: 32, reservePages: 2 })
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
    assert.equal(h.newPool(1, F.PRIVATE_PERS), 1)
    for (let i = 1; i <= 30; i++) assert.equal(h.put(1, 0, i, 0, page(i)), 1)
    // 2 free: no eviction. Then a persistent put leaves 1 free; the next put evicts one first.
    assert.equal(h.put(1, 1, 100, 0, page(100)), 1)
    assert.equal(lineValue(h.list(), 'G=', 'Et'), 0)
    assert.equal(h.put(1, 1, 101, 0, page(101)), 1)
    assert.equal(lineValue(h.list(), 'G=', 'Et'), 1)
    assert.equal(present(h, 1, 0, 1), false)
    assert.equal(present(h, 1, 0, 2), true)
  })

  void test('the reserve loop gives up after the 11th failed eviction (Ea), then the put goes on', () => {
    const h = new Harness({ pages: 8, reservePages: 4 })
    assert.equal(h.newPool(1, F.PRIVATE_PERS), 0)
    for (let i = 1; i <= 5; i++) assert.equal(h.put(1, 0, i, 0, page(i)), 1)
    assert.equal(lineValue(h.list(), 'G=', 'Ea'), 0)
    // 3 free < 4 and nothing is evictable: 11 failed attempts, then the put is served.
    assert.equal(h.put(1, 0, 6, 0, page(6)), 1)
    assert.equal(lineValue(h.list(), 'G=', 'Ea'), 11)
    assert.equal(h.put(1, 0, 7, 0, page(7)), 1)
    assert.equal(h.put(1, 0, 8, 0, page(8)), 1)
    const text = h.list()
    assert.equal(lineValue(text, 'G=', 'Ea'), 33)
    assert.equal(lineValue(text, 'G=', 'Et'), 0)
    assert.equal(h.put(1, 0, 9, 0, page(9)), E.NOMEM)
  })

  void test('the reserve is 256 pages on a large host', () => {
    const h = new Harness({ pages: 8192 })
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
    for (let i = 1; i <= 7937; i++) assert.equal(h.put(1, 0, i, 0, page(0)), 1)
    assert.equal(lineValue(h.list(), 'G=', 'Et'), 0)
    assert.equal(h.put(1, 0, 7938, 0, page(0)), 1)
    assert.equal(lineValue(h.list(), 'G=', 'Et'), 1)
  })
})

void describe('conformance: weighted quota (D5)', () => {
  /** pages 10, reservePages 0; clients 1 and 2 with private ephemeral pools, weights set. */
  function weighted(w1: number, w2: number): Harness {
    const h = new Harness({ pages: 10, reservePages: 0 })
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
    assert.equal(h.newPool(2, F.PRIVATE_EPH), 0)
    assert.equal(h.ctrl(SUB.SET_WEIGHT, { cliId: 1, arg1: w1 }), 0)
    assert.equal(h.ctrl(SUB.SET_WEIGHT, { cliId: 2, arg1: w2 }), 0)
    return h
  }

  void test('a client over its weighted share evicts its own oldest page, not the global oldest', () => {
    const h = weighted(1, 1)
    assert.equal(h.put(2, 0, 201, 0, page(1)), 1) // global oldest
    assert.equal(h.put(2, 0, 202, 0, page(2)), 1)
    for (let i = 1; i <= 8; i++) assert.equal(h.put(1, 0, 100 + i, 0, page(i)), 1)
    // Client 1: C=8, T=2, G=10, W=1 → C·T = 16 > G·W = 10: over its share.
    assert.equal(h.put(1, 0, 109, 0, page(9)), 1)
    assert.equal(present(h, 2, 0, 201), true)
    assert.equal(present(h, 2, 0, 202), true)
    assert.equal(present(h, 1, 0, 101), false)
    assert.equal(present(h, 1, 0, 102), true)
  })

  void test("a client within its share evicts the global oldest (someone else's page)", () => {
    const h = weighted(1, 1)
    for (let i = 1; i <= 8; i++) assert.equal(h.put(1, 0, 100 + i, 0, page(i)), 1)
    assert.equal(h.put(2, 0, 201, 0, page(1)), 1)
    assert.equal(h.put(2, 0, 202, 0, page(2)), 1)
    // Client 2: C=2 → 2·2 = 4 > 10·1? no → global LRU: client 1's oldest.
    assert.equal(h.put(2, 0, 203, 0, page(3)), 1)
    assert.equal(present(h, 1, 0, 101), false)
    assert.equal(present(h, 2, 0, 201), true)
  })

  void test('exactly at the share (C·T = G·W) is not over it', () => {
    const h = weighted(1, 1)
    assert.equal(h.put(2, 0, 201, 0, page(1)), 1)
    for (let i = 1; i <= 5; i++) assert.equal(h.put(1, 0, 100 + i, 0, page(i)), 1)
    for (let i = 2; i <= 5; i++) assert.equal(h.put(2, 0, 200 + i, 0, page(i)), 1)
    // Client 1: C=5, 5·2 = 10 = 10·1 → global oldest: client 2's 201.
    assert.equal(h.put(1, 0, 106, 0, page(6)), 1)
    assert.equal(present(h, 2, 0, 201), false)
    assert.equal(present(h, 1, 0, 101), true)
  })

  void test("weights matter: raising a client's weight brings it within its share", () => {
    const h = weighted(3, 1)
    assert.equal(h.put(2, 0, 201, 0, page(1)), 1)
    assert.equal(h.put(2, 0, 202, 0, page(2)), 1)
    for (let i = 1; i <= 8; i++) assert.equal(h.put(1, 0, 100 + i, 0, page(i)), 1)
    // Client 1: C=8, T=4, W=3 → C·T = 32 > G·W = 30: over, evicts its own oldest.
    assert.equal(h.put(1, 0, 109, 0, page(9)), 1)
    assert.equal(present(h, 1, 0, 101), false)
    assert.equal(present(h, 2, 0, 201), true)
    // Weight 9:1 (T=10): C=8 → 80 > 90? no: within its share, the global oldest goes.
    assert.equal(h.ctrl(SUB.SET_WEIGHT, { cliId: 1, arg1: 9 }), 0)
    assert.equal(h.put(1, 0, 110, 0, page(10)), 1)
    assert.equal(present(h, 2, 0, 201), false)
    assert.equal(present(h, 1, 0, 102), true)
  })

  void test('weight 0 (or total 0) means never over quota: the global oldest goes', () => {
    const h = weighted(0, 1)
    assert.equal(h.put(2, 0, 201, 0, page(1)), 1)
    for (let i = 1; i <= 9; i++) assert.equal(h.put(1, 0, 100 + i, 0, page(i)), 1)
    assert.equal(h.put(1, 0, 110, 0, page(10)), 1)
    assert.equal(present(h, 2, 0, 201), false)
    assert.equal(present(h, 1, 0, 101), true)
  })

  void test('fallback: over its share but none of its own pages eligible → the global LRU', () => {
    const h = weighted(1, 1)
    assert.equal(h.put(2, 0, 201, 0, page(1)), 1)
    assert.equal(h.put(2, 0, 202, 0, page(2)), 1)
    // All of client 1's pages are in object 100, which the next put writes (not eligible).
    for (let i = 0; i < 8; i++) assert.equal(h.put(1, 0, 100, i, page(i)), 1)
    assert.equal(h.put(1, 0, 100, 8, page(8)), 1)
    assert.equal(present(h, 2, 0, 201), false)
    assert.equal(present(h, 2, 0, 202), true)
    for (let i = 0; i <= 8; i++) assert.equal(present(h, 1, 0, 100, i), true, `index ${i}`)
  })

  void test('SET_WEIGHT for all clients (0xFFFF) sets every client', () => {
    const h = weighted(0, 0)
    assert.equal(h.ctrl(SUB.SET_WEIGHT, { cliId: 0xffff, arg1: 7 }), 0)
    const text = h.list()
    assert.equal(lineValue(text, 'C=CI:1,', 'ww'), 7)
    assert.equal(lineValue(text, 'C=CI:2,', 'ww'), 7)
  })
})

void describe('conformance: cap (D6)', () => {
  void test('a client at its cap evicts its own oldest page although memory is free', () => {
    const h = new Harness({ pages: 100, reservePages: 0 })
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
    assert.equal(h.newPool(2, F.PRIVATE_EPH), 0)
    for (let i = 1; i <= 5; i++) assert.equal(h.put(2, 0, 200 + i, 0, page(i)), 1)
    assert.equal(h.ctrl(SUB.SET_CAP, { cliId: 1, arg1: 10 }), 0) // 10 % of 100 pages
    for (let i = 1; i <= 10; i++) assert.equal(h.put(1, 0, 100 + i, 0, page(i)), 1)
    assert.equal(lineValue(h.list(), 'G=', 'Et'), 0)
    assert.equal(h.put(1, 0, 111, 0, page(11)), 1)
    assert.equal(h.put(1, 0, 112, 0, page(12)), 1)
    const text = h.list(0xffff, true)
    assert.equal(lineValue(text, 'C=CI:1,', 'Ec'), 10)
    assert.equal(lineValue(text, 'C=CI:2,', 'Ec'), 5)
    assert.equal(lineValue(text, 'C=CI:1,', 'ca'), 10)
    assert.equal(present(h, 1, 0, 101), false)
    assert.equal(present(h, 1, 0, 102), false)
    assert.equal(present(h, 1, 0, 103), true)
    for (let i = 1; i <= 5; i++) assert.equal(present(h, 2, 0, 200 + i), true)
    h.check()
  })

  void test('the cap counts only ephemeral pages; persistent puts are not capped', () => {
    const h = new Harness({ pages: 100, reservePages: 0 })
    assert.equal(h.newPool(1, F.PRIVATE_PERS), 0)
    assert.equal(h.ctrl(SUB.SET_CAP, { cliId: 1, arg1: 5 }), 0)
    for (let i = 1; i <= 20; i++) assert.equal(h.put(1, 0, i, 0, page(i)), 1)
    assert.equal(lineValue(h.list(), 'G=', 'Et'), 0)
  })

  void test('cap 0 = no cap; cap 100 = whole host; SET_CAP > 100 → -EINVAL', () => {
    const h = new Harness({ pages: 8, reservePages: 0 })
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
    assert.equal(h.ctrl(SUB.SET_CAP, { cliId: 1, arg1: 101 }), -22)
    assert.equal(h.ctrl(SUB.SET_CAP, { cliId: 1, arg1: 0xffffffff }), -22)
    assert.equal(lineValue(h.list(), 'C=CI:1,', 'ca'), 0)
    assert.equal(h.ctrl(SUB.SET_CAP, { cliId: 1, arg1: 100 }), 0)
    for (let i = 1; i <= 8; i++) assert.equal(h.put(1, 0, i, 0, page(i)), 1)
    assert.equal(lineValue(h.list(), 'G=', 'Et'), 0)
    assert.equal(h.ctrl(SUB.SET_CAP, { cliId: 1, arg1: 0 }), 0)
    assert.equal(h.put(1, 0, 9, 0, page(9)), 1)
    assert.equal(lineValue(h.list(), 'G=', 'Et'), 1)
  })
})

void describe('conformance: persistent pages under pressure (spec §4.6, D12)', () => {
  void test('persistent pages are never evicted; a persistent put with no room → -ENOMEM', () => {
    const h = new Harness({ pages: 4, reservePages: 0 })
    assert.equal(h.newPool(1, F.PRIVATE_PERS), 0)
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 1)
    assert.equal(h.put(1, 0, 1, 0, page(1)), 1)
    assert.equal(h.put(1, 0, 2, 0, page(2)), 1)
    assert.equal(h.put(1, 1, 3, 0, page(3)), 1)
    assert.equal(h.put(1, 1, 4, 0, page(4)), 1)
    // Persistent puts evict ephemeral pages (oldest first)...
    assert.equal(h.put(1, 0, 5, 0, page(5)), 1)
    assert.equal(present(h, 1, 1, 3), false)
    assert.equal(h.put(1, 0, 6, 0, page(6)), 1)
    // ...and when none is left, fail without touching persistent pages.
    assert.equal(h.put(1, 0, 7, 0, page(7)), E.NOMEM)
    assert.equal(h.put(1, 1, 8, 0, page(8)), E.NOMEM)
    const text = h.list(0xffff, true)
    assert.equal(lineValue(text, 'P=CI:1,PI:0,', 'px'), 1)
    assert.equal(lineValue(text, 'P=CI:1,PI:1,', 'px'), 1)
    assert.equal(lineValue(text, 'G=', 'Et'), 2)
    for (const oid of [1, 2, 5, 6])
      assert.ok(samePage(h.fetch(1, 0, oid, 0).data, page(oid)), `oid ${oid}`)
    // A duplicate put needs no new frame: it still works at full memory.
    assert.equal(h.put(1, 0, 1, 0, page(11)), 1)
    assert.ok(samePage(h.fetch(1, 0, 1, 0).data, page(11)))
    h.check()
  })

  void test('frames freed by a flush or a pool destruction are reused', () => {
    const h = new Harness({ pages: 4, reservePages: 0 })
    assert.equal(h.newPool(1, F.PRIVATE_PERS), 0)
    for (let i = 1; i <= 4; i++) assert.equal(h.put(1, 0, i, 0, page(i)), 1)
    assert.equal(h.put(1, 0, 5, 0, page(5)), E.NOMEM)
    assert.equal(h.flushObject(1, 0, 2), 1)
    assert.equal(h.put(1, 0, 5, 0, page(5)), 1)
    assert.equal(h.destroy(1, 0), 1)
    assert.equal(h.newPool(1, F.PRIVATE_PERS), 0)
    for (let i = 1; i <= 4; i++) assert.equal(h.put(1, 0, i, 0, page(i)), 1)
    h.check()
  })
})
