/**
 * Conformance, Appendix B items 4-8 and 10, plus D8 (legacy and unknown commands) and the
 * Tt/Te counters: PUT/GET per pool kind (§3.3, §3.4), duplicate puts (§3.3.1), frozen
 * clients (§5.3), flushes (§3.5, §3.6), bad frames (§2.10, D11, D15), NEW_PAGE/READ/WRITE
 * (§3.7, D8). Pool-group counters are read from the long LIST text and compared with
 * numbers counted by hand from the spec's counter tables (§7).
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import {
  ALL,
  CMD,
  E,
  F,
  genOp,
  Harness,
  lineValue,
  page,
  PAGE,
  samePage,
  SUB,
} from './conformance-helpers.js'

const UUID: [bigint, bigint] = [0xabcn, 0xdefn]

/** A host with dom 1 owning: 0 private ephemeral, 1 private persistent, 2 shared ephemeral. */
function threeKinds(options = {}): Harness {
  const h = new Harness({ sharedAuth: false, ...options })
  assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
  assert.equal(h.newPool(1, F.PRIVATE_PERS), 1)
  assert.equal(h.newPool(1, F.SHARED_EPH, UUID), 2)
  return h
}

function poolStat(h: Harness, cli: number, poolId: number, key: string): number {
  return lineValue(h.list(cli, true), `P=CI:${cli},PI:${poolId},`, key)
}

void describe('conformance: PUT/GET by pool kind (spec §3.3, §3.4, Appendix B 4-5)', () => {
  void test('private ephemeral: a hit returns 1 with the data and removes the page', () => {
    const h = threeKinds()
    assert.equal(h.put(1, 0, 5, 0, page(1)), 1)
    const hit = h.fetch(1, 0, 5, 0)
    assert.equal(hit.rc, 1)
    assert.ok(samePage(hit.data, page(1)))
    // The pool became empty: -EEMPTY, and that get is not counted in gt (§3.4 step 1).
    assert.equal(h.get(1, 0, 5, 0), E.EMPTY)
    assert.equal(poolStat(h, 1, 0, 'gt'), 1)
    assert.equal(poolStat(h, 1, 0, 'gs'), 1)
    assert.equal(poolStat(h, 1, 0, 'Pc'), 0)
    assert.equal(poolStat(h, 1, 0, 'Oc'), 0)
    h.check()
  })

  void test('private ephemeral: second get of a page → 0 while the pool still holds another page', () => {
    const h = threeKinds()
    assert.equal(h.put(1, 0, 5, 0, page(1)), 1)
    assert.equal(h.put(1, 0, 5, 1, page(2)), 1)
    assert.equal(h.get(1, 0, 5, 0), 1)
    assert.equal(h.get(1, 0, 5, 0), 0) // object present, page absent
    assert.equal(h.get(1, 0, 6, 0), 0) // object absent
    assert.equal(poolStat(h, 1, 0, 'gt'), 3)
    assert.equal(poolStat(h, 1, 0, 'gs'), 1)
    assert.ok(samePage(h.fetch(1, 0, 5, 1).data, page(2)))
    // Ge counts successful ephemeral gets of the owner (§7.2).
    assert.equal(lineValue(h.list(), 'C=CI:1,', 'Ge'), 2)
  })

  void test('persistent: repeated hits return the same data; Pp and Gp count', () => {
    const h = threeKinds()
    assert.equal(h.put(1, 1, 5, 0, page(3)), 1)
    for (let i = 0; i < 3; i++) assert.ok(samePage(h.fetch(1, 1, 5, 0).data, page(3)))
    const text = h.list()
    assert.equal(lineValue(text, 'C=CI:1,', 'Pp'), 1)
    assert.equal(lineValue(text, 'C=CI:1,', 'Gp'), 3)
    assert.equal(lineValue(text, 'C=CI:1,', 'Ge'), 0)
    assert.equal(poolStat(h, 1, 1, 'gs'), 3)
  })

  void test('shared ephemeral: repeated hits return the same data', () => {
    const h = threeKinds()
    assert.equal(h.put(1, 2, 5, 0, page(4)), 1)
    for (let i = 0; i < 3; i++) assert.ok(samePage(h.fetch(1, 2, 5, 0).data, page(4)))
    assert.equal(poolStat(h, 1, 2, 'Pc'), 1)
    assert.equal(lineValue(h.list(), 'C=CI:1,', 'Ge'), 3)
  })

  void test('OIDs compare on all three words; index 0xFFFFFFFF and the all-ones OID are ordinary', () => {
    const h = threeKinds()
    const max = 0xffffffffffffffffn
    assert.equal(h.put(1, 1, [1n, 2n, 3n], 0, page(1)), 1)
    assert.equal(h.put(1, 1, [1n, 2n, 4n], 0, page(2)), 1)
    assert.equal(h.put(1, 1, [max, max, max], 0xffffffff, page(3)), 1)
    assert.equal(h.put(1, 1, [0n, 0n, 0n], 0, page(4)), 1)
    assert.ok(samePage(h.fetch(1, 1, [1n, 2n, 3n], 0).data, page(1)))
    assert.ok(samePage(h.fetch(1, 1, [1n, 2n, 4n], 0).data, page(2)))
    assert.ok(samePage(h.fetch(1, 1, [max, max, max], 0xffffffff).data, page(3)))
    assert.ok(samePage(h.fetch(1, 1, 0, 0).data, page(4)))
    assert.equal(h.get(1, 1, [3n, 2n, 1n], 0), 0)
    assert.equal(poolStat(h, 1, 1, 'Oc'), 4)
  })

  void test('puts are counted: pt, ps, Ep (successful non-duplicate ephemeral puts)', () => {
    const h = threeKinds()
    assert.equal(h.put(1, 0, 1, 0, page(1)), 1)
    assert.equal(h.put(1, 0, 1, 1, page(2)), 1)
    assert.equal(h.put(1, 0, 1, 1, page(3)), 1) // duplicate
    assert.equal(h.put(1, 1, 1, 0, page(4)), 1) // persistent
    assert.equal(h.put(1, 2, 1, 0, page(5)), 1) // shared ephemeral
    const text = h.list(ALL, true)
    assert.equal(lineValue(text, 'G=', 'Ep'), 3)
    assert.equal(lineValue(text, 'G=', 'Ec'), 3)
    assert.equal(lineValue(text, 'G=', 'Pc'), 4)
    assert.equal(lineValue(text, 'G=', 'Oc'), 3)
    assert.equal(lineValue(text, 'P=CI:1,PI:0,', 'pt'), 3)
    assert.equal(lineValue(text, 'P=CI:1,PI:0,', 'ps'), 3)
    assert.equal(lineValue(text, 'P=CI:1,PI:0,', 'pr'), 1)
  })
})

