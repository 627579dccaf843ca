/**
 * Tests of src/abi/codec.ts against independent oracles: the naive byte builder with offsets
 * typed from the spec tables (§2.6-2.8), a few hex dumps written by hand, and literal numbers
 * for pool flags (§2.3) and UUID strings (§5.6). The codec's own output is never the
 * expectation. Random tests print their seed on failure; TMEM_SEED=<n> replays one.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  decodeHandle,
  decodeOp,
  encodeHandle,
  encodeHandleInto,
  encodeOp,
  encodeOpInto,
  opArm,
  parsePoolFlags,
  poolFlags,
  uuidFromString,
  uuidToString,
  type AbiVersion,
  type OpArm,
} from '../../src/abi/mod.js'
import type { Oid, TmemHandle, TmemOp } from '../../src/abi/types.js'
import { naive } from '../helpers/naive-bytes.js'

const U64_MAX = 0xffff_ffff_ffff_ffffn
const seedText = process.env['TMEM_SEED']

function runParams<Ts>(): fc.Parameters<Ts> {
  return seedText === undefined ? { numRuns: 300 } : { numRuns: 300, seed: Number(seedText) }
}

// The oracle: struct tmem_op built byte by byte at the offsets of spec §2.6 (v1) and §2.7 (v0).
// The arm is chosen from the spec's command table, typed here again.
const CREAT_CMDS = new Set([1, 101, 102])

function naiveOp(op: TmemOp, version: AbiVersion): Uint8Array {
  const b = naive().at(0).u32le(op.cmd).at(4).s32le(op.poolId).at(8)
  if ('creat' in op && CREAT_CMDS.has(op.cmd)) {
    const c = op.creat
    b.u64le(c.uuid[0]).at(16).u64le(c.uuid[1]).at(24).u32le(c.flags).at(28).u32le(c.arg1)
    return version === 1 ? b.at(32).zeros(24).done(56) : b.at(32).zeros(8).done(40)
  }
  if ('ctrl' in op && op.cmd === 0) {
    const c = op.ctrl
    b.u32le(c.subop).at(12).u32le(c.cliId).at(16).u32le(c.arg1).at(20).u32le(c.arg2).at(24)
    if (version === 0) return b.u64le(c.oid[0]).at(32).u64le(c.buf).done(40)
    b.u64le(c.oid[0]).at(32).u64le(c.oid[1]).at(40).u64le(c.oid[2])
    return b.at(48).u64le(c.buf).done(56)
  }
  if ('gen' in op && op.cmd !== 0 && !CREAT_CMDS.has(op.cmd)) {
    const g = op.gen
    if (version === 0) {
      b.u64le(g.oid[0]).at(16).u32le(g.index).at(20).u32le(g.tmemOffset)
      return b.at(24).u32le(g.pfnOffset).at(28).u32le(g.len).at(32).u64le(g.cmfn).done(40)
    }
    b.u64le(g.oid[0]).at(16).u64le(g.oid[1]).at(24).u64le(g.oid[2])
    b.at(32).u32le(g.index).at(36).u32le(g.tmemOffset).at(40).u32le(g.pfnOffset)
    return b.at(44).u32le(g.len).at(48).u64le(g.cmfn).done(56)
  }
  throw new Error('naiveOp: the op arm does not match its command')
}

// struct tmem_handle at the offsets of spec §2.8.
function naiveHandle(h: TmemHandle, version: AbiVersion): Uint8Array {
  const b = naive().at(0).u32le(h.poolId).at(4).u32le(h.index).at(8).u64le(h.oid[0])
  if (version === 0) return b.done(16)
  return b.at(16).u64le(h.oid[1]).at(24).u64le(h.oid[2]).done(32)
}

function hex(text: string): Uint8Array {
  const digits = text.replace(/\s+/g, '')
  const out = new Uint8Array(digits.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16)
  return out
}

const UUID_LO = 0x8899aabbccddeeffn
const UUID_HI = 0x1122334455667788n
const OID_A: Oid = [0x0102030405060708n, 0x1112131415161718n, 0x2122232425262728n]

interface Vector {
  name: string
  version: AbiVersion
  op: TmemOp
}

const VECTORS: Vector[] = [
  {
    name: 'v1 NEW_POOL shared ephemeral',
    version: 1,
    op: { cmd: 1, poolId: 0, creat: { uuid: [UUID_LO, UUID_HI], flags: 0x01000002, arg1: 0 } },
  },
  {
    name: 'v1 AUTH',
    version: 1,
    op: { cmd: 101, poolId: 0, creat: { uuid: [UUID_LO, UUID_HI], flags: 1, arg1: 7 } },
  },
  {
    name: 'v1 RESTORE_NEW',
    version: 1,
    op: { cmd: 102, poolId: 5, creat: { uuid: [0n, 0n], flags: 0x01000001, arg1: 3 } },
  },
  {
    name: 'v1 CONTROL RESTORE_PUT_PAGE',
    version: 1,
    op: {
      cmd: 0,
      poolId: 3,
      ctrl: {
        subop: 32,
        cliId: 0xffff,
        arg1: 4096,
        arg2: 17,
        oid: [1n, 1n << 63n, U64_MAX],
        buf: 0x00007fff00001000n,
      },
    },
  },
  {
    name: 'v1 PUT_PAGE with a negative pool id',
    version: 1,
    op: {
      cmd: 4,
      poolId: -1,
      gen: {
        oid: OID_A,
        index: 0xdeadbeef,
        tmemOffset: 1,
        pfnOffset: 2,
        len: 4096,
        cmfn: 0xfedcba9876543210n,
      },
    },
  },
  {
    name: 'v1 DESTROY_POOL',
    version: 1,
    op: {
      cmd: 2,
      poolId: 15,
      gen: { oid: [0n, 0n, 0n], index: 0, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
    },
  },
  {
    name: 'v1 unknown command 0xffffffff',
    version: 1,
    op: {
      cmd: 0xffffffff,
      poolId: -0x80000000,
      gen: {
        oid: [U64_MAX, 0n, 9n],
        index: 0xffffffff,
        tmemOffset: 0,
        pfnOffset: 0,
        len: 0,
        cmfn: 0n,
      },
    },
  },
  {
    name: 'v0 NEW_POOL private persistent (version bits 0)',
    version: 0,
    op: { cmd: 1, poolId: 0, creat: { uuid: [UUID_LO, UUID_HI], flags: 0x00000001, arg1: 0 } },
  },
  {
    name: 'v0 CONTROL RESTORE_FLUSH_PAGE',
    version: 0,
    op: {
      cmd: 0,
      poolId: 2,
      ctrl: { subop: 33, cliId: 4, arg1: 0, arg2: 99, oid: [0xabcdefn, 0n, 0n], buf: 0x1000n },
    },
  },
  {
    name: 'v0 PUT_PAGE',
    version: 0,
    op: {
      cmd: 4,
      poolId: 1,
      gen: {
        oid: [0x0102030405060708n, 0n, 0n],
        index: 42,
        tmemOffset: 0,
        pfnOffset: 0,
        len: 0,
        cmfn: 0x123456789n,
      },
    },
  },
  {
    name: 'v0 DESTROY_POOL',
    version: 0,
    op: {
      cmd: 2,
      poolId: 7,
      gen: { oid: [0n, 0n, 0n], index: 0, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
    },
  },
]

void describe('golden vectors against the naive builder', () => {
  for (const { name, version, op } of VECTORS) {
    void test(`encodes ${name}`, () => {
      assert.deepEqual(encodeOp(op, version), naiveOp(op, version))
    })
    void test(`decodes ${name}`, () => {
      assert.deepEqual(decodeOp(naiveOp(op, version), version), op)
    })
  }

  void test('hand-written hex dump of a v1 PUT_PAGE (checks the oracle too)', () => {
    const expected = hex(`
      04000000 ffffffff
      0807060504030201 1817161514131211 2827262524232221
      efbeadde 01000000 02000000 00100000
      1032547698badcfe`)
    const op = VECTORS[4]?.op
    assert.ok(op !== undefined)
    assert.deepEqual(naiveOp(op, 1), expected)
    assert.deepEqual(encodeOp(op, 1), expected)
  })

  void test('hand-written hex dump of a v0 PUT_PAGE', () => {
    const expected = hex(`
      04000000 01000000
      0807060504030201
      2a000000 00000000 00000000 00000000
      8967452301000000`)
    const op = VECTORS[9]?.op
    assert.ok(op !== undefined)
    assert.deepEqual(encodeOp(op, 0), expected)
  })

  void test('v1 handle', () => {
    const h: TmemHandle = { poolId: 3, index: 0x01020304, oid: OID_A }
    const bytes = naiveHandle(h, 1)
    assert.deepEqual(encodeHandle(h), bytes)
    assert.deepEqual(decodeHandle(bytes), h)
  })

  void test('v0 handle', () => {
    const h: TmemHandle = { poolId: 0xffffffff, index: 9, oid: [0x8877665544332211n, 0n, 0n] }
    const bytes = naiveHandle(h, 0)
    assert.deepEqual(bytes, hex('ffffffff 09000000 1122334455667788'))
    assert.deepEqual(encodeHandle(h, 0), bytes)
    assert.deepEqual(decodeHandle(bytes, 0), h)
  })
})

void describe('arms, offsets and padding', () => {
  void test('the arm follows cmd', () => {
    assert.equal(opArm(0), 'ctrl')
    for (const cmd of [1, 101, 102]) assert.equal(opArm(cmd), 'creat')
    for (const cmd of [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 100, 103, 0xffffffff]) {
      assert.equal(opArm(cmd), 'gen')
    }
  })

  void test('unused union bytes are zeroed over stale target bytes', () => {
    // Pairs of (gen vector, creat vector) per version: the gen op fills every byte first.
    for (const [version, genAt, creatAt, size] of [
      [1, 4, 0, 56],
      [0, 9, 7, 40],
    ] as const) {
      const gen = VECTORS[genAt]?.op
      const creat = VECTORS[creatAt]?.op
      assert.ok(gen !== undefined && creat !== undefined)
      const target = new Uint8Array(size).fill(0xff)
      encodeOpInto(gen, version, target, 0)
      encodeOpInto(creat, version, target, 0)
      assert.deepEqual(target.subarray(32), new Uint8Array(size - 32))
      assert.deepEqual(target, naiveOp(creat, version))
    }
  })

  void test('encodeOpInto writes only its own bytes, at an offset into a subarray', () => {
    const op = VECTORS[3]?.op
    assert.ok(op !== undefined)
    const backing = new Uint8Array(80).fill(0xaa)
    const target = backing.subarray(7)
    encodeOpInto(op, 1, target, 3)
    assert.deepEqual(backing.subarray(10, 66), naiveOp(op, 1))
    assert.ok(backing.subarray(0, 10).every((x) => x === 0xaa))
    assert.ok(backing.subarray(66).every((x) => x === 0xaa))
  })

  void test('decodeOp and decodeHandle read at an offset into a subarray', () => {
    const op = VECTORS[4]?.op
    assert.ok(op !== undefined)
    const backing = new Uint8Array(70).fill(0x55)
    backing.set(naiveOp(op, 1), 9)
    assert.deepEqual(decodeOp(backing.subarray(4), 1, 5), op)
    const h: TmemHandle = { poolId: 1, index: 2, oid: OID_A }
    const hb = new Uint8Array(40)
    encodeHandleInto(h, 1, hb, 8)
    assert.deepEqual(hb.subarray(8), naiveHandle(h, 1))
    assert.deepEqual(decodeHandle(hb.subarray(3), 1, 5), h)
  })

  void test('decode ignores unused union bytes, as the hypervisor does', () => {
    const op = VECTORS[0]?.op
    assert.ok(op !== undefined)
    const bytes = naiveOp(op, 1)
    bytes.fill(0x77, 32)
    assert.deepEqual(decodeOp(bytes), op)
  })
})

/** fc.record with plain objects: deepStrictEqual tells null-prototype objects apart. */
function record<T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(model, { noNullPrototype: true })
}

