/**
 * Model-based property test of the engine with its space savers on (spec §4.7, D13; issue 4):
 * compression with every codec this installation has (`availableCodecs()`), dedup, tze, and
 * their combinations, including clients that turn compression on and off at run time
 * (TMEMC_SET_COMPRESS, refused while dedup is on). A random sequence of guest commands and
 * control actions goes to a `Host` and to the plain model of test/helpers/model-host.ts.
 *
 * Page contents cover every payload kind (test/helpers/density-pages.ts): compressible text and
 * heap-like records, random (incompressible) bytes, zero pages, same-filled pages (0xABABABAB
 * and other words), half-zero pages (tze), long-prefix pages, and a few fixed duplicate pages
 * put again and again across pools and clients so that dedup shares them.
 *
 * After every step: `checkInvariants` (which also verifies every stored chunk's check), the
 * structure against the model (same pools; persistent page counts exact; ephemeral never more
 * than the model), and the density counters (`cp`/`cb` per owner, `Sc`, `Zt`, `Gz`) against
 * what is stored. Every 8 steps and at the end, every stored page is loaded and compared byte
 * for byte with the model. Persistent pools must match exactly; ephemeral pages may be missing
 * (eviction) but never come back with wrong bytes. Each mode tallies how often every payload
 * kind was seen, and fails if a kind the mode should produce never appeared.
 *
 * Replay a failure with TMEM_SEED=<seed> TMEM_PATH=<path> and TMEM_DENSITY_MODE=<mode name>;
 * TMEM_DENSITY_RUNS=<n> changes the runs per mode.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { Host } from '../../src/engine/host.js'
import type { HostOptions } from '../../src/engine/options.js'
import { availableCodecs } from '../../src/engine/codecs.js'
import { checkInvariants } from '../../src/engine/invariants.js'
import { encodeOp } from '../../src/abi/codec.js'
import type { TmemOp } from '../../src/abi/types.js'
import {
  ModelHost,
  ModelMismatch,
  oidKey,
  type ModelOid,
  type ModelPool,
  type ModelRange,
  type PutFill,
} from '../helpers/model-host.js'
import type { Pool } from '../../src/engine/model.js'
import { NONE } from '../../src/engine/store.js'
import {
  CONTENT_KINDS,
  type ContentKind,
  describePage,
  makeContent,
  mix32,
  PAGE_BYTES,
} from '../helpers/density-pages.js'
import { checkDensityCounters, storedPayload, type PayloadKind } from '../helpers/density-peek.js'

const RUNS = Number(process.env['TMEM_DENSITY_RUNS'] ?? 12)
const STEPS_MAX = 160
const CONTENT_CHECK_EVERY = 8
const LIVE_POOL = 1000
const ALL_CLIENTS = 0xffff
const SENTINEL = 0x5a
const SCRIBBLE = 0xee

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
}
const SUBOP = { thaw: 0, freeze: 1, flush: 2, list: 4, setCompress: 7 }
const UUIDS: readonly (readonly [bigint, bigint])[] = [
  [1n, 2n],
  [0xfeedn, 0xbeefn],
]

// ---------------------------------------------------------------------------------------------
// Modes: which space savers the host runs, and which payload kinds each must show.

interface Mode {
  name: string
  options: HostOptions
  /** Clients start with compression off and the steps turn it on and off. */
  toggle: boolean
  /** Payload kinds (and 'shared' for dedup) that a mode must produce over its runs. */
  expect: (PayloadKind | 'shared')[]
}