void describe('conformance: duplicate put (spec §3.3.1, Appendix B 6)', () => {
  for (const [name, poolId] of [
    ['private ephemeral', 0],
    ['persistent', 1],
    ['shared ephemeral', 2],
  ] as const) {
    void test(`${name}: data replaced, pr += 1, get returns the new data`, () => {
      const h = threeKinds()
      assert.equal(h.put(1, poolId, 9, 4, page(1)), 1)
      assert.equal(h.put(1, poolId, 9, 4, page(2)), 1)
      assert.equal(poolStat(h, 1, poolId, 'pr'), 1)
      assert.equal(poolStat(h, 1, poolId, 'ps'), 2)
      assert.equal(poolStat(h, 1, poolId, 'pt'), 2)
      assert.equal(poolStat(h, 1, poolId, 'Pc'), 1)
      assert.ok(samePage(h.fetch(1, poolId, 9, 4).data, page(2)))
    })

    void test(`${name}: failed duplicate (bad frame) → -EFAULT, old page gone, pd += 1, Cf += 1`, () => {
      const h = threeKinds()
      assert.equal(h.put(1, poolId, 9, 4, page(1)), 1)
      assert.equal(h.put(1, poolId, 9, 5, page(3)), 1)
      assert.equal(h.put(1, poolId, 9, 4, null), E.FAULT)
      assert.equal(poolStat(h, 1, poolId, 'pd'), 1)
      assert.equal(poolStat(h, 1, poolId, 'pr'), 0)
      assert.equal(poolStat(h, 1, poolId, 'Pc'), 1)
      assert.equal(lineValue(h.list(), 'G=', 'Cf'), 1)
      assert.equal(h.get(1, poolId, 9, 4), 0)
      assert.ok(samePage(h.fetch(1, poolId, 9, 5).data, page(3)))
      h.check()
    })
  }

  void test('failed duplicate of the only page frees its object (Oc) and empties the pool', () => {
    const h = threeKinds()
    assert.equal(h.put(1, 1, 9, 4, page(1)), 1)
    assert.equal(h.put(1, 1, 9, 4, new Uint8Array(100)), E.FAULT) // a short buffer is a bad frame
    assert.equal(poolStat(h, 1, 1, 'Oc'), 0)
    assert.equal(h.get(1, 1, 9, 4), E.EMPTY)
  })

  void test('live migration: duplicate put → -ENOSPC, old page gone, pd += 1, no Cf', () => {
    const h = threeKinds()
    assert.equal(h.put(1, 1, 9, 4, page(1)), 1)
    assert.equal(h.put(1, 0, 9, 4, page(1)), 1)
    assert.equal(h.ctrl(SUB.SAVE_BEGIN, { cliId: 1, arg1: 1 }), 1)
    assert.equal(h.put(1, 1, 9, 4, page(2)), E.NOSPC)
    assert.equal(h.put(1, 0, 9, 4, page(2)), E.NOSPC)
    assert.equal(poolStat(h, 1, 1, 'pd'), 1)
    assert.equal(poolStat(h, 1, 0, 'pd'), 1)
    assert.equal(lineValue(h.list(), 'G=', 'Cf'), 0)
    assert.equal(h.get(1, 1, 9, 4), E.EMPTY)
    assert.equal(h.get(1, 0, 9, 4), E.EMPTY)
    h.check()
  })

  void test('live migration is checked before the frame: duplicate without a frame → -ENOSPC, no Cf', () => {
    const h = threeKinds()
    assert.equal(h.put(1, 1, 9, 4, page(1)), 1)
    assert.equal(h.ctrl(SUB.SAVE_BEGIN, { cliId: 1, arg1: 1 }), 1)
    assert.equal(h.put(1, 1, 9, 4, null), E.NOSPC)
    assert.equal(lineValue(h.list(), 'G=', 'Cf'), 0)
    assert.equal(poolStat(h, 1, 1, 'pd'), 1)
  })

  void test('a duplicate put does not refresh LRU position (spec §4.2)', () => {
    const h = new Harness({ pages: 3, reservePages: 0 })
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
    assert.equal(h.put(1, 0, 1, 0, page(1)), 1)
    assert.equal(h.put(1, 0, 2, 0, page(2)), 1)
    assert.equal(h.put(1, 0, 3, 0, page(3)), 1)
    assert.equal(h.put(1, 0, 1, 0, page(4)), 1) // duplicate of the oldest
    assert.equal(h.put(1, 0, 4, 0, page(5)), 1) // evicts the oldest: object 1
    assert.equal(h.get(1, 0, 1, 0), 0)
    assert.equal(h.get(1, 0, 2, 0), 1)
  })
})