const u32 = fc.integer({ min: 0, max: 0xffffffff })
const s32 = fc.integer({ min: -0x80000000, max: 0x7fffffff })
const u64 = fc.bigInt({ min: 0n, max: U64_MAX })
const oidV1 = fc.tuple(u64, u64, u64)
const oidV0 = u64.map((object): Oid => [object, 0n, 0n])
const genCmd = fc
  .oneof(fc.integer({ min: 2, max: 12 }), u32)
  .filter((cmd) => cmd !== 0 && !CREAT_CMDS.has(cmd))

function opArbitrary(oid: fc.Arbitrary<Oid>): fc.Arbitrary<TmemOp> {
  const creat = record({
    cmd: fc.constantFrom(1, 101, 102),
    poolId: s32,
    creat: record({ uuid: fc.tuple(u64, u64), flags: u32, arg1: u32 }),
  })
  const ctrl = record({
    cmd: fc.constant(0),
    poolId: s32,
    ctrl: record({ subop: u32, cliId: u32, arg1: u32, arg2: u32, oid, buf: u64 }),
  })
  const gen = record({
    cmd: genCmd,
    poolId: s32,
    gen: record({ oid, index: u32, tmemOffset: u32, pfnOffset: u32, len: u32, cmfn: u64 }),
  })
  return fc.oneof(creat, ctrl, gen)
}

