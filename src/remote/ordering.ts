/**
 * Keeps one client's ops in order around the ops that wait on the cluster (docs/remote.md
 * "Ordering"). The daemon answers a deferred op whenever it settles and goes on serving the
 * connection meanwhile, so the tier itself makes a later op wait when it touches what a
 * pending one touches: a page op waits for the pending ops on the same page, and a pool-wide
 * op (FLUSH_OBJECT, DESTROY_POOL) for every pending op of the pool, as later page ops of the
 * pool wait for it. Ops on other pages go ahead: many remote pages can be in flight at once.
 * Pages are named per pool: two clients' pools may hold an object of the same oid.
 */

/** One pool's pending ops. */
interface PoolPending {
  /** Every pending op of the pool. */
  all: Set<Promise<undefined>>
  /** The latest pending op of each page (`<oid>:<index>`): a page's names are per pool. */
  pages: Map<string, Promise<undefined>>
  /** The latest pending pool-wide op. */
  barrier: Promise<undefined> | null
}

export class PendingOps {
  readonly #pools = new Map<number, PoolPending>()

  /** True when no op is pending: nothing needs checking. */
  get idle(): boolean {
    return this.#pools.size === 0
  }

  /** Whether the pool has a pending op (cheap: checked before any key is made). */
  busy(pool: number): boolean {
    return this.#pools.has(pool)
  }

  /** What an op must wait for: on `page` of `pool`, or the whole pool when `page` is null. */
  waitsFor(pool: number, page: string | null): Promise<unknown>[] {
    const pending = this.#pools.get(pool)
    if (pending === undefined) return []
    if (page === null) return [...pending.all]
    const waits: Promise<unknown>[] = []
    if (pending.barrier !== null) waits.push(pending.barrier)
    const onPage = pending.pages.get(page)
    if (onPage !== undefined) waits.push(onPage)
    return waits
  }

  /**
   * Notes a pending op until `done` settles. What waiters get is a promise that settles with
   * it and never rejects; the op is forgotten as it settles (one reaction per op: this runs
   * for every op that goes to the cluster).
   */
  track(pool: number, page: string | null, done: Promise<unknown>): void {
    let pending = this.#pools.get(pool)
    if (pending === undefined) {
      pending = { all: new Set(), pages: new Map(), barrier: null }
      this.#pools.set(pool, pending)
    }
    const record = pending
    const forget = (): undefined => {
      record.all.delete(settled)
      if (page === null) {
        if (record.barrier === settled) record.barrier = null
      } else if (record.pages.get(page) === settled) record.pages.delete(page)
      if (record.all.size === 0 && this.#pools.get(pool) === record) this.#pools.delete(pool)
      return undefined
    }
    const settled = done.then(forget, forget)
    record.all.add(settled)
    if (page === null) record.barrier = settled
    else record.pages.set(page, settled)
  }
}

/** Copies of an op and its page for an op that runs later (a get gets a fresh page). */
export function copyOp(
  bytes: Uint8Array,
  offset: number,
  opBytes: number,
  data: Uint8Array | null,
  dataOffset: number,
  get: boolean,
): { op: Uint8Array; page: Uint8Array | null } {
  const op = Uint8Array.from(bytes.subarray(offset, offset + opBytes))
  if (get) return { op, page: new Uint8Array(4096) }
  const page = data === null ? null : Uint8Array.from(data.subarray(dataOffset, dataOffset + 4096))
  return { op, page }
}