void describe('conformance: frozen client (spec §5.3, §3.5, §3.6, Appendix B 7)', () => {
  void test('new put → -EFROZEN, px += 1; duplicate → 1; flush → -EFROZEN but the page is gone', () => {
    const h = threeKinds()
    assert.equal(h.put(1, 1, 1, 0, page(1)), 1)
    assert.equal(h.put(1, 1, 1, 1, page(2)), 1)
    assert.equal(h.put(1, 1, 2, 0, page(3)), 1)
    assert.equal(h.put(1, 1, 2, 1, page(3)), 1)
    assert.equal(h.ctrl(SUB.FREEZE, { cliId: 1 }), 0)
    assert.equal(h.put(1, 1, 3, 0, page(4)), E.FROZEN)
    assert.equal(h.put(1, 0, 3, 0, page(4)), E.FROZEN)
    assert.equal(poolStat(h, 1, 1, 'px'), 1)
    assert.equal(poolStat(h, 1, 1, 'pt'), 5)
    assert.equal(poolStat(h, 1, 0, 'px'), 1)
    assert.equal(h.get(1, 1, 3, 0), 0)
    assert.equal(h.put(1, 1, 1, 0, page(5)), 1)
    assert.ok(samePage(h.fetch(1, 1, 1, 0).data, page(5)))
    assert.equal(h.flushPage(1, 1, 1, 1), E.FROZEN)
    assert.equal(h.get(1, 1, 1, 1), 0)
    assert.equal(h.flushPage(1, 1, 1, 1), E.FROZEN) // a miss, still -EFROZEN
    assert.equal(h.flushObject(1, 1, 2), E.FROZEN)
    assert.equal(h.get(1, 1, 2, 0), 0)
    assert.equal(h.flushObject(1, 1, 2), E.FROZEN)
    assert.equal(poolStat(h, 1, 1, 'fs'), 1)
    assert.equal(poolStat(h, 1, 1, 'ft'), 2)
    assert.equal(poolStat(h, 1, 1, 'os'), 1)
    assert.equal(poolStat(h, 1, 1, 'ot'), 2)
    // Thawed: puts work again.
    assert.equal(h.ctrl(SUB.THAW, { cliId: 1 }), 0)
    assert.equal(h.put(1, 1, 3, 0, page(4)), 1)
    assert.equal(h.flushPage(1, 1, 3, 0), 1)
    h.check()
  })

  void test('frozen beats a bad frame: a new put without a frame → -EFROZEN, Cf unchanged', () => {
    const h = threeKinds()
    assert.equal(h.ctrl(SUB.FREEZE, { cliId: 1 }), 0)
    assert.equal(h.put(1, 1, 1, 0, null), E.FROZEN)
    assert.equal(lineValue(h.list(), 'G=', 'Cf'), 0)
    assert.equal(poolStat(h, 1, 1, 'px'), 1)
  })

  void test("frozen state is the pool owner's: a sharer's put into a frozen owner's pool → -EFROZEN", () => {
    const h = new Harness({ sharedAuth: false })
    assert.equal(h.newPool(1, F.SHARED_EPH, UUID), 0)
    assert.equal(h.newPool(2, F.SHARED_EPH, UUID), 0)
    assert.equal(h.newPool(2, F.PRIVATE_EPH), 1)
    assert.equal(h.ctrl(SUB.FREEZE, { cliId: 1 }), 0)
    assert.equal(h.put(2, 0, 1, 0, page(1)), E.FROZEN)
    assert.equal(h.put(2, 1, 1, 0, page(1)), 1)
    assert.equal(h.ctrl(SUB.THAW, { cliId: 1 }), 0)
    assert.equal(h.ctrl(SUB.FREEZE, { cliId: 2 }), 0)
    assert.equal(h.put(2, 0, 1, 0, page(1)), 1)
    assert.equal(h.flushPage(2, 0, 1, 0), 1)
  })
})

