/**
 * Model-based property test of the engine (STYLE §6, after TigerBeetle's cache_map_fuzz):
 * one random sequence of guest commands and control actions goes to a `Host` and to the
 * plain model of test/helpers/model-host.ts, and every return code, every hit's bytes and
 * the engine's state are held to the model after every step.
 *
 * What is covered: NEW_POOL (private, shared and persistent, and odd flag words), DESTROY_POOL,
 * PUT_PAGE, GET_PAGE, FLUSH_PAGE, FLUSH_OBJECT, NEW_PAGE, READ, WRITE from clients 1..4, and
 * FREEZE, THAW, TMEMC_DESTROY (= thaw), SET_WEIGHT, SET_CAP, TMEMC_FLUSH, TMEMC_LIST, TMEM_AUTH
 * and destroyClient. Persistent pools must match the model exactly; ephemeral pools may lose
 * pages (the model's "maybe") but never return wrong, flushed or replaced bytes (spec §8.2).
 * After every step `checkInvariants` walks the engine and `compareStructure` pairs its pools
 * with the model's; every 16 steps and at the end `compareContents` checks every stored page.
 *
 * Swarm testing (TigerBeetle fuzz.zig): each run draws a host of 16..200 pages with reserve 0
 * or the default (so eviction and persistent -ENOMEM are frequent), a subset of op kinds with
 * random weights, small or large oid and index tables (collisions or spread), the number of
 * clients, shared-pool auth on or off, and whether ops go through op() or opBytes().
 *
 * Pages carry a recognisable pattern (magic, put number, key, index, then a PRNG stream), so
 * a wrong-bytes failure names the put whose bytes came back. After a put the guest frame is
 * scribbled over, so an engine that kept a reference instead of copying shows too.
 *
 * On failure the test prints the seed, the replay path and the shrunk step list; replay with
 * TMEM_SEED=<seed> TMEM_PATH=<path>. TMEM_RUNS=<n> changes the number of runs (default 200).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { Host } from '../../src/engine/host.js'
import { checkInvariants } from '../../src/engine/invariants.js'
import { encodeOp } from '../../src/abi/codec.js'
import { availableCodecs } from '../../src/engine/codecs.js'
import type { HostOptions } from '../../src/engine/options.js'
import type { TmemOp } from '../../src/abi/types.js'
import {
  ModelHost,
  type ModelOid,
  type ModelPool,
  type ModelRange,
  type PutFill,
} from '../helpers/model-host.js'
import { compareContents, compareStructure } from '../helpers/engine-peek.js'

const PAGE_BYTES = 4096
const ALL_ONES = 0xffffffffffffffffn
const ALL_CLIENTS = 0xffff
const CONTENT_CHECK_EVERY = 16
const STEPS_MAX = 300
const RUNS = Number(process.env['TMEM_RUNS'] ?? 200)
/**
 * Pool fields from LIVE_POOL up name "the n-th live pool slot of the caller" (n = value -
 * LIVE_POOL, modulo the live count), resolved when the step runs, so that most page commands
 * reach a pool; smaller values are raw pool ids (empty slots and out-of-range ids included).
 */
const LIVE_POOL = 1000

// Command codes and control subops, typed again from spec §2.1-2.2.
const CMD = {
  control: 0,
  newPool: 1,
  destroyPool: 2,
  newPage: 3,
  put: 4,
  get: 5,
  flushPage: 6,
  flushObject: 7,
  read: 8,
  write: 9,
  auth: 101,
}
const SUBOP = {
  thaw: 0,
  freeze: 1,
  flush: 2,
  destroy: 3,
  list: 4,
  setWeight: 5,
  setCap: 6,
  setCompress: 7,
}
const CODECS = availableCodecs()

// ---------------------------------------------------------------------------------------------
// Scenario: a run configuration and a list of steps, plain data so that it prints and shrinks.

const KINDS = [
  'newPoolPrivate',
  'newPoolShared',
  'newPoolPersistent',
  'newPoolOdd',
  'destroyPool',
  'put',
  'get',
  'flushPage',
  'flushObject',
  'newPage',
  'read',
  'write',
  'putRun',
  'getRun',
  'freeze',
  'thaw',
  'setWeight',
  'setCap',
  'setCompress',
  'tmemcFlush',
  'auth',
  'destroyClient',
  'list',
] as const
type Kind = (typeof KINDS)[number]

type Frame = 'plain' | 'shifted' | 'null' | 'short' | 'past'
/** What a put's page looks like: PRNG noise, compressible text, mostly zeros, one word. */
type Content = 'noise' | 'text' | 'sparse' | 'filled'

interface PageStep {
  bytes: Content
  k: 'put' | 'newPage' | 'get'
  c: number
  pool: number
  oid: number
  index: number
  frame: Frame
}

