/**
 * Bad input never throws out of the host's four entry points (`op`, `opBytes`, `control`,
 * `controlBytes`), leaves every structure intact, and one misbehaving caller never harms
 * another client (spec §3.0, §9: every bad field is a return code, never a crash).
 *
 * Each run builds a host with a reference client (id 0x4242) holding persistent pages with
 * known bytes, and a victim-of-its-own-doing client (id 7) with a private ephemeral, a
 * persistent and a shared pool, so that random ops reach real pools. Then fast-check throws
 * random calls at it: op objects with wrong types, out-of-range and huge numbers, missing or
 * extra arms, negative and huge pool and client ids, random version arguments; random bytes
 * of random length (and mutated valid encodings) for opBytes/controlBytes at random offsets;
 * missing, short, oddly typed and oddly offset data buffers. After every call the result
 * must be an integer, `checkInvariants` must pass, and the reference client must still hold
 * exactly its pages; at the end every reference page is read back byte for byte.
 *
 * Random tests print their seed on failure; TMEM_SEED=<n> replays one.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { Host } from '../../src/engine/host.js'
import { checkInvariants } from '../../src/engine/invariants.js'
import { encodeOp } from '../../src/abi/codec.js'
import type { TmemOp } from '../../src/abi/types.js'

const PAGE_BYTES = 4096
const REFERENCE = 0x4242
const OTHER = 7
const REFERENCE_PAGES = 6
const U64_MAX = 0xffffffffffffffffn
const RUNS = Number(process.env['TMEM_RUNS'] ?? 250)

/**
 * Runs a property; on failure fails with the seed, the replay path and the shrunk calls
 * (described compactly, buffers summarised) instead of fast-check's full value dump.
 */
function checkProperty<T extends [boolean, Call[]]>(name: string, property: fc.IProperty<T>): void {
  const parameters: fc.Parameters<T> = { numRuns: RUNS }
  const seedText = process.env['TMEM_SEED']
  const pathText = process.env['TMEM_PATH']
  if (seedText !== undefined) parameters.seed = Number(seedText)
  if (pathText !== undefined && pathText !== '') parameters.path = pathText
  const details = fc.check(property, parameters)
  if (!details.failed) return
  const lines = [
    `${name}: failed after ${details.numRuns} runs (${details.numShrinks} shrinks).`,
    `Replay: TMEM_SEED=${details.seed} TMEM_PATH=${details.counterexamplePath ?? ''} node tools/run-tests.mjs engine/bad-input`,
  ]
  const counterexample = details.counterexample
  if (counterexample !== null) {
    const [reserveDefault, calls] = counterexample
    lines.push(`reserveDefault: ${reserveDefault}; calls (${calls.length}):`)
    calls.forEach((call, i) => lines.push(`  ${i}: ${describeCall(avoidReference(call))}`))
  }
  const error = details.errorInstance
  lines.push(`Error: ${error instanceof Error ? error.message : String(error)}`)
  assert.fail(lines.join('\n'))
}

/** Distinctive oids, so that no random op or control subop names them by chance. */
function referenceOid(i: number): [bigint, bigint, bigint] {
  return [0x5eed_0000_0000_0000n + BigInt(i), 0xfeed_beefn, BigInt(i) << 40n]
}

function referencePage(i: number): Uint8Array {
  const page = new Uint8Array(PAGE_BYTES)
  for (let at = 0; at < PAGE_BYTES; at++) page[at] = (at * 31 + i * 17 + (at >>> 8)) & 0xff
  return page
}

function genOp(cmd: number, poolId: number, oid: [bigint, bigint, bigint], index: number): TmemOp {
  return { cmd, poolId, gen: { oid, index, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n } }
}

interface Fixture {
  host: Host
}