void describe('conformance: flushes (spec §3.5, §3.6, Appendix B 8)', () => {
  void test('FLUSH_PAGE and FLUSH_OBJECT return 1 on a miss', () => {
    const h = threeKinds()
    for (const poolId of [0, 1, 2]) {
      assert.equal(h.flushPage(1, poolId, 1, 0), 1)
      assert.equal(h.flushObject(1, poolId, 1), 1)
      assert.equal(h.put(1, poolId, 1, 0, page(1)), 1)
      assert.equal(h.flushPage(1, poolId, 1, 1), 1)
      assert.equal(h.flushPage(1, poolId, 2, 0), 1)
      assert.equal(h.flushObject(1, poolId, 2), 1)
      assert.equal(poolStat(h, 1, poolId, 'ft'), 3)
      assert.equal(poolStat(h, 1, poolId, 'fs'), 0)
      assert.equal(poolStat(h, 1, poolId, 'ot'), 2)
      assert.equal(poolStat(h, 1, poolId, 'os'), 0)
    }
  })

  void test('an object disappears with its last page (Oc); FLUSH_OBJECT removes every page', () => {
    const h = threeKinds()
    assert.equal(h.put(1, 1, 1, 0, page(1)), 1)
    assert.equal(h.put(1, 1, 1, 7, page(2)), 1)
    assert.equal(h.put(1, 1, 2, 0, page(3)), 1)
    assert.equal(h.put(1, 1, 2, 64, page(4)), 1)
    assert.equal(h.put(1, 1, 2, 0xffffffff, page(5)), 1)
    assert.equal(poolStat(h, 1, 1, 'Oc'), 2)
    assert.equal(h.flushPage(1, 1, 1, 0), 1)
    assert.equal(poolStat(h, 1, 1, 'Oc'), 2)
    assert.equal(h.flushPage(1, 1, 1, 7), 1)
    assert.equal(poolStat(h, 1, 1, 'Oc'), 1)
    assert.equal(h.flushObject(1, 1, 2), 1)
    const text = h.list(ALL, true)
    assert.equal(lineValue(text, 'P=CI:1,PI:1,', 'Oc'), 0)
    assert.equal(lineValue(text, 'P=CI:1,PI:1,', 'Om'), 2)
    assert.equal(lineValue(text, 'P=CI:1,PI:1,', 'Pc'), 0)
    assert.equal(lineValue(text, 'P=CI:1,PI:1,', 'Pm'), 5)
    assert.equal(lineValue(text, 'P=CI:1,PI:1,', 'fs'), 2)
    assert.equal(lineValue(text, 'P=CI:1,PI:1,', 'os'), 1)
    assert.equal(lineValue(text, 'G=', 'Oc'), 0)
    assert.equal(lineValue(text, 'G=', 'Om'), 2)
    assert.equal(h.get(1, 1, 2, 64), E.EMPTY)
    h.check()
  })

  void test('a private ephemeral get that empties an object frees it', () => {
    const h = threeKinds()
    assert.equal(h.put(1, 0, 1, 0, page(1)), 1)
    assert.equal(h.put(1, 0, 2, 0, page(1)), 1)
    assert.equal(h.get(1, 0, 1, 0), 1)
    assert.equal(poolStat(h, 1, 0, 'Oc'), 1)
  })
})