interface RangeStep {
  bytes: Content
  k: 'write' | 'read'
  c: number
  pool: number
  oid: number
  index: number
  frame: Frame
  range: ModelRange
}

/** Puts or gets of `count` consecutive entries of the index table (a file read-ahead). */
interface RunStep {
  bytes: Content
  k: 'putRun' | 'getRun'
  c: number
  pool: number
  oid: number
  index: number
  count: number
  frame: Frame
}

type ControlStep =
  | { k: 'freeze' | 'thaw' | 'destroyThaw'; cli: number }
  | { k: 'setWeight' | 'setCap' | 'setCompress'; cli: number; value: number }
  | { k: 'tmemcFlush'; cli: number; kb: number }
  | { k: 'auth'; cli: number; uuid: number; flag: number }
  | { k: 'destroyClient'; c: number }
  | { k: 'list'; cli: number; long: boolean }

type Step =
  | { k: 'newPool'; c: number; flags: number; uuid: number }
  | RunStep
  | { k: 'destroyPool'; c: number; pool: number }
  | PageStep
  | RangeStep
  | { k: 'flushPage'; c: number; pool: number; oid: number; index: number }
  | { k: 'flushObject'; c: number; pool: number; oid: number }
  | ControlStep

/** Host space savers (spec §4.7, D13): invisible to guests except through memory. */
type Density = 'none' | 'compress' | 'dedup' | 'tze' | 'all'

interface Config {
  pages: number
  density: Density
  codec: number
  reserveDefault: boolean
  sharedAuth: boolean
  viaBytes: boolean
  clients: number
  oids: number
  indices: number
  hotKeys: boolean
  tableSeed: number
  weights: number[]
}

interface Scenario {
  config: Config
  steps: Step[]
}

/** UUIDs for shared pools and TMEM_AUTH; the last is all-ones ("no UUID", spec §3.1). */
const UUIDS: readonly (readonly [bigint, bigint])[] = [
  [1n, 2n],
  [0xfeedn, 0xbeefn],
  [0n, 0n],
  [ALL_ONES, ALL_ONES],
]

/** Pool flag words that are not the three plain kinds: refused ones and bit-3 variants. */
const ODD_FLAGS = [
  0x00000000, 0x00000001, 0x02000000, 0xff000001, 0x01000010, 0x010000f0, 0x01000004, 0x01000100,
  0x01800000, 0x01000003, 0x01000008, 0x0100000a, 0x01000009,
]

function mix32(a: number, b: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x632be5ab, 0xc2b2ae35)
  h ^= h >>> 16
  h = Math.imul(h, 0x7feb352d)
  return (h ^ (h >>> 15)) >>> 0
}

function u64(seed: number, i: number, salt: number): bigint {
  return (BigInt(mix32(seed, i * 4 + salt)) << 32n) | BigInt(mix32(seed ^ 0x5bd1e995, i * 4 + salt))
}

/** The oid table of a run: shapes from {0,0,0} and small inode-like oids to wide handles. */
function tableOid(seed: number, i: number): ModelOid {
  switch (i % 4) {
    case 0:
      return [BigInt(i >>> 2), 0n, 0n]
    case 1:
      return [u64(seed, i, 0), 0n, 0n]
    case 2:
      return [u64(seed, i, 0), u64(seed, i, 1), u64(seed, i, 2)]
    default:
      return i === 3 ? [ALL_ONES, ALL_ONES, ALL_ONES] : [BigInt(i), BigInt(i), 1n]
  }
}

function tableIndex(seed: number, i: number): number {
  if (i === 0) return 0
  if (i === 1) return 0xffffffff
  return i % 2 === 0 ? i : mix32(seed, i)
}

const configArbitrary: fc.Arbitrary<Config> = fc.record(
  {
    pages: fc.oneof(
      { weight: 2, arbitrary: fc.integer({ min: 16, max: 48 }) },
      { weight: 1, arbitrary: fc.integer({ min: 49, max: 200 }) },
    ),
    density: fc.oneof(
      { weight: 4, arbitrary: fc.constant<Density>('none') },
      { weight: 3, arbitrary: fc.constantFrom<Density>('compress', 'dedup', 'tze', 'all') },
    ),
    codec: fc.nat(CODECS.length - 1),
    reserveDefault: fc.boolean(),
    sharedAuth: fc.boolean(),
    viaBytes: fc.boolean(),
    clients: fc.integer({ min: 1, max: 4 }),
    oids: fc.constantFrom(1, 2, 3, 4, 8, 24),
    indices: fc.constantFrom(1, 2, 4, 8, 16, 64),
    hotKeys: fc.boolean(),
    tableSeed: fc.nat(),
    weights: fc.array(
      fc.oneof(
        { weight: 2, arbitrary: fc.constant(0) },
        { weight: 5, arbitrary: fc.integer({ min: 1, max: 10 }) },
      ),
      { minLength: KINDS.length, maxLength: KINDS.length },
    ),
  },
  { noNullPrototype: true },
)

