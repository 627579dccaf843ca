/**
 * Conformance, Appendix B item 12 and D2: control subops (§5.2-5.5) — freeze, thaw, destroy
 * (= thaw), flush with its kB rounding, freeable memory, weight/cap/compress — and the
 * privilege split: control commands from a guest and guest commands from the control entry.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import {
  CMD,
  creatOp,
  ctrlOp,
  E,
  F,
  genOp,
  Harness,
  lineValue,
  page,
  samePage,
  SUB,
} from './conformance-helpers.js'

/** Clients 1, 2, 3 each with a private persistent pool holding one page. */
function threeClients(options = {}): Harness {
  const h = new Harness(options)
  for (const cli of [1, 2, 3]) {
    assert.equal(h.newPool(cli, F.PRIVATE_PERS), 0)
    assert.equal(h.put(cli, 0, 1, 0, page(cli)), 1)
  }
  return h
}

function frozenFlags(h: Harness): number[] {
  const text = h.list()
  return [1, 2, 3].map((cli) => lineValue(text, `C=CI:${cli},`, 'fr'))
}

void describe('conformance: FREEZE / THAW / DESTROY (spec §5.2, §5.3)', () => {
  void test('single client: FREEZE and THAW return 0 and change only that client', () => {
    const h = threeClients()
    assert.equal(h.ctrl(SUB.FREEZE, { cliId: 2 }), 0)
    assert.deepEqual(frozenFlags(h), [0, 1, 0])
    assert.equal(h.put(2, 0, 2, 0, page(9)), E.FROZEN)
    assert.equal(h.put(1, 0, 2, 0, page(9)), 1)
    assert.equal(h.get(2, 0, 1, 0), 1) // gets work while frozen
    assert.equal(h.ctrl(SUB.THAW, { cliId: 2 }), 0)
    assert.deepEqual(frozenFlags(h), [0, 0, 0])
    assert.equal(h.put(2, 0, 2, 0, page(9)), 1)
  })

  void test('DESTROY only thaws (spec §10 item 3): the client and its pages stay', () => {
    const h = threeClients()
    assert.equal(h.ctrl(SUB.FREEZE, { cliId: 3 }), 0)
    assert.equal(h.ctrl(SUB.DESTROY, { cliId: 3 }), 0)
    assert.deepEqual(frozenFlags(h), [0, 0, 0])
    assert.ok(samePage(h.fetch(3, 0, 1, 0).data, page(3)))
  })

  void test('all clients (0xFFFF, and 0xFFFFFFFF narrowed to 0xFFFF)', () => {
    const h = threeClients()
    assert.equal(h.ctrl(SUB.FREEZE, { cliId: 0xffff }), 0)
    assert.deepEqual(frozenFlags(h), [1, 1, 1])
    assert.equal(h.ctrl(SUB.THAW, { cliId: 0xffffffff }), 0)
    assert.deepEqual(frozenFlags(h), [0, 0, 0])
    assert.equal(h.ctrl(SUB.FREEZE, { cliId: 0xffffffff }), 0)
    assert.equal(h.ctrl(SUB.DESTROY, { cliId: 0xffff }), 0)
    assert.deepEqual(frozenFlags(h), [0, 0, 0])
    // "All" with no clients at all is fine.
    const empty = new Harness()
    assert.equal(empty.ctrl(SUB.FREEZE, { cliId: 0xffff }), 0)
  })

  void test('unknown client → -1 for THAW, FREEZE, DESTROY, SET_WEIGHT, SET_CAP, SET_COMPRESS', () => {
    const h = threeClients()
    for (const subop of [
      SUB.THAW,
      SUB.FREEZE,
      SUB.DESTROY,
      SUB.SET_WEIGHT,
      SUB.SET_CAP,
      SUB.SET_COMPRESS,
    ]) {
      assert.equal(h.ctrl(subop, { cliId: 4, arg1: 1 }), -1, `subop ${subop}`)
    }
    assert.doesNotMatch(h.list(), /C=CI:4/)
    assert.deepEqual(frozenFlags(h), [0, 0, 0])
  })

  void test('unassigned subops → -1, even naming an existing client and pool', () => {
    const h = threeClients()
    for (const subop of [9, 22, 23, 25, 29, 31, 34, 100, 0xffffffff]) {
      assert.equal(
        h.ctrl(subop, { cliId: 1, poolId: 0, arg1: 8192 }, new Uint8Array(8192)),
        -1,
        `subop ${subop}`,
      )
    }
  })
})