void describe('conformance: bad frames (spec §2.10, D11, D15, Appendix B 10)', () => {
  void test('put with no frame → -EFAULT, nothing stored, Cf += 1, px += 1', () => {
    for (const poolId of [0, 1, 2]) {
      const h = threeKinds()
      assert.equal(h.put(1, poolId, 1, 0, null), E.FAULT)
      assert.equal(h.put(1, poolId, 1, 0, new Uint8Array(PAGE - 1)), E.FAULT)
      const text = h.list(ALL, true)
      assert.equal(lineValue(text, 'G=', 'Cf'), 2)
      assert.equal(lineValue(text, `P=CI:1,PI:${poolId},`, 'px'), 2)
      assert.equal(lineValue(text, `P=CI:1,PI:${poolId},`, 'Pc'), 0)
      assert.equal(lineValue(text, `P=CI:1,PI:${poolId},`, 'Oc'), 0)
      assert.equal(lineValue(text, 'G=', 'Oc'), 0)
      assert.equal(h.get(1, poolId, 1, 0), E.EMPTY)
      h.check()
    }
  })

  void test('get with a bad frame on private ephemeral → -EFAULT and the page is removed (D11)', () => {
    const h = threeKinds()
    assert.equal(h.put(1, 0, 1, 0, page(1)), 1)
    assert.equal(h.put(1, 0, 1, 1, page(2)), 1)
    assert.equal(h.get(1, 0, 1, 0, null), E.FAULT)
    assert.equal(lineValue(h.list(), 'G=', 'Cf'), 1)
    assert.equal(h.get(1, 0, 1, 0), 0) // get-get coherency: later gets miss
    assert.equal(poolStat(h, 1, 0, 'Pc'), 1)
    assert.equal(lineValue(h.list(ALL, true), 'C=CI:1,', 'Ec'), 1)
    h.check()
  })

  void test('get with a bad frame on shared ephemeral and persistent → -EFAULT, page kept', () => {
    const h = threeKinds()
    for (const poolId of [1, 2]) {
      assert.equal(h.put(1, poolId, 1, 0, page(poolId)), 1)
      assert.equal(h.get(1, poolId, 1, 0, null), E.FAULT)
      assert.equal(h.get(1, poolId, 1, 0, new Uint8Array(10)), E.FAULT)
      assert.ok(samePage(h.fetch(1, poolId, 1, 0).data, page(poolId)))
    }
    assert.equal(lineValue(h.list(), 'G=', 'Cf'), 4)
  })

  void test('frame resolver: unresolvable or read-only frames → -EFAULT', () => {
    const frames = new Map<bigint, { bytes: Uint8Array; writable: boolean }>()
    frames.set(10n, { bytes: page(10), writable: true })
    frames.set(11n, { bytes: new Uint8Array(PAGE), writable: false })
    frames.set(12n, { bytes: new Uint8Array(PAGE), writable: true })
    const seen: [number, bigint, boolean][] = []
    const h = new Harness({
      frameResolver: (cli, cmfn, writable) => {
        seen.push([cli, cmfn, writable])
        const frame = frames.get(cmfn)
        if (frame === undefined || (writable && !frame.writable)) return null
        return frame.bytes
      },
    })
    assert.equal(h.newPool(3, F.PRIVATE_PERS), 0)
    assert.equal(h.host.op(3, genOp(CMD.PUT_PAGE, 0, 1, 0, { cmfn: 10n })), 1)
    assert.deepEqual(seen.at(-1), [3, 10n, false])
    assert.equal(h.host.op(3, genOp(CMD.PUT_PAGE, 0, 1, 1, { cmfn: 99n })), E.FAULT)
    assert.equal(h.host.op(3, genOp(CMD.GET_PAGE, 0, 1, 0, { cmfn: 11n })), E.FAULT)
    assert.deepEqual(seen.at(-1), [3, 11n, true])
    assert.equal(h.host.op(3, genOp(CMD.GET_PAGE, 0, 1, 0, { cmfn: 12n })), 1)
    assert.ok(samePage(frames.get(12n)!.bytes, page(10)))
    assert.equal(h.get(3, 0, 1, 1), 0)
  })
})