/** A host with the reference client's persistent pages and client 7's three pools. */
function setUp(reserveDefault: boolean): Fixture {
  const host = new Host(reserveDefault ? { pages: 48 } : { pages: 48, reservePages: 0 })
  const reference = host.client(REFERENCE).newPool({ persistent: true })
  assert.equal(reference.poolId, 0)
  for (let i = 0; i < REFERENCE_PAGES; i++)
    assert.equal(reference.put(referenceOid(i), i, referencePage(i)), true)
  // Global auth so that client 7's shared request really makes a shared pool.
  assert.equal(
    host.control({ cmd: 101, poolId: 0, creat: { uuid: [0n, 0n], flags: 1, arg1: 0xffff } }),
    1,
  )
  const other = host.client(OTHER)
  const pools = [
    other.newPool(),
    other.newPool({ persistent: true }),
    other.newPool({ shared: true, uuid: [1n, 2n] }),
  ]
  for (const pool of pools) for (let i = 0; i < 4; i++) pool.put(i, i, referencePage(100 + i))
  return { host }
}

/** The reference client still holds exactly its pages (cheap: a count after every call). */
function referenceCountIntact(host: Host): void {
  const client = host.core.clientsById[REFERENCE]
  assert.ok(client !== undefined, 'the reference client is gone')
  const pool = client.pools[0]
  assert.ok(pool !== null && pool !== undefined, 'the reference pool is gone')
  assert.equal(pool.pageCount, REFERENCE_PAGES, 'the reference pool lost or gained pages')
}

/** Every reference page reads back byte for byte (GET works even when the client is frozen). */
function referenceBytesIntact(host: Host): void {
  const into = new Uint8Array(PAGE_BYTES)
  for (let i = 0; i < REFERENCE_PAGES; i++) {
    const rc = host.op(REFERENCE, genOp(5, 0, referenceOid(i), i), into)
    assert.equal(rc, 1, `reference page ${i} is missing (rc ${rc})`)
    assert.deepEqual(into, referencePage(i), `reference page ${i} holds other bytes`)
  }
}

// ---------------------------------------------------------------------------------------------
// Arbitraries.
//
// An op is usually well formed (every field of the right type, values at the edges of what
// the spec checks) with at most one field corrupted: a value of the wrong type, a number out
// of its range, or a missing field or arm. So most calls get past decoding and reach pools,
// pages and control subops, and each corruption is met on its own.

/** Values of the wrong type for any field. */
const junk: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    null,
    undefined,
    NaN,
    Infinity,
    -Infinity,
    -0,
    0.5,
    2 ** 53,
    -(2 ** 53),
    true,
    '1',
    '',
    [],
    {},
  ),
  fc.double(),
  fc.string({ maxLength: 4 }),
  fc.bigInt({ min: -(1n << 80n), max: 1n << 80n }),
  fc.array(fc.integer(), { maxLength: 3 }),
)

/** A corrupt value for a field: the wrong type, or a number outside every field's range. */
const corrupt: fc.Arbitrary<unknown> = fc.oneof(
  junk,
  fc.constantFrom(-1, 0x100000000, 2 ** 53, -0x80000001, -1n, U64_MAX + 1n, 1n << 100n),
)

/** A u32 field: small values, the edges the spec checks (4096, sign bit), any u32. */
const u32: fc.Arbitrary<number> = fc.oneof(
  { weight: 8, arbitrary: fc.nat(20) },
  { weight: 4, arbitrary: fc.constantFrom(4095, 4096, 4097, 0x7fffffff, 0x80000000, 0xffffffff) },
  { weight: 3, arbitrary: fc.nat(0xffffffff) },
)

const u64: fc.Arbitrary<bigint> = fc.oneof(
  { weight: 3, arbitrary: fc.bigInt({ min: 0n, max: U64_MAX }) },
  { weight: 2, arbitrary: fc.constantFrom(0n, 1n, 2n, U64_MAX) },
)

const oid = fc.oneof(
  fc.tuple(fc.nat(3).map(BigInt), fc.constant(0n), fc.constant(0n)),
  fc.tuple(u64, u64, u64),
)

const cmd: fc.Arbitrary<number> = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 101, 102) },
  { weight: 1, arbitrary: u32 },
)

