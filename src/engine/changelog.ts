/**
 * The change log of live migration, and the control subops that move pages in batches (tmem's
 * own, not Xen's; see docs/migration.md). `ChangeLog` is the core's `ChangeHook`: the control
 * plane installs it when a live save begins, and the core then reports every persistent page
 * of a migrating client that is put, replaced or removed; each report becomes an entry
 * (pool id, oid, index) in that client's log (`client.invalidated`). The subops:
 *
 *  - SAVE_BEGIN with arg1 = TMEM_SAVE_PRECOPY starts a pre-copy save: the client is NOT
 *    frozen and duplicate puts are allowed, but every persistent page put, replaced or
 *    removed is logged (pool id, oid, index) in the client's change log (the invalidated
 *    list of docs/semantics.md "Save subops", widened to puts).
 *  - SAVE_GET_PAGES copies the next persistent pages of a pool, oldest first, as many as fit.
 *  - SAVE_GET_CHANGES drains the change log with each handle's current content (or "absent").
 *  - RESTORE_PAGES applies such a batch on the target.
 *
 * A batch is a run of page records, each 8-byte aligned:
 *
 *   0          4        8                        32       36       40            40+4096
 *   +----------+--------+------------------------+--------+--------+-------------+
 *   | pool_id  | index  | oid[0] oid[1] oid[2]   | kind   | 0      | page (kind 1)|
 *   +----------+--------+------------------------+--------+--------+-------------+
 *
 * Batches make migration move about a megabyte per control round trip instead of a page.
 *
 * Memory ceiling (docs/migration.md "The change log's ceiling"): a pre-copy save's log holds
 * at most `ceiling` bytes (SAVE_BEGIN `arg2`, in KiB; default CHANGE_LOG_BYTES_DEFAULT). While
 * it is under the ceiling each change is an entry in order; at the ceiling the pending entries
 * are coalesced into a dirty set, one key per page (a page changed twice is sent once, with its
 * content at drain time, which is all a drain sends anyway), and later changes go there. If
 * even the set would pass the ceiling (more distinct pages changed between two drains than it
 * holds), the log is dropped and SAVE_GET_CHANGES answers -ENOSPC from then on: the migrator
 * fails the migration and rolls back, and the client runs on. Control plane: may allocate.
 */
import {
  EINVAL,
  ENOMEM,
  ENOSPC,
  MAX_POOLS_PER_DOMAIN,
  PAGE_RECORD_HEADER_BYTES,
  PAGE_SIZE,
  TMEMC_RESTORE_PAGES,
  TMEMC_SAVE_GET_CHANGES,
  TMEMC_SAVE_GET_PAGES,
} from '../abi/constants.js'
import type { ChangeHook, Core } from './core.js'
import type { Client, Invalidation, Pool } from './model.js'
import type { OpScratch } from './op-scratch.js'
import { FILL_COPY } from './placement.js'
import { readU32LE, writeU32LE } from '../util/le.js'
import { NONE } from './store.js'
import { writeHandle } from './handle.js'

const FAIL = -1

/** Restore puts copy whole pages from the batch: no window, no guest frame. */
const NO_WINDOW = { cmfn: 0n, tmemOffset: 0, pfnOffset: 0, len: 0 } as const

/** Heap bytes of one entry of the log's list: an object and a copy of the oid (measured). */
export const CHANGE_ENTRY_BYTES = 300
/** Heap bytes of one page in the coalesced dirty set: its key string (measured). */
export const CHANGE_DIRTY_BYTES = 200
/** A pre-copy save's change log holds at most this by default (SAVE_BEGIN arg2 = 0). */
export const CHANGE_LOG_BYTES_DEFAULT = 64 * 1024 * 1024

/** The ceiling of one pre-copy save's log, and what is past it. */
interface Ceiling {
  readonly bytes: number
  /** Entries the list may hold before it is coalesced. */
  readonly listMax: number
  /** Pages the dirty set may hold. */
  readonly dirtyMax: number
  /** Past the list's room: pages changed and not drained yet, by key (dirtyKey). */
  dirty: Set<string> | null
  /** Past the set's room too: the log is gone and the save cannot finish. */
  overflowed: boolean
}

export class ChangeLog implements ChangeHook {
  readonly #core: Core
  /** Oid words of the record being read; reused. */
  readonly #oid = new Uint32Array(6)
  /** The ceilings of the pre-copy saves under way. */
  readonly #ceilings = new WeakMap<Client, Ceiling>()

  constructor(core: Core) {
    this.#core = core
  }

