/**
 * A JSON-able snapshot of every counter the LIST text shows, for metrics exporters, readable
 * listings and tests. Control plane: builds fresh objects on every call.
 */
import type { Core } from './core.js'
import { type Client, type Pool, TIME_TAGS } from './model.js'

export interface PoolStats {
  /** Slot in the listed client's table. */
  slot: number
  /** The pool's `pool_id` (the owner's slot; differs for a shared pool joined by another). */
  poolId: number
  ownerId: number
  persistent: boolean
  shared: boolean
  /** `[uuid_lo, uuid_hi]` as lower-case hex. */
  uuid: [string, string]
  pages: number
  pagesMax: number
  objects: number
  objectsMax: number
  puts: number
  goodPuts: number
  dupPutsFlushed: number
  dupPutsReplaced: number
  noMemoryPuts: number
  gets: number
  foundGets: number
  flushes: number
  flushesFound: number
  flushObjects: number
  flushObjectsFound: number
}

export interface ClientStats {
  id: number
  abi: 0 | 1
  weight: number
  cap: number
  compress: boolean
  frozen: boolean
  liveMigrating: boolean
  ephemeralPages: number
  ephemeralPagesMax: number
  succEphemeralGets: number
  succPersistentPuts: number
  succPersistentGets: number
  compressedPages: number
  compressedBytes: number
  compressPoor: number
  compressNoMemory: number
  cyclesNs: number
  pools: PoolStats[]
}

export interface HostStats {
  budgetPages: number
  framesUsed: number
  framesUsedMax: number
  framesFree: number
  ephemeralPages: number
  ephemeralPagesMax: number
  persistentPages: number
  objects: number
  objectsMax: number
  pages: number
  pagesMax: number
  totalOps: number
  erroredOps: number
  failedCopies: number
  failedSubpageAllocs: number
  failedPageAllocs: number
  evicted: number
  evictAttempts: number
  relinquished: number
  goodEphemeralPuts: number
  dedupPuts: number
  contentDescriptors: number
  tzeBytes: number
  compressedBytes: number
  /** Stored pages that failed their check when read (never served; not a LIST key). */
  corruptPages: number
  freeableMb: number
  times: Record<string, { count: number; totalNs: number; maxNs: number; minNs: number }>
  clients: ClientStats[]
}

function poolStats(pool: Pool, slot: number): PoolStats {
  return {
    slot,
    poolId: pool.poolId,
    ownerId: pool.owner.id,
    persistent: pool.persistent,
    shared: pool.shared,
    uuid: [pool.uuidLo.toString(16), pool.uuidHi.toString(16)],
    pages: pool.pageCount,
    pagesMax: pool.pageMax,
    objects: pool.objectCount,
    objectsMax: pool.objectMax,
    puts: pool.puts,
    goodPuts: pool.goodPuts,
    dupPutsFlushed: pool.dupPutsFlushed,
    dupPutsReplaced: pool.dupPutsReplaced,
    noMemoryPuts: pool.noMemoryPuts,
    gets: pool.gets,
    foundGets: pool.foundGets,
    flushes: pool.flushes,
    flushesFound: pool.flushesFound,
    flushObjects: pool.flushObjects,
    flushObjectsFound: pool.flushObjectsFound,
  }
}

/**
 * The snapshot with `clients` (default every client, in creation order; a page of the listing
 * passes only its own, so its cost does not grow with the host).
 */
