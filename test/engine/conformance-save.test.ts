/**
 * Conformance, Appendix B item 14 at engine level: the save and restore subops of spec §6.1
 * with the project's fixes (D4, D10, §10 items 8, 12, 22; §9 rules for unknown clients and
 * pool ids). The stream itself is tested elsewhere.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import {
  ALL,
  E,
  F,
  Harness,
  lineValue,
  page,
  samePage,
  SUB,
  u32At,
  u64At,
} from './conformance-helpers.js'

const BUF = 4096 + 32

interface Record {
  poolId: number
  index: number
  oid: [bigint, bigint, bigint]
  data: Uint8Array
}

function nextPage(h: Harness, cli: number, poolId: number): { rc: number; record: Record | null } {
  const buffer = new Uint8Array(BUF).fill(0xaa)
  const rc = h.ctrl(SUB.SAVE_GET_NEXT_PAGE, { cliId: cli, poolId, arg1: BUF }, buffer)
  if (rc !== 1) return { rc, record: null }
  return {
    rc,
    record: {
      poolId: u32At(buffer, 0),
      index: u32At(buffer, 4),
      oid: [u64At(buffer, 8), u64At(buffer, 16), u64At(buffer, 24)],
      data: buffer.slice(32),
    },
  }
}

function nextInv(
  h: Harness,
  cli: number,
): { rc: number; handle: [number, number, bigint, bigint, bigint] | null } {
  const buffer = new Uint8Array(32)
  const rc = h.ctrl(SUB.SAVE_GET_NEXT_INV, { cliId: cli, arg1: 32 }, buffer)
  if (rc !== 1) return { rc, handle: null }
  return {
    rc,
    handle: [
      u32At(buffer, 0),
      u32At(buffer, 4),
      u64At(buffer, 8),
      u64At(buffer, 16),
      u64At(buffer, 24),
    ],
  }
}

/** Dom 1: slot 0 private ephemeral, slot 1 private persistent, slot 2 shared ephemeral. */
function saved(): Harness {
  const h = new Harness({ sharedAuth: false })
  assert.equal(h.newPool(1, F.PRIVATE_EPH, [0x10n, 0x20n]), 0)
  assert.equal(h.newPool(1, F.PRIVATE_PERS, [0x30n, 0x40n]), 1)
  assert.equal(h.newPool(1, F.SHARED_EPH, [0x8899aabbccddeeffn, 0x1122334455667788n]), 2)
  return h
}