/** Pool ids: live slots, empty ones, out of range, negative (s32 in the ABI). */
const poolId: fc.Arbitrary<number> = fc.oneof(
  { weight: 10, arbitrary: fc.nat(3) },
  { weight: 4, arbitrary: fc.constantFrom(15, 16, -1, 0x7fffffff, -0x80000000) },
)

const flags: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(
    0x01000000,
    0x01000001,
    0x01000002,
    0x01000003,
    0,
    1,
    0x01000004,
    0x01000010,
    0x01000100,
  ),
  u32,
)

const genArm = fc.record(
  { oid, index: u32, tmemOffset: u32, pfnOffset: u32, len: u32, cmfn: u64 },
  { noNullPrototype: true },
)
const creatArm = fc.record(
  { uuid: fc.tuple(u64, u64), flags, arg1: fc.oneof(u32, fc.constantFrom(OTHER, 0xffff)) },
  { noNullPrototype: true },
)
const ctrlArm = fc.record(
  {
    subop: fc.oneof(fc.nat(40), u32),
    cliId: fc.oneof(fc.constantFrom(OTHER, 0xffff, 0xffffffff, 9), u32),
    arg1: u32,
    arg2: u32,
    oid,
    buf: u64,
  },
  { noNullPrototype: true },
)

const wellFormedOp: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ cmd, poolId, gen: genArm }, { noNullPrototype: true }) },
  { weight: 3, arbitrary: fc.record({ cmd, poolId, creat: creatArm }, { noNullPrototype: true }) },
  { weight: 3, arbitrary: fc.record({ cmd, poolId, ctrl: ctrlArm }, { noNullPrototype: true }) },
)

/**
 * One corruption of an op: the `which`-th field (top level or in the arm, counted over both)
 * gets `value`, or is deleted when `remove`; an arm field named `oid` or `uuid` may instead
 * get a wrong-length array.
 */
function corruptOp(
  op: Record<string, unknown>,
  which: number,
  value: unknown,
  remove: boolean,
): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...op }
  const armName = Object.keys(copy).find((key) => key !== 'cmd' && key !== 'poolId')!
  const arm = { ...(copy[armName] as Record<string, unknown>) }
  copy[armName] = arm
  const places: [Record<string, unknown>, string][] = [
    [copy, 'cmd'],
    [copy, 'poolId'],
    [copy, armName],
    ...Object.keys(arm).map((key): [Record<string, unknown>, string] => [arm, key]),
  ]
  const [target, key] = places[which % places.length]!
  if (remove) delete target[key]
  else target[key] = value
  return copy
}

/** An op object: well formed, one field corrupted, an extra arm, or not an object at all. */
const opish: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 8, arbitrary: wellFormedOp },
  {
    weight: 6,
    arbitrary: fc
      .tuple(
        wellFormedOp,
        fc.nat(),
        fc.oneof(corrupt, fc.array(u64, { maxLength: 5 })),
        fc.boolean(),
      )
      .map(([op, which, value, remove]) => corruptOp(op, which, value, remove && which % 3 === 0)),
  },
  { weight: 1, arbitrary: fc.tuple(wellFormedOp, ctrlArm).map(([op, ctrl]) => ({ ...op, ctrl })) },
  { weight: 1, arbitrary: junk },
)

/** A data buffer: none, a page, random length (random bytes), or a value of the wrong type. */
const dataish: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(null, undefined) },
  {
    weight: 10,
    arbitrary: fc
      .tuple(
        fc.oneof(fc.constant(PAGE_BYTES), fc.nat(64), fc.integer({ min: 4090, max: 8200 })),
        fc.nat(),
      )
      .map(([length, seed]) => {
        const bytes = new Uint8Array(length)
        for (let i = 0; i < length; i++) bytes[i] = (seed + i * 0x9e3779b1) >>> 24
        return bytes
      }),
  },
  { weight: 1, arbitrary: fc.nat(8200).map((length) => Buffer.alloc(length, 0xa5)) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      4096,
      'x'.repeat(4096),
      new Array<number>(4096).fill(1),
      new ArrayBuffer(4096),
    ),
  },
)

