/**
 * TMEM_CONTROL sub-operations (docs/semantics.md "Control subops", "Save subops"): freeze/thaw/destroy, flush, list,
 * weight/cap/compress, freeable memory, and the save/restore subops with the docs/semantics.md "Decision: save stream fixes" fixes (every
 * persistent page exactly once, oldest first; saved pool flags carry the version; unknown
 * clients and pools give -1). Control plane: may allocate.
 */
import {
  CLI_ID_NULL,
  EFAULT,
  EINVAL,
  ENOMEM,
  MAX_POOLS_PER_DOMAIN,
  PAGE_SIZE,
  TMEM_CLIENT_COMPRESS,
  TMEM_CLIENT_FROZEN,
  TMEM_POOL_PERSIST,
  TMEM_POOL_SHARED,
  TMEM_POOL_VERSION_SHIFT,
  TMEM_SAVE_PRECOPY,
  TMEM_SPEC_VERSION,
  TMEMC_DESTROY,
  TMEMC_FLUSH,
  TMEMC_FREEZE,
  TMEMC_LIST,
  TMEMC_LIST_PAGE,
  TMEM_LIST_PAGE_HEAD,
  TMEM_LIST_PAGE_LONG,
  TMEMC_QUERY_FREEABLE_MB,
  TMEMC_RESTORE_BEGIN,
  TMEMC_RESTORE_FLUSH_PAGE,
  TMEMC_RESTORE_PUT_PAGE,
  TMEMC_SAVE_BEGIN,
  TMEMC_SAVE_END,
  TMEMC_SAVE_GET_CLIENT_CAP,
  TMEMC_SAVE_GET_CLIENT_FLAGS,
  TMEMC_SAVE_GET_CLIENT_WEIGHT,
  TMEMC_SAVE_GET_MAXPOOLS,
  TMEMC_SAVE_GET_NEXT_INV,
  TMEMC_SAVE_GET_NEXT_PAGE,
  TMEMC_SAVE_GET_POOL_FLAGS,
  TMEMC_SAVE_GET_POOL_NPAGES,
  TMEMC_SAVE_GET_POOL_UUID,
  TMEMC_SAVE_GET_VERSION,
  TMEMC_SET_CAP,
  TMEMC_SET_COMPRESS,
  TMEMC_SET_WEIGHT,
  TMEMC_THAW,
} from '../abi/constants.js'
import { handleBytes } from '../abi/layout.js'
import { ChangeLog } from './changelog.js'
import { type Core, FILL_COPY } from './core.js'
import { writeHandle } from './handle.js'
import { renderList, renderListPage } from './list.js'
import type { Client, Pool } from './model.js'
import type { OpScratch } from './op-scratch.js'
import { NONE } from './store.js'
import { writeU32LE } from '../util/le.js'

const FAIL = -1

export class Control {
  readonly #core: Core
  readonly #changeLog: ChangeLog

  constructor(core: Core) {
    this.#core = core
    this.#changeLog = new ChangeLog(core)
  }

  /** Runs the TMEM_CONTROL op `s`. `data` is the tool buffer. */
  run(
    s: OpScratch,
    version: 0 | 1,
    data: Uint8Array | null,
    dataOffset: number,
    dataLength: number,
  ): number {
    const core = this.#core
    const cliId = s.cliId & 0xffff
    switch (s.subop) {
      case TMEMC_THAW:
      case TMEMC_DESTROY:
        return this.#forClients(cliId, (client) => this.#setFrozen(client, false))
      case TMEMC_FREEZE:
        return this.#forClients(cliId, (client) => this.#setFrozen(client, true))
      case TMEMC_FLUSH:
        return cliId === CLI_ID_NULL ? this.flush(s.arg1) : FAIL
      case TMEMC_LIST:
        return this.#list(cliId, s.arg1, s.arg2 !== 0, data, dataOffset, dataLength)
      case TMEMC_LIST_PAGE:
        return this.#listPage(cliId, s.arg1, s.arg2, data, dataOffset, dataLength)
      case TMEMC_SET_WEIGHT:
        return this.#forClients(cliId, (client) => (core.setWeight(client, s.arg1), 0))
      case TMEMC_SET_CAP:
        if (s.arg1 > 100) return -EINVAL
        return this.#forClients(cliId, (client) => ((client.cap = s.arg1), 0))
      case TMEMC_SET_COMPRESS:
        return this.#forClients(cliId, (client) => this.#setCompress(client, s.arg1 !== 0))
      case TMEMC_QUERY_FREEABLE_MB:
        return (core.frames.freeList + core.counters.ephemeralCount) >>> 8
      default:
        return this.#save(s, version, cliId, data, dataOffset, dataLength)
    }
  }