const DATA_KINDS: readonly Kind[] = [
  'put',
  'get',
  'flushPage',
  'flushObject',
  'newPage',
  'read',
  'write',
  'putRun',
  'getRun',
]
const POOL_KINDS: readonly Kind[] = [
  'newPoolPrivate',
  'newPoolShared',
  'newPoolPersistent',
  'newPoolOdd',
  'destroyPool',
]

/**
 * The weight of a kind in a run: 0 (disabled) or the drawn 1..10, scaled so that the data
 * plane dominates (x4), pool churn is moderate (1..4) and control actions stay rarer (1..5).
 */
function weightOf(config: Config, kind: Kind): number {
  const drawn = config.weights[KINDS.indexOf(kind)] ?? 0
  // Every run creates pools and puts pages; the rest is the swarm's choice.
  if (kind === 'put') return Math.max(drawn, 2) * 4
  if (kind === 'newPoolPersistent' || kind === 'newPoolPrivate') {
    const creators = POOL_KINDS.slice(0, 4)
    if (creators.every((k) => (config.weights[KINDS.indexOf(k)] ?? 0) === 0)) return 1
  }
  if (drawn === 0) return 0
  if (DATA_KINDS.includes(kind)) return drawn * 4
  if (kind === 'destroyPool') return Math.ceil(drawn / 2)
  if (POOL_KINDS.includes(kind)) return Math.ceil(drawn / 3)
  return Math.ceil(drawn / 2)
}