const offsetish: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 12, arbitrary: fc.constant(0) },
  { weight: 3, arbitrary: fc.nat(8200) },
  { weight: 2, arbitrary: fc.constantFrom(-1, -4096, 0.5, NaN, Infinity, 2 ** 31, 2 ** 53) },
  { weight: 1, arbitrary: junk },
)

const versionish: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 12, arbitrary: fc.constant(1) },
  { weight: 1, arbitrary: fc.constantFrom(0, 2, -1, 0.5, NaN, '1', null, undefined) },
)

const clientIdish: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(OTHER, 8) },
  { weight: 2, arbitrary: fc.constantFrom(0, 0xfffe, 0xffff, 0x10000, -1, 0.5, NaN, 2 ** 53, '7') },
  { weight: 1, arbitrary: fc.integer() },
  { weight: 1, arbitrary: junk },
)

/**
 * Op bytes and the offset to read them at: a valid encoding (v1) at its offset, with a few
 * bytes flipped or the struct cut short; random bytes at a random offset; or junk.
 */
const bytesAt: fc.Arbitrary<{ bytes: unknown; offset: unknown }> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .tuple(
        fc.tuple(fc.constantFrom(0, 1, 2, 4, 5, 6, 7, 8, 9, 101, 102), poolId, u32, u32, u32),
        fc.array(fc.tuple(fc.nat(55), fc.nat(255)), { maxLength: 3 }),
        fc.oneof({ weight: 5, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.nat(55) }),
        fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(8) }),
      )
      .map(([[command, pool, a, b, c], flips, cut, padding]) => {
        const op: TmemOp =
          command === 0
            ? {
                cmd: command,
                poolId: pool,
                ctrl: {
                  subop: a % 34,
                  cliId: b % 3 === 0 ? 0xffff : OTHER,
                  arg1: c,
                  arg2: a,
                  oid: [0n, 0n, 0n],
                  buf: 0n,
                },
              }
            : command === 1 || command === 101 || command === 102
              ? {
                  cmd: command,
                  poolId: pool,
                  creat: { uuid: [1n, 2n], flags: 0x01000000 | (a & 3), arg1: OTHER },
                }
              : {
                  cmd: command,
                  poolId: pool,
                  gen: {
                    oid: [BigInt(b & 3), 0n, 0n],
                    index: b & 7,
                    tmemOffset: a,
                    pfnOffset: c,
                    len: b,
                    cmfn: 0n,
                  },
                }
        const bytes = new Uint8Array(padding + 56)
        bytes.set(encodeOp(op), padding)
        for (const [at, value] of flips) bytes[padding + at] = value
        return { bytes: cut === null ? bytes : bytes.subarray(0, padding + cut), offset: padding }
      }),
  },
  {
    weight: 2,
    arbitrary: fc.record(
      { bytes: fc.uint8Array({ maxLength: 130 }), offset: offsetish },
      { noNullPrototype: true },
    ),
  },
  {
    weight: 1,
    arbitrary: fc.record({ bytes: junk, offset: offsetish }, { noNullPrototype: true }),
  },
)

type Call =
  | { entry: 'op'; clientId: unknown; op: unknown; data: unknown; version: unknown }
  | {
      entry: 'opBytes'
      clientId: unknown
      bytes: unknown
      offset: unknown
      version: unknown
      data: unknown
      dataOffset: unknown
    }
  | { entry: 'control'; op: unknown; data: unknown }
  | {
      entry: 'controlBytes'
      bytes: unknown
      offset: unknown
      version: unknown
      data: unknown
      dataOffset: unknown
      dataLength: unknown
    }