void describe('conformance: SAVE_BEGIN / SAVE_END (spec §6.1, §5.3)', () => {
  void test('unknown client or a client without pools → 0 and nothing happens', () => {
    const h = new Harness()
    assert.equal(h.ctrl(SUB.SAVE_BEGIN, { cliId: 1 }), 0)
    assert.equal(h.get(1, 0, 0, 0), E.NODEV) // client 1 now exists, no pools
    assert.equal(h.ctrl(SUB.SAVE_BEGIN, { cliId: 1 }), 0)
    assert.match(h.list(), /\nC=CI:1,ww:0,ca:0,co:0,fr:0,/)
  })

  void test('SAVE_BEGIN freezes, SAVE_END restores the previous frozen state', () => {
    const h = saved()
    assert.equal(h.ctrl(SUB.SAVE_BEGIN, { cliId: 1 }), 1)
    assert.equal(lineValue(h.list(), 'C=CI:1,', 'fr'), 1)
    assert.equal(h.put(1, 1, 1, 0, page(1)), E.FROZEN)
    assert.equal(h.ctrl(SUB.SAVE_GET_CLIENT_FLAGS, { cliId: 1 }), 0)
    assert.equal(h.ctrl(SUB.SAVE_END, { cliId: 1 }), 0)
    assert.equal(lineValue(h.list(), 'C=CI:1,', 'fr'), 0)
    assert.equal(h.put(1, 1, 1, 0, page(1)), 1)
    // Frozen before the save: stays frozen after it, and the FROZEN client flag (2) is set.
    assert.equal(h.ctrl(SUB.FREEZE, { cliId: 1 }), 0)
    assert.equal(h.ctrl(SUB.SAVE_BEGIN, { cliId: 1 }), 1)
    assert.equal(h.ctrl(SUB.SAVE_GET_CLIENT_FLAGS, { cliId: 1 }), 2)
    assert.equal(h.ctrl(SUB.SET_COMPRESS, { cliId: 1, arg1: 1 }), 0)
    assert.equal(h.ctrl(SUB.SAVE_GET_CLIENT_FLAGS, { cliId: 1 }), 3)
    assert.equal(h.ctrl(SUB.SAVE_END, { cliId: 1 }), 0)
    assert.equal(lineValue(h.list(), 'C=CI:1,', 'fr'), 1)
  })

  void test('SAVE_END and the client getters for an unknown client → -1', () => {
    const h = saved()
    for (const subop of [
      SUB.SAVE_END,
      SUB.SAVE_GET_CLIENT_WEIGHT,
      SUB.SAVE_GET_CLIENT_CAP,
      SUB.SAVE_GET_CLIENT_FLAGS,
    ]) {
      assert.equal(h.ctrl(subop, { cliId: 2 }), -1, `subop ${subop}`)
    }
  })

  void test('subops are independent: SAVE_GET_POOL_UUID does not end the save (§9, 2012 fix)', () => {
    const h = saved()
    assert.equal(h.ctrl(SUB.SAVE_BEGIN, { cliId: 1, arg1: 1 }), 1)
    assert.equal(h.ctrl(SUB.SAVE_GET_POOL_UUID, { cliId: 1, poolId: 1 }, new Uint8Array(16)), 0)
    assert.equal(lineValue(h.list(), 'C=CI:1,', 'fr'), 1)
    // Still live-migrating: a duplicate put fails.
    assert.equal(h.ctrl(SUB.THAW, { cliId: 1 }), 0)
    assert.equal(h.put(1, 1, 1, 0, page(1)), 1)
    assert.equal(h.put(1, 1, 1, 0, page(2)), E.NOSPC)
  })
})

void describe('conformance: save getters (spec §6.1)', () => {
  void test('GET_VERSION 1, GET_MAXPOOLS 16 (no client needed)', () => {
    const h = new Harness()
    assert.equal(h.ctrl(SUB.SAVE_GET_VERSION, { cliId: 9 }), 1)
    assert.equal(h.ctrl(SUB.SAVE_GET_MAXPOOLS, { cliId: 9 }), 16)
  })

  void test('CLIENT_WEIGHT / CLIENT_CAP; 0xFFFFFFFF weight reads back as -2', () => {
    const h = saved()
    assert.equal(h.ctrl(SUB.SAVE_GET_CLIENT_WEIGHT, { cliId: 1 }), 0)
    assert.equal(h.ctrl(SUB.SET_WEIGHT, { cliId: 1, arg1: 12 }), 0)
    assert.equal(h.ctrl(SUB.SET_CAP, { cliId: 1, arg1: 30 }), 0)
    assert.equal(h.ctrl(SUB.SAVE_GET_CLIENT_WEIGHT, { cliId: 1 }), 12)
    assert.equal(h.ctrl(SUB.SAVE_GET_CLIENT_CAP, { cliId: 1 }), 30)
    assert.equal(h.ctrl(SUB.SET_WEIGHT, { cliId: 1, arg1: 0xffffffff }), 0)
    assert.equal(h.ctrl(SUB.SAVE_GET_CLIENT_WEIGHT, { cliId: 1 }), -2)
  })

  void test('POOL_FLAGS carry the version 1 << 24; no pool → -1', () => {
    const h = saved()
    assert.equal(h.ctrl(SUB.SAVE_GET_POOL_FLAGS, { cliId: 1, poolId: 0 }), 0x01000000)
    assert.equal(h.ctrl(SUB.SAVE_GET_POOL_FLAGS, { cliId: 1, poolId: 1 }), 0x01000001)
    assert.equal(h.ctrl(SUB.SAVE_GET_POOL_FLAGS, { cliId: 1, poolId: 2 }), 0x01000002)
    for (const poolId of [3, 15, 16, -1, 0x7fffffff]) {
      assert.equal(h.ctrl(SUB.SAVE_GET_POOL_FLAGS, { cliId: 1, poolId }), -1, `pool ${poolId}`)
      assert.equal(h.ctrl(SUB.SAVE_GET_POOL_NPAGES, { cliId: 1, poolId }), -1, `pool ${poolId}`)
      assert.equal(h.ctrl(SUB.SAVE_GET_POOL_UUID, { cliId: 1, poolId }, new Uint8Array(16)), -1)
      assert.equal(nextPage(h, 1, poolId).rc, -1)
    }
    assert.equal(h.ctrl(SUB.SAVE_GET_POOL_FLAGS, { cliId: 2, poolId: 0 }), -1)
  })

  void test("POOL_NPAGES counts the pool's pages; POOL_UUID writes uuid[0] then uuid[1]", () => {
    const h = saved()
    for (let i = 0; i < 3; i++) assert.equal(h.put(1, 1, 5, i, page(i)), 1)
    assert.equal(h.put(1, 0, 5, 0, page(9)), 1)
    assert.equal(h.ctrl(SUB.SAVE_GET_POOL_NPAGES, { cliId: 1, poolId: 1 }), 3)
    assert.equal(h.ctrl(SUB.SAVE_GET_POOL_NPAGES, { cliId: 1, poolId: 0 }), 1)
    assert.equal(h.ctrl(SUB.SAVE_GET_POOL_NPAGES, { cliId: 1, poolId: 2 }), 0)
    const uuid = new Uint8Array(16)
    assert.equal(h.ctrl(SUB.SAVE_GET_POOL_UUID, { cliId: 1, poolId: 2 }, uuid), 0)
    assert.deepEqual(
      [...uuid],
      [
        0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22,
        0x11,
      ],
    )
    assert.equal(h.ctrl(SUB.SAVE_GET_POOL_UUID, { cliId: 1, poolId: 1 }, uuid), 0)
    assert.equal(u64At(uuid, 0), 0x30n)
    assert.equal(u64At(uuid, 8), 0x40n)
  })
})