void describe('properties', () => {
  for (const [version, oid] of [
    [1, oidV1],
    [0, oidV0],
  ] as const) {
    void test(`v${version}: encode equals the naive bytes and decode inverts it`, () => {
      fc.assert(
        fc.property(opArbitrary(oid), (op) => {
          const bytes = encodeOp(op, version)
          assert.deepEqual(bytes, naiveOp(op, version))
          assert.deepEqual(decodeOp(bytes, version), op)
        }),
        runParams(),
      )
    })

    void test(`v${version}: any bytes decode and re-encode with padding zeroed`, () => {
      const size = version === 1 ? 56 : 40
      fc.assert(
        fc.property(fc.uint8Array({ minLength: size, maxLength: size }), u32, (raw, cmd) => {
          const bytes = Uint8Array.from(raw)
          // Bias the command towards the interesting arms half of the time.
          const biased = [0, 1, 101, 102, 2, 4][(cmd >>> 1) % 6] ?? 0
          if (cmd % 2 === 0) bytes.set(naive().u32le(biased).done(4))
          const op = decodeOp(bytes, version)
          const expected = Uint8Array.from(bytes)
          if (CREAT_CMDS.has(op.cmd)) expected.fill(0, 32)
          assert.deepEqual(encodeOp(op, version), expected)
        }),
        runParams(),
      )
    })

    void test(`v${version}: handles round-trip and match the naive bytes`, () => {
      const handle = record({ poolId: u32, index: u32, oid })
      fc.assert(
        fc.property(handle, (h) => {
          const bytes = encodeHandle(h, version)
          assert.deepEqual(bytes, naiveHandle(h, version))
          assert.deepEqual(decodeHandle(bytes, version), h)
        }),
        runParams(),
      )
    })
  }

  void test('uuid strings round-trip', () => {
    fc.assert(
      fc.property(fc.tuple(u64, u64), (uuid) => {
        const text = uuidToString(uuid)
        assert.match(text, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/)
        assert.deepEqual(uuidFromString(text), uuid)
        assert.deepEqual(uuidFromString(text.toUpperCase()), uuid)
      }),
      runParams(),
    )
  })
})