function stepArbitrary(config: Config): fc.Arbitrary<Step> {
  const c = fc.integer({ min: 1, max: config.clients })
  const cli = fc.oneof(
    { weight: 8, arbitrary: c },
    { weight: 2, arbitrary: fc.constant(ALL_CLIENTS) },
    { weight: 1, arbitrary: fc.constant(9) },
  )
  const pool = fc.oneof(
    { weight: 14, arbitrary: fc.constant(LIVE_POOL) },
    { weight: 10, arbitrary: fc.integer({ min: LIVE_POOL + 1, max: LIVE_POOL + 3 }) },
    { weight: 3, arbitrary: fc.nat(5) },
    { weight: 1, arbitrary: fc.constantFrom(15, 16, -1, 0x7fffffff, -0x80000000) },
  )
  // Hot keys (so gets find what puts stored) or the whole table evenly (spread, eviction).
  const hot = (count: number): fc.Arbitrary<number> =>
    config.hotKeys
      ? fc.oneof(
          { weight: 4, arbitrary: fc.nat(Math.min(count, 2) - 1) },
          { weight: 1, arbitrary: fc.nat(count - 1) },
        )
      : fc.nat(count - 1)
  const oid = hot(config.oids)
  const index = hot(config.indices)
  const frame = fc.oneof(
    { weight: 16, arbitrary: fc.constant<Frame>('plain') },
    { weight: 4, arbitrary: fc.constant<Frame>('shifted') },
    { weight: 1, arbitrary: fc.constantFrom<Frame>('null', 'short', 'past') },
  )
  const range = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.nat(PAGE_BYTES).chain((len) =>
        fc.record(
          {
            tmemOffset: fc.nat(PAGE_BYTES - len),
            pfnOffset: fc.nat(PAGE_BYTES - len),
            len: fc.constant(len),
          },
          { noNullPrototype: true },
        ),
      ),
    },
    {
      weight: 1,
      arbitrary: fc.record(
        {
          tmemOffset: fc.nat(8192),
          pfnOffset: fc.nat(8192),
          len: fc.oneof(fc.nat(8192), fc.constant(0xffffffff)),
        },
        { noNullPrototype: true },
      ),
    },
  )
  const uuid = fc.nat(UUIDS.length - 1)
  const bytes = fc.oneof(
    { weight: 3, arbitrary: fc.constant<Content>('noise') },
    { weight: 1, arbitrary: fc.constantFrom<Content>('text', 'sparse', 'filled') },
  )
  const page = { c, pool, oid, index, frame, bytes }
  const record = <T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> =>
    fc.record(model, { noNullPrototype: true })
  const byKind: Record<Kind, fc.Arbitrary<Step>> = {
    newPoolPrivate: record({
      k: fc.constant('newPool' as const),
      c,
      flags: fc.constant(0x01000000),
      uuid,
    }),
    newPoolShared: record({
      k: fc.constant('newPool' as const),
      c,
      flags: fc.constant(0x01000002),
      uuid,
    }),
    newPoolPersistent: record({
      k: fc.constant('newPool' as const),
      c,
      flags: fc.constant(0x01000001),
      uuid,
    }),
    newPoolOdd: record({
      k: fc.constant('newPool' as const),
      c,
      flags: fc.constantFrom(...ODD_FLAGS),
      uuid,
    }),
    destroyPool: record({ k: fc.constant('destroyPool' as const), c, pool }),
    put: record({ k: fc.constant('put' as const), ...page }),
    newPage: record({ k: fc.constant('newPage' as const), ...page }),
    get: record({ k: fc.constant('get' as const), ...page }),
    write: record({ k: fc.constant('write' as const), ...page, range }),
    read: record({ k: fc.constant('read' as const), ...page, range }),
    putRun: record({
      k: fc.constant('putRun' as const),
      ...page,
      count: fc.integer({ min: 2, max: 48 }),
    }),
    getRun: record({
      k: fc.constant('getRun' as const),
      ...page,
      count: fc.integer({ min: 2, max: 48 }),
    }),
    flushPage: record({ k: fc.constant('flushPage' as const), c, pool, oid, index }),
    flushObject: record({ k: fc.constant('flushObject' as const), c, pool, oid }),
    freeze: record({ k: fc.constant('freeze' as const), cli }),
    thaw: record({ k: fc.constantFrom('thaw' as const, 'destroyThaw' as const), cli }),
    setWeight: record({
      k: fc.constant('setWeight' as const),
      cli,
      value: fc.oneof(fc.nat(8), fc.constant(0xffffffff)),
    }),
    setCap: record({
      k: fc.constant('setCap' as const),
      cli,
      value: fc.oneof(
        { weight: 4, arbitrary: fc.integer({ min: 1, max: 100 }) },
        { weight: 2, arbitrary: fc.constant(0) },
        { weight: 1, arbitrary: fc.constantFrom(101, 0xffffffff) },
      ),
    }),
    setCompress: record({
      k: fc.constant('setCompress' as const),
      cli,
      value: fc.constantFrom(1, 0),
    }),
    tmemcFlush: record({
      k: fc.constant('tmemcFlush' as const),
      cli: fc.oneof(
        { weight: 6, arbitrary: fc.constant(ALL_CLIENTS) },
        { weight: 1, arbitrary: c },
      ),
      kb: fc.oneof(fc.nat(64), fc.constant(0xffffffff)),
    }),
    auth: record({
      k: fc.constant('auth' as const),
      cli,
      uuid,
      flag: fc.constantFrom(1, 0, 2, 0xffffffff),
    }),
    destroyClient: record({ k: fc.constant('destroyClient' as const), c }),
    list: record({ k: fc.constant('list' as const), cli, long: fc.boolean() }),
  }
  const weighted = KINDS.filter((kind) => weightOf(config, kind) > 0).map((kind) => ({
    arbitrary: byKind[kind],
    weight: weightOf(config, kind),
  }))
  return fc.oneof(...weighted)
}

/** Pool creation steps that open a run, so that most clients have pools from the start. */
function openingArbitrary(config: Config): fc.Arbitrary<Step[]> {
  const flags = fc.constantFrom(0x01000000, 0x01000001, 0x01000002)
  const perClient = Array.from({ length: config.clients }, (_, i) =>
    fc.array(
      fc.record(
        {
          k: fc.constant('newPool' as const),
          c: fc.constant(i + 1),
          flags,
          uuid: fc.nat(UUIDS.length - 1),
        },
        { noNullPrototype: true },
      ),
      { minLength: 1, maxLength: 3 },
    ),
  )
  return fc.tuple(...perClient).map((lists) => lists.flat())
}

const scenarioArbitrary: fc.Arbitrary<Scenario> = configArbitrary.chain((config) =>
  fc
    .tuple(
      openingArbitrary(config),
      fc.array(stepArbitrary(config), { minLength: 1, maxLength: STEPS_MAX, size: 'max' }),
    )
    .map(([opening, steps]) => ({ config, steps: [...opening, ...steps].slice(0, STEPS_MAX) })),
)

// ---------------------------------------------------------------------------------------------
// Recognisable page contents.

const MAGIC = 0x4d454d54 // 'TMEM'
const SENTINEL = 0x5a
const SCRIBBLE = 0xee

/** The word a 'filled' page repeats: not zero, and different for every put. */
function fillWord(version: number): number {
  return (mix32(version, 0x46494c4c) | 1) >>> 0
}

/**
 * A put's page. Every style but 'filled' starts with a header naming the put (magic, put
 * number, oid and index table positions); 'noise' then has a PRNG stream (incompressible),
 * 'text' a repeated line (compresses), 'sparse' 64 noise bytes then zeros (tze trims it).
 */
