/**
 * The local presence index (docs/remote.md "Presence and versions"): which pages have a copy
 * in the cluster, at which version, and how many bytes it holds there. A local miss goes to
 * the network only for a page listed here, and a page is served from the cluster only when
 * the value found carries the version listed here, so a copy that was flushed, replaced by a
 * newer put or overwritten out of order is never served, whatever the cluster still holds.
 *
 * One entry per remote page, a number: `version * 8192 + bytes` (bytes 0: a zero page, kept
 * here only and never sent). Pages are grouped by pool, then object (oid hex), then index.
 */

const BYTES_SPAN = 8192

/** The number naming a client's pool (the index's key; ordering.ts and copies.ts use it too). */
export function poolNumber(clientId: number, poolId: number): number {
  return clientId * 64 + poolId
}

/** The remote pages of one pool. */
export class PoolPresence {
  readonly clientId: number
  readonly poolId: number
  readonly persistent: boolean
  readonly objects = new Map<string, Map<number, number>>()
  pages = 0
  bytes = 0
  /**
   * The namespace of its keys (`<host id>:<client id>`) when it is not this daemon's own: a
   * pool adopted from another daemon in a live migration (handover.ts).
   */
  namespace: string | null = null
  /** Adopted and not yet committed: destroying it forgets its pages without deleting them. */
  borrowed = false

  constructor(clientId: number, poolId: number, persistent: boolean) {
    this.clientId = clientId
    this.poolId = poolId
    this.persistent = persistent
  }
}

export function entryVersion(entry: number): number {
  return Math.floor(entry / BYTES_SPAN)
}

export function entryBytes(entry: number): number {
  return entry % BYTES_SPAN
}

export class Presence {
  readonly #pools = new Map<number, PoolPresence>()
  /** Remote bytes per client (what the quota counts). */
  readonly #clientBytes = new Map<number, number>()

  #id(clientId: number, poolId: number): number {
    return poolNumber(clientId, poolId)
  }

  pool(clientId: number, poolId: number): PoolPresence | undefined {
    return this.#pools.get(this.#id(clientId, poolId))
  }

  pools(): IterableIterator<PoolPresence> {
    return this.#pools.values()
  }

  clientBytes(clientId: number): number {
    return this.#clientBytes.get(clientId) ?? 0
  }

  /** The entry of a page, or 0 when it has no remote copy. */
  get(clientId: number, poolId: number, oid: string, index: number): number {
    return this.pool(clientId, poolId)?.objects.get(oid)?.get(index) ?? 0
  }

  /** Lists a page at `version` with `bytes` in the cluster (0: a zero page). */
  set(
    clientId: number,
    poolId: number,
    persistent: boolean,
    oid: string,
    index: number,
    version: number,
    bytes: number,
  ): void {
    const id = this.#id(clientId, poolId)
    let pool = this.#pools.get(id)
    if (pool === undefined) {
      pool = new PoolPresence(clientId, poolId, persistent)
      this.#pools.set(id, pool)
    }
    let object = pool.objects.get(oid)
    if (object === undefined) {
      object = new Map()
      pool.objects.set(oid, object)
    }
    const before = object.get(index)
    if (before !== undefined) this.#count(pool, -1, -entryBytes(before))
    object.set(index, version * BYTES_SPAN + bytes)
    this.#count(pool, 1, bytes)
  }

  /** Forgets a page; true when it was listed. */
  delete(clientId: number, poolId: number, oid: string, index: number): boolean {
    const pool = this.pool(clientId, poolId)
    const object = pool?.objects.get(oid)
    const entry = object?.get(index)
    if (pool === undefined || object === undefined || entry === undefined) return false
    object.delete(index)
    this.#count(pool, -1, -entryBytes(entry))
    if (object.size === 0) pool.objects.delete(oid)
    this.#dropIfEmpty(pool)
    return true
  }

  /** Forgets a page only if it is still at `version` (a write that failed). */
  deleteIfVersion(clientId: number, poolId: number, oid: string, index: number, version: number) {
    const entry = this.get(clientId, poolId, oid, index)
    if (entry !== 0 && entryVersion(entry) === version) this.delete(clientId, poolId, oid, index)
  }

  /** Forgets an object; the number of pages it had listed. */
  deleteObject(clientId: number, poolId: number, oid: string): number {
    const pool = this.pool(clientId, poolId)
    const object = pool?.objects.get(oid)
    if (pool === undefined || object === undefined) return 0
    let bytes = 0
    for (const entry of object.values()) bytes += entryBytes(entry)
    const pages = object.size
    pool.objects.delete(oid)
    this.#count(pool, -pages, -bytes)
    this.#dropIfEmpty(pool)
    return pages
  }

  /** Forgets a pool; its oids (every one has a hash in the cluster or only zero pages). */
  deletePool(clientId: number, poolId: number): PoolPresence | undefined {
    const pool = this.pool(clientId, poolId)
    if (pool === undefined) return undefined
    this.#pools.delete(this.#id(clientId, poolId))
    this.#addClientBytes(clientId, -pool.bytes)
    return pool
  }

  #count(pool: PoolPresence, pages: number, bytes: number): void {
    pool.pages += pages
    pool.bytes += bytes
    this.#addClientBytes(pool.clientId, bytes)
  }

  #addClientBytes(clientId: number, bytes: number): void {
    const total = (this.#clientBytes.get(clientId) ?? 0) + bytes
    if (total === 0) this.#clientBytes.delete(clientId)
    else this.#clientBytes.set(clientId, total)
  }

  #dropIfEmpty(pool: PoolPresence): void {
    if (pool.pages === 0) this.#pools.delete(this.#id(pool.clientId, pool.poolId))
  }
}