void describe('conformance: SAVE_GET_NEXT_PAGE (spec §6.1, D4, §10 item 8)', () => {
  void test('every persistent page exactly once, oldest first, then -1; handle then page', () => {
    const h = saved()
    const puts: [bigint[], number][] = [
      [[0x15n, 0n, 0n], 7],
      [[0x15n, 0n, 0n], 8],
      [[1n, 2n, 3n], 0],
      [[0x15n, 0n, 0n], 0],
      [[0xffffffffffffffffn, 5n, 0n], 0xffffffff],
    ]
    puts.forEach(([oid, index], i) =>
      assert.equal(h.put(1, 1, oid as [bigint, bigint, bigint], index, page(i)), 1),
    )
    // A duplicate put keeps the page's place in put order.
    assert.equal(h.put(1, 1, [0x15n, 0n, 0n], 7, page(50)), 1)
    assert.equal(h.ctrl(SUB.SAVE_BEGIN, { cliId: 1 }), 1)
    const records: Record[] = []
    for (;;) {
      const { rc, record } = nextPage(h, 1, 1)
      if (rc !== 1) {
        assert.equal(rc, -1)
        break
      }
      records.push(record!)
      assert.ok(records.length <= puts.length, 'more records than pages')
    }
    assert.equal(records.length, puts.length)
    records.forEach((record, i) => {
      assert.equal(record.poolId, 1)
      assert.deepEqual(record.oid, puts[i]![0])
      assert.equal(record.index, puts[i]![1])
      assert.ok(samePage(record.data, i === 0 ? page(50) : page(i)), `page ${i}`)
    })
    // Exhausted stays exhausted.
    assert.equal(nextPage(h, 1, 1).rc, -1)
    // Save reads count as gets (gt, gs, Gp) and are non-destructive.
    const text = h.list(ALL, true)
    assert.equal(lineValue(text, 'P=CI:1,PI:1,', 'gs'), 5)
    assert.equal(lineValue(text, 'C=CI:1,', 'Gp'), 5)
    assert.equal(lineValue(text, 'P=CI:1,PI:1,', 'Pc'), 5)
  })

  void test('a one-page pool returns its page, then -1; an empty pool → -1', () => {
    const h = saved()
    assert.equal(h.ctrl(SUB.SAVE_BEGIN, { cliId: 1 }), 1)
    assert.equal(nextPage(h, 1, 1).rc, -1)
    assert.equal(h.ctrl(SUB.SAVE_END, { cliId: 1 }), 0)
    assert.equal(h.put(1, 1, 3, 3, page(3)), 1)
    assert.equal(h.ctrl(SUB.SAVE_BEGIN, { cliId: 1 }), 1)
    const first = nextPage(h, 1, 1)
    assert.equal(first.rc, 1)
    assert.ok(samePage(first.record!.data, page(3)))
    assert.equal(nextPage(h, 1, 1).rc, -1)
  })

  void test('SAVE_BEGIN resets the cursor: a second save sends every page again', () => {
    const h = saved()
    for (let i = 0; i < 3; i++) assert.equal(h.put(1, 1, 1, i, page(i)), 1)
    for (let round = 0; round < 2; round++) {
      assert.equal(h.ctrl(SUB.SAVE_BEGIN, { cliId: 1 }), 1)
      for (let i = 0; i < 3; i++) assert.equal(nextPage(h, 1, 1).record?.index, i)
      assert.equal(nextPage(h, 1, 1).rc, -1)
      assert.equal(h.ctrl(SUB.SAVE_END, { cliId: 1 }), 0)
    }
  })

  void test('pages flushed during the save are skipped; the cursor page itself may go', () => {
    const h = saved()
    for (let i = 0; i < 5; i++) assert.equal(h.put(1, 1, 1, i, page(i)), 1)
    assert.equal(h.ctrl(SUB.SAVE_BEGIN, { cliId: 1 }), 1)
    assert.equal(nextPage(h, 1, 1).record?.index, 0)
    assert.equal(h.flushPage(1, 1, 1, 0), E.FROZEN) // the cursor page
    assert.equal(h.flushPage(1, 1, 1, 2), E.FROZEN)
    assert.equal(nextPage(h, 1, 1).record?.index, 1)
    assert.equal(nextPage(h, 1, 1).record?.index, 3)
    assert.equal(h.flushPage(1, 1, 1, 3), E.FROZEN) // the cursor page, mid-list
    assert.equal(nextPage(h, 1, 1).record?.index, 4)
    assert.equal(nextPage(h, 1, 1).rc, -1)
    h.check()
  })

  void test('ephemeral pool → -1; buffer smaller than 4096 + 32 → -ENOMEM; unknown client → -1', () => {
    const h = saved()
    assert.equal(h.put(1, 0, 1, 0, page(1)), 1)
    assert.equal(h.put(1, 1, 1, 0, page(1)), 1)
    assert.equal(h.ctrl(SUB.SAVE_BEGIN, { cliId: 1 }), 1)
    assert.equal(nextPage(h, 1, 0).rc, -1)
    assert.equal(nextPage(h, 1, 2).rc, -1)
    assert.equal(nextPage(h, 2, 1).rc, -1)
    const small = new Uint8Array(BUF)
    assert.equal(
      h.ctrl(SUB.SAVE_GET_NEXT_PAGE, { cliId: 1, poolId: 1, arg1: BUF - 1 }, small),
      E.NOMEM,
    )
    assert.equal(
      h.ctrl(SUB.SAVE_GET_NEXT_PAGE, { cliId: 1, poolId: 1, arg1: BUF }, small.subarray(1)),
      E.NOMEM,
    )
    // The refused calls did not move the cursor.
    assert.equal(nextPage(h, 1, 1).rc, 1)
  })
})