function modes(): Mode[] {
  const list: Mode[] = []
  for (const codec of availableCodecs()) {
    list.push({
      name: `compress ${codec}`,
      options: { compress: true, codec },
      toggle: false,
      expect: ['compressed', 'plain', 'filled'],
    })
    list.push({
      name: `compress ${codec} + tze`,
      options: { compress: true, codec, tze: true },
      toggle: false,
      expect: ['compressed', 'plain', 'filled', 'tze'],
    })
  }
  list.push(
    {
      name: 'compress toggled per client',
      options: {},
      toggle: true,
      expect: ['compressed', 'plain', 'filled'],
    },
    {
      name: 'dedup',
      options: { dedup: true },
      toggle: false,
      expect: ['plain', 'shared', 'filled'],
    },
    { name: 'tze', options: { tze: true }, toggle: false, expect: ['plain', 'filled', 'tze'] },
    {
      name: 'dedup + tze',
      options: { dedup: true, tze: true },
      toggle: false,
      expect: ['plain', 'shared', 'filled', 'tze'],
    },
    {
      name: 'dedup + compress (compress refused)',
      options: { dedup: true, compress: true, tze: true },
      toggle: true,
      expect: ['plain', 'shared', 'filled'],
    },
  )
  const only = process.env['TMEM_DENSITY_MODE']
  return only === undefined ? list : list.filter((mode) => mode.name === only)
}

// ---------------------------------------------------------------------------------------------
// Scenario.

type Frame = 'plain' | 'shifted' | 'null'

interface Content {
  kind: ContentKind
  /** Seeds differ per put unless the kind is dup/zero/filled, which repeat on purpose. */
  variant: number
}

type Step =
  | { k: 'newPool'; c: number; flags: number; uuid: number }
  | { k: 'destroyPool'; c: number; pool: number }
  | {
      k: 'put'
      c: number
      pool: number
      oid: number
      index: number
      content: Content
      frame: Frame
    }
  | { k: 'newPage'; c: number; pool: number; oid: number; index: number }
  | {
      k: 'write'
      c: number
      pool: number
      oid: number
      index: number
      content: Content
      range: ModelRange
    }
  | { k: 'get'; c: number; pool: number; oid: number; index: number; frame: Frame }
  | { k: 'read'; c: number; pool: number; oid: number; index: number; range: ModelRange }
  | {
      k: 'putRun'
      c: number
      pool: number
      oid: number
      index: number
      count: number
      content: Content
    }
  | { k: 'getRun'; c: number; pool: number; oid: number; index: number; count: number }
  | { k: 'flushPage'; c: number; pool: number; oid: number; index: number }
  | { k: 'flushObject'; c: number; pool: number; oid: number }
  | { k: 'setCompress'; cli: number; on: boolean }
  | { k: 'freeze' | 'thaw'; cli: number }
  | { k: 'tmemcFlush'; kb: number }
  | { k: 'list'; cli: number }
  | { k: 'destroyClient'; c: number }

interface Config {
  pages: number
  reserveDefault: boolean
  viaBytes: boolean
  clients: number
  oids: number
  indices: number
}

interface Scenario {
  config: Config
  steps: Step[]
}

const configArbitrary: fc.Arbitrary<Config> = fc.record(
  {
    pages: fc.oneof(
      { weight: 3, arbitrary: fc.integer({ min: 8, max: 40 }) },
      { weight: 1, arbitrary: fc.integer({ min: 41, max: 128 }) },
    ),
    reserveDefault: fc.boolean(),
    viaBytes: fc.boolean(),
    clients: fc.integer({ min: 1, max: 3 }),
    oids: fc.constantFrom(1, 2, 4, 8),
    indices: fc.constantFrom(2, 4, 16, 64),
  },
  { noNullPrototype: true },
)