const callArbitrary: fc.Arbitrary<Call> = fc.oneof(
  fc.record(
    {
      entry: fc.constant('op' as const),
      clientId: clientIdish,
      op: opish,
      data: dataish,
      version: versionish,
    },
    { noNullPrototype: true },
  ),
  fc
    .tuple(clientIdish, bytesAt, versionish, dataish, offsetish)
    .map(([clientId, { bytes, offset }, version, data, dataOffset]): Call => ({
      entry: 'opBytes',
      clientId,
      bytes,
      offset,
      version,
      data,
      dataOffset,
    })),
  fc.record(
    { entry: fc.constant('control' as const), op: opish, data: dataish },
    { noNullPrototype: true },
  ),
  fc
    .tuple(
      bytesAt,
      versionish,
      dataish,
      offsetish,
      fc.oneof(
        { weight: 3, arbitrary: fc.constant('fit' as const) },
        { weight: 1, arbitrary: offsetish },
        { weight: 1, arbitrary: fc.nat(9000) },
      ),
    )
    .map(([{ bytes, offset }, version, data, dataOffset, length]): Call => {
      // Usually the tool buffer's length is what is left after the offset, as a daemon passes it.
      const start =
        typeof dataOffset === 'number' && Number.isSafeInteger(dataOffset) && dataOffset > 0
          ? dataOffset
          : 0
      const fit = data instanceof Uint8Array ? Math.max(0, data.length - start) : 0
      return {
        entry: 'controlBytes',
        bytes,
        offset,
        version,
        data,
        dataOffset,
        dataLength: length === 'fit' ? fit : length,
      }
    }),
)

// ---------------------------------------------------------------------------------------------
// The reference client is out of reach: no random call may name it.

function isReference(value: unknown): boolean {
  return typeof value === 'number' && (value & 0xffff) === REFERENCE
}

function avoidReference(call: Call): Call {
  // Guest calls from the reference client itself are not bad input from another client.
  if ((call.entry === 'op' || call.entry === 'opBytes') && isReference(call.clientId))
    return { ...call, clientId: OTHER }
  return call
}

/** Control ops may name any client, except that they must not flush the reference pages. */
function touchesReference(host: Host, call: Call): boolean {
  if (call.entry !== 'control' && call.entry !== 'controlBytes') return false
  const client = host.core.clientsById[REFERENCE]
  return client === undefined || client.pools[0]?.pageCount !== REFERENCE_PAGES
}

// ---------------------------------------------------------------------------------------------
// Calls.

type Loose = (...args: unknown[]) => unknown

function invoke(host: Host, call: Call): unknown {
  switch (call.entry) {
    case 'op':
      return (host.op as Loose).call(host, call.clientId, call.op, call.data, call.version)
    case 'opBytes':
      return (host.opBytes as Loose).call(
        host,
        call.clientId,
        call.bytes,
        call.offset,
        call.version,
        call.data,
        call.dataOffset,
      )
    case 'control':
      return (host.control as Loose).call(host, call.op, call.data)
    case 'controlBytes':
      return (host.controlBytes as Loose).call(
        host,
        call.bytes,
        call.offset,
        call.version,
        call.data,
        call.dataOffset,
        call.dataLength,
      )
  }
}

function describeCall(call: Call): string {
  return JSON.stringify(call, (_key, value: unknown) => {
    if (typeof value === 'bigint') return `${value}n`
    if (value instanceof Uint8Array) {
      const head = [...value.subarray(0, 64)].join(',')
      return `${value.constructor.name}(${value.length})[${head}${value.length > 64 ? ',...' : ''}]`
    }
    if (value instanceof ArrayBuffer) return `ArrayBuffer(${value.byteLength})`
    if (Array.isArray(value) && value.length > 16) return `Array(${value.length})`
    if (typeof value === 'string' && value.length > 16) return `string(${value.length})`
    if (typeof value === 'number' && !Number.isFinite(value)) return String(value)
    if (value === undefined) return 'undefined'
    return value
  })
}