void describe('conformance: TMEMC_FLUSH (spec §4.5, §5.5)', () => {
  /** A full host of 512 ephemeral pages: the free list is empty. */
  function full(): Harness {
    const h = new Harness({ pages: 512, reservePages: 0 })
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
    const data = page(1)
    for (let i = 0; i < 512; i++) assert.equal(h.put(1, 0, i, 0, data), 1)
    return h
  }

  const cases: [number, number][] = [
    [0, 0],
    [1, 1],
    [3, 1],
    [4, 1],
    [5, 2],
    [8, 2],
    [9, 3],
    [1024, 256],
  ]
  for (const [kb, pages] of cases) {
    void test(`kb ${kb} → ${pages} page(s) evicted, returns ${pages * 4} KiB`, () => {
      const h = full()
      assert.equal(h.ctrl(SUB.FLUSH, { cliId: 0xffff, arg1: kb }), pages * 4)
      assert.equal(lineValue(h.list(), 'G=', 'Et'), pages)
      // The oldest pages went.
      if (pages > 0) assert.equal(h.get(1, 0, pages - 1, 0), 0)
      assert.equal(h.get(1, 0, pages, 0), 1)
    })
  }

  void test('the whole free list counts, even when more than requested', () => {
    const h = full()
    for (let i = 100; i < 103; i++) assert.equal(h.flushPage(1, 0, i, 0), 1)
    assert.equal(lineValue(h.list(), 'G=', 'Ta'), 3)
    assert.equal(h.ctrl(SUB.FLUSH, { cliId: 0xffff, arg1: 4 }), 12)
    assert.equal(lineValue(h.list(), 'G=', 'Et'), 0)
    // The whole free list went back to the host: the next flush has to evict.
    assert.equal(lineValue(h.list(), 'G=', 'Ta'), 0)
    assert.equal(h.ctrl(SUB.FLUSH, { cliId: 0xffff, arg1: 4 }), 4)
    assert.equal(lineValue(h.list(), 'G=', 'Et'), 1)
  })

  void test('the free list (Ta) holds frames tmem freed, not memory it never used', () => {
    const h = new Harness({ pages: 4096, reservePages: 0 })
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
    assert.equal(h.put(1, 0, 1, 0, page(1)), 1)
    assert.equal(lineValue(h.list(), 'G=', 'Ta'), 0)
    assert.equal(h.get(1, 0, 1, 0), 1)
    assert.equal(lineValue(h.list(), 'G=', 'Ta'), 1)
    // The next put takes its frame from the free list.
    assert.equal(h.put(1, 0, 2, 0, page(2)), 1)
    assert.equal(lineValue(h.list(), 'G=', 'Ta'), 0)
    assert.equal(h.ctrl(SUB.QUERY_FREEABLE_MB), 0)
  })

  void test('persistent pages are never flushed', () => {
    const h = new Harness({ pages: 512, reservePages: 0 })
    assert.equal(h.newPool(1, F.PRIVATE_PERS), 0)
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 1)
    for (let i = 0; i < 256; i++) assert.equal(h.put(1, 0, i, 0, page(i)), 1)
    for (let i = 0; i < 256; i++) assert.equal(h.put(1, 1, i, 0, page(i)), 1)
    assert.equal(h.ctrl(SUB.FLUSH, { cliId: 0xffff, arg1: 0xffffffff }), 1024)
    const text = h.list(0xffff, true)
    assert.equal(lineValue(text, 'G=', 'Et'), 256)
    assert.equal(lineValue(text, 'G=', 'Ec'), 0)
    assert.equal(lineValue(text, 'P=CI:1,PI:0,', 'Pc'), 256)
    assert.ok(samePage(h.fetch(1, 0, 255, 0).data, page(255)))
  })

  void test('a specific client → -1 ("not supported"), known or not; nothing evicted', () => {
    const h = full()
    assert.equal(h.ctrl(SUB.FLUSH, { cliId: 1, arg1: 4 }), -1)
    assert.equal(h.ctrl(SUB.FLUSH, { cliId: 5, arg1: 4 }), -1)
    assert.equal(lineValue(h.list(), 'G=', 'Et'), 0)
  })
})