function stepArbitrary(config: Config, toggle: boolean): fc.Arbitrary<Step> {
  const c = fc.integer({ min: 1, max: config.clients })
  const cli = fc.oneof(
    { weight: 6, arbitrary: c },
    { weight: 1, arbitrary: fc.constant(ALL_CLIENTS) },
    { weight: 1, arbitrary: fc.constant(9) },
  )
  const pool = fc.oneof(
    { weight: 20, arbitrary: fc.integer({ min: LIVE_POOL, max: LIVE_POOL + 3 }) },
    { weight: 1, arbitrary: fc.nat(4) },
  )
  const oid = fc.nat(config.oids - 1)
  const index = fc.nat(config.indices - 1)
  const frame = fc.oneof(
    { weight: 12, arbitrary: fc.constant<Frame>('plain') },
    { weight: 3, arbitrary: fc.constant<Frame>('shifted') },
    { weight: 1, arbitrary: fc.constant<Frame>('null') },
  )
  const content: fc.Arbitrary<Content> = fc.record(
    {
      kind: fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom<ContentKind>('text', 'heap') },
        { weight: 2, arbitrary: fc.constant<ContentKind>('random') },
        { weight: 2, arbitrary: fc.constantFrom<ContentKind>('zero', 'filled') },
        { weight: 2, arbitrary: fc.constantFrom<ContentKind>('tze', 'tzeLong') },
        { weight: 3, arbitrary: fc.constant<ContentKind>('dup') },
      ),
      variant: fc.nat(7),
    },
    { noNullPrototype: true },
  )
  const range = fc.nat(PAGE_BYTES).chain((len) =>
    fc.record(
      {
        tmemOffset: fc.nat(PAGE_BYTES - len),
        pfnOffset: fc.nat(PAGE_BYTES - len),
        len: fc.constant(len),
      },
      { noNullPrototype: true },
    ),
  )
  const r = <T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> =>
    fc.record(model, { noNullPrototype: true })
  const k = <K extends Step['k']>(kind: K): fc.Arbitrary<K> => fc.constant(kind)
  return fc.oneof(
    {
      weight: 3,
      arbitrary: r({
        k: k('newPool'),
        c,
        flags: fc.constantFrom(0x01000000, 0x01000001, 0x01000002),
        uuid: fc.nat(UUIDS.length - 1),
      }),
    },
    { weight: 1, arbitrary: r({ k: k('destroyPool'), c, pool }) },
    { weight: 30, arbitrary: r({ k: k('put'), c, pool, oid, index, content, frame }) },
    { weight: 2, arbitrary: r({ k: k('newPage'), c, pool, oid, index }) },
    { weight: 4, arbitrary: r({ k: k('write'), c, pool, oid, index, content, range }) },
    { weight: 18, arbitrary: r({ k: k('get'), c, pool, oid, index, frame }) },
    { weight: 4, arbitrary: r({ k: k('read'), c, pool, oid, index, range }) },
    {
      weight: 4,
      arbitrary: r({
        k: k('putRun'),
        c,
        pool,
        oid,
        index,
        count: fc.integer({ min: 2, max: 40 }),
        content,
      }),
    },
    {
      weight: 3,
      arbitrary: r({ k: k('getRun'), c, pool, oid, index, count: fc.integer({ min: 2, max: 40 }) }),
    },
    { weight: 3, arbitrary: r({ k: k('flushPage'), c, pool, oid, index }) },
    { weight: 2, arbitrary: r({ k: k('flushObject'), c, pool, oid }) },
    { weight: toggle ? 4 : 1, arbitrary: r({ k: k('setCompress'), cli, on: fc.boolean() }) },
    { weight: 1, arbitrary: r({ k: fc.constantFrom('freeze' as const, 'thaw' as const), cli }) },
    { weight: 1, arbitrary: r({ k: k('tmemcFlush'), kb: fc.nat(64) }) },
    { weight: 1, arbitrary: r({ k: k('list'), cli }) },
    { weight: 1, arbitrary: r({ k: k('destroyClient'), c }) },
  )
}

