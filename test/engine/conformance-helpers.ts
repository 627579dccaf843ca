/**
 * Shared harness of the conformance suite (test/engine/conformance-*.test.ts). Every number a
 * test expects is typed here or in the test from the spec's tables (commands §2.1, subops §2.2,
 * pool flags §2.3, errnos §2.5); nothing is imported from src/abi/constants.ts, so a wrong
 * constant in the engine cannot hide behind the same wrong constant in the test. The engine
 * is driven only through its public entry points (`op`, `opBytes`, `control`).
 */
import { Host, type HostOptions, type Oid, type TmemOp } from '../../src/index.js'
import { checkInvariants } from '../../src/engine/invariants.js'

export const PAGE = 4096

/** Command codes, spec §2.1. */
export const CMD = {
  CONTROL: 0,
  NEW_POOL: 1,
  DESTROY_POOL: 2,
  NEW_PAGE: 3,
  PUT_PAGE: 4,
  GET_PAGE: 5,
  FLUSH_PAGE: 6,
  FLUSH_OBJECT: 7,
  READ: 8,
  WRITE: 9,
  XCHG: 10,
  AUTH: 101,
  RESTORE_NEW: 102,
} as const

/** Control subops, spec §2.2. */
export const SUB = {
  THAW: 0,
  FREEZE: 1,
  FLUSH: 2,
  DESTROY: 3,
  LIST: 4,
  SET_WEIGHT: 5,
  SET_CAP: 6,
  SET_COMPRESS: 7,
  QUERY_FREEABLE_MB: 8,
  SAVE_BEGIN: 10,
  SAVE_GET_VERSION: 11,
  SAVE_GET_MAXPOOLS: 12,
  SAVE_GET_CLIENT_WEIGHT: 13,
  SAVE_GET_CLIENT_CAP: 14,
  SAVE_GET_CLIENT_FLAGS: 15,
  SAVE_GET_POOL_FLAGS: 16,
  SAVE_GET_POOL_NPAGES: 17,
  SAVE_GET_POOL_UUID: 18,
  SAVE_GET_NEXT_PAGE: 19,
  SAVE_GET_NEXT_INV: 20,
  SAVE_END: 21,
  RESTORE_BEGIN: 30,
  RESTORE_PUT_PAGE: 32,
  RESTORE_FLUSH_PAGE: 33,
} as const

/** Return values, spec §2.5. */
export const E = {
  PERM: -1,
  NOMEM: -12,
  FAULT: -14,
  NODEV: -19,
  INVAL: -22,
  NOSPC: -28,
  NOSYS: -38,
  FROZEN: -1000,
  EMPTY: -1001,
} as const

/** Typical v1 pool flags, spec §2.3. */
export const F = {
  PRIVATE_EPH: 0x01000000,
  PRIVATE_PERS: 0x01000001,
  SHARED_EPH: 0x01000002,
  SHARED_PERS: 0x01000003,
} as const

export const ALL = 0xffff
export const ALL_ONES_64 = 0xffffffffffffffffn

export type OidArg = number | bigint | Oid

export function oidOf(oid: OidArg): Oid {
  if (typeof oid === 'number') return [BigInt(oid), 0n, 0n]
  if (typeof oid === 'bigint') return [oid, 0n, 0n]
  return oid
}

/** A deterministic 4096-byte page that differs for every seed in its first bytes. */
export function page(seed: number): Uint8Array {
  const bytes = new Uint8Array(PAGE)
  for (let i = 0; i < PAGE; i++) bytes[i] = (seed * 131 + i * 7 + (i >> 8)) & 0xff
  bytes[0] = seed & 0xff
  bytes[1] = (seed >>> 8) & 0xff
  bytes[2] = (seed >>> 16) & 0xff
  bytes[3] = 0x5a
  return bytes
}

export interface CtrlArgs {
  cliId?: number
  arg1?: number
  arg2?: number
  poolId?: number
  oid?: OidArg
}

export interface GenExtra {
  tmemOffset?: number
  pfnOffset?: number
  len?: number
  cmfn?: bigint
}

export function genOp(
  cmd: number,
  poolId: number,
  oid: OidArg,
  index: number,
  extra: GenExtra = {},
): TmemOp {
  return {
    cmd,
    poolId,
    gen: {
      oid: oidOf(oid),
      index,
      tmemOffset: extra.tmemOffset ?? 0,
      pfnOffset: extra.pfnOffset ?? 0,
      len: extra.len ?? 0,
      cmfn: extra.cmfn ?? 0n,
    },
  }
}

export function creatOp(
  cmd: number,
  poolId: number,
  flags: number,
  uuid: readonly [bigint, bigint],
  arg1 = 0,
): TmemOp {
  return { cmd, poolId, creat: { uuid: [uuid[0], uuid[1]], flags, arg1 } }
}

export function ctrlOp(subop: number, args: CtrlArgs = {}): TmemOp {
  return {
    cmd: CMD.CONTROL,
    poolId: args.poolId ?? 0,
    ctrl: {
      subop,
      cliId: args.cliId ?? ALL,
      arg1: args.arg1 ?? 0,
      arg2: args.arg2 ?? 0,
      oid: oidOf(args.oid ?? 0),
      buf: 0n,
    },
  }
}

/** The guest's and the toolstack's view of one host, as thin wrappers of the hypercall. */
export class Harness {
  readonly host: Host

  constructor(options: HostOptions = {}) {
    this.host = new Host(options)
  }

