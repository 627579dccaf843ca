/**
 * Conformance, Appendix B items 2, 3 and 9, plus D3 (v0 clients) and §5.6 (TMEM_AUTH): pool
 * creation flags (§2.3, §3.1), slots, shared pools and authorisation (D7), bad pool ids (§3.0
 * step 7, §3.2). Expectations come from the spec's tables; see conformance-helpers.ts.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { abi } from '../../src/index.js'
import {
  ALL,
  ALL_ONES_64,
  CMD,
  creatOp,
  E,
  F,
  genOp,
  Harness,
  lineValue,
  page,
  samePage,
  SUB,
  u64At,
} from './conformance-helpers.js'

const UUID_A: [bigint, bigint] = [0x8899aabbccddeeffn, 0x1122334455667788n]
const UUID_B: [bigint, bigint] = [0x1n, 0x2n]

void describe('conformance: NEW_POOL flag validation (spec §2.3, §3.1)', () => {
  const invalid: [string, number][] = [
    ['version 0', 0x00000000],
    ['version 2', 0x02000000],
    ['version 0xff', 0xff000000],
    ['page size 1', 0x01000010],
    ['page size 15', 0x010000f0],
    ['bit 2 precompressed', 0x01000004],
    ['precompressed persistent', 0x01000005],
  ]
  for (let bit = 8; bit <= 23; bit++)
    invalid.push([`reserved bit ${bit}`, (0x01000000 | (1 << bit)) >>> 0])
  for (const [name, flags] of invalid) {
    void test(`${name} (0x${flags.toString(16)}) → -EPERM and nothing created`, () => {
      const h = new Harness()
      assert.equal(h.newPool(1, flags), E.PERM)
      // Nothing was created: the next valid pool takes slot 0 and slot 0 was empty before.
      assert.equal(h.put(1, 0, 1, 0, page(1)), E.NODEV)
      assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
      h.check()
    })
  }

  void test('every page-size value 1..15 is refused', () => {
    const h = new Harness()
    for (let size = 1; size <= 15; size++)
      assert.equal(h.newPool(1, 0x01000000 | (size << 4)), E.PERM)
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
  })

  void test('bit 3 is ignored (spec §10 item 28)', () => {
    const h = new Harness()
    assert.equal(h.newPool(1, 0x01000008), 0)
    assert.equal(h.newPool(1, 0x01000009), 1)
    // Slot 1 is persistent: repeated gets hit.
    assert.equal(h.put(1, 1, 3, 0, page(3)), 1)
    assert.equal(h.get(1, 1, 3, 0), 1)
    assert.equal(h.get(1, 1, 3, 0), 1)
    // Slot 0 is private ephemeral: the get is destructive.
    assert.equal(h.put(1, 0, 3, 0, page(3)), 1)
    assert.equal(h.get(1, 0, 3, 0), 1)
    assert.equal(h.get(1, 0, 3, 0), E.EMPTY)
  })

  void test('NEW_POOL ignores pool_id and arg1', () => {
    const h = new Harness()
    assert.equal(h.host.op(1, creatOp(CMD.NEW_POOL, 9, F.PRIVATE_EPH, [0n, 0n], 77)), 0)
    assert.equal(h.host.op(1, creatOp(CMD.NEW_POOL, -1, F.PRIVATE_EPH, [0n, 0n], 0xffffffff)), 1)
  })

  void test('16 pools get ids 0..15, the 17th → -EPERM', () => {
    const h = new Harness()
    for (let i = 0; i < 16; i++)
      assert.equal(h.newPool(1, i % 2 === 0 ? F.PRIVATE_EPH : F.PRIVATE_PERS), i)
    assert.equal(h.newPool(1, F.PRIVATE_EPH), E.PERM)
    assert.equal(h.newPool(1, F.PRIVATE_PERS), E.PERM)
    // Another client has its own 16 slots.
    assert.equal(h.newPool(2, F.PRIVATE_EPH), 0)
    h.check()
  })

  void test('a destroyed slot is reused, lowest first', () => {
    const h = new Harness()
    for (let i = 0; i < 16; i++) assert.equal(h.newPool(1, F.PRIVATE_EPH), i)
    assert.equal(h.destroy(1, 9), 1)
    assert.equal(h.destroy(1, 3), 1)
    assert.equal(h.destroy(1, 12), 1)
    assert.equal(h.newPool(1, F.PRIVATE_PERS), 3)
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 9)
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 12)
    assert.equal(h.newPool(1, F.PRIVATE_EPH), E.PERM)
    // The reused slot 3 is a fresh persistent pool: no data from the old slot.
    assert.equal(h.get(1, 3, 1, 0), E.EMPTY)
    h.check()
  })

  void test('a destroyed pool loses its pages; the new pool in its slot starts empty', () => {
    const h = new Harness()
    assert.equal(h.newPool(1, F.PRIVATE_PERS), 0)
    assert.equal(h.put(1, 0, 1, 0, page(1)), 1)
    assert.equal(h.destroy(1, 0), 1)
    assert.equal(h.get(1, 0, 1, 0), E.NODEV)
    assert.equal(h.newPool(1, F.PRIVATE_PERS), 0)
    assert.equal(h.get(1, 0, 1, 0), E.EMPTY)
    assert.equal(lineValue(h.list(ALL, true), 'G=', 'Pc'), 0)
    h.check()
  })
})

void describe('conformance: bad pool ids (spec §3.0 step 7, §3.2, Appendix B 9)', () => {
  const bad = [-1, 16, 17, 0x7fffffff, -0x80000000, 5]
  for (const poolId of bad) {
    void test(`pool id ${poolId} → -ENODEV for PUT/GET/FLUSH/FLUSH_OBJECT/NEW_PAGE/READ/WRITE`, () => {
      const h = new Harness()
      assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
      assert.equal(h.put(1, 0, 1, 0, page(1)), 1)
      for (const cmd of [
        CMD.PUT_PAGE,
        CMD.GET_PAGE,
        CMD.FLUSH_PAGE,
        CMD.FLUSH_OBJECT,
        CMD.NEW_PAGE,
        CMD.READ,
        CMD.WRITE,
      ]) {
        assert.equal(h.host.op(1, genOp(cmd, poolId, 1, 0), page(2)), E.NODEV, `cmd ${cmd}`)
      }
      // Slot 0 is untouched.
      assert.equal(lineValue(h.list(ALL, true), 'P=CI:1,PI:0', 'Pc'), 1)
    })
  }

  void test('DESTROY_POOL: 16, -1, 0x7fffffff and an empty slot → 0; a live pool → 1', () => {
    const h = new Harness()
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
    assert.equal(h.destroy(1, 16), 0)
    assert.equal(h.destroy(1, -1), 0)
    assert.equal(h.destroy(1, 0x7fffffff), 0)
    assert.equal(h.destroy(1, 4), 0)
    assert.equal(h.destroy(1, 0), 1)
    assert.equal(h.destroy(1, 0), 0)
    // Te counts none of these: DESTROY_POOL never fails.
    assert.equal(lineValue(h.list(), 'G=', 'Te'), 0)
  })

  void test('a client without any pool gets -ENODEV, and the call still creates its client', () => {
    const h = new Harness()
    assert.equal(h.get(4, 0, 1, 0), E.NODEV)
    assert.match(h.list(), /\nC=CI:4,/)
  })
})

void describe('conformance: shared pools (spec §3.1 step 7, D7)', () => {
  /** Clients 1 and 2 exist (first call made) and are authorised for UUID_A. */
  function twoAuthorised(options = {}): Harness {
    const h = new Harness(options)
    assert.equal(h.get(1, 0, 0, 0), E.NODEV)
    assert.equal(h.get(2, 0, 0, 0), E.NODEV)
    assert.equal(h.auth(1, UUID_A, 1), 1)
    assert.equal(h.auth(2, UUID_A, 1), 1)
    return h
  }

  void test('same UUID from two authorised clients → one pool; S= lists both sharers', () => {
    const h = twoAuthorised()
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
    assert.equal(h.newPool(1, F.SHARED_EPH, UUID_A), 1)
    assert.equal(h.newPool(2, F.SHARED_EPH, UUID_A), 0)
    const text = h.list()
    assert.match(text, /\nS=SI:0,PT:ES,U0:8899aabbccddeeff,U1:1122334455667788,SC:1,SC:2\n/)
    assert.match(text, /\nP=CI:1,PI:1,PT:ES,U0:8899aabbccddeeff,U1:1122334455667788\n/)
    // PI is the owner's slot (1), although dom 2 holds the pool in its slot 0 (§10 item 6).
    assert.match(text, /\nP=CI:2,PI:1,PT:ES,U0:8899aabbccddeeff,U1:1122334455667788\n/)
    // Data put by one sharer is read by the other, non-destructively.
    assert.equal(h.put(1, 1, 42, 3, page(7)), 1)
    const first = h.fetch(2, 0, 42, 3)
    assert.equal(first.rc, 1)
    assert.ok(samePage(first.data, page(7)))
    assert.equal(h.get(2, 0, 42, 3), 1)
    assert.equal(h.get(1, 1, 42, 3), 1)
    h.check()
  })

  void test('a client may join the same shared pool twice (two slots, two SC entries)', () => {
    const h = twoAuthorised()
    assert.equal(h.newPool(1, F.SHARED_EPH, UUID_A), 0)
    assert.equal(h.newPool(1, F.SHARED_EPH, UUID_A), 1)
    assert.match(h.list(), /\nS=SI:0,PT:ES,U0:8899aabbccddeeff,U1:1122334455667788,SC:1,SC:1\n/)
    assert.equal(h.put(1, 0, 1, 0, page(1)), 1)
    assert.equal(h.get(1, 1, 1, 0), 1)
  })

  void test('all-ones UUID → private pool even when authorised (spec §3.1 7.1)', () => {
    const h = new Harness()
    assert.equal(h.auth(ALL, [0n, 0n], 1), 1) // global auth on
    assert.equal(h.newPool(1, F.SHARED_EPH, [ALL_ONES_64, ALL_ONES_64]), 0)
    assert.equal(h.newPool(2, F.SHARED_EPH, [ALL_ONES_64, ALL_ONES_64]), 0)
    const text = h.list()
    assert.doesNotMatch(text, /\nS=/)
    assert.match(text, /\nP=CI:1,PI:0,PT:EP,U0:0,U1:0\n/)
    // Two separate private pools: dom 2 does not see dom 1's page, and gets are destructive.
    assert.equal(h.put(1, 0, 1, 0, page(1)), 1)
    assert.equal(h.get(2, 0, 1, 0), E.EMPTY)
    assert.equal(h.get(1, 0, 1, 0), 1)
    assert.equal(h.get(1, 0, 1, 0), E.EMPTY)
  })

  void test('auth required, no authorisation → private pool; the call succeeds and keeps the UUID', () => {
    const h = new Harness()
    assert.equal(h.newPool(1, F.SHARED_EPH, UUID_A), 0)
    assert.equal(h.newPool(2, F.SHARED_EPH, UUID_A), 0)
    const text = h.list()
    assert.doesNotMatch(text, /\nS=/)
    assert.match(text, /\nP=CI:1,PI:0,PT:EP,U0:0,U1:0\n/)
    assert.match(text, /\nP=CI:2,PI:0,PT:EP,U0:0,U1:0\n/)
    const uuid = new Uint8Array(16)
    assert.equal(h.ctrl(SUB.SAVE_GET_POOL_UUID, { cliId: 1, poolId: 0 }, uuid), 0)
    assert.equal(u64At(uuid, 0), UUID_A[0])
    assert.equal(u64At(uuid, 8), UUID_A[1])
    assert.equal(h.ctrl(SUB.SAVE_GET_POOL_FLAGS, { cliId: 1, poolId: 0 }), 0x01000000)
  })

  void test('a guest whose first call is the shared NEW_POOL gets a private pool (§5.6)', () => {
    const h = new Harness()
    assert.equal(h.newPool(1, F.SHARED_EPH, UUID_A), 0)
    assert.equal(h.auth(1, UUID_A, 1), 1)
    assert.equal(h.newPool(1, F.SHARED_EPH, UUID_A), 1)
    assert.match(h.list(), /\nP=CI:1,PI:0,PT:EP,U0:0,U1:0\nP=CI:1,PI:1,PT:ES,/)
  })

  void test('authorised for another UUID only → private', () => {
    const h = twoAuthorised()
    assert.equal(h.newPool(1, F.SHARED_EPH, UUID_B), 0)
    assert.doesNotMatch(h.list(), /\nS=/)
  })

  void test('global auth (TMEM_AUTH to 0xFFFF) → shared without per-client auth; off again → private', () => {
    const h = new Harness()
    assert.equal(h.auth(ALL, [0n, 0n], 1), 1)
    assert.equal(h.newPool(1, F.SHARED_EPH, UUID_A), 0)
    assert.equal(h.newPool(2, F.SHARED_EPH, UUID_A), 0)
    assert.match(h.list(), /\nS=SI:0,PT:ES,U0:8899aabbccddeeff,U1:1122334455667788,SC:1,SC:2\n/)
    assert.equal(h.auth(ALL, [0n, 0n], 0), 1)
    assert.equal(h.newPool(3, F.SHARED_EPH, UUID_A), 0)
    assert.match(h.list(), /SC:1,SC:2\n/)
    assert.match(h.list(), /\nP=CI:3,PI:0,PT:EP,U0:0,U1:0\n/)
  })

  void test('sharedAuth: false → any client joins by UUID', () => {
    const h = new Harness({ sharedAuth: false })
    assert.equal(h.newPool(1, F.SHARED_EPH, UUID_A), 0)
    assert.equal(h.newPool(2, F.SHARED_EPH, UUID_A), 0)
    assert.match(h.list(), /\nS=SI:0,PT:ES,U0:8899aabbccddeeff,U1:1122334455667788,SC:1,SC:2\n/)
  })

  void test('the 17th distinct shared UUID → -EPERM; joining an existing one still works', () => {
    const h = new Harness()
    assert.equal(h.auth(ALL, [0n, 0n], 1), 1)
    for (let i = 0; i < 16; i++) assert.equal(h.newPool(1, F.SHARED_EPH, [BigInt(i + 100), 0n]), i)
    assert.equal(h.newPool(2, F.SHARED_EPH, [999n, 0n]), E.PERM)
    assert.equal(h.newPool(2, F.SHARED_EPH, [105n, 0n]), 0)
    assert.match(h.list(), /\nS=SI:5,PT:ES,U0:69,U1:0,SC:1,SC:2\n/)
    // Freeing a global slot makes room again.
    assert.equal(h.destroy(1, 3), 1)
    assert.equal(h.newPool(2, F.SHARED_EPH, [999n, 0n]), 1)
    assert.match(h.list(), /\nS=SI:3,PT:ES,U0:3e7,U1:0,SC:2\n/)
    h.check()
  })

  void test('shared + persistent → -EPERM (D7, 2014 rule)', () => {
    const h = new Harness()
    assert.equal(h.auth(ALL, [0n, 0n], 1), 1)
    assert.equal(h.newPool(1, F.SHARED_PERS, UUID_A), E.PERM)
    assert.equal(h.newPool(1, F.SHARED_EPH, UUID_A), 0)
    assert.equal(h.newPool(2, F.SHARED_PERS, UUID_A), E.PERM)
    assert.doesNotMatch(h.list(), /SC:2/)
  })

  void test('a sharer leaving removes only its objects; the owner leaving hands the pool on', () => {
    const h = twoAuthorised()
    assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
    assert.equal(h.newPool(1, F.SHARED_EPH, UUID_A), 1)
    assert.equal(h.newPool(2, F.SHARED_EPH, UUID_A), 0)
    // PUT records the owner's id as last client, GET the caller's (§3.3 step 8, §3.4 step 7).
    assert.equal(h.put(2, 0, 10, 0, page(10)), 1) // last client 1 (owner)
    assert.equal(h.put(1, 1, 11, 0, page(11)), 1) // last client 1
    assert.equal(h.get(2, 0, 11, 0), 1) // last client of object 11 := 2
    assert.equal(h.destroy(2, 0), 1)
    assert.match(h.list(), /\nS=SI:0,PT:ES,U0:8899aabbccddeeff,U1:1122334455667788,SC:1\n/)
    assert.equal(h.get(1, 1, 10, 0), 1)
    assert.equal(h.get(1, 1, 11, 0), 0)
    // Dom 2 joins again in its slot 0; then the owner leaves: dom 2 owns the pool, PI becomes 0.
    assert.equal(h.newPool(2, F.SHARED_EPH, UUID_A), 0)
    assert.equal(h.put(2, 0, 12, 0, page(12)), 1)
    assert.equal(h.get(2, 0, 12, 0), 1) // last client 2: survives dom 1 leaving
    assert.equal(h.destroy(1, 1), 1)
    const text = h.list(ALL, true)
    assert.match(text, /\nS=SI:0,PT:ES,U0:8899aabbccddeeff,U1:1122334455667788,SC:2,/)
    assert.match(text, /\nP=CI:2,PI:0,PT:ES,/)
    assert.equal(h.get(2, 0, 12, 0), 1)
    // Object 10's last client was 1 (the owner at put time): it left with dom 1.
    assert.equal(h.get(2, 0, 10, 0), 0)
    // Ownership moved the pool's page to dom 2's counts (D9): dom 1 keeps its private pool only.
    assert.equal(lineValue(text, 'C=CI:1,', 'Ec'), 0)
    assert.equal(lineValue(text, 'C=CI:2,', 'Ec'), 1)
    h.check()
    // The last sharer leaving destroys the pool.
    assert.equal(h.destroy(2, 0), 1)
    assert.doesNotMatch(h.list(), /\nS=/)
    h.check()
  })
})