  #save(
    s: OpScratch,
    version: 0 | 1,
    cliId: number,
    data: Uint8Array | null,
    dataOffset: number,
    dataLength: number,
  ): number {
    const core = this.#core
    const client = core.clientsById[cliId]
    switch (s.subop) {
      case TMEMC_SAVE_BEGIN:
        return client === undefined ? 0 : this.#saveBegin(client, s.arg1, s.arg2)
      case TMEMC_SAVE_GET_VERSION:
        return TMEM_SPEC_VERSION
      case TMEMC_SAVE_GET_MAXPOOLS:
        return MAX_POOLS_PER_DOMAIN
      case TMEMC_SAVE_GET_CLIENT_WEIGHT:
        return client === undefined ? FAIL : clampSaved(client.weight)
      case TMEMC_SAVE_GET_CLIENT_CAP:
        return client === undefined ? FAIL : clampSaved(client.cap)
      case TMEMC_SAVE_GET_CLIENT_FLAGS:
        if (client === undefined) return FAIL
        return (
          (client.compress ? TMEM_CLIENT_COMPRESS : 0) | (client.wasFrozen ? TMEM_CLIENT_FROZEN : 0)
        )
      case TMEMC_SAVE_END:
        if (client === undefined) return FAIL
        client.liveMigrating = false
        client.precopy = false
        this.#changeLog.end(client)
        client.invalidated.length = 0
        client.invalidatedCursor = 0
        client.frozen = client.wasFrozen
        return 0
      case TMEMC_SAVE_GET_NEXT_INV:
        if (client === undefined) return 0
        return this.#nextInvalidation(
          version,
          client,
          data,
          dataOffset,
          Math.min(s.arg1, dataLength),
        )
      case TMEMC_RESTORE_BEGIN:
        // 0xFFFF means "all clients" to every control subop: a client with that id could
        // never be named again, so it is not created.
        if (client !== undefined || cliId === CLI_ID_NULL) return FAIL
        core.clientFor(cliId, 1)
        return 1
      default:
        if (ChangeLog.handles(s.subop))
          return this.#changeLog.run(s, client, data, dataOffset, dataLength)
        return this.#poolSubop(s, version, client, data, dataOffset, dataLength)
    }
  }

  #poolSubop(
    s: OpScratch,
    version: 0 | 1,
    client: Client | undefined,
    data: Uint8Array | null,
    dataOffset: number,
    dataLength: number,
  ): number {
    const core = this.#core
    const slot = s.poolId >>> 0
    const pool = client === undefined || slot >= MAX_POOLS_PER_DOMAIN ? null : client.pools[slot]
    if (pool === null || pool === undefined || client === undefined) {
      return FAIL
    }
    switch (s.subop) {
      case TMEMC_SAVE_GET_POOL_FLAGS:
        return (
          (pool.persistent ? TMEM_POOL_PERSIST : 0) |
          (pool.shared ? TMEM_POOL_SHARED : 0) |
          ((pool.owner.abi === 0 ? 0 : TMEM_SPEC_VERSION) << TMEM_POOL_VERSION_SHIFT)
        )
      case TMEMC_SAVE_GET_POOL_NPAGES:
        return pool.pageCount
      case TMEMC_SAVE_GET_POOL_UUID:
        if (data === null || dataLength < 16) return -EFAULT
        writeU64(data, dataOffset, pool.uuidLo)
        writeU64(data, dataOffset + 8, pool.uuidHi)
        return 0
      case TMEMC_SAVE_GET_NEXT_PAGE:
        return this.#nextPage(version, client, pool, data, dataOffset, Math.min(s.arg1, dataLength))
      case TMEMC_RESTORE_PUT_PAGE:
        if (s.arg1 !== PAGE_SIZE || data === null || dataLength < PAGE_SIZE) return -EINVAL
        return core.put(client, pool, s.oid, s.arg2, data, dataOffset, FILL_COPY, s)
      case TMEMC_RESTORE_FLUSH_PAGE:
        return core.flushPage(pool, s.oid, s.arg2)
      default:
        return FAIL
    }
  }

  #forClients(cliId: number, action: (client: Client) => number): number {
    const core = this.#core
    if (cliId === CLI_ID_NULL) {
      let rc = 0
      for (const client of core.clientOrder) {
        const result = action(client)
        if (result < 0) rc = result
      }
      return rc
    }
    const client = core.clientsById[cliId]
    return client === undefined ? FAIL : action(client)
  }

  #setFrozen(client: Client, frozen: boolean): number {
    client.frozen = frozen
    return 0
  }

  #setCompress(client: Client, compress: boolean): number {
    if (compress && this.#core.options.dedup) return FAIL
    client.compress = compress
    return 0
  }

  /**
   * TMEMC_FLUSH (docs/semantics.md "Flush and freeable memory"): evicts until the free list holds `kb` (rounded up to
   * pages), then hands the whole free list back to the host and releases empty arenas.
   * Returns the free list's size before the hand-back, in KiB.
   */
  flush(kb: number): number {
    const core = this.#core
    const frames = core.frames
    const counters = core.counters
    const wanted = Math.ceil(kb / 4)
    counters.relinquishAttempts++
    let evictions = 0
    while (frames.freeList < wanted && core.eviction.evict(null, false, NONE)) evictions++
    if (evictions > counters.relinquishEvictsMax) counters.relinquishEvictsMax = evictions
    const freeBefore = frames.handBackFreeList()
    counters.relinquished += frames.releaseEmptyArenas()
    return freeBefore * 4
  }

  #list(
    cliId: number,
    capacity: number,
    long: boolean,
    data: Uint8Array | null,
    dataOffset: number,
    dataLength: number,
  ): number {
    const core = this.#core
    if (cliId !== CLI_ID_NULL && core.clientsById[cliId] === undefined) return FAIL
    const room = Math.min(capacity, dataLength)
    const text = renderList(core, cliId, long, room)
    if (text.length === 0 || data === null) return 0
    writeText(text, data, dataOffset)
    return 0
  }

  /** TMEMC_LIST_PAGE: the next clients' LIST lines; returns the id to ask for next. */
  #listPage(
    first: number,
    capacity: number,
    flags: number,
    data: Uint8Array | null,
    dataOffset: number,
    dataLength: number,
  ): number {
    if (first === CLI_ID_NULL || (flags & ~(TMEM_LIST_PAGE_LONG | TMEM_LIST_PAGE_HEAD)) !== 0)
      return -EINVAL
    if (data === null) return -ENOMEM
    const long = (flags & TMEM_LIST_PAGE_LONG) !== 0
    const head = (flags & TMEM_LIST_PAGE_HEAD) !== 0
    const room = Math.min(capacity, dataLength)
    const page = renderListPage(this.#core, first, long, head, room)
    if (page.text.length >= room || (page.text.length === 0 && page.next !== CLI_ID_NULL))
      return -ENOMEM
    writeText(page.text, data, dataOffset)
    return page.next
  }

  /**
   * SAVE_BEGIN: arg1 0 = plain save, other = live; TMEM_SAVE_PRECOPY = live without freezing,
   * its change log at most arg2 KiB (0: the default; changelog.ts).
   */
  #saveBegin(client: Client, mode: number, logKiB: number): number {
    if (!client.hasPools()) return 0
    client.wasFrozen = client.frozen
    client.precopy = mode === TMEM_SAVE_PRECOPY
    client.frozen = client.precopy ? client.frozen : true
    client.liveMigrating = mode !== 0
    // A live save logs the client's persistent page changes from here on (docs/semantics.md "Save subops").
    if (client.liveMigrating) this.#core.changeLog = this.#changeLog
    client.invalidated.length = 0
    client.invalidatedCursor = 0
    if (client.precopy) this.#changeLog.begin(client, logKiB * 1024)
    else this.#changeLog.end(client)
    for (const pool of client.pools) if (pool !== null) pool.saveCursor = NONE
    return 1
  }

  /** SAVE_GET_NEXT_PAGE: the next persistent page after the cursor, oldest first (docs/semantics.md "Decision: save stream fixes"). */
  #nextPage(
    version: 0 | 1,
    client: Client,
    pool: Pool,
    data: Uint8Array | null,
    dataOffset: number,
    room: number,
  ): number {
    const core = this.#core
    const store = core.store
    const handleSize = handleBytes(version)
    if (!pool.persistent) return FAIL
    if (data === null || room < PAGE_SIZE + handleSize) return -ENOMEM
    const slot =
      pool.saveCursor === NONE ? pool.persistentList[0]! : store.listNext[pool.saveCursor]!
    if (slot === NONE) return FAIL
    pool.saveCursor = slot
    pool.gets++
    pool.foundGets++
    client.succPersistentGets++
    const object = store.slotObject(slot)
    writeHandle(
      version,
      data,
      dataOffset,
      pool.poolId,
      store.slotIndex(slot),
      store.objectOid,
      object * 6,
    )
    if (!core.loadInto(slot, data, dataOffset + handleSize)) {
      core.counters.corruptPages++
      return -EFAULT
    }
    return 1
  }

  #nextInvalidation(
    version: 0 | 1,
    client: Client,
    data: Uint8Array | null,
    dataOffset: number,
    room: number,
  ): number {
    const handleSize = handleBytes(version)
    if (data === null || room < handleSize) return 0
    const entry = client.invalidated[client.invalidatedCursor]
    if (entry === undefined) {
      client.invalidatedCursor = 0
      return 0
    }
    client.invalidatedCursor++
    writeHandle(version, data, dataOffset, entry.poolId, entry.index, entry.oid, 0)
    return 1
  }
}

/** Weight and cap as the save subops return them: -2 stands for 0xFFFFFFFF. */
function clampSaved(value: number): number {
  return value === 0xffffffff ? -2 : value
}

function writeU64(data: Uint8Array, at: number, value: bigint): void {
  writeU32LE(data, at, Number(value & 0xffffffffn))
  writeU32LE(data, at + 4, Number((value >> 32n) & 0xffffffffn))
}

/** Latin-1 text and its NUL into the tool buffer (the caller checked the room). */
function writeText(text: string, data: Uint8Array, dataOffset: number): void {
  for (let i = 0; i < text.length; i++) data[dataOffset + i] = text.charCodeAt(i)
  data[dataOffset + text.length] = 0
}