void describe('conformance: NEW_PAGE, READ, WRITE, XCHG, unknown (spec §3.7, D8)', () => {
  void test('NEW_PAGE stores a zero page without reading the frame; duplicate → zeros', () => {
    const h = threeKinds()
    assert.equal(h.host.op(1, genOp(CMD.NEW_PAGE, 1, 1, 0), null), 1)
    const zero = new Uint8Array(PAGE)
    assert.ok(samePage(h.fetch(1, 1, 1, 0).data, zero))
    assert.equal(h.put(1, 1, 1, 1, page(3)), 1)
    assert.equal(h.host.op(1, genOp(CMD.NEW_PAGE, 1, 1, 1), null), 1)
    assert.ok(samePage(h.fetch(1, 1, 1, 1).data, zero))
    assert.equal(poolStat(h, 1, 1, 'pt'), 3)
    assert.equal(poolStat(h, 1, 1, 'pr'), 1)
  })

  void test('WRITE = zero page, then copy len bytes from frame+pfn_offset to page+tmem_offset', () => {
    const h = threeKinds()
    const src = page(9)
    assert.equal(h.put(1, 1, 1, 0, page(1)), 1)
    assert.equal(
      h.host.op(1, genOp(CMD.WRITE, 1, 1, 0, { tmemOffset: 100, pfnOffset: 10, len: 50 }), src),
      1,
    )
    const expected = new Uint8Array(PAGE)
    expected.set(src.subarray(10, 60), 100)
    assert.ok(samePage(h.fetch(1, 1, 1, 0).data, expected))
    // len 0 writes a zero page.
    assert.equal(
      h.host.op(1, genOp(CMD.WRITE, 1, 2, 0, { tmemOffset: 4096, pfnOffset: 4096, len: 0 }), src),
      1,
    )
    assert.ok(samePage(h.fetch(1, 1, 2, 0).data, new Uint8Array(PAGE)))
    // The full range is allowed.
    assert.equal(h.host.op(1, genOp(CMD.WRITE, 1, 3, 0, { len: 4096 }), src), 1)
    assert.ok(samePage(h.fetch(1, 1, 3, 0).data, src))
  })

  void test('READ copies len bytes from page+tmem_offset to frame+pfn_offset; destructive on private ephemeral', () => {
    const h = threeKinds()
    const stored = page(4)
    assert.equal(h.put(1, 0, 1, 0, stored), 1)
    assert.equal(h.put(1, 0, 1, 1, stored), 1)
    const frame = new Uint8Array(PAGE).fill(0xee)
    assert.equal(
      h.host.op(1, genOp(CMD.READ, 0, 1, 0, { tmemOffset: 1000, pfnOffset: 3000, len: 96 }), frame),
      1,
    )
    const expected = new Uint8Array(PAGE).fill(0xee)
    expected.set(stored.subarray(1000, 1096), 3000)
    assert.ok(samePage(frame, expected))
    assert.equal(h.get(1, 0, 1, 0), 0)
    // Persistent: not destructive.
    assert.equal(h.put(1, 1, 1, 0, stored), 1)
    assert.equal(h.host.op(1, genOp(CMD.READ, 1, 1, 0, { len: 4 }), frame), 1)
    assert.equal(h.host.op(1, genOp(CMD.READ, 1, 1, 0, { len: 4 }), frame), 1)
  })

  const outOfRange: [string, { tmemOffset?: number; pfnOffset?: number; len?: number }][] = [
    ['tmem_offset 4097', { tmemOffset: 4097 }],
    ['pfn_offset 4097', { pfnOffset: 4097 }],
    ['len 4097', { len: 4097 }],
    ['tmem_offset + len 4097', { tmemOffset: 4000, len: 97 }],
    ['pfn_offset + len 4097', { pfnOffset: 1, len: 4096 }],
    ['huge len', { len: 0xffffffff }],
    ['wrapping offset + len', { tmemOffset: 0xfffffff0, len: 0x20 }],
  ]
  for (const [name, range] of outOfRange) {
    void test(`READ and WRITE with ${name} → -EINVAL, nothing stored or removed`, () => {
      const h = threeKinds()
      assert.equal(h.put(1, 0, 1, 0, page(1)), 1)
      assert.equal(h.host.op(1, genOp(CMD.WRITE, 0, 2, 0, range), page(2)), E.INVAL)
      assert.equal(h.host.op(1, genOp(CMD.READ, 0, 1, 0, range), new Uint8Array(PAGE)), E.INVAL)
      assert.equal(poolStat(h, 1, 0, 'Pc'), 1)
      assert.equal(h.get(1, 0, 2, 0), 0)
      assert.equal(h.get(1, 0, 1, 0), 1)
    })
  }

  void test('XCHG and unknown commands → -ENOSYS and are counted in Te', () => {
    const h = threeKinds()
    const cmds = [CMD.XCHG, 11, 12, 99, 100, 103, 200, 0xffffffff]
    for (const cmd of cmds)
      assert.equal(h.host.op(1, genOp(cmd, 0, 1, 0), page(1)), E.NOSYS, `cmd ${cmd}`)
    const text = h.list()
    assert.equal(lineValue(text, 'G=', 'Te'), cmds.length)
    // 3 NEW_POOL + the unknown commands + this LIST.
    assert.equal(lineValue(text, 'G=', 'Tt'), 3 + cmds.length + 1)
  })
})