void describe('conformance: SAVE_GET_NEXT_INV and live migration (spec §6.1, §6.3, D10)', () => {
  void test('persistent pages removed while live-migrating are recorded in removal order', () => {
    const h = saved()
    assert.equal(h.newPool(1, F.PRIVATE_PERS), 3)
    for (let i = 0; i < 4; i++) assert.equal(h.put(1, 1, [0x15n, 1n, 2n], i, page(i)), 1)
    assert.equal(h.put(1, 1, 0x16, 0, page(9)), 1)
    assert.equal(h.put(1, 3, 0x17, 5, page(9)), 1)
    assert.equal(h.put(1, 0, 0x18, 0, page(9)), 1) // ephemeral: never recorded
    assert.equal(h.ctrl(SUB.SAVE_BEGIN, { cliId: 1, arg1: 1 }), 1)
    assert.equal(nextInv(h, 1).rc, 0) // empty list
    assert.equal(h.flushPage(1, 1, [0x15n, 1n, 2n], 2), E.FROZEN)
    assert.equal(h.flushPage(1, 1, [0x15n, 1n, 2n], 9), E.FROZEN) // a miss records nothing
    assert.equal(h.flushPage(1, 0, 0x18, 0), E.FROZEN)
    assert.equal(h.put(1, 3, 0x17, 5, page(1)), E.NOSPC) // failed duplicate
    assert.equal(h.flushObject(1, 1, 0x16), E.FROZEN)
    assert.equal(
      h.ctrl(SUB.RESTORE_FLUSH_PAGE, { cliId: 1, poolId: 1, oid: [0x15n, 1n, 2n], arg2: 0 }),
      E.FROZEN,
    )
    const expected: [number, number, bigint, bigint, bigint][] = [
      [1, 2, 0x15n, 1n, 2n],
      [3, 5, 0x17n, 0n, 0n],
      [1, 0, 0x16n, 0n, 0n],
      [1, 0, 0x15n, 1n, 2n],
    ]
    for (const handle of expected) assert.deepEqual(nextInv(h, 1), { rc: 1, handle })
    assert.equal(nextInv(h, 1).rc, 0)
    // After "exhausted" the cursor restarts.
    assert.deepEqual(nextInv(h, 1), { rc: 1, handle: expected[0] })
    // arg1 < 32 → 0; unknown client → 0.
    assert.equal(h.ctrl(SUB.SAVE_GET_NEXT_INV, { cliId: 1, arg1: 31 }, new Uint8Array(32)), 0)
    assert.equal(h.ctrl(SUB.SAVE_GET_NEXT_INV, { cliId: 7, arg1: 32 }, new Uint8Array(32)), 0)
    // SAVE_END frees the list and ends migration mode.
    assert.equal(h.ctrl(SUB.SAVE_END, { cliId: 1 }), 0)
    assert.equal(nextInv(h, 1).rc, 0)
    assert.equal(h.put(1, 1, 0x16, 0, page(1)), 1)
    assert.equal(h.put(1, 1, 0x16, 0, page(2)), 1)
    h.check()
  })

  void test('a non-live save records nothing', () => {
    const h = saved()
    assert.equal(h.put(1, 1, 1, 0, page(1)), 1)
    assert.equal(h.ctrl(SUB.SAVE_BEGIN, { cliId: 1, arg1: 0 }), 1)
    assert.equal(h.flushPage(1, 1, 1, 0), E.FROZEN)
    assert.equal(nextInv(h, 1).rc, 0)
  })

  void test('DESTROY_POOL while live-migrating → 0, slot and pages kept (D10)', () => {
    const h = saved()
    assert.equal(h.put(1, 1, 1, 0, page(1)), 1)
    assert.equal(h.ctrl(SUB.SAVE_BEGIN, { cliId: 1, arg1: 1 }), 1)
    assert.equal(h.destroy(1, 1), 0)
    assert.equal(h.destroy(1, 0), 0)
    assert.equal(h.ctrl(SUB.SAVE_GET_POOL_NPAGES, { cliId: 1, poolId: 1 }), 1)
    assert.ok(samePage(h.fetch(1, 1, 1, 0).data, page(1)))
    assert.equal(nextInv(h, 1).rc, 0)
    assert.equal(h.ctrl(SUB.SAVE_END, { cliId: 1 }), 0)
    assert.equal(h.destroy(1, 1), 1)
    // A non-live save does not block destruction.
    assert.equal(h.ctrl(SUB.SAVE_BEGIN, { cliId: 1, arg1: 0 }), 1)
    assert.equal(h.destroy(1, 0), 1)
  })
})