// A valid op of each arm, to be broken one field at a time.
function genOp(): TmemOp & { gen: object } {
  return {
    cmd: 4,
    poolId: 0,
    gen: { oid: [1n, 0n, 0n], index: 0, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
  }
}

function creatOp(): TmemOp & { creat: object } {
  return { cmd: 1, poolId: 0, creat: { uuid: [0n, 0n], flags: 0x01000000, arg1: 0 } }
}

function ctrlOp(): TmemOp & { ctrl: object } {
  return {
    cmd: 0,
    poolId: 0,
    ctrl: { subop: 4, cliId: 0xffff, arg1: 0, arg2: 0, oid: [0n, 0n, 0n], buf: 0n },
  }
}

/** Builds an op with one field replaced; the value may be of the wrong type on purpose. */
function broken(op: TmemOp, arm: OpArm | null, key: string, value: unknown): TmemOp {
  if (arm === null) return { ...op, [key]: value }
  const record = op as unknown as Record<string, Record<string, unknown>>
  return { ...op, [arm]: { ...record[arm], [key]: value } }
}

const RANGE_CASES: [string, TmemOp][] = [
  ['cmd -1', broken(genOp(), null, 'cmd', -1)],
  ['cmd 2^32', broken(genOp(), null, 'cmd', 2 ** 32)],
  ['poolId 2^31', broken(genOp(), null, 'poolId', 2 ** 31)],
  ['poolId -2^31-1', broken(genOp(), null, 'poolId', -(2 ** 31) - 1)],
  ['poolId 0.5', broken(genOp(), null, 'poolId', 0.5)],
  ['gen.index 1.5', broken(genOp(), 'gen', 'index', 1.5)],
  ['gen.len 2^32', broken(genOp(), 'gen', 'len', 2 ** 32)],
  ['gen.tmemOffset -1', broken(genOp(), 'gen', 'tmemOffset', -1)],
  ['gen.pfnOffset NaN', broken(genOp(), 'gen', 'pfnOffset', Number.NaN)],
  ['gen.cmfn -1n', broken(genOp(), 'gen', 'cmfn', -1n)],
  ['gen.cmfn 2^64', broken(genOp(), 'gen', 'cmfn', 1n << 64n)],
  ['gen.oid[2] 2^64', broken(genOp(), 'gen', 'oid', [0n, 0n, 1n << 64n])],
  ['creat.uuid[1] -1n', broken(creatOp(), 'creat', 'uuid', [0n, -1n])],
  ['creat.flags 2^32', broken(creatOp(), 'creat', 'flags', 2 ** 32)],
  ['creat.arg1 -1', broken(creatOp(), 'creat', 'arg1', -1)],
  ['ctrl.cliId -1', broken(ctrlOp(), 'ctrl', 'cliId', -1)],
  ['ctrl.subop Infinity', broken(ctrlOp(), 'ctrl', 'subop', Infinity)],
  ['ctrl.buf 2^64', broken(ctrlOp(), 'ctrl', 'buf', 1n << 64n)],
  ['ctrl.oid[0] -1n', broken(ctrlOp(), 'ctrl', 'oid', [-1n, 0n, 0n])],
]

const TYPE_CASES: [string, TmemOp][] = [
  ['PUT_PAGE carrying creat', { cmd: 4, poolId: 0, creat: creatOp().creat } as TmemOp],
  ['DESTROY_POOL carrying creat', { cmd: 2, poolId: 0, creat: creatOp().creat } as TmemOp],
  ['CONTROL carrying gen', { cmd: 0, poolId: 0, gen: genOp().gen } as TmemOp],
  ['NEW_POOL carrying ctrl', { cmd: 1, poolId: 0, ctrl: ctrlOp().ctrl } as TmemOp],
  ['AUTH carrying gen', { cmd: 101, poolId: 0, gen: genOp().gen } as TmemOp],
  ['gen arm null', broken(genOp(), null, 'gen', null)],
  ['gen.cmfn as a number', broken(genOp(), 'gen', 'cmfn', 5)],
  ['gen.index as a bigint', broken(genOp(), 'gen', 'index', 5n)],
  ['gen.oid with two words', broken(genOp(), 'gen', 'oid', [0n, 0n])],
  ['creat.uuid not an array', broken(creatOp(), 'creat', 'uuid', 5n)],
  ['cmd as a string', broken(genOp(), null, 'cmd', '4')],
]

void describe('errors', () => {
  for (const [name, op] of RANGE_CASES) {
    void test(`encode refuses ${name} with a RangeError, leaving the target untouched`, () => {
      assert.throws(() => encodeOp(op), RangeError)
      const target = new Uint8Array(56).fill(0xaa)
      assert.throws(() => encodeOpInto(op, 1, target, 0), RangeError)
      assert.ok(target.every((x) => x === 0xaa))
    })
  }

  for (const [name, op] of TYPE_CASES) {
    void test(`encode refuses ${name} with a TypeError`, () => {
      assert.throws(() => encodeOp(op), TypeError)
    })
  }

  void test('v0 refuses oids with non-zero words 1 or 2', () => {
    assert.throws(() => encodeOp(broken(genOp(), 'gen', 'oid', [1n, 1n, 0n]), 0), RangeError)
    assert.throws(() => encodeOp(broken(genOp(), 'gen', 'oid', [0n, 0n, 1n]), 0), RangeError)
    assert.throws(() => encodeOp(broken(ctrlOp(), 'ctrl', 'oid', [0n, 0n, 1n]), 0), RangeError)
    const wide: TmemHandle = { poolId: 0, index: 0, oid: [0n, 1n, 0n] }
    assert.throws(() => encodeHandle(wide, 0), RangeError)
    assert.equal(encodeHandle(wide, 1).length, 32)
  })

  void test('short input is a RangeError', () => {
    assert.throws(() => decodeOp(new Uint8Array(55)), RangeError)
    assert.throws(() => decodeOp(new Uint8Array(39), 0), RangeError)
    assert.throws(() => decodeOp(new Uint8Array(56), 1, 1), RangeError)
    assert.throws(() => decodeOp(new Uint8Array(56), 1, 57), RangeError)
    assert.throws(() => decodeOp(new Uint8Array(56), 1, -1), RangeError)
    assert.throws(() => decodeHandle(new Uint8Array(31)), RangeError)
    assert.throws(() => decodeHandle(new Uint8Array(16), 0, 1), RangeError)
    assert.throws(() => encodeOpInto(genOp(), 1, new Uint8Array(60), 5), RangeError)
    assert.throws(() => encodeHandleInto(VECTOR_HANDLE, 0, new Uint8Array(20), 5), RangeError)
    // Exactly enough is fine.
    assert.equal(decodeOp(new Uint8Array(40), 0).cmd, 0)
    encodeOpInto(genOp(), 1, new Uint8Array(60), 4)
  })

  void test('ABI versions other than 0 and 1 are a RangeError', () => {
    const two = 2 as AbiVersion
    assert.throws(() => encodeOp(genOp(), two), RangeError)
    assert.throws(() => decodeOp(new Uint8Array(56), two), RangeError)
    assert.throws(() => encodeHandle(VECTOR_HANDLE, two), RangeError)
    assert.throws(() => decodeHandle(new Uint8Array(32), two), RangeError)
  })

  void test('error messages are sentences with no trailing period', () => {
    const messages: string[] = []
    const thunks = [
      ...RANGE_CASES.map(
        ([, op]) =>
          () =>
            encodeOp(op),
      ),
      ...TYPE_CASES.map(
        ([, op]) =>
          () =>
            encodeOp(op),
      ),
      () => decodeOp(new Uint8Array(3)),
      () => uuidFromString('nope'),
      () => poolFlags({ version: 256 }),
    ]
    for (const thunk of thunks) {
      try {
        thunk()
        assert.fail('expected a throw')
      } catch (error) {
        assert.ok(error instanceof Error)
        messages.push(error.message)
      }
    }
    for (const message of messages) {
      assert.match(message, /^[A-Z]/)
      assert.doesNotMatch(message, /\.$/)
    }
  })
})

const VECTOR_HANDLE: TmemHandle = { poolId: 0, index: 0, oid: [0n, 0n, 0n] }

void describe('pool flags (spec §2.3)', () => {
  void test('typical v1 guest values', () => {
    assert.equal(poolFlags({}), 0x01000000)
    assert.equal(poolFlags(), 0x01000000)
    assert.equal(poolFlags({ shared: true }), 0x01000002)
    assert.equal(poolFlags({ persistent: true }), 0x01000001)
    assert.equal(poolFlags({ persistent: true, shared: true }), 0x01000003)
    assert.equal(poolFlags({ persistent: false, shared: false }), 0x01000000)
  })

  void test('version and page size fields', () => {
    assert.equal(poolFlags({ version: 0 }), 0)
    assert.equal(poolFlags({ version: 0, persistent: true }), 1)
    assert.equal(poolFlags({ version: 255 }), 0xff000000)
    assert.equal(poolFlags({ pageSizeField: 1 }), 0x01000010)
    assert.equal(poolFlags({ pageSizeField: 15, version: 2 }), 0x020000f0)
  })

  void test('out-of-range fields are a RangeError', () => {
    assert.throws(() => poolFlags({ version: 256 }), RangeError)
    assert.throws(() => poolFlags({ version: -1 }), RangeError)
    assert.throws(() => poolFlags({ pageSizeField: 16 }), RangeError)
    assert.throws(() => poolFlags({ pageSizeField: 0.5 }), RangeError)
    assert.throws(() => parsePoolFlags(-1), RangeError)
    assert.throws(() => parsePoolFlags(2 ** 32), RangeError)
  })

  void test('parse reads every field', () => {
    assert.deepEqual(parsePoolFlags(0x01000002), {
      persistent: false,
      shared: true,
      precompressed: false,
      pageSizeField: 0,
      reserved: 0,
      version: 1,
    })
    // 0x57 = 0101 0111: page size field 5, bit 3 clear, precompressed, shared, persistent.
    assert.deepEqual(parsePoolFlags(0x02abcd57), {
      persistent: true,
      shared: true,
      precompressed: true,
      pageSizeField: 5,
      reserved: 0x00abcd00,
      version: 2,
    })
    assert.deepEqual(parsePoolFlags(0xff000008), {
      persistent: false,
      shared: false,
      precompressed: false,
      pageSizeField: 0,
      reserved: 0,
      version: 255,
    })
  })

  void test('parse inverts build', () => {
    const options = record({
      persistent: fc.boolean(),
      shared: fc.boolean(),
      version: fc.integer({ min: 0, max: 255 }),
      pageSizeField: fc.integer({ min: 0, max: 15 }),
    })
    fc.assert(
      fc.property(options, (o) => {
        const fields = parsePoolFlags(poolFlags(o))
        assert.deepEqual(fields, { ...o, precompressed: false, reserved: 0 })
      }),
      runParams(),
    )
  })
})

void describe('uuid strings (spec §5.6)', () => {
  void test('the first 16 digits are uuid_hi, the last 16 uuid_lo, letters worth 10-15', () => {
    assert.deepEqual(uuidFromString('11223344-5566-7788-99aa-bbccddeeff00'), [
      0x99aabbccddeeff00n,
      0x1122334455667788n,
    ])
    assert.deepEqual(uuidFromString('FEDCBA98-7654-3210-0F1E-2D3C4B5A6978'), [
      0x0f1e2d3c4b5a6978n,
      0xfedcba9876543210n,
    ])
    assert.deepEqual(uuidFromString('ffffffff-ffff-ffff-ffff-ffffffffffff'), [U64_MAX, U64_MAX])
    assert.deepEqual(uuidFromString('00000000-0000-0000-0000-00000000000a'), [10n, 0n])
  })

  void test('to string is lowercase and zero-padded', () => {
    assert.equal(
      uuidToString([0x99aabbccddeeff00n, 0x1122334455667788n]),
      '11223344-5566-7788-99aa-bbccddeeff00',
    )
    assert.equal(uuidToString([1n, 0n]), '00000000-0000-0000-0000-000000000001')
    assert.equal(uuidToString([0n, 0xabn]), '00000000-0000-00ab-0000-000000000000')
  })

  void test('malformed strings are a RangeError', () => {
    const bad = [
      '',
      'a',
      '112233445566778899aabbccddeeff00',
      '1122334-45566-7788-99aa-bbccddeeff00',
      '11223344-5566-7788-99aa-bbccddeeff0',
      '11223344-5566-7788-99aa-bbccddeeff000',
      '11223344-5566-7788-99aa-bbccddeeff0g',
      '11223344-5566-7788-99aa-bbccddeeff00\n',
      ' 11223344-5566-7788-99aa-bbccddeeff00',
      '{11223344-5566-7788-99aa-bbccddeeff00}',
    ]
    for (const text of bad) assert.throws(() => uuidFromString(text), RangeError, text)
  })

  void test('out-of-range words are a RangeError', () => {
    assert.throws(() => uuidToString([-1n, 0n]), RangeError)
    assert.throws(() => uuidToString([0n, 1n << 64n]), RangeError)
  })
})