function runCalls(reserveDefault: boolean, calls: Call[]): void {
  const { host } = setUp(reserveDefault)
  for (const [i, raw] of calls.entries()) {
    const call = avoidReference(raw)
    let rc: unknown
    try {
      rc = invoke(host, call)
    } catch (error) {
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
      const where =
        error instanceof Error ? (error.stack ?? '').split('\n').slice(1, 4).join(' / ') : ''
      throw new Error(`call ${i} threw ${message} (${where.trim()})`, { cause: error })
    }
    assert.ok(typeof rc === 'number' && Number.isInteger(rc), `call ${i} returned ${String(rc)}`)
    try {
      checkInvariants(host)
      if (!touchesReference(host, call)) referenceCountIntact(host)
      else referenceBytesIntact(host)
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error)
      throw new Error(`after call ${i} (rc ${rc}): ${message}`, { cause: error })
    }
  }
  referenceBytesIntact(host)
}

void test('bad input to op/opBytes/control/controlBytes never throws and harms no other client', () => {
  checkProperty(
    'bad input',
    fc.property(
      fc.boolean(),
      fc.array(callArbitrary, { minLength: 1, maxLength: 40 }),
      (reserveDefault, calls) => {
        runCalls(reserveDefault, calls)
      },
    ),
  )
})

void test('a client flooding random guest ops never changes the reference pages', () => {
  const guestCall = fc.record(
    {
      entry: fc.constant('op' as const),
      clientId: fc.constantFrom(OTHER, 8, 9),
      op: opish,
      data: dataish,
      version: fc.constant(1),
    },
    { noNullPrototype: true },
  )
  checkProperty(
    'guest flood',
    fc.property(
      fc.constant(false),
      fc.array(guestCall, { minLength: 20, maxLength: 120 }),
      (reserveDefault, calls) => {
        runCalls(reserveDefault, calls)
      },
    ),
  )
})

void test('wrong-typed data buffers and versions on real pools give return codes, not exceptions', () => {
  const { host } = setUp(false)
  const oddData: unknown[] = [
    undefined,
    'x'.repeat(PAGE_BYTES),
    new Array<number>(PAGE_BYTES).fill(1),
    new ArrayBuffer(PAGE_BYTES),
    PAGE_BYTES,
    {},
  ]
  const oddVersions: unknown[] = [2, -1, 0.5, NaN, '1', null]
  const loose = host as unknown as Record<'op' | 'opBytes' | 'control' | 'controlBytes', Loose>
  for (const cmd of [4, 5, 8, 9]) {
    const op = genOp(cmd, 0, [1n, 0n, 0n], 1)
    for (const data of oddData) {
      for (const call of [
        () => loose.op.call(host, OTHER, op, data, 1),
        () => loose.opBytes.call(host, OTHER, encodeOp(op), 0, 1, data, 0),
        () =>
          loose.control.call(
            host,
            {
              cmd: 0,
              poolId: 0,
              ctrl: { subop: 4, cliId: 0xffff, arg1: 4096, arg2: 1, oid: [0n, 0n, 0n], buf: 0n },
            },
            data,
          ),
        () =>
          loose.controlBytes.call(
            host,
            encodeOp({
              cmd: 0,
              poolId: 0,
              ctrl: { subop: 18, cliId: OTHER, arg1: 0, arg2: 0, oid: [0n, 0n, 0n], buf: 0n },
            }),
            0,
            1,
            data,
            0,
            16,
          ),
      ]) {
        const rc = call()
        assert.ok(typeof rc === 'number' && Number.isInteger(rc), `returned ${String(rc)}`)
        checkInvariants(host)
      }
    }
  }
  for (const version of oddVersions) {
    const rc = loose.op.call(
      host,
      11,
      { cmd: 1, poolId: 0, creat: { uuid: [0n, 0n], flags: 0x01000000, arg1: 0 } },
      null,
      version,
    )
    assert.ok(
      typeof rc === 'number' && rc < 0,
      `NEW_POOL with version ${String(version)} returned ${String(rc)}`,
    )
    assert.equal(
      host.hasClient(11),
      false,
      `a call with version ${String(version)} created a client`,
    )
  }
  referenceCountIntact(host)
  referenceBytesIntact(host)
})
