/**
 * Control-plane records of the engine: clients (Xen's `struct client`), pools
 * (`struct tmem_pool`) and the cycle statistics of the LIST `T=` line. These are ordinary
 * objects, created when a client or pool is created, never per page. Per-page state lives in
 * the typed columns of `store.ts`.
 */
import { MAX_GLOBAL_SHARED_POOLS, MAX_POOLS_PER_DOMAIN } from '../abi/constants.js'
import { assert } from '../util/assert.js'
import { type ListHead, newListHead, NONE } from './store.js'

/** One record of the invalidated list kept while a client is live-migrating (docs/semantics.md "Save subops"). */
export interface Invalidation {
  poolId: number
  oid: Uint32Array
  index: number
}

export class Client {
  readonly id: number
  /** ABI version of the client's calls: 1, or 0 when the host accepts v0 clients. */
  readonly abi: 0 | 1
  readonly pools: (Pool | null)[] = new Array<Pool | null>(MAX_POOLS_PER_DOMAIN).fill(null)
  weight = 0
  cap = 0
  compress: boolean
  frozen = false
  wasFrozen = false
  liveMigrating = false
  /** Pre-copy save (tmem extension): not frozen; puts and removals go to the change log. */
  precopy = false
  /** This client's ephemeral LRU (pages of the pools it owns), oldest at the head. */
  readonly lru: ListHead = newListHead()
  ephemeralCount = 0
  ephemeralMax = 0
  // LIST `C=` counters.
  succEphemeralGets = 0
  succPersistentPuts = 0
  succPersistentGets = 0
  compressedPages = 0
  compressedBytes = 0
  compressPoor = 0
  compressNoMemory = 0
  cycles = 0
  /** Timed ops so far, for sampling (see OpTimer). */
  timedOps = 0
  /** Shared-pool authorisation table: (uuid_lo, uuid_hi) pairs, all-ones = empty. */
  readonly auth = new BigUint64Array(MAX_GLOBAL_SHARED_POOLS * 2).fill(0xffffffffffffffffn)
  readonly invalidated: Invalidation[] = []
  invalidatedCursor = 0

  constructor(id: number, abi: 0 | 1, compress: boolean) {
    this.id = id
    this.abi = abi
    this.compress = compress
  }

  hasPools(): boolean {
    return this.pools.some((pool) => pool !== null)
  }
}

export class Pool {
  /** Index in the host's pool table; what the object columns store. */
  readonly gid: number
  owner: Client
  /** The `pool_id` field: the slot this pool occupies in its owner's table. */
  poolId: number
  readonly persistent: boolean
  readonly shared: boolean
  readonly uuidLo: bigint
  readonly uuidHi: bigint
  /** Slot in the host's shared-pool table, or -1 for a private pool. */
  sharedSlot = -1
  /** Clients sharing the pool in join order (a client that joined twice appears twice). */
  readonly sharers: Client[] = []
  /** Set while the pool is being destroyed: its pages are not eviction candidates (docs/semantics.md "Decision: dying pools and ownership"). */
  destroying = false
  readonly objects: ListHead = newListHead()
  /** Persistent pages in put order (used by save). */
  readonly persistentList: ListHead = newListHead()
  /** Save cursor: the page last returned by SAVE_GET_NEXT_PAGE, NONE before the first. */
  saveCursor = NONE
  // LIST pool-group counters.
  pageCount = 0
  pageMax = 0
  objectCount = 0
  objectMax = 0
  puts = 0
  goodPuts = 0
  dupPutsFlushed = 0
  dupPutsReplaced = 0
  noMemoryPuts = 0
  gets = 0
  foundGets = 0
  flushes = 0
  flushesFound = 0
  flushObjects = 0
  flushObjectsFound = 0

  constructor(
    gid: number,
    owner: Client,
    poolId: number,
    persistent: boolean,
    shared: boolean,
    uuidLo: bigint,
    uuidHi: bigint,
  ) {
    this.gid = gid
    this.owner = owner
    this.poolId = poolId
    this.persistent = persistent
    this.shared = shared
    this.uuidLo = uuidLo
    this.uuidHi = uuidHi
  }
}

/**
 * The host's pool table: every live pool by `gid` (what the object columns store), the free
 * gids, and the host-wide shared-pool table (docs/semantics.md "Data model"). Owned by the core; `pools.ts`
 * creates and destroys the pools in it.
 */
export class PoolTable {
  readonly #byGid: (Pool | null)[] = []
  readonly #freeGids: number[] = []
  /** The host-wide shared pool table (docs/semantics.md "Data model"). */
  readonly shared: (Pool | null)[] = new Array<Pool | null>(MAX_GLOBAL_SHARED_POOLS).fill(null)

