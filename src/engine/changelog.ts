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
 * Control plane: may allocate.
 */
import {
  EINVAL,
  ENOMEM,
  MAX_POOLS_PER_DOMAIN,
  PAGE_RECORD_HEADER_BYTES,
  PAGE_SIZE,
  TMEMC_RESTORE_PAGES,
  TMEMC_SAVE_GET_CHANGES,
  TMEMC_SAVE_GET_PAGES,
} from '../abi/constants.js'
import type { ChangeHook, Core } from './core.js'
import type { Client, Pool } from './model.js'
import type { OpScratch } from './op-scratch.js'
import { FILL_COPY } from './placement.js'
import { readU32LE, writeU32LE } from '../util/le.js'
import { NONE } from './store.js'
import { writeHandle } from './handle.js'

const FAIL = -1

/** Restore puts copy whole pages from the batch: no window, no guest frame. */
const NO_WINDOW = { cmfn: 0n, tmemOffset: 0, pfnOffset: 0, len: 0 } as const

export class ChangeLog implements ChangeHook {
  readonly #core: Core
  /** Oid words of the record being read; reused. */
  readonly #oid = new Uint32Array(6)

  constructor(core: Core) {
    this.#core = core
  }

  /** Logs a persistent page of a migrating client as changed (docs/semantics.md "Save subops"; puts for pre-copy). */
  pageChanged(pool: Pool, oid: Uint32Array, base: number, index: number): void {
    pool.owner.invalidated.push({ poolId: pool.poolId, oid: oid.slice(base, base + 6), index })
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
    const object = store.slotObject[slot]!
    writeHeader(data, at, pool.poolId, store.slotIndex[slot]!, store.objectOid, object * 6, 1)
    if (core.loadInto(slot, data, at + PAGE_RECORD_HEADER_BYTES)) return true
    core.counters.corruptPages++
    return false
  }

  /** Drains change-log entries, each with the handle's current page or "absent". */
  #getChanges(client: Client, data: Uint8Array, dataOffset: number, room: number): number {
    const store = this.#core.store
    const recordBytes = PAGE_RECORD_HEADER_BYTES + PAGE_SIZE
    if (room < recordBytes) return -ENOMEM
    const oid = this.#oid
    let count = 0
    let at = dataOffset
    while (at + recordBytes <= dataOffset + room) {
      const entry = client.invalidated[client.invalidatedCursor]
      if (entry === undefined) break
      client.invalidatedCursor++
      const pool = client.pools[entry.poolId]
      let slot = NONE
      if (pool !== null && pool !== undefined) {
        oid.set(entry.oid)
        const object = store.objectLookup(pool.gid, oid)
        if (object !== NONE) slot = store.pageLookup(object, entry.index)
      }
      if (slot !== NONE && pool !== null && pool !== undefined) {
        if (!this.#writeRecord(pool, slot, data, at)) return -EINVAL
        at += recordBytes
      } else {
        writeHeader(data, at, entry.poolId, entry.index, entry.oid, 0, 0)
        at += PAGE_RECORD_HEADER_BYTES
      }
      count++
    }
    if (client.invalidatedCursor >= client.invalidated.length) {
      client.invalidated.length = 0
      client.invalidatedCursor = 0
    }
    return count
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
