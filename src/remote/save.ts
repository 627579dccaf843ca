/**
 * Saves of a client with remote pages (docs/remote.md "Save, restore and migration"). The save
 * subops are the engine's; the tier adds the client's remote persistent pages to them:
 *
 * - At SAVE_BEGIN (plain or live, not pre-copy) the remote persistent pages of the client are
 *   listed, at their versions (a snapshot of the presence index).
 * - SAVE_GET_POOL_NPAGES counts them with the local ones.
 * - When the engine's list of a pool is done (SAVE_GET_NEXT_PAGE -1, SAVE_GET_PAGES 0), the
 *   listed pages follow: read from the cluster, expanded, and written as ordinary records, so
 *   the stream is the same Xen stream. The reply comes when the reads are back (deferred).
 *
 * A save reads and never writes: the pages stay in the cluster and in the index. A listed
 * page that is no longer at its version when it is read (flushed or replaced during a live
 * save) is left out, as the engine leaves out a page removed during a live save. A page still
 * listed that cannot be read fails the op with -EFAULT: the save fails rather than drop it.
 */
import { EFAULT, ENOMEM, PAGE_RECORD_HEADER_BYTES, PAGE_SIZE } from '../abi/constants.js'
import type { Host } from '../engine/host.js'
import type { DeferredReply } from '../protocol/deferred.js'
import { writeU32LE } from '../util/le.js'
import type { RemoteStore } from './cluster.js'
import { valueKind, valueVersion, VALUE_HEADER_BYTES } from './keys.js'
import { entryBytes, entryVersion, type Presence } from './presence.js'

/** One listed remote page. */
interface Listed {
  oid: string
  index: number
  version: number
  bytes: number
}

/** A pool's listed pages and how many were handed out. */
interface PoolList {
  pages: Listed[]
  next: number
}

/** Where a listed page's key lives: the tier's namespace for this pool. */
export type KeyOf = (clientId: number, poolId: number, oid: string) => string

export class RemoteSaves {
  readonly #presence: Presence
  readonly #store: RemoteStore
  readonly #host: Host
  readonly #keyOf: KeyOf
  /** Per client in a save: per pool id, the remote pages listed at SAVE_BEGIN. */
  readonly #saves = new Map<number, Map<number, PoolList>>()
  /** Per client in a live save: the pages written so far, and how far SAVE_GET_NEXT_INV got. */
  readonly #written = new Map<number, { pages: (Listed & { poolId: number })[]; next: number }>()

  constructor(presence: Presence, store: RemoteStore, host: Host, keyOf: KeyOf) {
    this.#presence = presence
    this.#store = store
    this.#host = host
    this.#keyOf = keyOf
  }

  /**
   * SAVE_BEGIN succeeded for `clientId`: lists its remote persistent pages. In a live save
   * the pages written are remembered, for the invalidations (see nextInvalidation).
   */
  begin(clientId: number, live = false): void {
    if (live) this.#written.set(clientId, { pages: [], next: 0 })
    else this.#written.delete(clientId)
    const pools = new Map<number, PoolList>()
    for (const pool of this.#presence.pools()) {
      if (pool.clientId !== clientId || !pool.persistent) continue
      const pages: Listed[] = []
      for (const [oid, object] of pool.objects) {
        for (const [index, entry] of object) {
          pages.push({ oid, index, version: entryVersion(entry), bytes: entryBytes(entry) })
        }
      }
      pools.set(pool.poolId, { pages, next: 0 })
    }
    this.#saves.set(clientId, pools)
  }

  /** Whether the client's remote pages are listed (a save or REMOTE_PAGES is under way). */
  active(clientId: number): boolean {
    return this.#saves.has(clientId)
  }

  end(clientId: number): void {
    this.#saves.delete(clientId)
    this.#written.delete(clientId)
  }

  /**
   * SAVE_GET_NEXT_INV of a live save, before the engine's: the next remote page written to
   * the stream that is no longer at its version (flushed, or dropped by a refused put) as a
   * handle at `out[at]`; 1, or 0 when there is none (the engine's list follows).
   */
  nextInvalidation(clientId: number, out: Uint8Array, at: number, room: number, version: 0 | 1) {
    const written = this.#written.get(clientId)
    if (written === undefined || room < (version === 0 ? 16 : 32)) return 0
    while (written.next < written.pages.length) {
      const page = written.pages[written.next++]!
      const entry = this.#presence.get(clientId, page.poolId, page.oid, page.index)
      if (entry !== 0 && entryVersion(entry) === page.version) continue
      writeHandle(out, at, page.poolId, page, version)
      return 1
    }
    return 0
  }

  /** Remote pages of the pool listed at SAVE_BEGIN (0 outside a save). */
  count(clientId: number, poolId: number): number {
    return this.#saves.get(clientId)?.get(poolId)?.pages.length ?? 0
  }