export function snapshotStats(
  core: Core,
  clients: readonly Client[] = core.clientOrder,
): HostStats {
  const c = core.counters
  const times: HostStats['times'] = {}
  TIME_TAGS.forEach((tag, i) => {
    times[tag] = {
      count: core.times.count[i]!,
      totalNs: core.times.total[i]!,
      maxNs: core.times.max[i]!,
      minNs: core.times.count[i] === 0 ? 0 : core.times.min[i]!,
    }
  })
  return {
    budgetPages: core.options.pages,
    framesUsed: core.frames.used,
    framesUsedMax: core.frames.usedMax,
    framesFree: core.frames.freeCount,
    ephemeralPages: c.ephemeralCount,
    ephemeralPagesMax: c.ephemeralMax,
    persistentPages: c.pageCount - c.ephemeralCount,
    objects: c.objectCount,
    objectsMax: c.objectMax,
    pages: c.pageCount,
    pagesMax: c.pageMax,
    totalOps: c.totalOps,
    erroredOps: c.erroredOps,
    failedCopies: c.failedCopies,
    failedSubpageAllocs: c.failedSubpageAllocs,
    failedPageAllocs: c.failedPageAllocs,
    evicted: c.evicted,
    evictAttempts: c.evictAttempts,
    relinquished: c.relinquished,
    goodEphemeralPuts: c.goodEphemeralPuts,
    dedupPuts: c.dedupPuts,
    contentDescriptors: c.contentCount,
    tzeBytes: c.tzeBytes,
    compressedBytes: c.compressedBytes,
    corruptPages: c.corruptPages,
    freeableMb: (core.frames.freeList + c.ephemeralCount) >>> 8,
    times,
    clients: clients.map((client) => ({
      id: client.id,
      abi: client.abi,
      weight: client.weight,
      cap: client.cap,
      compress: client.compress,
      frozen: client.frozen,
      liveMigrating: client.liveMigrating,
      ephemeralPages: client.ephemeralCount,
      ephemeralPagesMax: client.ephemeralMax,
      succEphemeralGets: client.succEphemeralGets,
      succPersistentPuts: client.succPersistentPuts,
      succPersistentGets: client.succPersistentGets,
      compressedPages: client.compressedPages,
      compressedBytes: client.compressedBytes,
      compressPoor: client.compressPoor,
      compressNoMemory: client.compressNoMemory,
      cyclesNs: client.cycles,
      pools: client.pools.flatMap((pool, slot) => (pool === null ? [] : [poolStats(pool, slot)])),
    })),
  }
}

/** Host-wide sums over every client, for the summary at the head of a paged listing. */
export interface StatsTotals {
  clients: number
  /** Pools owned (a shared pool counts once, for its owner). */
  pools: number
  compressedPages: number
  compressedBytes: number
  compressPoor: number
}

/**
 * One walk over the clients reading numbers only (no object per client or pool), in steps:
 * `step(ids)` looks at the next `ids` client ids and says whether it has seen them all, so a
 * caller can spread the walk over turns of the event loop (a host of 65,535 clients x 16
 * pools is a million pool objects, about 0.1 s of cache misses in one go). What it gathers:
 * the host-wide sums, and the `max` clients holding the most pages (the pages of every pool in
 * their table; ties: the lower id first). Clients that come or go between steps are counted
 * or not as the walk finds them, which is all a metrics scrape needs.
 */
export class StatsPass {
  readonly totals: StatsTotals = {
    clients: 0,
    pools: 0,
    compressedPages: 0,
    compressedBytes: 0,
    compressPoor: 0,
  }
  readonly #core: Core
  readonly #max: number
  /** Best first, at most #max long. */
  readonly #top: { id: number; pages: number }[] = []
  #nextId = 0

  constructor(core: Core, max: number) {
    this.#core = core
    this.#max = max
  }

  /** Looks at the next `ids` client ids; true once every id has been looked at. */
  step(ids: number): boolean {
    const byId = this.#core.clientsById
    const end = Math.min(this.#nextId + ids, byId.length)
    for (let id = this.#nextId; id < end; id++) {
      const client = byId[id]
      if (client !== undefined) this.#visit(client)
    }
    this.#nextId = end
    return end >= byId.length
  }

  /** The ids of the clients holding the most pages, most first. */
  get topIds(): number[] {
    return this.#top.map((item) => item.id)
  }

  #visit(client: Client): void {
    const totals = this.totals
    totals.clients++
    let pages = 0
    for (const pool of client.pools) {
      if (pool === null) continue
      pages += pool.pageCount
      if (pool.owner === client) totals.pools++
    }
    totals.compressedPages += client.compressedPages
    totals.compressedBytes += client.compressedBytes
    totals.compressPoor += client.compressPoor
    const top = this.#top
    const max = this.#max
    const worst = top[top.length - 1]
    // Ids come in increasing order, so a tie with the worst kept never displaces it.
    if (max === 0 || (top.length === max && worst !== undefined && pages <= worst.pages)) return
    let at = top.length
    while (at > 0 && pages > top[at - 1]!.pages) at--
    top.splice(at, 0, { id: client.id, pages })
    if (top.length > max) top.pop()
  }
}

/** Host-wide sums over every client, in one step of a StatsPass. */
export function statsTotals(core: Core): StatsTotals {
  const pass = new StatsPass(core, 0)
  pass.step(core.clientsById.length)
  return pass.totals
}

/** The ids of the `max` clients holding the most pages (ties: lower id), most first. */
export function topClientIds(core: Core, max: number): number[] {
  const pass = new StatsPass(core, max)
  pass.step(core.clientsById.length)
  return pass.topIds
}