  /** A pre-copy save of `client` begins: its log holds at most `bytes` (0: the default). */
  begin(client: Client, bytes: number): void {
    const ceiling = bytes === 0 ? CHANGE_LOG_BYTES_DEFAULT : bytes
    this.#ceilings.set(client, {
      bytes: ceiling,
      listMax: Math.max(1, Math.floor(ceiling / CHANGE_ENTRY_BYTES)),
      dirtyMax: Math.max(1, Math.floor(ceiling / CHANGE_DIRTY_BYTES)),
      dirty: null,
      overflowed: false,
    })
  }

  /** The save of `client` ended (or a plain save began): no ceiling, no dirty set. */
  end(client: Client): void {
    this.#ceilings.delete(client)
  }

  /** What the log of `client` holds now, in bytes by the estimates above (tests, stats). */
  heldBytes(client: Client): number {
    const dirty = this.#ceilings.get(client)?.dirty?.size ?? 0
    return client.invalidated.length * CHANGE_ENTRY_BYTES + dirty * CHANGE_DIRTY_BYTES
  }

  /** Logs a persistent page of a migrating client as changed (docs/semantics.md "Save subops"; puts for pre-copy). */
  pageChanged(pool: Pool, oid: Uint32Array, base: number, index: number): void {
    const client = pool.owner
    const ceiling = this.#ceilings.get(client)
    if (ceiling?.overflowed === true) return
    if (
      ceiling === undefined ||
      (ceiling.dirty === null && client.invalidated.length < ceiling.listMax)
    ) {
      client.invalidated.push({ poolId: pool.poolId, oid: oid.slice(base, base + 6), index })
      return
    }
    const dirty = ceiling.dirty ?? (ceiling.dirty = this.#coalesce(client))
    const key = dirtyKey(pool.poolId, oid, base, index)
    if (dirty.has(key)) return
    if (dirty.size < ceiling.dirtyMax) {
      dirty.add(key)
      return
    }
    // Even one key per page does not fit: drop the log; the save cannot finish.
    ceiling.overflowed = true
    ceiling.dirty = null
    client.invalidated.length = 0
    client.invalidatedCursor = 0
  }

  /** The list's pending entries as a dirty set (one key per page); the list is emptied. */
  #coalesce(client: Client): Set<string> {
    const dirty = new Set<string>()
    const list = client.invalidated
    for (let i = client.invalidatedCursor; i < list.length; i++) {
      const entry = list[i]!
      dirty.add(dirtyKey(entry.poolId, entry.oid, 0, entry.index))
    }
    list.length = 0
    client.invalidatedCursor = 0
    return dirty
  }

  /** Is `subop` one of the extension subops handled here? */
  static handles(subop: number): boolean {
    return (
      subop === TMEMC_SAVE_GET_PAGES ||
      subop === TMEMC_SAVE_GET_CHANGES ||
      subop === TMEMC_RESTORE_PAGES
    )
  }

  /** Runs the extension subop of op `s` for `client`; `data` is the tool buffer. */
  run(
    s: OpScratch,
    client: Client | undefined,
    data: Uint8Array | null,
    dataOffset: number,
    dataLength: number,
  ): number {
    if (client === undefined) return FAIL
    const room = Math.min(s.arg1, dataLength)
    if (data === null) return -EINVAL
    switch (s.subop) {
      case TMEMC_SAVE_GET_PAGES: {
        const slot = s.poolId >>> 0
        const pool = slot < MAX_POOLS_PER_DOMAIN ? client.pools[slot] : null
        if (pool === null || pool === undefined || !pool.persistent) return FAIL
        return this.#getPages(client, pool, data, dataOffset, room)
      }
      case TMEMC_SAVE_GET_CHANGES:
        return this.#getChanges(client, data, dataOffset, room)
      default:
        return this.#restorePages(client, data, dataOffset, room)
    }
  }

  #getPages(
    client: Client,
    pool: Pool,
    data: Uint8Array,
    dataOffset: number,
    room: number,
  ): number {
    const store = this.#core.store
    const recordBytes = PAGE_RECORD_HEADER_BYTES + PAGE_SIZE
    if (room < recordBytes) return -ENOMEM
    let count = 0
    let at = dataOffset
    while (at + recordBytes <= dataOffset + room) {
      const slot =
        pool.saveCursor === NONE ? pool.persistentList[0]! : store.listNext[pool.saveCursor]!
      if (slot === NONE) break
      pool.saveCursor = slot
      pool.gets++
      pool.foundGets++
      client.succPersistentGets++
      if (!this.#writeRecord(pool, slot, data, at)) return -EINVAL
      at += recordBytes
      count++
    }
    return count
  }

  #writeRecord(pool: Pool, slot: number, data: Uint8Array, at: number): boolean {
    const core = this.#core
    const store = core.store
    const object = store.slotObject(slot)
    writeHeader(data, at, pool.poolId, store.slotIndex(slot), store.objectOid, object * 6, 1)
    if (core.loadInto(slot, data, at + PAGE_RECORD_HEADER_BYTES)) return true
    core.counters.corruptPages++
    return false
  }

  /**
   * Drains change-log entries (the list, then the dirty set), each with the handle's current
   * page or "absent". -ENOSPC once the log passed its ceiling.
   */
  #getChanges(client: Client, data: Uint8Array, dataOffset: number, room: number): number {
    const recordBytes = PAGE_RECORD_HEADER_BYTES + PAGE_SIZE
    if (room < recordBytes) return -ENOMEM
    const ceiling = this.#ceilings.get(client)
    if (ceiling?.overflowed === true) return -ENOSPC
    let count = 0
    let at = dataOffset
    const end = dataOffset + room
    while (at + recordBytes <= end) {
      const entry = client.invalidated[client.invalidatedCursor]
      if (entry === undefined) break
      client.invalidatedCursor++
      const written = this.#writeChange(client, entry, data, at)
      if (written < 0) return -EINVAL
      at += written
      count++
    }
    if (client.invalidatedCursor >= client.invalidated.length) {
      client.invalidated.length = 0
      client.invalidatedCursor = 0
    }
    const dirty = ceiling?.dirty ?? null
    if (dirty === null || ceiling === undefined) return count
    for (const key of dirty) {
      if (at + recordBytes > end) break
      dirty.delete(key)
      const written = this.#writeChange(client, fromDirtyKey(key), data, at)
      if (written < 0) return -EINVAL
      at += written
      count++
    }
    if (dirty.size === 0) ceiling.dirty = null
    return count
  }

  /** One change's record: the page as it is now, or "absent". Returns its bytes, -1 if corrupt. */
  #writeChange(client: Client, entry: Invalidation, data: Uint8Array, at: number): number {
    const store = this.#core.store
    const oid = this.#oid
    const pool = client.pools[entry.poolId]
    let slot = NONE
    if (pool !== null && pool !== undefined) {
      oid.set(entry.oid)
      const object = store.objectLookup(pool.gid, oid)
      if (object !== NONE) slot = store.pageLookup(object, entry.index)
    }
    if (slot !== NONE && pool !== null && pool !== undefined) {
      return this.#writeRecord(pool, slot, data, at) ? PAGE_RECORD_HEADER_BYTES + PAGE_SIZE : -1
    }
    writeHeader(data, at, entry.poolId, entry.index, entry.oid, 0, 0)
    return PAGE_RECORD_HEADER_BYTES
  }

  /** Applies a batch: puts as RESTORE_PUT_PAGE, flushes as RESTORE_FLUSH_PAGE. */
  #restorePages(client: Client, data: Uint8Array, dataOffset: number, room: number): number {
    const core = this.#core
    const oid = this.#oid
    const end = dataOffset + room
    let count = 0
    let at = dataOffset
    while (at + PAGE_RECORD_HEADER_BYTES <= end) {
      const poolId = readU32LE(data, at)
      const kind = readU32LE(data, at + 32)
      if (kind > 1 || readU32LE(data, at + 36) !== 0) return -EINVAL
      if (kind === 1 && at + PAGE_RECORD_HEADER_BYTES + PAGE_SIZE > end) return -EINVAL
      const pool = poolId < MAX_POOLS_PER_DOMAIN ? client.pools[poolId] : null
      if (pool === null || pool === undefined) return FAIL
      const index = readU32LE(data, at + 4)
      for (let i = 0; i < 6; i++) oid[i] = readU32LE(data, at + 8 + 4 * i)
      const rc =
        kind === 1
          ? core.put(
              client,
              pool,
              oid,
              index,
              data,
              at + PAGE_RECORD_HEADER_BYTES,
              FILL_COPY,
              NO_WINDOW,
            )
          : core.flushPage(pool, oid, index)
      if (rc < 0) return rc
      at += PAGE_RECORD_HEADER_BYTES + (kind === 1 ? PAGE_SIZE : 0)
      count++
    }
    return at === end ? count : -EINVAL
  }
}

/** A page record's head: the v1 handle, then `kind` (1 page follows, 0 flush) and a zero word. */
function writeHeader(
  data: Uint8Array,
  at: number,
  poolId: number,
  index: number,
  oid: Uint32Array,
  base: number,
  kind: number,
): void {
  writeHandle(1, data, at, poolId, index, oid, base)
  writeU32LE(data, at + 32, kind)
  writeU32LE(data, at + 36, 0)
}

/** A page's key in the dirty set: pool id, the six oid words, index. */
function dirtyKey(poolId: number, oid: Uint32Array, base: number, index: number): string {
  return (
    `${poolId},${oid[base]},${oid[base + 1]},${oid[base + 2]},` +
    `${oid[base + 3]},${oid[base + 4]},${oid[base + 5]},${index}`
  )
}

function fromDirtyKey(key: string): Invalidation {
  const words = key.split(',').map(Number)
  return { poolId: words[0]!, oid: Uint32Array.from(words.slice(1, 7)), index: words[7]! }
}