  /** Whether listed pages of the pool are still to be handed out. */
  hasMore(clientId: number, poolId: number): boolean {
    const list = this.#saves.get(clientId)?.get(poolId)
    return list !== undefined && list.next < list.pages.length
  }

  /**
   * SAVE_GET_NEXT_PAGE after the engine's pages: the next listed page as a handle (v1 or v0)
   * and the page. rc 1, or -1 when none is left.
   */
  async nextPage(clientId: number, poolId: number, version: 0 | 1): Promise<DeferredReply> {
    const handleBytes = version === 0 ? 16 : 32
    const out = new Uint8Array(handleBytes + PAGE_SIZE)
    for (;;) {
      const listed = this.#take(clientId, poolId, 1)
      if (listed.length === 0) return { rc: -1, page: null }
      const pages = await this.#read(clientId, poolId, listed)
      if (typeof pages === 'number') return { rc: pages, page: null }
      const page = pages[0]
      if (page === null || page === undefined) continue // gone during a live save
      writeHandle(out, 0, poolId, listed[0]!, version)
      out.set(page, handleBytes)
      this.#wrote(clientId, poolId, listed[0]!)
      return { rc: 1, page: out }
    }
  }

  /**
   * SAVE_GET_PAGES after the engine's pages: as many listed pages as `room` holds, as the
   * engine's page records (docs/migration.md). rc the record count; 0 when none is left.
   */
  async pages(clientId: number, poolId: number, room: number): Promise<DeferredReply> {
    const recordBytes = PAGE_RECORD_HEADER_BYTES + PAGE_SIZE
    const fit = Math.floor(room / recordBytes)
    if (fit < 1) return { rc: -ENOMEM, page: null }
    for (;;) {
      const listed = this.#take(clientId, poolId, fit)
      if (listed.length === 0) return { rc: 0, page: null }
      const pages = await this.#read(clientId, poolId, listed)
      if (typeof pages === 'number') return { rc: pages, page: null }
      const out = new Uint8Array(recordBytes * listed.length)
      let count = 0
      for (let i = 0; i < listed.length; i++) {
        const page = pages[i]
        if (page === null || page === undefined) continue
        const at = count * recordBytes
        writeHandle(out, at, poolId, listed[i]!, 1)
        writeU32LE(out, at + 32, 1) // kind 1: a page follows
        out.set(page, at + PAGE_RECORD_HEADER_BYTES)
        this.#wrote(clientId, poolId, listed[i]!)
        count++
      }
      if (count > 0) return { rc: count, page: out.subarray(0, count * recordBytes) }
    }
  }

  #wrote(clientId: number, poolId: number, page: Listed): void {
    this.#written.get(clientId)?.pages.push({ ...page, poolId })
  }

  #take(clientId: number, poolId: number, most: number): Listed[] {
    const list = this.#saves.get(clientId)?.get(poolId)
    if (list === undefined) return []
    const taken = list.pages.slice(list.next, list.next + most)
    list.next += taken.length
    return taken
  }

  /**
   * The pages of `listed`, read in one go (auto-pipelined): a page, or null for one no
   * longer listed at its version; -EFAULT when a listed page cannot be read.
   */
  async #read(
    clientId: number,
    poolId: number,
    listed: Listed[],
  ): Promise<(Uint8Array | null)[] | number> {
    const store = this.#store
    const reads = listed.map((page) =>
      page.bytes === 0
        ? Promise.resolve(null)
        : store.read(this.#keyOf(clientId, poolId, page.oid), page.index),
    )
    let values: (Buffer | null)[]
    try {
      values = await Promise.all(reads)
    } catch {
      return -EFAULT
    }
    const pages: (Uint8Array | null)[] = []
    for (let i = 0; i < listed.length; i++) {
      const page = listed[i]!
      const entry = this.#presence.get(clientId, poolId, page.oid, page.index)
      if (entry === 0 || entryVersion(entry) !== page.version) {
        pages.push(null)
        continue
      }
      const out = new Uint8Array(PAGE_SIZE)
      if (page.bytes === 0) {
        pages.push(out)
        continue
      }
      const value = values[i] ?? null
      if (
        value === null ||
        valueVersion(value) !== page.version ||
        !this.#host.expandStored(valueKind(value), value, VALUE_HEADER_BYTES, value.length, out)
      ) {
        return -EFAULT
      }
      pages.push(out)
    }
    return pages
  }
}

/** A `struct tmem_handle` (v1: 32 bytes, v0: 16) for a listed page. */
function writeHandle(out: Uint8Array, at: number, poolId: number, page: Listed, version: 0 | 1) {
  writeU32LE(out, at, poolId)
  writeU32LE(out, at + 4, page.index)
  const words = version === 0 ? 2 : 6
  for (let word = 0; word < words; word++) {
    const start = (5 - word) * 8
    writeU32LE(out, at + 8 + 4 * word, parseInt(page.oid.slice(start, start + 8), 16))
  }
}