  byGid(gid: number): Pool {
    const pool = this.#byGid[gid]
    assert(pool !== undefined && pool !== null, 'PoolTable unknown gid')
    return pool
  }

  /** Every live pool, for the invariant checker and stats. */
  all(): Pool[] {
    return this.#byGid.filter((pool): pool is Pool => pool !== null)
  }

  /** A new pool record under the lowest free gid. */
  add(
    client: Client,
    slot: number,
    persistent: boolean,
    shared: boolean,
    lo: bigint,
    hi: bigint,
  ): Pool {
    const gid = this.#freeGids.pop() ?? this.#byGid.length
    const pool = new Pool(gid, client, slot, persistent, shared, lo, hi)
    this.#byGid[gid] = pool
    return pool
  }

  /** Forgets a destroyed pool; its gid is reused. */
  remove(pool: Pool): void {
    assert(this.#byGid[pool.gid] === pool, 'PoolTable removes a pool it does not hold')
    this.#byGid[pool.gid] = null
    this.#freeGids.push(pool.gid)
  }
}

/** The categories of the LIST `T=` line, in output order. */
export const TIME_TAGS = ['G', 'P', 'g', 'p', 'F', 'O', 'C', 'c', 'd'] as const
export const TIME_GET = 0
export const TIME_PUT = 1
export const TIME_GET_FAILED = 2
export const TIME_PUT_FAILED = 3
export const TIME_FLUSH = 4
export const TIME_FLUSH_OBJECT = 5
export const TIME_COPY = 6
export const TIME_COMPRESS = 7
export const TIME_DECOMPRESS = 8

const MIN_UNUSED = 2147483647

/**
 * Count, total, max and min of elapsed time per category (docs/semantics.md "LIST" `T=`).
 * Only timed samples count, and only those with 0 < elapsed < 10^9 (as in Xen), so `n`, the
 * sum, the max and the min always describe the same samples.
 */
export class TimeStats {
  readonly count = new Float64Array(TIME_TAGS.length)
  readonly total = new Float64Array(TIME_TAGS.length)
  readonly max = new Float64Array(TIME_TAGS.length)
  readonly min = new Float64Array(TIME_TAGS.length).fill(MIN_UNUSED)

  /** Records one sample; false when it is out of range and was not recorded. */
  record(tag: number, elapsed: number): boolean {
    if (!(elapsed > 0 && elapsed < 1e9)) return false
    this.count[tag]!++
    this.total[tag]! += elapsed
    if (elapsed > this.max[tag]!) this.max[tag] = elapsed
    if (elapsed < this.min[tag]!) this.min[tag] = elapsed
    return true
  }
}

/**
 * The cycle statistics' clock and sampling (docs/semantics.md "LIST" `T=`). A timed op (put,
 * get, flush, flush object, destroy pool) is sampled when its client's count of timed ops is a
 * multiple of `sample`, so every client's first timed op is sampled. A sampled op is timed
 * whole (its tag and its client's `Tc`), and the page copies, compressions and decompressions
 * it makes are timed on their own (`C`, `c`, `d`). Untimed page ops (NEW_PAGE, READ, WRITE)
 * sample their copies one in `sample`. Ops that are not sampled read no clock: on Node 20
 * every clock call allocates a little.
 */
export class OpTimer {
  readonly times = new TimeStats()
  /** True while a sampled op runs: its copies and codec calls read the clock. */
  sampled = false
  readonly #clock: () => number
  readonly #mask: number
  #untimed = 0

  constructor(clock: () => number, sample: number) {
    this.#clock = clock
    this.#mask = sample - 1
  }

  /** Starts a timed op of `client`: the clock reading, or -1 when the op is not sampled. */
  startOp(client: Client): number {
    if ((client.timedOps++ & this.#mask) !== 0) return -1
    this.sampled = true
    return this.#clock()
  }

  /** Ends a timed op started with `startOp`, recording it under `tag` and in `client`'s `Tc`. */
  endOp(client: Client, tag: number, start: number): void {
    if (start < 0) return
    this.sampled = false
    const elapsed = this.#clock() - start
    if (this.times.record(tag, elapsed)) client.cycles += elapsed
  }

  /** Starts an untimed page op: decides whether its copies are sampled. */
  startUntimed(): void {
    this.sampled = (this.#untimed++ & this.#mask) === 0
  }

  endUntimed(): void {
    this.sampled = false
  }

  /** Starts a copy or codec call inside the op: the clock, or -1 when the op is not sampled. */
  start(): number {
    return this.sampled ? this.#clock() : -1
  }

  /** Ends a copy or codec call started with `start`. */
  end(tag: number, start: number): void {
    if (start >= 0) this.times.record(tag, this.#clock() - start)
  }
}