void describe('conformance: TMEM_AUTH (spec §5.6 with the decisions)', () => {
  void test('unknown client → -EINVAL', () => {
    const h = new Harness()
    assert.equal(h.auth(5, UUID_A, 1), E.INVAL)
    assert.equal(h.auth(5, UUID_A, 0), E.INVAL)
    assert.doesNotMatch(h.list(), /C=CI:5/)
  })

  void test('authorise is idempotent; revoke returns 1 when present, 0 when absent', () => {
    const h = new Harness()
    assert.equal(h.get(1, 0, 0, 0), E.NODEV)
    assert.equal(h.auth(1, UUID_A, 0), 0)
    assert.equal(h.auth(1, UUID_A, 1), 1)
    assert.equal(h.auth(1, UUID_A, 1), 1)
    assert.equal(h.auth(1, UUID_A, 0), 1)
    assert.equal(h.auth(1, UUID_A, 0), 0) // no duplicate was stored
    // Revoked: a shared request is downgraded.
    assert.equal(h.newPool(1, F.SHARED_EPH, UUID_A), 0)
    assert.doesNotMatch(h.list(), /\nS=/)
  })

  void test('any non-zero auth value authorises (spec §10 item 17)', () => {
    const h = new Harness()
    assert.equal(h.get(1, 0, 0, 0), E.NODEV)
    assert.equal(h.auth(1, UUID_A, 2), 1)
    assert.equal(h.auth(1, UUID_A, 0x100), 1)
    assert.equal(h.newPool(1, F.SHARED_EPH, UUID_A), 0)
    assert.match(h.list(), /\nS=SI:0,PT:ES,/)
    assert.equal(h.auth(1, UUID_A, 0), 1)
    assert.equal(h.auth(1, UUID_A, 0), 0)
  })

  void test('16 entries fit; the 17th → -ENOMEM; a revoked entry is reused', () => {
    const h = new Harness()
    assert.equal(h.get(1, 0, 0, 0), E.NODEV)
    for (let i = 0; i < 16; i++) assert.equal(h.auth(1, [BigInt(i), 7n], 1), 1)
    assert.equal(h.auth(1, [16n, 7n], 1), E.NOMEM)
    assert.equal(h.auth(1, [3n, 7n], 1), 1) // already present
    assert.equal(h.auth(1, [3n, 7n], 0), 1)
    assert.equal(h.auth(1, [16n, 7n], 1), 1)
    assert.equal(h.auth(1, [17n, 7n], 1), E.NOMEM)
    assert.equal(h.newPool(1, F.SHARED_EPH, [16n, 7n]), 0)
    assert.match(h.list(), /\nS=SI:0,PT:ES,U0:10,U1:7,SC:1\n/)
  })

  void test('client id 0xFFFF sets global auth and returns 1 whatever the UUID', () => {
    const h = new Harness()
    assert.equal(h.auth(ALL, [5n, 5n], 1), 1)
    assert.equal(h.newPool(9, F.SHARED_EPH, UUID_B), 0)
    assert.match(h.list(), /\nS=SI:0,PT:ES,U0:1,U1:2,SC:9\n/)
  })

  void test('TMEM_AUTH and TMEM_RESTORE_NEW from a guest → -EPERM, nothing changed, no client', () => {
    const h = new Harness()
    assert.equal(h.host.op(3, creatOp(CMD.AUTH, 0, 1, UUID_A, ALL)), E.PERM)
    assert.equal(h.host.op(3, creatOp(CMD.RESTORE_NEW, 0, F.PRIVATE_EPH, [0n, 0n], 3)), E.PERM)
    assert.doesNotMatch(h.list(), /C=CI:3/)
    // Global auth was not switched on.
    assert.equal(h.newPool(1, F.SHARED_EPH, UUID_A), 0)
    assert.doesNotMatch(h.list(), /\nS=/)
  })
})