function makePage(version: number, oid: number, index: number, style: Content): Uint8Array {
  const page = new Uint8Array(PAGE_BYTES)
  const words = new Uint32Array(page.buffer)
  if (style === 'filled') return (page.fill(0), words.fill(fillWord(version)), page)
  words[0] = MAGIC
  words[1] = version
  words[2] = oid
  words[3] = index
  if (style === 'text') {
    const line = new TextEncoder().encode(`put ${version} oid ${oid} index ${index}; `)
    for (let at = 16; at < PAGE_BYTES; at += line.length)
      page.set(line.subarray(0, PAGE_BYTES - at), at)
    return page
  }
  let x = mix32(version, index) | 1
  const end = style === 'sparse' ? 20 : words.length
  for (let i = 4; i < end; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    words[i] = x >>> 0
  }
  return page
}

/** Names the bytes a frame holds, for failure messages. */
function describeBytes(bytes: Uint8Array): string {
  const copy = new Uint8Array(bytes.subarray(0, PAGE_BYTES))
  if (copy.length < 16) return `${copy.length} bytes`
  const words = new Uint32Array(copy.buffer, 0, copy.length >>> 2)
  if (words[0] === MAGIC)
    return `the bytes of put #${words[1]} (oid #${words[2]}, index #${words[3]})`
  if (copy.every((b) => b === 0)) return 'a zero page'
  if (copy.every((b) => b === SENTINEL)) return 'the untouched frame'
  if (copy.every((b) => b === SCRIBBLE))
    return "the caller's scribbled-over put frame (a kept reference)"
  if (words.every((w) => w === words[0]))
    return `a page filled with the word 0x${words[0]!.toString(16)}`
  return 'unrecognised bytes'
}

// ---------------------------------------------------------------------------------------------
// One run.

interface Totals {
  runs: number
  steps: number
  hits: number
  maybeMisses: number
  evicted: number
  persistentNoMemory: number
}

const totals: Totals = {
  runs: 0,
  steps: 0,
  hits: 0,
  maybeMisses: 0,
  evicted: 0,
  persistentNoMemory: 0,
}

class Run {
  readonly config: Config
  readonly host: Host
  readonly model: ModelHost
  readonly clientIds: number[]
  readonly listBuffer = new Uint8Array(2048)
  version = 0
  /** The pool id the last step resolved its pool field to (for failure messages). */
  resolvedPool: number | null = null

  constructor(config: Config) {
    this.config = config
    const density = config.density
    const savers = {
      compress: density === 'compress' || density === 'all',
      dedup: density === 'dedup' || density === 'all',
      tze: density === 'tze' || density === 'all',
    }
    const options: HostOptions = { pages: config.pages, sharedAuth: config.sharedAuth, ...savers }
    if (!config.reserveDefault) options.reservePages = 0
    const codec = CODECS[config.codec]
    if (codec !== undefined) options.codec = codec
    this.host = new Host(options)
    this.model = new ModelHost({ pages: config.pages, sharedAuth: config.sharedAuth, ...savers })
    this.clientIds = [1, 2, 3, 4, 9]
  }

  oid(i: number): ModelOid {
    return tableOid(this.config.tableSeed, i)
  }

  index(i: number): number {
    return tableIndex(this.config.tableSeed, i)
  }

  /** A step's pool field as a pool id (see LIVE_POOL). */
  poolId(c: number, pool: number): number {
    this.resolvedPool = this.#resolvePool(c, pool)
    return this.resolvedPool
  }

  lastPoolId(): number | null {
    return this.resolvedPool
  }

