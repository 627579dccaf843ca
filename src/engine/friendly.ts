/**
 * The friendly layer for embedders: a guest's view of the host with pools as objects and
 * oids as numbers, bigints or [bigint, bigint, bigint]. Each call builds a decoded op and
 * goes through `host.op()` (of any `GuestHypercall`), so it behaves exactly like the
 * hypercall; negative return codes become a thrown TmemOpError with a stable `code`, and a miss
 * is a value (null or false). It allocates per call; the zero-allocation path is
 * `host.opBytes()`.
 */
import {
  PAGE_SIZE,
  TMEM_DESTROY_POOL,
  TMEM_FLUSH_OBJECT,
  TMEM_FLUSH_PAGE,
  TMEM_GET_PAGE,
  TMEM_NEW_POOL,
  TMEM_POOL_PERSIST,
  TMEM_POOL_SHARED,
  TMEM_POOL_VERSION_SHIFT,
  TMEM_PUT_PAGE,
} from '../abi/constants.js'
import type { Oid, TmemOp } from '../abi/types.js'
import { TmemOpError } from '../errors/mod.js'

/**
 * What the friendly layer needs of a host: the decoded-op hypercall. `Host` is one; the
 * friendly layer depends on this shape only, so that `host.ts` can hand out clients without
 * an import circle.
 */
export interface GuestHypercall {
  op(clientId: number, op: TmemOp, data?: Uint8Array | null, version?: 0 | 1): number
}

/** An object id: a number or bigint (becomes `[x, 0n, 0n]`) or all three words. */
export type OidLike = number | bigint | readonly [bigint, bigint, bigint]

export interface NewPoolOptions {
  persistent?: boolean
  shared?: boolean
  /** `[uuid_lo, uuid_hi]` for a shared pool. */
  uuid?: readonly [bigint, bigint]
}

export function toOid(oid: OidLike): Oid {
  if (typeof oid === 'number') return [BigInt(oid), 0n, 0n]
  if (typeof oid === 'bigint') return [oid, 0n, 0n]
  return [oid[0], oid[1], oid[2]]
}

export class GuestClient {
  readonly host: GuestHypercall
  readonly id: number
  readonly version: 0 | 1

  constructor(host: GuestHypercall, id: number, version: 0 | 1) {
    this.host = host
    this.id = id
    this.version = version
  }

  /** Creates a pool (TMEM_NEW_POOL) and returns it; throws TmemOpError on failure. */
  newPool(options: NewPoolOptions = {}): GuestPool {
    const flags =
      (options.persistent === true ? TMEM_POOL_PERSIST : 0) |
      (options.shared === true ? TMEM_POOL_SHARED : 0) |
      (this.version << TMEM_POOL_VERSION_SHIFT)
    const uuid = options.uuid ?? [0n, 0n]
    const op: TmemOp = {
      cmd: TMEM_NEW_POOL,
      poolId: 0,
      creat: { uuid: [uuid[0], uuid[1]], flags, arg1: 0 },
    }
    const rc = this.host.op(this.id, op, null, this.version)
    if (rc < 0) throw new TmemOpError(rc, TMEM_NEW_POOL)
    return new GuestPool(this, rc)
  }

  /** The pool in slot `poolId` (no check that it exists: ops on an empty slot give ENODEV). */
  pool(poolId: number): GuestPool {
    return new GuestPool(this, poolId)
  }
}

export class GuestPool {
  readonly client: GuestClient
  readonly poolId: number

  constructor(client: GuestClient, poolId: number) {
    this.client = client
    this.poolId = poolId
  }

  #gen(cmd: number, oid: OidLike, index: number): TmemOp {
    return {
      cmd,
      poolId: this.poolId,
      gen: { oid: toOid(oid), index, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
    }
  }

  #call(cmd: number, oid: OidLike, index: number, data: Uint8Array | null): number {
    const client = this.client
    const rc = client.host.op(client.id, this.#gen(cmd, oid, index), data, client.version)
    if (rc < 0) throw new TmemOpError(rc, cmd)
    return rc
  }

  /** Stores a 4096-byte page; returns true (put never returns 0). */
  put(oid: OidLike, index: number, page: Uint8Array): boolean {
    return this.#call(TMEM_PUT_PAGE, oid, index, page) === 1
  }

  /**
   * Fetches a page into `into` (or a new buffer); null on a miss. An empty pool is a miss
   * too (the hypercall's -EEMPTY).
   */
  get(
    oid: OidLike,
    index: number,
    into: Uint8Array = new Uint8Array(PAGE_SIZE),
  ): Uint8Array | null {
    const client = this.client
    const rc = client.host.op(client.id, this.#gen(TMEM_GET_PAGE, oid, index), into, client.version)
    if (rc === 1) return into
    if (rc === 0 || rc === -1001) return null
    throw new TmemOpError(rc, TMEM_GET_PAGE)
  }

  flushPage(oid: OidLike, index: number): void {
    this.#call(TMEM_FLUSH_PAGE, oid, index, null)
  }

  flushObject(oid: OidLike): void {
    this.#call(TMEM_FLUSH_OBJECT, oid, 0, null)
  }

  /** Destroys the pool; returns false when the slot was already empty. */
  destroy(): boolean {
    return this.#call(TMEM_DESTROY_POOL, 0, 0, null) === 1
  }
}
