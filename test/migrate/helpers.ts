/**
 * Helpers of the save/restore tests. Numbers are typed here from the spec tables (commands
 * §2.1, subops §2.2, pool flags §2.3) rather than imported from src/abi/constants.ts, so a
 * wrong constant cannot hide behind the same constant in the test.
 */
import assert from 'node:assert/strict'
import { Host, type HostOptions, type Oid, type TmemOp } from '../../src/index.js'
import { checkInvariants } from '../../src/engine/invariants.js'
import {
  type ControlChannel,
  hostChannel,
  memorySink,
  saveClient,
  type SaveOptions,
} from '../../src/migrate/mod.js'

export const PAGE = 4096
export const ALL_ONES = 0xffffffffffffffffn

export const CMD = {
  CONTROL: 0,
  NEW_POOL: 1,
  DESTROY_POOL: 2,
  PUT: 4,
  GET: 5,
  FLUSH_PAGE: 6,
  FLUSH_OBJECT: 7,
  AUTH: 101,
} as const
export const SUB = {
  FREEZE: 1,
  SET_WEIGHT: 5,
  SET_CAP: 6,
  SET_COMPRESS: 7,
  SAVE_BEGIN: 10,
  SAVE_GET_POOL_FLAGS: 16,
  SAVE_GET_POOL_UUID: 18,
  SAVE_END: 21,
} as const
export const F = {
  PRIVATE_EPH: 0x01000000,
  PRIVATE_PERS: 0x01000001,
  SHARED_EPH: 0x01000002,
} as const

/** A deterministic page for a seed (its first four bytes carry the seed). */
export function page(seed: number): Uint8Array {
  const bytes = new Uint8Array(PAGE)
  for (let i = 0; i < PAGE; i++) bytes[i] = (seed * 131 + i * 7 + (i >> 8)) & 0xff
  bytes[0] = seed & 0xff
  bytes[1] = (seed >>> 8) & 0xff
  bytes[2] = (seed >>> 16) & 0xff
  bytes[3] = 0xa5
  return bytes
}

export function gen(cmd: number, poolId: number, oid: Oid, index: number): TmemOp {
  return { cmd, poolId, gen: { oid, index, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n } }
}

export function ctrl(subop: number, cliId: number, poolId = 0, arg1 = 0): TmemOp {
  return {
    cmd: CMD.CONTROL,
    poolId,
    ctrl: { subop, cliId, arg1, arg2: 0, oid: [0n, 0n, 0n], buf: 0n },
  }
}

/** A guest's view of one client on a host. */
export class Guest {
  constructor(
    readonly host: Host,
    readonly id: number,
  ) {}

  newPool(flags: number, uuid: readonly [bigint, bigint] = [0n, 0n]): number {
    return this.host.op(this.id, {
      cmd: CMD.NEW_POOL,
      poolId: 0,
      creat: { uuid: [uuid[0], uuid[1]], flags, arg1: 0 },
    })
  }

  destroyPool(poolId: number): number {
    return this.host.op(this.id, gen(CMD.DESTROY_POOL, poolId, [0n, 0n, 0n], 0))
  }

  put(poolId: number, oid: Oid, index: number, data: Uint8Array): number {
    return this.host.op(this.id, gen(CMD.PUT, poolId, oid, index), data)
  }

  /** The page, or null on a miss; throws on another result. */
  get(poolId: number, oid: Oid, index: number): Uint8Array | null {
    const into = new Uint8Array(PAGE)
    const rc = this.host.op(this.id, gen(CMD.GET, poolId, oid, index), into)
    if (rc === 1) return into
    if (rc === 0 || rc === -1001) return null
    throw new Error(`GET returned ${rc}`)
  }

  flushPage(poolId: number, oid: Oid, index: number): number {
    return this.host.op(this.id, gen(CMD.FLUSH_PAGE, poolId, oid, index))
  }

  flushObject(poolId: number, oid: Oid): number {
    return this.host.op(this.id, gen(CMD.FLUSH_OBJECT, poolId, oid, 0))
  }
}

/** Saves a client of `host` in memory; asserts that something was saved. */
export async function saveBytes(
  host: Host,
  cliId: number,
  options: SaveOptions = {},
): Promise<Uint8Array> {
  const memory = memorySink()
  const result = await saveClient(hostChannel(host), cliId, memory.sink, options)
  assert.equal(result.saved, true, 'saveClient saved nothing')
  return memory.bytes()
}

/** Everything about a client that a save must carry, read through the control entry. */
export interface ClientPicture {
  weight: number
  cap: number
  compress: boolean
  frozen: boolean
  /** Per slot: flags from SAVE_GET_POOL_FLAGS (-1: no pool) and the UUID bytes. */
  slots: { flags: number; uuid: string }[]
  /** Persistent page count per slot. */
  persistentPages: number[]
}

export function picture(host: Host, cliId: number): ClientPicture {
  const stats = host.stats().clients.find((client) => client.id === cliId)
  assert.ok(stats !== undefined, `no client ${cliId}`)
  const slots: { flags: number; uuid: string }[] = []
  const persistentPages: number[] = []
  for (let slot = 0; slot < 16; slot++) {
    const flags = host.control(ctrl(SUB.SAVE_GET_POOL_FLAGS, cliId, slot))
    const uuid = new Uint8Array(16)
    host.control(ctrl(SUB.SAVE_GET_POOL_UUID, cliId, slot, 16), uuid)
    slots.push({ flags, uuid: Buffer.from(uuid).toString('hex') })
    const pool = stats.pools.find((p) => p.slot === slot)
    persistentPages.push(pool !== undefined && pool.persistent ? pool.pages : 0)
  }
  return {
    weight: stats.weight,
    cap: stats.cap,
    compress: stats.compress,
    frozen: stats.frozen,
    slots,
    persistentPages,
  }
}

/** What a target host looks like from outside, for "left untouched" checks. */
export function hostSnapshot(host: Host): string {
  const stats = host.stats()
  // Counters of calls (Tt/Te) and times are not state; drop them.
  return JSON.stringify(
    {
      clients: stats.clients.map((client) => ({
        ...client,
        cyclesNs: 0,
        pools: client.pools.map((pool) => ({ ...pool })),
      })),
      pages: stats.pages,
      framesUsed: stats.framesUsed,
      objects: stats.objects,
    },
    (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value),
  )
}

export function check(host: Host): void {
  checkInvariants(host)
}

export function newHost(options: HostOptions = {}): Host {
  return new Host({ pages: 1024, reservePages: 0, ...options })
}

/** A channel without destroyClient: what a plain control connection offers. */
export function plainChannel(host: Host): ControlChannel {
  return { control: (op, data) => host.control(op, data ?? null) }
}

export function hexOf(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}