  #resolvePool(c: number, pool: number): number {
    if (pool < LIVE_POOL) return pool
    const pools = this.model.clients.get(c)?.pools ?? []
    const live = [...pools.keys()].filter((slot) => pools[slot] !== null)
    if (live.length === 0) return pool - LIVE_POOL
    return live[(pool - LIVE_POOL) % live.length]!
  }

  guest(c: number, op: TmemOp, data: Uint8Array | null, dataOffset: number): number {
    if (this.config.viaBytes) return this.host.opBytes(c, encodeOp(op), 0, 1, data, dataOffset)
    return this.host.op(c, op, data === null ? null : data.subarray(dataOffset))
  }

  control(op: TmemOp, data: Uint8Array | null = null): number {
    if (this.config.viaBytes)
      return this.host.controlBytes(encodeOp(op), 0, 1, data, 0, data === null ? 0 : data.length)
    return this.host.control(op, data)
  }

  gen(cmd: number, pool: number, oid: ModelOid, index: number, range: ModelRange | null): TmemOp {
    const r = range ?? { tmemOffset: 0, pfnOffset: 0, len: 0 }
    return { cmd, poolId: pool, gen: { oid: [oid[0], oid[1], oid[2]], index, ...r, cmfn: 0n } }
  }

  ctrl(subop: number, cliId: number, arg1 = 0, arg2 = 0): TmemOp {
    return {
      cmd: CMD.control,
      poolId: 0,
      ctrl: { subop, cliId, arg1, arg2, oid: [0n, 0n, 0n], buf: 0n },
    }
  }

  step(step: Step): void {
    switch (step.k) {
      case 'newPool': {
        const [lo, hi] = UUIDS[step.uuid]!
        const rc = this.guest(
          step.c,
          { cmd: CMD.newPool, poolId: 0, creat: { uuid: [lo, hi], flags: step.flags, arg1: 0 } },
          null,
          0,
        )
        return this.model.newPool(step.c, step.flags, lo, hi, rc)
      }
      case 'destroyPool': {
        const pool = this.poolId(step.c, step.pool)
        const rc = this.guest(
          step.c,
          this.gen(CMD.destroyPool, pool, [0n, 0n, 0n], 0, null),
          null,
          0,
        )
        return this.model.destroyPool(step.c, pool, rc)
      }
      case 'put':
      case 'newPage':
      case 'write':
        return this.#put(step)
      case 'get':
      case 'read':
        return this.#get(step)
      case 'putRun':
      case 'getRun':
        return this.#run(step)
      case 'flushPage': {
        const pool = this.poolId(step.c, step.pool)
        const oid = this.oid(step.oid)
        const index = this.index(step.index)
        const rc = this.guest(step.c, this.gen(CMD.flushPage, pool, oid, index, null), null, 0)
        return this.model.flushPage(step.c, pool, oid, index, rc)
      }
      case 'flushObject': {
        const pool = this.poolId(step.c, step.pool)
        const oid = this.oid(step.oid)
        const rc = this.guest(step.c, this.gen(CMD.flushObject, pool, oid, 0, null), null, 0)
        return this.model.flushObject(step.c, pool, oid, rc)
      }
      case 'freeze':
      case 'thaw':
      case 'destroyThaw':
      case 'setWeight':
      case 'setCap':
      case 'setCompress':
      case 'tmemcFlush':
      case 'auth':
      case 'destroyClient':
      case 'list':
        return this.#controlStep(step)
    }
  }

  #controlStep(step: ControlStep): void {
    const model = this.model
    switch (step.k) {
      case 'freeze':
        return model.setFrozen(step.cli, true, this.control(this.ctrl(SUBOP.freeze, step.cli)))
      case 'thaw':
        return model.setFrozen(step.cli, false, this.control(this.ctrl(SUBOP.thaw, step.cli)))
      case 'destroyThaw':
        return model.setFrozen(step.cli, false, this.control(this.ctrl(SUBOP.destroy, step.cli)))
      case 'setWeight':
        return model.setWeight(
          step.cli,
          step.value,
          this.control(this.ctrl(SUBOP.setWeight, step.cli, step.value)),
        )
      case 'setCap':
        return model.setCap(
          step.cli,
          step.value,
          this.control(this.ctrl(SUBOP.setCap, step.cli, step.value)),
        )
      case 'setCompress': {
        const rc = this.control(this.ctrl(SUBOP.setCompress, step.cli, step.value))
        return model.setCompress(step.cli, step.value !== 0, rc)
      }
      case 'tmemcFlush':
        return model.flush(step.cli, this.control(this.ctrl(SUBOP.flush, step.cli, step.kb)))
      case 'list': {
        const op = this.ctrl(SUBOP.list, step.cli, this.listBuffer.length, step.long ? 1 : 0)
        return model.list(step.cli, this.control(op, this.listBuffer))
      }
      case 'auth': {
        const [lo, hi] = UUIDS[step.uuid]!
        const rc = this.control({
          cmd: CMD.auth,
          poolId: 0,
          creat: { uuid: [lo, hi], flags: step.flag, arg1: step.cli },
        })
        return model.auth(step.cli, lo, hi, step.flag, rc)
      }
      case 'destroyClient':
        return model.destroyClient(step.c, this.host.destroyClient(step.c))
    }
  }

  #run(step: RunStep): void {
    const k = step.k === 'putRun' ? 'put' : 'get'
    for (let i = 0; i < step.count; i++) {
      const index = (step.index + i) % this.config.indices
      try {
        if (k === 'put') this.#put({ ...step, k, index })
        else this.#get({ ...step, k, index })
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error)
        throw new Error(`page ${i} (idx#${index}): ${message}`, { cause: error })
      }
    }
  }

  /** The guest frame for a step: the buffer, the page's offset in it, and whether it is valid. */
  #frame(
    frame: Frame,
    fillWith: Uint8Array | null,
  ): { data: Uint8Array | null; offset: number; ok: boolean } {
    const shift = 1 + (this.version % (PAGE_BYTES - 1))
    let data: Uint8Array | null
    let offset = 0
    switch (frame) {
      case 'plain':
        data = new Uint8Array(PAGE_BYTES)
        break
      case 'shifted':
        data = new Uint8Array(PAGE_BYTES + shift)
        offset = shift
        break
      case 'null':
        return { data: null, offset: 0, ok: false }
      case 'short':
        data = new Uint8Array(PAGE_BYTES - 1)
        break
      case 'past':
        data = new Uint8Array(PAGE_BYTES)
        offset = 1
        break
    }
    data.fill(SENTINEL)
    const ok = frame === 'plain' || frame === 'shifted'
    if (fillWith !== null && ok) data.set(fillWith, offset)
    return { data, offset, ok }
  }

  #put(step: PageStep | RangeStep): void {
    const pool = this.poolId(step.c, step.pool)
    const oid = this.oid(step.oid)
    const index = this.index(step.index)
    const page = makePage(++this.version, step.oid, step.index, step.bytes)
    const { data, offset, ok } = this.#frame(step.frame, page)
    const range = step.k === 'write' ? step.range : null
    const cmd = step.k === 'put' ? CMD.put : step.k === 'newPage' ? CMD.newPage : CMD.write
    const persistent = this.#modelPool(step.c, pool)?.persistent === true
    const rc = this.guest(step.c, this.gen(cmd, pool, oid, index, range), data, offset)
    data?.fill(SCRIBBLE)
    const fill: PutFill =
      range !== null
        ? { kind: 'range', range }
        : step.k === 'newPage'
          ? { kind: 'zero' }
          : { kind: 'copy' }
    if (rc === -12 && persistent) totals.persistentNoMemory++
    this.model.put(step.c, pool, oid, index, ok ? page : null, fill, rc)
  }

  #get(step: PageStep | RangeStep): void {
    const pool = this.poolId(step.c, step.pool)
    const oid = this.oid(step.oid)
    const index = this.index(step.index)
    this.version++
    const { data, offset, ok } = this.#frame(step.frame, null)
    const range = step.k === 'read' ? step.range : null
    const cmd = range === null ? CMD.get : CMD.read
    const rc = this.guest(step.c, this.gen(cmd, pool, oid, index, range), data, offset)
    const held = this.#heldBefore(step.c, pool, oid, index)
    const expectation = this.model.get(step.c, pool, oid, index, ok, range, rc)
    if (held && rc !== 1 && rc !== -14) totals.maybeMisses++
    if (data === null) return
    const expected = new Uint8Array(data.length).fill(SENTINEL)
    if (expectation.page !== null) {
      totals.hits++
      if (range === null) expected.set(expectation.page, offset)
      else
        expected.set(
          expectation.page.subarray(range.tmemOffset, range.tmemOffset + range.len),
          offset + range.pfnOffset,
        )
    }
    if (Buffer.compare(data, expected) !== 0) {
      const got = describeBytes(data.subarray(offset))
      const want =
        expectation.page === null ? 'the untouched frame' : describeBytes(expectation.page)
      throw new Error(`${step.k} rc ${rc}: the frame holds ${got}, the model expected ${want}`)
    }
  }

  #modelPool(c: number, pool: number): ModelPool | null {
    const slot = pool >>> 0
    return slot < 16 ? (this.model.clients.get(c)?.pools[slot] ?? null) : null
  }

  #heldBefore(c: number, pool: number, oid: ModelOid, index: number): boolean {
    return this.#modelPool(c, pool)?.page(oid, index) !== undefined
  }

  check(stepNumber: number, last: boolean): void {
    checkInvariants(this.host)
    const pairs = compareStructure(this.host, this.model, this.clientIds)
    if (last || stepNumber % CONTENT_CHECK_EVERY === CONTENT_CHECK_EVERY - 1)
      compareContents(this.host, pairs)
  }
}