function scenarioArbitrary(toggle: boolean): fc.Arbitrary<Scenario> {
  return configArbitrary.chain((config) => {
    // Every client opens an ephemeral and a persistent pool; half the runs add a shared one.
    const opening: Step[] = []
    for (let c = 1; c <= config.clients; c++) {
      opening.push(
        { k: 'newPool', c, flags: 0x01000000, uuid: 0 },
        { k: 'newPool', c, flags: 0x01000001, uuid: 0 },
      )
      if (toggle) opening.push({ k: 'setCompress', cli: c, on: true })
    }
    return fc
      .tuple(
        fc.boolean(),
        fc.array(stepArbitrary(config, toggle), {
          minLength: 1,
          maxLength: STEPS_MAX,
          size: 'max',
        }),
      )
      .map(([shared, steps]) => {
        const extra: Step[] = shared
          ? Array.from({ length: config.clients }, (_, i) => ({
              k: 'newPool',
              c: i + 1,
              flags: 0x01000002,
              uuid: 0,
            }))
          : []
        return { config, steps: [...opening, ...extra, ...steps] }
      })
  })
}

const scratch = new Uint8Array(PAGE_BYTES)

/**
 * Every engine page is a model page with the same bytes, whatever its payload kind (engine-peek's
 * `compareContents` reads raw frames, which holds only for plain pages): each page is loaded
 * through the engine's own reader, which also verifies chunk checks. Tallies payload kinds.
 */