void describe('conformance: QUERY_FREEABLE_MB (spec §4.5)', () => {
  void test('(free list + ephemeral pages) >> 8', () => {
    const h = new Harness({ pages: 1024, reservePages: 0 })
    assert.equal(h.ctrl(SUB.QUERY_FREEABLE_MB), 0)
    assert.equal(h.newPool(1, F.PRIVATE_PERS), 0)
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 1)
    assert.equal(h.put(1, 0, 1, 0, page(1)), 1)
    for (let i = 0; i < 1023; i++) assert.equal(h.put(1, 1, i, 0, page(2)), 1)
    // Memory full: free list 0, 1023 ephemeral pages.
    assert.equal(h.ctrl(SUB.QUERY_FREEABLE_MB), 3)
    // The persistent page's frame goes to the free list: 1 + 1023 = 1024 → 4.
    assert.equal(h.flushPage(1, 0, 1, 0), 1)
    assert.equal(h.ctrl(SUB.QUERY_FREEABLE_MB), 4)
  })

  void test('persistent pages are not freeable', () => {
    const h = new Harness({ pages: 1024, reservePages: 0 })
    assert.equal(h.newPool(1, F.PRIVATE_PERS), 0)
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 1)
    for (let i = 0; i < 768; i++) assert.equal(h.put(1, 0, i, 0, page(1)), 1)
    for (let i = 0; i < 256; i++) assert.equal(h.put(1, 1, i, 0, page(1)), 1)
    assert.equal(h.ctrl(SUB.QUERY_FREEABLE_MB), 1)
    for (let i = 0; i < 256; i++) assert.equal(h.flushPage(1, 1, i, 0), 1)
    assert.equal(h.ctrl(SUB.QUERY_FREEABLE_MB), 1)
    for (let i = 0; i < 256; i++) assert.equal(h.put(1, 0, 1000 + i, 0, page(1)), 1)
    assert.equal(h.ctrl(SUB.QUERY_FREEABLE_MB), 0)
  })
})

void describe('conformance: SET_WEIGHT / SET_CAP / SET_COMPRESS (spec §5.2, §5.4, D6, D13)', () => {
  void test('values appear in LIST (ww, ca, co) and in the save subops', () => {
    const h = threeClients()
    assert.equal(h.ctrl(SUB.SET_WEIGHT, { cliId: 1, arg1: 25 }), 0)
    assert.equal(h.ctrl(SUB.SET_CAP, { cliId: 2, arg1: 40 }), 0)
    assert.equal(h.ctrl(SUB.SET_COMPRESS, { cliId: 3, arg1: 7 }), 0)
    const text = h.list()
    assert.match(text, /\nC=CI:1,ww:25,ca:0,co:0,fr:0,/)
    assert.match(text, /\nC=CI:2,ww:0,ca:40,co:0,fr:0,/)
    assert.match(text, /\nC=CI:3,ww:0,ca:0,co:1,fr:0,/)
    assert.equal(h.ctrl(SUB.SAVE_GET_CLIENT_WEIGHT, { cliId: 1 }), 25)
    assert.equal(h.ctrl(SUB.SAVE_GET_CLIENT_CAP, { cliId: 2 }), 40)
    assert.equal(h.ctrl(SUB.SAVE_GET_CLIENT_FLAGS, { cliId: 3 }), 1)
    assert.equal(h.ctrl(SUB.SET_COMPRESS, { cliId: 3, arg1: 0 }), 0)
    assert.equal(h.ctrl(SUB.SAVE_GET_CLIENT_FLAGS, { cliId: 3 }), 0)
  })

  void test('data round-trips with compression on', () => {
    const h = threeClients()
    assert.equal(h.ctrl(SUB.SET_COMPRESS, { cliId: 1, arg1: 1 }), 0)
    const zeros = new Uint8Array(4096)
    assert.equal(h.put(1, 0, 2, 0, zeros), 1)
    assert.equal(h.put(1, 0, 3, 0, page(3)), 1)
    assert.ok(samePage(h.fetch(1, 0, 2, 0).data, zeros))
    assert.ok(samePage(h.fetch(1, 0, 3, 0).data, page(3)))
    assert.ok(samePage(h.fetch(1, 0, 1, 0).data, page(1)))
  })

  void test('SET_COMPRESS is refused (-1) when dedup is on; compress stays off', () => {
    const h = threeClients({ dedup: true })
    assert.equal(h.ctrl(SUB.SET_COMPRESS, { cliId: 1, arg1: 1 }), -1)
    assert.match(h.list(), /\nC=CI:1,ww:0,ca:0,co:0,/)
    assert.equal(h.ctrl(SUB.SET_COMPRESS, { cliId: 1, arg1: 0 }), 0)
  })

  void test('SET_WEIGHT replaces the weight (the total follows the difference)', () => {
    const h = new Harness({ pages: 10, reservePages: 0 })
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
    assert.equal(h.newPool(2, F.PRIVATE_EPH), 0)
    // Weight 50 then 1 for client 1 and 1 for client 2: T must be 2, not 52.
    assert.equal(h.ctrl(SUB.SET_WEIGHT, { cliId: 1, arg1: 50 }), 0)
    assert.equal(h.ctrl(SUB.SET_WEIGHT, { cliId: 1, arg1: 1 }), 0)
    assert.equal(h.ctrl(SUB.SET_WEIGHT, { cliId: 2, arg1: 1 }), 0)
    for (let i = 1; i <= 9; i++) assert.equal(h.put(1, 0, 100 + i, 0, page(i)), 1)
    assert.equal(h.put(2, 0, 201, 0, page(1)), 1)
    // Client 2: C=1, T=2 → 1·2 = 2 > G·W = 10? no → the global oldest (101) goes. With a
    // total of 52 it would be over its share and evict its own 201 instead.
    assert.equal(h.put(2, 0, 202, 0, page(2)), 1)
    assert.equal(h.get(2, 0, 201, 0), 1)
    assert.equal(h.get(1, 0, 101, 0), 0)
  })
})