function runScenario(scenario: Scenario): void {
  const run = new Run(scenario.config)
  const steps = scenario.steps
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i]!
    run.resolvedPool = null
    try {
      run.step(step)
      run.check(i, i === steps.length - 1)
    } catch (error) {
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
      const resolved = run.lastPoolId()
      const pool = resolved === null ? '' : ` on pool id ${resolved}`
      throw new Error(`step ${i} (${formatStep(step, run)})${pool} failed: ${message}`, {
        cause: error,
      })
    }
  }
  totals.runs++
  totals.steps += steps.length
  totals.evicted += run.host.core.counters.evicted
}

// ---------------------------------------------------------------------------------------------
// Reporting.

function hex(value: bigint | number): string {
  return `0x${value.toString(16)}`
}

function formatPool(pool: number): string {
  return pool >= LIVE_POOL ? `live#${pool - LIVE_POOL}` : String(pool)
}

function formatStep(step: Step, run: Run): string {
  const oid = (i: number): string => `oid#${i}[${run.oid(i).map(hex).join(',')}]`
  const index = (i: number): string => `idx#${i}(${hex(run.index(i))})`
  switch (step.k) {
    case 'newPool':
      return `newPool c${step.c} flags=${hex(step.flags)} uuid#${step.uuid}`
    case 'destroyPool':
      return `destroyPool c${step.c} pool=${formatPool(step.pool)}`
    case 'put':
    case 'newPage':
    case 'get':
      return `${step.k} c${step.c} pool=${formatPool(step.pool)} ${oid(step.oid)} ${index(step.index)} frame=${step.frame} ${step.bytes}`
    case 'putRun':
    case 'getRun':
      return `${step.k} c${step.c} pool=${formatPool(step.pool)} ${oid(step.oid)} from ${index(step.index)} count=${step.count} frame=${step.frame} ${step.bytes}`
    case 'write':
    case 'read': {
      const r = step.range
      return `${step.k} c${step.c} pool=${formatPool(step.pool)} ${oid(step.oid)} ${index(step.index)} frame=${step.frame} ${step.bytes} range=(t${r.tmemOffset},p${r.pfnOffset},l${r.len})`
    }
    case 'flushPage':
      return `flushPage c${step.c} pool=${formatPool(step.pool)} ${oid(step.oid)} ${index(step.index)}`
    case 'flushObject':
      return `flushObject c${step.c} pool=${formatPool(step.pool)} ${oid(step.oid)}`
    case 'setWeight':
    case 'setCap':
    case 'setCompress':
      return `${step.k} cli=${hex(step.cli)} ${step.value}`
    case 'tmemcFlush':
      return `tmemcFlush cli=${hex(step.cli)} kb=${step.kb}`
    case 'auth':
      return `auth cli=${hex(step.cli)} uuid#${step.uuid} flag=${step.flag}`
    case 'destroyClient':
      return `destroyClient c${step.c}`
    case 'list':
      return `list cli=${hex(step.cli)} long=${step.long}`
    case 'freeze':
    case 'thaw':
    case 'destroyThaw':
      return `${step.k} cli=${hex(step.cli)}`
  }
}