function compareContentsDense(
  host: Host,
  pairs: Map<ModelPool, Pool>,
  kinds?: Map<PayloadKind | 'shared', number>,
): void {
  const store = host.core.store
  for (const [mine, theirs] of pairs) {
    const name = `pool ${mine.serial} (${mine.kind})`
    for (let object = theirs.objects[0]!; object !== NONE; object = store.objectPoolNext[object]!) {
      const base = object * 6
      const words = store.objectOid
      const oid = [0, 1, 2].map(
        (i) => BigInt(words[base + 2 * i]!) | (BigInt(words[base + 2 * i + 1]!) << 32n),
      )
      const key = oidKey([oid[0]!, oid[1]!, oid[2]!])
      const modelObject = mine.objects.get(key)
      if (modelObject === undefined)
        throw new ModelMismatch(
          `engine state: ${name} holds object ${key}, which the model does not`,
        )
      for (let slot = store.objectChain[object]!; slot !== NONE; slot = store.chainNext[slot]!) {
        const index = store.slotIndex(slot)
        const page = modelObject.pages.get(index)
        if (page === undefined)
          throw new ModelMismatch(
            `engine state: ${name} holds ${key}/${index}, which the model does not`,
          )
        const payload = storedPayload(host, slot)
        if (kinds !== undefined) {
          kinds.set(payload.kind, (kinds.get(payload.kind) ?? 0) + 1)
          if (payload.shared) kinds.set('shared', (kinds.get('shared') ?? 0) + 1)
        }
        scratch.fill(0x5a)
        if (!host.core.loadInto(slot, scratch, 0)) {
          throw new ModelMismatch(
            `engine state: ${name} page ${key}/${index} (${payload.kind}) fails its check`,
          )
        }
        if (Buffer.compare(scratch, page) !== 0) {
          throw new ModelMismatch(
            `engine state: ${name} page ${key}/${index} (${payload.kind}${payload.shared ? ', shared' : ''}) ` +
              `holds ${describePage(scratch)}, the model ${describePage(page)}`,
          )
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// One run.

const tally = new Map<PayloadKind | 'shared', number>()

class Run {
  readonly config: Config
  readonly mode: Mode
  readonly host: Host
  readonly model: ModelHost
  readonly listBuffer = new Uint8Array(4096)
  version = 0

  constructor(mode: Mode, config: Config) {
    this.mode = mode
    this.config = config
    const options: HostOptions = { ...mode.options, pages: config.pages, sharedAuth: false }
    if (!config.reserveDefault) options.reservePages = 0
    if (mode.toggle && mode.options.compress !== true) options.compress = false
    this.host = new Host(options)
    this.model = new ModelHost({
      pages: config.pages,
      sharedAuth: false,
      compress: options.compress ?? false,
      dedup: options.dedup ?? false,
      tze: options.tze ?? false,
    })
  }

  oid(i: number): ModelOid {
    return [BigInt(i), BigInt(i % 2), 0n]
  }

  index(i: number): number {
    return i === 1 ? 0xffffffff : i
  }

  poolId(c: number, pool: number): number {
    if (pool < LIVE_POOL) return pool
    const pools = this.model.clients.get(c)?.pools ?? []
    const live = [...pools.keys()].filter((slot) => pools[slot] !== null)
    return live.length === 0 ? pool - LIVE_POOL : live[(pool - LIVE_POOL) % live.length]!
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

  gen(
    cmd: number,
    pool: number,
    oid: ModelOid,
    index: number,
    range: ModelRange | null = null,
  ): TmemOp {
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

  /** The bytes of a put: repeating kinds keep their variant, the others get a fresh seed. */
  content(content: Content): Uint8Array {
    const repeat = content.kind === 'dup' || content.kind === 'zero' || content.kind === 'filled'
    return makeContent(
      content.kind,
      repeat ? content.variant : mix32(++this.version, content.variant),
    )
  }

  frame(
    frame: Frame,
    page: Uint8Array | null,
  ): { data: Uint8Array | null; offset: number; ok: boolean } {
    if (frame === 'null') return { data: null, offset: 0, ok: false }
    const offset = frame === 'shifted' ? 1 + (this.version % 4095) : 0
    const data = new Uint8Array(PAGE_BYTES + offset).fill(SENTINEL)
    if (page !== null) data.set(page, offset)
    return { data, offset, ok: true }
  }

  step(step: Step): void {
    const model = this.model
    switch (step.k) {
      case 'newPool': {
        const [lo, hi] = UUIDS[step.uuid]!
        const rc = this.guest(
          step.c,
          { cmd: CMD.newPool, poolId: 0, creat: { uuid: [lo, hi], flags: step.flags, arg1: 0 } },
          null,
          0,
        )
        return model.newPool(step.c, step.flags, lo, hi, rc)
      }
      case 'destroyPool': {
        const pool = this.poolId(step.c, step.pool)
        return model.destroyPool(
          step.c,
          pool,
          this.guest(step.c, this.gen(CMD.destroyPool, pool, [0n, 0n, 0n], 0), null, 0),
        )
      }
      case 'put':
        return this.put(
          step.c,
          step.pool,
          step.oid,
          step.index,
          this.content(step.content),
          step.frame,
          null,
        )
      case 'newPage':
        return this.put(step.c, step.pool, step.oid, step.index, null, 'plain', null)
      case 'write':
        return this.put(
          step.c,
          step.pool,
          step.oid,
          step.index,
          this.content(step.content),
          'plain',
          step.range,
        )
      case 'get':
        return this.get(step.c, step.pool, step.oid, step.index, step.frame, null)
      case 'read':
        return this.get(step.c, step.pool, step.oid, step.index, 'plain', step.range)
      case 'putRun':
        for (let i = 0; i < step.count; i++) {
          const content = { kind: step.content.kind, variant: step.content.variant + i }
          this.put(
            step.c,
            step.pool,
            step.oid,
            (step.index + i) % this.config.indices,
            this.content(content),
            'plain',
            null,
          )
        }
        return
      case 'getRun':
        for (let i = 0; i < step.count; i++)
          this.get(
            step.c,
            step.pool,
            step.oid,
            (step.index + i) % this.config.indices,
            'plain',
            null,
          )
        return
      case 'flushPage': {
        const pool = this.poolId(step.c, step.pool)
        const oid = this.oid(step.oid)
        const index = this.index(step.index)
        return model.flushPage(
          step.c,
          pool,
          oid,
          index,
          this.guest(step.c, this.gen(CMD.flushPage, pool, oid, index), null, 0),
        )
      }
      case 'flushObject': {
        const pool = this.poolId(step.c, step.pool)
        const oid = this.oid(step.oid)
        return model.flushObject(
          step.c,
          pool,
          oid,
          this.guest(step.c, this.gen(CMD.flushObject, pool, oid, 0), null, 0),
        )
      }
      case 'setCompress':
        return this.setCompress(step.cli, step.on)
      case 'freeze':
        return model.setFrozen(step.cli, true, this.control(this.ctrl(SUBOP.freeze, step.cli)))
      case 'thaw':
        return model.setFrozen(step.cli, false, this.control(this.ctrl(SUBOP.thaw, step.cli)))
      case 'tmemcFlush':
        return model.flush(ALL_CLIENTS, this.control(this.ctrl(SUBOP.flush, ALL_CLIENTS, step.kb)))
      case 'list':
        return model.list(
          step.cli,
          this.control(this.ctrl(SUBOP.list, step.cli, this.listBuffer.length, 1), this.listBuffer),
        )
      case 'destroyClient':
        return model.destroyClient(step.c, this.host.destroyClient(step.c))
    }
  }

  /** TMEMC_SET_COMPRESS (spec §4.7, §5.4): refused (-1) for every client while dedup is on. */
  setCompress(cli: number, on: boolean): void {
    this.model.setCompress(cli, on, this.control(this.ctrl(SUBOP.setCompress, cli, on ? 1 : 0)))
    for (const client of this.host.core.clientOrder) {
      if (client.compress && this.mode.options.dedup === true)
        throw new ModelMismatch(`client ${client.id} compresses while dedup is on`)
    }
  }

  put(
    c: number,
    poolField: number,
    oidIndex: number,
    indexIndex: number,
    page: Uint8Array | null,
    frame: Frame,
    range: ModelRange | null,
  ): void {
    const pool = this.poolId(c, poolField)
    const oid = this.oid(oidIndex)
    const index = this.index(indexIndex)
    const { data, offset, ok } = this.frame(page === null ? 'plain' : frame, page)
    const cmd = page === null ? CMD.newPage : range !== null ? CMD.write : CMD.put
    const rc = this.guest(c, this.gen(cmd, pool, oid, index, range), data, offset)
    // The engine must have copied the page: scribble over the caller's frame.
    data?.fill(SCRIBBLE)
    const fill: PutFill =
      page === null
        ? { kind: 'zero' }
        : range !== null
          ? { kind: 'range', range }
          : { kind: 'copy' }
    this.model.put(c, pool, oid, index, ok ? page : null, fill, rc)
  }

  get(
    c: number,
    poolField: number,
    oidIndex: number,
    indexIndex: number,
    frame: Frame,
    range: ModelRange | null,
  ): void {
    const pool = this.poolId(c, poolField)
    const oid = this.oid(oidIndex)
    const index = this.index(indexIndex)
    const { data, offset, ok } = this.frame(frame, null)
    const rc = this.guest(
      c,
      this.gen(range === null ? CMD.get : CMD.read, pool, oid, index, range),
      data,
      offset,
    )
    const expectation = this.model.get(c, pool, oid, index, ok, range, rc)
    if (data === null) return
    const expected = new Uint8Array(data.length).fill(SENTINEL)
    if (expectation.page !== null) {
      if (range === null) expected.set(expectation.page, offset)
      else
        expected.set(
          expectation.page.subarray(range.tmemOffset, range.tmemOffset + range.len),
          offset + range.pfnOffset,
        )
    }
    if (Buffer.compare(data, expected) !== 0) {
      const want =
        expectation.page === null ? 'the untouched frame' : describePage(expectation.page)
      throw new ModelMismatch(
        `${range === null ? 'get' : 'read'} rc ${rc}: the frame holds ${describePage(data.subarray(offset))}, the model expected ${want}`,
      )
    }
  }

  /** Engine pools paired with model pools slot by slot; persistent counts exact. */
  pairs(): Map<ModelPool, Pool> {
    const pairs = new Map<ModelPool, Pool>()
    for (const [id, mine] of this.model.clients) {
      const theirs = this.host.core.clientsById[id]
      if (theirs === undefined) throw new ModelMismatch(`client ${id} exists in the model only`)
      for (let slot = 0; slot < 16; slot++) {
        const a = mine.pools[slot] ?? null
        const b = theirs.pools[slot] ?? null
        if ((a === null) !== (b === null))
          throw new ModelMismatch(`client ${id} slot ${slot}: model and engine disagree`)
        if (a === null || b === null) continue
        pairs.set(a, b)
        if (a.persistent && a.pageCount !== b.pageCount)
          throw new ModelMismatch(
            `persistent pool ${a.serial}: engine ${b.pageCount} pages, model ${a.pageCount}`,
          )
        if (b.pageCount > a.pageCount)
          throw new ModelMismatch(
            `pool ${a.serial}: engine ${b.pageCount} pages, more than the model's ${a.pageCount}`,
          )
      }
    }
    return pairs
  }

  check(stepNumber: number, last: boolean): void {
    checkInvariants(this.host)
    checkDensityCounters(this.host)
    const pairs = this.pairs()
    if (last || stepNumber % CONTENT_CHECK_EVERY === CONTENT_CHECK_EVERY - 1)
      compareContentsDense(this.host, pairs, tally)
  }
}

function describeStep(step: Step): string {
  return JSON.stringify(step)
}

function runScenario(mode: Mode, scenario: Scenario): void {
  const run = new Run(mode, scenario.config)
  scenario.steps.forEach((step, i) => {
    try {
      run.step(step)
      run.check(i, i === scenario.steps.length - 1)
    } catch (error) {
      const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
      throw new Error(`step ${i} ${describeStep(step)} failed: ${message}`, { cause: error })
    }
  })
}

for (const mode of modes()) {
  void test(`density model: ${mode.name}`, (t) => {
    tally.clear()
    const parameters: fc.Parameters<[Scenario]> = { numRuns: RUNS }
    const seed = process.env['TMEM_SEED']
    const path = process.env['TMEM_PATH']
    if (seed !== undefined) parameters.seed = Number(seed)
    if (path !== undefined && path !== '') parameters.path = path
    const started = Date.now()
    const details = fc.check(
      fc.property(scenarioArbitrary(mode.toggle), (scenario) => runScenario(mode, scenario)),
      parameters,
    )
    if (details.failed) {
      const example = details.counterexample?.[0]
      const lines = [
        `Density model (${mode.name}) failed after ${details.numRuns} runs (${details.numShrinks} shrinks).`,
        `Replay: TMEM_DENSITY_MODE='${mode.name}' TMEM_SEED=${details.seed} TMEM_PATH=${details.counterexamplePath ?? ''} node tools/run-tests.mjs density-model`,
      ]
      if (example !== undefined) {
        lines.push(`Config: ${JSON.stringify(example.config)}`)
        example.steps.forEach((step, i) =>
          lines.push(`  ${String(i).padStart(3)}  ${describeStep(step)}`),
        )
      }
      const error = details.errorInstance
      lines.push(`Error: ${error instanceof Error ? error.message : String(error)}`)
      assert.fail(lines.join('\n'))
    }
    const seen = [...tally].map(([kind, count]) => `${kind} ${count}`).join(', ')
    t.diagnostic(
      `seed ${details.seed}: ${RUNS} runs, ${Date.now() - started} ms; pages checked by kind: ${seen}`,
    )
    if (seed === undefined) {
      for (const kind of mode.expect)
        assert.ok((tally.get(kind) ?? 0) > 0, `mode ${mode.name} never stored a ${kind} page`)
    }
  })
}

void test('density pages: every content kind is what it says', () => {
  for (const kind of CONTENT_KINDS) {
    const page = makeContent(kind, 3)
    assert.equal(page.length, PAGE_BYTES)
    if (kind === 'zero') assert.ok(page.every((b) => b === 0))
    if (kind === 'dup') assert.deepEqual(makeContent('dup', 3), makeContent('dup', 3 + 4))
  }
})