void describe('conformance: restore subops (spec §6.1, §6.4)', () => {
  void test('RESTORE_BEGIN creates the client (1); an existing client → -1', () => {
    const h = new Harness()
    assert.equal(h.ctrl(SUB.RESTORE_BEGIN, { cliId: 5 }), 1)
    assert.equal(h.ctrl(SUB.RESTORE_BEGIN, { cliId: 5 }), -1)
    assert.match(h.list(), /\nC=CI:5,/)
    assert.equal(h.newPool(6, F.PRIVATE_EPH), 0)
    assert.equal(h.ctrl(SUB.RESTORE_BEGIN, { cliId: 6 }), -1)
  })

  void test('RESTORE_NEW creates a pool in the given slot with the §3.1 validation', () => {
    const h = new Harness()
    assert.equal(h.restoreNew(5, 0, F.PRIVATE_PERS), -1) // no client
    assert.equal(h.ctrl(SUB.RESTORE_BEGIN, { cliId: 5 }), 1)
    assert.equal(h.restoreNew(5, 7, F.PRIVATE_PERS, [3n, 4n]), 7)
    assert.equal(h.restoreNew(5, 7, F.PRIVATE_PERS), -1) // occupied
    assert.equal(h.restoreNew(5, 16, F.PRIVATE_PERS), -1)
    assert.equal(h.restoreNew(5, -1, F.PRIVATE_PERS), -1)
    assert.equal(h.restoreNew(5, 3, 0x00000001), -1) // version 0
    assert.equal(h.restoreNew(5, 3, 0x01000101), -1) // reserved bit
    assert.equal(h.restoreNew(5, 3, 0x01000004), -1) // precompressed
    assert.equal(h.restoreNew(5, 3, 0x01000000), 3)
    assert.equal(h.ctrl(SUB.SAVE_GET_POOL_FLAGS, { cliId: 5, poolId: 7 }), 0x01000001)
    const uuid = new Uint8Array(16)
    assert.equal(h.ctrl(SUB.SAVE_GET_POOL_UUID, { cliId: 5, poolId: 7 }, uuid), 0)
    assert.equal(u64At(uuid, 0), 3n)
    assert.equal(u64At(uuid, 8), 4n)
    // The guest's next NEW_POOL takes the lowest free slot.
    assert.equal(h.newPool(5, F.PRIVATE_EPH), 0)
  })

  void test('RESTORE_NEW of a shared pool joins an existing pool with the same UUID', () => {
    const h = new Harness({ sharedAuth: false })
    assert.equal(h.newPool(1, F.SHARED_EPH, [9n, 9n]), 0)
    assert.equal(h.ctrl(SUB.RESTORE_BEGIN, { cliId: 5 }), 1)
    assert.equal(h.restoreNew(5, 4, F.SHARED_EPH, [9n, 9n]), 4)
    assert.match(h.list(), /\nS=SI:0,PT:ES,U0:9,U1:9,SC:1,SC:5\n/)
  })

  void test('RESTORE_PUT_PAGE stores a page the guest then reads; RESTORE_FLUSH_PAGE removes it', () => {
    const h = new Harness()
    assert.equal(h.ctrl(SUB.RESTORE_BEGIN, { cliId: 5 }), 1)
    assert.equal(h.restoreNew(5, 2, F.PRIVATE_PERS), 2)
    const oid: [bigint, bigint, bigint] = [0x15n, 0n, 7n]
    assert.equal(
      h.ctrl(SUB.RESTORE_PUT_PAGE, { cliId: 5, poolId: 2, oid, arg1: 4096, arg2: 8 }, page(8)),
      1,
    )
    assert.equal(
      h.ctrl(SUB.RESTORE_PUT_PAGE, { cliId: 5, poolId: 2, oid, arg1: 4096, arg2: 9 }, page(9)),
      1,
    )
    assert.equal(lineValue(h.list(), 'C=CI:5,', 'Pp'), 2)
    assert.ok(samePage(h.fetch(5, 2, oid, 8).data, page(8)))
    assert.equal(h.ctrl(SUB.RESTORE_FLUSH_PAGE, { cliId: 5, poolId: 2, oid, arg2: 8 }), 1)
    assert.equal(h.ctrl(SUB.RESTORE_FLUSH_PAGE, { cliId: 5, poolId: 2, oid, arg2: 8 }), 1) // miss
    assert.equal(h.get(5, 2, oid, 8), 0)
    assert.ok(samePage(h.fetch(5, 2, oid, 9).data, page(9)))
    // No pool → -1.
    for (const [cliId, poolId] of [
      [5, 3],
      [5, 16],
      [5, -1],
      [6, 2],
    ] as const) {
      assert.equal(
        h.ctrl(SUB.RESTORE_PUT_PAGE, { cliId, poolId, oid, arg1: 4096, arg2: 1 }, page(1)),
        -1,
      )
      assert.equal(h.ctrl(SUB.RESTORE_FLUSH_PAGE, { cliId, poolId, oid, arg2: 9 }), -1)
    }
    assert.ok(samePage(h.fetch(5, 2, oid, 9).data, page(9)))
  })

  void test('restore into a frozen client: put → -EFROZEN, flush done but -EFROZEN', () => {
    const h = new Harness()
    assert.equal(h.ctrl(SUB.RESTORE_BEGIN, { cliId: 5 }), 1)
    assert.equal(h.restoreNew(5, 0, F.PRIVATE_PERS), 0)
    assert.equal(
      h.ctrl(
        SUB.RESTORE_PUT_PAGE,
        { cliId: 5, poolId: 0, oid: [1n, 0n, 0n], arg1: 4096, arg2: 0 },
        page(1),
      ),
      1,
    )
    assert.equal(h.ctrl(SUB.FREEZE, { cliId: 5 }), 0)
    assert.equal(
      h.ctrl(
        SUB.RESTORE_PUT_PAGE,
        { cliId: 5, poolId: 0, oid: [1n, 0n, 0n], arg1: 4096, arg2: 1 },
        page(1),
      ),
      E.FROZEN,
    )
    assert.equal(
      h.ctrl(SUB.RESTORE_FLUSH_PAGE, { cliId: 5, poolId: 0, oid: [1n, 0n, 0n], arg2: 0 }),
      E.FROZEN,
    )
    assert.equal(h.ctrl(SUB.SAVE_GET_POOL_NPAGES, { cliId: 5, poolId: 0 }), 0)
  })

  void test('save from one host, restore into another: pages, slots, flags and UUIDs match', () => {
    const src = saved()
    assert.equal(src.newPool(1, F.PRIVATE_PERS, [0x77n, 0x88n]), 3)
    for (let i = 0; i < 4; i++) assert.equal(src.put(1, 1, [BigInt(i), 1n, 2n], i * 3, page(i)), 1)
    assert.equal(src.put(1, 3, 5, 5, page(55)), 1)
    assert.equal(src.put(1, 0, 5, 5, page(66)), 1) // ephemeral: not carried
    const dst = new Harness({ sharedAuth: false })
    assert.equal(src.ctrl(SUB.SAVE_BEGIN, { cliId: 1 }), 1)
    assert.equal(dst.ctrl(SUB.RESTORE_BEGIN, { cliId: 4 }), 1)
    for (let slot = 0; slot < 16; slot++) {
      const flags = src.ctrl(SUB.SAVE_GET_POOL_FLAGS, { cliId: 1, poolId: slot })
      if (flags === -1) continue
      const uuid = new Uint8Array(16)
      assert.equal(src.ctrl(SUB.SAVE_GET_POOL_UUID, { cliId: 1, poolId: slot }, uuid), 0)
      assert.equal(dst.restoreNew(4, slot, flags, [u64At(uuid, 0), u64At(uuid, 8)]), slot)
      if ((flags & 1) === 0) continue
      for (;;) {
        const { rc, record } = nextPage(src, 1, slot)
        if (rc !== 1) break
        const args = { cliId: 4, poolId: slot, oid: record!.oid, arg1: 4096, arg2: record!.index }
        assert.equal(dst.ctrl(SUB.RESTORE_PUT_PAGE, args, record!.data), 1)
      }
    }
    for (let i = 0; i < 4; i++)
      assert.ok(samePage(dst.fetch(4, 1, [BigInt(i), 1n, 2n], i * 3).data, page(i)))
    assert.ok(samePage(dst.fetch(4, 3, 5, 5).data, page(55)))
    assert.equal(dst.get(4, 0, 5, 5), E.EMPTY)
    for (let slot = 0; slot < 4; slot++) {
      assert.equal(
        dst.ctrl(SUB.SAVE_GET_POOL_FLAGS, { cliId: 4, poolId: slot }),
        src.ctrl(SUB.SAVE_GET_POOL_FLAGS, { cliId: 1, poolId: slot }),
      )
    }
    assert.match(dst.list(4), /P=CI:4,PI:2,PT:ES,U0:8899aabbccddeeff,U1:1122334455667788\n/)
    dst.check()
  })
})