function formatFailure(details: fc.RunDetails<[Scenario]>): string {
  const lines = [
    `Model-based property failed after ${details.numRuns} runs (${details.numShrinks} shrinks).`,
    `Replay: TMEM_SEED=${details.seed} TMEM_PATH=${details.counterexamplePath ?? ''} node tools/run-tests.mjs engine/model`,
  ]
  const counterexample = details.counterexample?.[0]
  if (counterexample !== undefined) {
    const { config, steps } = counterexample
    const run = new Run(config)
    const weights = KINDS.map((kind) => `${kind}:${weightOf(config, kind)}`).filter(
      (w) => !w.endsWith(':0'),
    )
    lines.push(
      `Config: ${JSON.stringify({ ...config, weights: undefined })}`,
      `Weights: ${weights.join(' ')}`,
    )
    lines.push(`Shrunk steps (${steps.length}):`)
    steps.forEach((step, i) => lines.push(`  ${String(i).padStart(3)}  ${formatStep(step, run)}`))
  }
  const error = details.errorInstance
  lines.push(`Error: ${error instanceof Error ? error.message : String(error)}`)
  return lines.join('\n')
}

void test('engine matches the plain model over random command sequences (swarm)', (t) => {
  const seedText = process.env['TMEM_SEED']
  const pathText = process.env['TMEM_PATH']
  const parameters: fc.Parameters<[Scenario]> = { numRuns: RUNS }
  if (seedText !== undefined) parameters.seed = Number(seedText)
  if (pathText !== undefined && pathText !== '') parameters.path = pathText
  const started = Date.now()
  const details = fc.check(
    fc.property(scenarioArbitrary, (scenario) => runScenario(scenario)),
    parameters,
  )
  if (details.failed) {
    assert.fail(formatFailure(details))
  }
  t.diagnostic(
    `seed ${details.seed}: ${totals.runs} runs, ${totals.steps} steps, ${totals.hits} hits, ` +
      `${totals.maybeMisses} ephemeral misses the model allowed, ${totals.evicted} evictions, ` +
      `${totals.persistentNoMemory} persistent -ENOMEM, ${Date.now() - started} ms`,
  )
})