void describe('conformance: privilege split (D2)', () => {
  void test('control commands through op() → -EPERM, nothing changed, no client created', () => {
    const h = threeClients()
    assert.equal(h.host.op(1, ctrlOp(SUB.FREEZE, { cliId: 1 })), E.PERM)
    assert.equal(h.host.op(1, ctrlOp(SUB.FREEZE, { cliId: 0xffff })), E.PERM)
    assert.equal(h.host.op(1, ctrlOp(SUB.SET_WEIGHT, { cliId: 1, arg1: 9 })), E.PERM)
    assert.equal(h.host.op(9, ctrlOp(SUB.RESTORE_BEGIN, { cliId: 9 })), E.PERM)
    assert.equal(h.host.op(9, ctrlOp(SUB.FREEZE, { cliId: 1 })), E.PERM)
    const buffer = new Uint8Array(4096).fill(0xcc)
    assert.equal(h.host.op(9, ctrlOp(SUB.LIST, { cliId: 0xffff, arg1: 4096 }), buffer), E.PERM)
    assert.ok(buffer.every((byte) => byte === 0xcc))
    assert.equal(h.host.op(9, creatOp(CMD.AUTH, 0, 1, [1n, 1n], 0xffff)), E.PERM)
    assert.equal(h.host.op(9, creatOp(CMD.RESTORE_NEW, 0, F.PRIVATE_EPH, [0n, 0n], 9)), E.PERM)
    const text = h.list()
    assert.doesNotMatch(text, /C=CI:9/)
    assert.match(text, /\nC=CI:1,ww:0,ca:0,co:0,fr:0,/)
    assert.deepEqual(frozenFlags(h), [0, 0, 0])
    assert.equal(h.put(1, 0, 5, 0, page(5)), 1)
    // Through raw bytes as well.
    const bytes = new Uint8Array(56)
    bytes[8] = SUB.FREEZE
    bytes[12] = 0xff
    bytes[13] = 0xff
    assert.equal(h.host.opBytes(9, bytes, 0, 1, null, 0), E.PERM)
    assert.deepEqual(frozenFlags(h), [0, 0, 0])
    assert.doesNotMatch(h.list(), /C=CI:9/)
  })

  void test('guest commands through control() → -EPERM, nothing created', () => {
    const h = new Harness()
    assert.equal(h.host.control(creatOp(CMD.NEW_POOL, 0, F.PRIVATE_EPH, [0n, 0n])), E.PERM)
    for (const cmd of [
      CMD.DESTROY_POOL,
      CMD.PUT_PAGE,
      CMD.GET_PAGE,
      CMD.FLUSH_PAGE,
      CMD.FLUSH_OBJECT,
      CMD.NEW_PAGE,
      CMD.XCHG,
      55,
    ]) {
      assert.equal(h.host.control(genOp(cmd, 0, 1, 0), page(1)), E.PERM, `cmd ${cmd}`)
    }
    const text = h.list()
    assert.doesNotMatch(text, /\nC=/)
    assert.equal(lineValue(text, 'G=', 'Te'), 9)
  })
})