  newPool(
    cli: number,
    flags: number,
    uuid: readonly [bigint, bigint] = [0n, 0n],
    poolId = 0,
  ): number {
    return this.host.op(cli, creatOp(CMD.NEW_POOL, poolId, flags, uuid))
  }

  destroy(cli: number, poolId: number): number {
    return this.host.op(cli, genOp(CMD.DESTROY_POOL, poolId, 0, 0))
  }

  put(cli: number, poolId: number, oid: OidArg, index: number, data: Uint8Array | null): number {
    return this.host.op(cli, genOp(CMD.PUT_PAGE, poolId, oid, index), data)
  }

  /** GET into `into` (a fresh zeroed page by default). */
  get(
    cli: number,
    poolId: number,
    oid: OidArg,
    index: number,
    into: Uint8Array | null = new Uint8Array(PAGE),
  ): number {
    return this.host.op(cli, genOp(CMD.GET_PAGE, poolId, oid, index), into)
  }

  /** GET returning the code and the bytes read (null unless the code is 1). */
  fetch(
    cli: number,
    poolId: number,
    oid: OidArg,
    index: number,
  ): { rc: number; data: Uint8Array | null } {
    const into = new Uint8Array(PAGE)
    const rc = this.get(cli, poolId, oid, index, into)
    return { rc, data: rc === 1 ? into : null }
  }

  flushPage(cli: number, poolId: number, oid: OidArg, index: number): number {
    return this.host.op(cli, genOp(CMD.FLUSH_PAGE, poolId, oid, index))
  }

  flushObject(cli: number, poolId: number, oid: OidArg): number {
    return this.host.op(cli, genOp(CMD.FLUSH_OBJECT, poolId, oid, 0))
  }

  ctrl(subop: number, args: CtrlArgs = {}, data?: Uint8Array | null): number {
    return this.host.control(ctrlOp(subop, args), data)
  }

  auth(cli: number, uuid: readonly [bigint, bigint], flag: number): number {
    return this.host.control(creatOp(CMD.AUTH, 0, flag, uuid, cli))
  }

  restoreNew(
    cli: number,
    slot: number,
    flags: number,
    uuid: readonly [bigint, bigint] = [0n, 0n],
  ): number {
    return this.host.control(creatOp(CMD.RESTORE_NEW, slot, flags, uuid, cli))
  }

  /** TMEMC_LIST through the control entry; returns the text up to the NUL. */
  list(cliId = ALL, long = false, capacity = 1 << 16): string {
    const buffer = new Uint8Array(capacity)
    const rc = this.ctrl(SUB.LIST, { cliId, arg1: capacity, arg2: long ? 1 : 0 }, buffer)
    if (rc !== 0) throw new Error(`LIST returned ${rc}`)
    const end = buffer.indexOf(0)
    return Buffer.from(buffer.subarray(0, end < 0 ? buffer.length : end)).toString('latin1')
  }

  /** The value of `key` on the first LIST line starting with `prefix` (long form, all clients). */
  stat(prefix: string, key: string): number {
    return lineValue(this.list(ALL, true), prefix, key)
  }

  check(): void {
    checkInvariants(this.host)
  }
}

/** The items of a LIST line as a map (the tag dropped). */
export function lineItems(line: string): Map<string, string> {
  const items = new Map<string, string>()
  for (const item of line.slice(2).split(',')) {
    const colon = item.indexOf(':')
    const key = item.slice(0, colon)
    if (!items.has(key)) items.set(key, item.slice(colon + 1))
  }
  return items
}

export function lineValue(text: string, prefix: string, key: string): number {
  const line = text.split('\n').find((candidate) => candidate.startsWith(prefix))
  if (line === undefined) throw new Error(`No LIST line starts with ${prefix}:\n${text}`)
  // Skip the prefix so that a key in it (CI, PI) is not the one found.
  const value = lineItems(line).get(key)
  if (value === undefined) throw new Error(`LIST line ${line} has no ${key}`)
  return Number(value)
}

/** The `key:value` pairs of the pool group of spec §5.7 in order, for building expectations. */
export interface PoolGroup {
  Pc: number
  Pm: number
  Oc: number
  Om: number
  ps: number
  pt: number
  pd?: number
  pr?: number
  px?: number
  gs?: number
  gt?: number
  fs?: number
  ft?: number
  os?: number
  ot?: number
}

export function poolGroup(g: PoolGroup): string {
  return (
    `Pc:${g.Pc},Pm:${g.Pm},Oc:${g.Oc},Om:${g.Om},Nc:0,Nm:0,ps:${g.ps},pt:${g.pt},` +
    `pd:${g.pd ?? 0},pr:${g.pr ?? 0},px:${g.px ?? 0},gs:${g.gs ?? 0},gt:${g.gt ?? 0},` +
    `fs:${g.fs ?? 0},ft:${g.ft ?? 0},os:${g.os ?? 0},ot:${g.ot ?? 0}`
  )
}

/** Little-endian readers for handles and UUIDs written by save subops. */
export function u32At(bytes: Uint8Array, at: number): number {
  return (
    (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0
  )
}

export function u64At(bytes: Uint8Array, at: number): bigint {
  return BigInt(u32At(bytes, at)) | (BigInt(u32At(bytes, at + 4)) << 32n)
}

export function samePage(actual: Uint8Array | null, expected: Uint8Array): boolean {
  if (actual === null || actual.length < PAGE) return false
  for (let i = 0; i < PAGE; i++) if (actual[i] !== expected[i]) return false
  return true
}