void describe('conformance: Tt and Te (spec §3.0, §7.1)', () => {
  void test('Tt counts every call including LIST, Te every negative result', () => {
    const h = new Harness()
    let tt = 0
    let te = 0
    const call = (rc: number, expected: number): void => {
      assert.equal(rc, expected)
      tt++
      if (expected < 0) te++
    }
    call(h.newPool(1, F.PRIVATE_EPH), 0)
    call(h.newPool(1, 0x00000000), E.PERM)
    call(h.get(1, 0, 1, 0), E.EMPTY)
    call(h.put(1, 0, 1, 0, page(1)), 1)
    call(h.get(1, 0, 1, 1), 0)
    call(h.get(1, 7, 1, 1), E.NODEV)
    call(h.ctrl(SUB.FREEZE, { cliId: 1 }), 0)
    call(h.put(1, 0, 2, 0, page(1)), E.FROZEN)
    call(h.flushPage(1, 0, 1, 0), E.FROZEN)
    call(h.ctrl(SUB.THAW, { cliId: 9 }), E.PERM) // control -1
    call(h.ctrl(SUB.THAW, { cliId: 1 }), 0)
    call(h.host.op(2, genOp(CMD.CONTROL, 0, 0, 0)), E.PERM)
    call(h.host.op(2, genOp(CMD.XCHG, 0, 0, 0)), E.NOSYS)
    call(h.destroy(1, 0), 1)
    call(h.ctrl(SUB.QUERY_FREEABLE_MB), 0)
    const text = h.list()
    tt++ // the LIST itself
    assert.equal(lineValue(text, 'G=', 'Tt'), tt)
    assert.equal(lineValue(text, 'G=', 'Te'), te)
    // A failed LIST (unknown client) counts in both.
    assert.equal(h.ctrl(SUB.LIST, { cliId: 77, arg1: 100 }, new Uint8Array(100)), E.PERM)
    assert.equal(lineValue(h.list(), 'G=', 'Tt'), tt + 2)
    assert.equal(lineValue(h.list(), 'G=', 'Te'), te + 1)
  })
})