void describe('conformance: v0 clients (D3, spec §2.7, §2.9)', () => {
  function v0(
    h: Harness,
    cli: number,
    op: Parameters<typeof abi.encodeOp>[0],
    data: Uint8Array | null = null,
  ): number {
    return h.host.opBytes(cli, abi.encodeOp(op, 0), 0, 0, data, 0)
  }

  void test("default: a v0 client's first NEW_POOL → -EPERM with a diagnostic naming the version", () => {
    const h = new Harness()
    const messages: [number, string][] = []
    h.host.onDiagnostic = (cli, message) => messages.push([cli, message])
    assert.equal(v0(h, 7, creatOp(CMD.NEW_POOL, 0, 0x00000000, [0n, 0n])), E.PERM)
    assert.equal(messages.length, 1)
    assert.equal(messages[0]![0], 7)
    assert.match(messages[0]![1], /v0|version 0/i)
    // Without a pool, everything else is -ENODEV (§2.9).
    assert.equal(v0(h, 7, genOp(CMD.PUT_PAGE, 0, 5, 0), page(1)), E.NODEV)
    assert.equal(v0(h, 7, genOp(CMD.GET_PAGE, 0, 5, 0), new Uint8Array(4096)), E.NODEV)
  })

  void test('a v1 client sending version-0 flags → -EPERM with a diagnostic (default and acceptV0)', () => {
    for (const acceptV0 of [false, true]) {
      const h = new Harness({ acceptV0 })
      const messages: string[] = []
      h.host.onDiagnostic = (_cli, message) => messages.push(message)
      assert.equal(h.newPool(1, 0x00000000), E.PERM)
      assert.equal(messages.length, 1)
      assert.match(messages[0]!, /version/i)
    }
  })

  void test('acceptV0: a v0 client and a v1 client side by side', () => {
    const h = new Harness({ acceptV0: true })
    assert.equal(v0(h, 7, creatOp(CMD.NEW_POOL, 0, 0x00000001, [0n, 0n])), 0)
    assert.equal(h.newPool(8, F.PRIVATE_PERS), 0)
    // Same handle in both clients, different data.
    assert.equal(v0(h, 7, genOp(CMD.PUT_PAGE, 0, 0x1234, 2), page(70)), 1)
    assert.equal(h.put(8, 0, 0x1234, 2, page(80)), 1)
    const into = new Uint8Array(4096)
    assert.equal(v0(h, 7, genOp(CMD.GET_PAGE, 0, 0x1234, 2), into), 1)
    assert.ok(samePage(into, page(70)))
    assert.ok(samePage(h.fetch(8, 0, 0x1234, 2).data, page(80)))
    // The v0 object id is OID [object, 0, 0]: the v1 client's [0x1234,0,1] is another object.
    assert.equal(h.get(8, 0, [0x1234n, 0n, 1n], 2), 0)
    assert.equal(v0(h, 7, genOp(CMD.FLUSH_PAGE, 0, 0x1234, 2)), 1)
    assert.equal(v0(h, 7, genOp(CMD.GET_PAGE, 0, 0x1234, 2), into), E.EMPTY)
    // v0 client sending v1 pool flags is refused like a v0 hypervisor would (1 ≠ 0).
    assert.equal(v0(h, 7, creatOp(CMD.NEW_POOL, 0, 0x01000000, [0n, 0n])), E.PERM)
    // A client keeps the ABI of its first call: other version → -EINVAL.
    assert.equal(h.host.op(7, genOp(CMD.GET_PAGE, 0, 1, 0), new Uint8Array(4096), 1), E.INVAL)
    assert.equal(v0(h, 8, genOp(CMD.GET_PAGE, 0, 1, 0), new Uint8Array(4096)), E.INVAL)
    h.check()
  })

  void test('acceptV0: v0 bytes are read with the 40-byte layout', () => {
    const h = new Harness({ acceptV0: true })
    assert.equal(v0(h, 7, creatOp(CMD.NEW_POOL, 0, 0x00000000, [0n, 0n])), 0)
    // Build a v0 PUT by hand (§2.7): cmd 4, pool 0, object at 8, index at 16.
    const bytes = new Uint8Array(40)
    bytes[0] = 4
    bytes[8] = 0x21
    bytes[15] = 0x80 // object 0x8000000000000021
    bytes[16] = 9
    assert.equal(h.host.opBytes(7, bytes, 0, 0, page(5), 0), 1)
    const into = new Uint8Array(4096)
    assert.equal(v0(h, 7, genOp(CMD.GET_PAGE, 0, 0x8000000000000021n, 9), into), 1)
    assert.ok(samePage(into, page(5)))
  })
})
