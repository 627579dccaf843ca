/**
 * Keeps one client's ops in order around the ops that wait on the cluster (docs/remote.md
 * "Ordering"). The daemon answers a deferred op whenever it settles and goes on serving the
 * connection meanwhile, so the tier itself makes a later op wait when it touches what a
 * pending one touches: a page op waits for the pending ops on the same page, and a pool-wide
 * op (FLUSH_OBJECT, DESTROY_POOL) for every pending op of the pool, as later page ops of the
 * pool wait for it. Ops on other pages go ahead: many remote pages can be in flight at once.
 */

/** The number naming a client's pool. */
export function poolNumber(clientId: number, poolId: number): number {
  return clientId * 64 + poolId
}

export class PendingOps {
  readonly #pages = new Map<string, Promise<unknown>>()
  readonly #pools = new Map<number, Set<Promise<unknown>>>()
  readonly #barriers = new Map<number, Promise<unknown>>()

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
    const waits: Promise<unknown>[] = []
    const barrier = this.#barriers.get(pool)
    if (barrier !== undefined) waits.push(barrier)
    if (page === null) waits.push(...(this.#pools.get(pool) ?? []))
    else {
      const pending = this.#pages.get(page)
      if (pending !== undefined) waits.push(pending)
    }
    return waits
  }

  /** Notes a pending op until `done` settles. */
  track(pool: number, page: string | null, done: Promise<unknown>): void {
    const settled = done.then(
      () => undefined,
      () => undefined,
    )
    let set = this.#pools.get(pool)
    if (set === undefined) {
      set = new Set()
      this.#pools.set(pool, set)
    }
    set.add(settled)
    if (page === null) this.#barriers.set(pool, settled)
    else this.#pages.set(page, settled)
    void settled.then(() => {
      set.delete(settled)
      if (set.size === 0 && this.#pools.get(pool) === set) this.#pools.delete(pool)
      if (page === null) {
        if (this.#barriers.get(pool) === settled) this.#barriers.delete(pool)
      } else if (this.#pages.get(page) === settled) this.#pages.delete(page)
    })
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
