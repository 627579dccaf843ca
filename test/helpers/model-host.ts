/**
 * A plain model of a tmem host for the model-based tests (test/engine/model.test.ts): a Map
 * of pool -> object -> index -> page bytes, plus the pool-slot, shared-pool, freeze and
 * return-code rules of spec §3 and §5, written again from the spec without the engine's
 * structures. It imports nothing from src/: every errno and flag below is typed from the
 * spec tables (§2.3, §2.5), so the model is an independent oracle.
 *
 * How the engine may differ from this model (the "maybe" of TigerBeetle's cache_map_fuzz):
 *  - Ephemeral pages may disappear at any time (eviction, spec §4.3-4.4, TMEMC_FLUSH). So a
 *    get on an ephemeral pool may miss (0) or find the pool empty (-EEMPTY) where the model
 *    still has the page, and a put into a frozen client may find the page gone (-EFROZEN
 *    instead of a duplicate's 1). Whatever the engine answers, the model then forgets what
 *    the engine just showed to be gone, so that later answers are held to it (get-get
 *    coherency, spec §8.2 (b)).
 *  - An ephemeral put may fail with -ENOMEM only when the pages that cannot be evicted
 *    (persistent pages and the object being written, D5) fill the budget, or the owner's cap
 *    (D6) cannot be met without evicting that object. Every stored page pins at most one
 *    frame, so this holds with compression, dedup and tze too.
 *  - Dense hosts (compression, tze, or a client that compresses, spec §4.7, D13) may keep
 *    more persistent pages than frames, so there -ENOMEM when persistent pages fill the
 *    budget is a "maybe" too, and a duplicate put (whose new payload may need new room) may
 *    fail with -ENOSPC and drop the page (§3.3.1) when memory is tight.
 * Everything else must match exactly: persistent pools (D12: never evicted, -ENOMEM exactly
 * when persistent pages fill the budget), pool slots, shared-pool membership and ownership,
 * flush and freeze return codes, and the bytes of every hit.
 *
 * Every check method takes the engine's actual return code, throws ModelMismatch (with a
 * sentence saying what the spec expected) when it is not allowed, and otherwise applies the
 * operation to the model.
 */

// Return values, spec §2.5 (negated errno).
export const RC_EPERM = -1
export const RC_ENOMEM = -12
export const RC_EFAULT = -14
export const RC_ENODEV = -19
export const RC_EINVAL = -22
export const RC_ENOSPC = -28
export const RC_EFROZEN = -1000
export const RC_EEMPTY = -1001
/** Plain -1 of control subops ("unknown client", spec §5.2). */
export const RC_FAIL = -1

const PAGE_BYTES = 4096
const POOL_SLOTS = 16
const SHARED_POOLS_MAX = 16
const AUTH_ENTRIES = 16
const ALL_CLIENTS = 0xffff
const ALL_ONES = 0xffffffffffffffffn

export class ModelMismatch extends Error {
  override readonly name = 'ModelMismatch'
}

function mismatch(what: string, rc: number, allowed: readonly number[]): never {
  throw new ModelMismatch(
    `${what}: engine returned ${rc}, the model allows ${allowed.join(' or ')}`,
  )
}

function expectRc(what: string, rc: number, allowed: readonly number[]): void {
  if (!allowed.includes(rc)) mismatch(what, rc, allowed)
}

/** An object id as the model keys it: three u64 words. */
export type ModelOid = readonly [bigint, bigint, bigint]

export function oidKey(oid: ModelOid): string {
  return `${oid[0]}:${oid[1]}:${oid[2]}`
}

export interface ModelObject {
  readonly pages: Map<number, Uint8Array>
  /** Spec §3.3 step 8 / §3.4 step 7: the owner on a put, the caller on a shared-pool hit. */
  lastClient: number
}

export class ModelPool {
  readonly serial: number
  readonly persistent: boolean
  readonly shared: boolean
  readonly uuidLo: bigint
  readonly uuidHi: bigint
  owner: number
  /** Share list in join order; a client that joined twice is listed twice (spec §3.1). */
  readonly sharers: number[] = []
  readonly objects = new Map<string, ModelObject>()
  pageCount = 0

  constructor(
    serial: number,
    owner: number,
    persistent: boolean,
    shared: boolean,
    lo: bigint,
    hi: bigint,
  ) {
    this.serial = serial
    this.owner = owner
    this.persistent = persistent
    this.shared = shared
    this.uuidLo = lo
    this.uuidHi = hi
  }

  get kind(): string {
    if (this.persistent) return 'persistent'
    return this.shared ? 'shared ephemeral' : 'private ephemeral'
  }

  page(oid: ModelOid, index: number): Uint8Array | undefined {
    return this.objects.get(oidKey(oid))?.pages.get(index)
  }

  setPage(oid: ModelOid, index: number, bytes: Uint8Array, lastClient: number | null): void {
    const key = oidKey(oid)
    let object = this.objects.get(key)
    if (object === undefined) {
      object = { pages: new Map(), lastClient: 0 }
      this.objects.set(key, object)
    }
    if (!object.pages.has(index)) this.pageCount++
    object.pages.set(index, bytes)
    if (lastClient !== null) object.lastClient = lastClient
  }

  deletePage(oid: ModelOid, index: number): void {
    const key = oidKey(oid)
    const object = this.objects.get(key)
    if (object === undefined || !object.pages.delete(index)) return
    this.pageCount--
    if (object.pages.size === 0) this.objects.delete(key)
  }

  deleteObject(key: string): void {
    const object = this.objects.get(key)
    if (object === undefined) return
    this.pageCount -= object.pages.size
    this.objects.delete(key)
  }

  clear(): void {
    this.objects.clear()
    this.pageCount = 0
  }
}

export class ModelClient {
  readonly id: number
  readonly pools: (ModelPool | null)[] = new Array<ModelPool | null>(POOL_SLOTS).fill(null)
  frozen = false
  weight = 0
  cap = 0
  compress: boolean
  /** Shared-pool auth table (spec §1.5): 16 (lo, hi) entries, all-ones = empty. */
  readonly auth: [bigint, bigint][] = Array.from({ length: AUTH_ENTRIES }, () => [
    ALL_ONES,
    ALL_ONES,
  ])

  constructor(id: number, compress: boolean) {
    this.id = id
    this.compress = compress
  }
}

export interface ModelOptions {
  pages: number
  sharedAuth: boolean
  /**
   * Host options of spec §4.7 (default off); only their effect on memory and on
   * SET_COMPRESS is modelled.
   */
  compress?: boolean
  dedup?: boolean
  tze?: boolean
}

/** A READ/WRITE range (spec §3.7, D8). */
export interface ModelRange {
  tmemOffset: number
  pfnOffset: number
  len: number
}

/** The 2012 range rule of D8. */
export function rangeValid(range: ModelRange): boolean {
  const { tmemOffset, pfnOffset, len } = range
  if (tmemOffset > PAGE_BYTES || pfnOffset > PAGE_BYTES || len > PAGE_BYTES) return false
  if (len !== 0 && (tmemOffset + len > PAGE_BYTES || pfnOffset + len > PAGE_BYTES)) return false
  return true
}

/** How a put fills the stored page: the guest frame, zeros (NEW_PAGE), or a range (WRITE). */
export type PutFill = { kind: 'copy' } | { kind: 'zero' } | { kind: 'range'; range: ModelRange }

/** What a get-like command expects to find in the caller's frame after a hit. */
export interface GetExpectation {
  /** The page the model holds, or null when the model says the handle must miss. */
  page: Uint8Array | null
}

export class ModelHost {
  readonly options: Required<ModelOptions>
  readonly clients = new Map<number, ModelClient>()
  /** The host-wide shared pool table (spec §1.5), in table-slot order. */
  readonly sharedTable: (ModelPool | null)[] = new Array<ModelPool | null>(SHARED_POOLS_MAX).fill(
    null,
  )
  globalAuth = false
  #serial = 0
  /** Whether a persistent page may be stored in less than a frame (module comment). */
  #densePersistent: boolean

  constructor(options: ModelOptions) {
    this.options = { compress: false, dedup: false, tze: false, ...options }
    // Xen switches tze off when dedup, compression and tze are all on (spec §1.6); dedup
    // alone never touches persistent pages (§4.7).
    const { compress, dedup } = this.options
    const tze = this.options.tze && !(dedup && compress)
    this.#densePersistent = tze || this.#compressDefault()
  }

  /** Whether pages of `pool` may be stored in less than a frame (dedup: ephemeral only). */
  #dense(pool: ModelPool): boolean {
    return this.#densePersistent || (this.options.dedup && !pool.persistent)
  }

  /** New clients compress when the host option says so, unless dedup is on (§4.7). */
  #compressDefault(): boolean {
    return this.options.compress && !this.options.dedup
  }

  /** A guest call other than CONTROL/AUTH/RESTORE_NEW creates the caller's client (§3.0). */
  guest(clientId: number): ModelClient {
    let client = this.clients.get(clientId)
    if (client === undefined) {
      client = new ModelClient(clientId, this.#compressDefault())
      this.clients.set(clientId, client)
    }
    return client
  }

  /** Every live pool, each once (a shared pool appears in several slots). */
  pools(): ModelPool[] {
    const seen = new Set<ModelPool>()
    for (const client of this.clients.values()) {
      for (const pool of client.pools) if (pool !== null) seen.add(pool)
    }
    return [...seen]
  }

  persistentPages(): number {
    let total = 0
    for (const pool of this.pools()) if (pool.persistent) total += pool.pageCount
    return total
  }

  #lookup(client: ModelClient, poolId: number): ModelPool | null {
    const slot = poolId >>> 0
    return slot < POOL_SLOTS ? (client.pools[slot] ?? null) : null
  }

  #owner(pool: ModelPool): ModelClient {
    const owner = this.clients.get(pool.owner)
    if (owner === undefined) throw new ModelMismatch(`model: pool ${pool.serial} has a dead owner`)
    return owner
  }

  // ---------------------------------------------------------------------------------------
  // Pools (spec §3.1, §3.2, D7).

  newPool(clientId: number, flags: number, uuidLo: bigint, uuidHi: bigint, rc: number): void {
    const client = this.guest(clientId)
    const expected = this.#newPoolSlot(client, flags, uuidLo, uuidHi)
    expectRc(`NEW_POOL flags 0x${(flags >>> 0).toString(16)}`, rc, [expected])
  }

  #newPoolSlot(client: ModelClient, flags: number, uuidLo: bigint, uuidHi: bigint): number {
    if (flags >>> 24 !== 1) return RC_EPERM
    if (((flags >>> 4) & 0xf) !== 0) return RC_EPERM
    if ((flags & 0x4) !== 0) return RC_EPERM
    if ((flags & 0x00ffff00) !== 0) return RC_EPERM
    const persistent = (flags & 0x1) !== 0
    let shared = (flags & 0x2) !== 0
    if (shared && persistent) return RC_EPERM
    const slot = client.pools.indexOf(null)
    if (slot < 0) return RC_EPERM
    if (shared && uuidLo === ALL_ONES && uuidHi === ALL_ONES) shared = false
    if (
      shared &&
      this.options.sharedAuth &&
      !this.globalAuth &&
      findAuth(client, uuidLo, uuidHi) < 0
    ) {
      shared = false
    }
    if (!shared) {
      client.pools[slot] = new ModelPool(
        ++this.#serial,
        client.id,
        persistent,
        false,
        uuidLo,
        uuidHi,
      )
      return slot
    }
    const existing = this.sharedTable.find(
      (p) => p !== null && p.uuidLo === uuidLo && p.uuidHi === uuidHi,
    )
    if (existing !== undefined && existing !== null) {
      existing.sharers.push(client.id)
      client.pools[slot] = existing
      return slot
    }
    const tableSlot = this.sharedTable.indexOf(null)
    if (tableSlot < 0) return RC_EPERM
    const pool = new ModelPool(++this.#serial, client.id, false, true, uuidLo, uuidHi)
    pool.sharers.push(client.id)
    this.sharedTable[tableSlot] = pool
    client.pools[slot] = pool
    return slot
  }

  destroyPool(clientId: number, poolId: number, rc: number): void {
    const client = this.guest(clientId)
    const pool = this.#lookup(client, poolId)
    if (pool === null) {
      expectRc(`DESTROY_POOL ${poolId} (no pool)`, rc, [0])
      return
    }
    expectRc(`DESTROY_POOL ${poolId}`, rc, [1])
    this.#destroySlot(client, poolId >>> 0)
  }

  #destroySlot(client: ModelClient, slot: number): void {
    const pool = client.pools[slot]!
    client.pools[slot] = null
    if (!pool.shared) {
      pool.clear()
      return
    }
    for (const [key, object] of [...pool.objects]) {
      if (object.lastClient === client.id) pool.deleteObject(key)
    }
    pool.sharers.splice(pool.sharers.indexOf(client.id), 1)
    const heir = pool.sharers[0]
    if (heir === undefined) {
      this.sharedTable[this.sharedTable.indexOf(pool)] = null
      pool.clear()
      return
    }
    if (pool.owner === client.id) pool.owner = heir
  }

  /** `host.destroyClient`: every pool destroyed as by DESTROY_POOL, then the client goes. */
  destroyClient(clientId: number, result: boolean): void {
    const client = this.clients.get(clientId)
    if (result !== (client !== undefined)) {
      throw new ModelMismatch(`destroyClient(${clientId}) returned ${result}`)
    }
    if (client === undefined) return
    for (let slot = 0; slot < POOL_SLOTS; slot++) {
      if (client.pools[slot] !== null) this.#destroySlot(client, slot)
    }
    this.clients.delete(clientId)
  }

  // ---------------------------------------------------------------------------------------
  // Pages (spec §3.3-3.7, D8, D11, D12).

  /**
   * PUT_PAGE, NEW_PAGE or WRITE. `frame` is the guest page (null: a bad frame); the model
   * computes the stored bytes from it and `fill`.
   */
  put(
    clientId: number,
    poolId: number,
    oid: ModelOid,
    index: number,
    frame: Uint8Array | null,
    fill: PutFill,
    rc: number,
  ): void {
    const client = this.guest(clientId)
    const what = `${fill.kind === 'copy' ? 'PUT_PAGE' : fill.kind === 'zero' ? 'NEW_PAGE' : 'WRITE'}`
    const pool = this.#lookup(client, poolId)
    if (pool === null) return expectRc(`${what} into pool ${poolId} (no pool)`, rc, [RC_ENODEV])
    if (fill.kind === 'range' && !rangeValid(fill.range))
      return expectRc(`${what} bad range`, rc, [RC_EINVAL])
    const owner = this.#owner(pool)
    const badFrame = fill.kind !== 'zero' && frame === null
    const present = pool.page(oid, index) !== undefined
    const where = `${what} ${pool.kind} pool ${pool.serial}`
    const tight = this.#memoryTight(pool, oid)
    // The duplicate path (§3.3.1): replace and return 1, or fail and drop the page.
    const dense = this.#dense(pool)
    const duplicate = badFrame ? [RC_EFAULT] : dense && tight ? [1, RC_ENOSPC] : [1]
    // The new-page path (§3.3): frozen owner, then the frame, then memory (D6, D12).
    let fresh: number[]
    if (owner.frozen) fresh = [RC_EFROZEN]
    else if (badFrame) fresh = [RC_EFAULT]
    else if (pool.persistent) fresh = !tight ? [1] : dense ? [1, RC_ENOMEM] : [RC_ENOMEM]
    else fresh = tight || this.#capTight(pool, owner, oid) ? [1, RC_ENOMEM] : [1]
    const allowed = present ? (pool.persistent ? duplicate : [...duplicate, ...fresh]) : fresh
    expectRc(`${where}${present ? ' (handle held by the model)' : ''}`, rc, [...new Set(allowed)])
    if (rc === 1) pool.setPage(oid, index, storedBytes(frame, fill), pool.shared ? owner.id : null)
    else pool.deletePage(oid, index)
  }

  /**
   * Whether the pages that must not be evicted fill the budget: persistent pages (D12) and,
   * for an ephemeral put, the object being written (D5). For a persistent put on a host
   * where every page costs one frame this is exactly when the put finds no room.
   */
  #memoryTight(pool: ModelPool, oid: ModelOid): boolean {
    const objectPages = pool.persistent ? 0 : (pool.objects.get(oidKey(oid))?.pages.size ?? 0)
    return this.persistentPages() + objectPages >= this.options.pages
  }

  /** Whether the owner's cap (D6) may be unreachable without evicting the object written. */
  #capTight(pool: ModelPool, owner: ModelClient, oid: ModelOid): boolean {
    if (owner.cap === 0) return false
    const limit = Math.floor((Math.min(owner.cap, 100) * this.options.pages) / 100)
    return (pool.objects.get(oidKey(oid))?.pages.size ?? 0) >= limit
  }

  /**
   * GET_PAGE or READ. `frameOk` false means a bad frame. Returns the page the caller's frame
   * must now hold (for rc 1), after checking the return code.
   */
  get(
    clientId: number,
    poolId: number,
    oid: ModelOid,
    index: number,
    frameOk: boolean,
    range: ModelRange | null,
    rc: number,
  ): GetExpectation {
    const client = this.guest(clientId)
    const what = range === null ? 'GET_PAGE' : 'READ'
    const pool = this.#lookup(client, poolId)
    if (pool === null) {
      expectRc(`${what} from pool ${poolId} (no pool)`, rc, [RC_ENODEV])
      return { page: null }
    }
    if (range !== null && !rangeValid(range)) {
      expectRc(`${what} bad range`, rc, [RC_EINVAL])
      return { page: null }
    }
    const where = `${what} ${pool.kind} pool ${pool.serial}`
    const page = pool.page(oid, index) ?? null
    const hit = frameOk ? 1 : RC_EFAULT
    let allowed: number[]
    if (pool.pageCount === 0) allowed = [RC_EEMPTY]
    else if (pool.persistent) allowed = [page === null ? 0 : hit]
    else allowed = page === null ? [0, RC_EEMPTY] : [hit, 0, RC_EEMPTY]
    expectRc(`${where}${page === null ? '' : ' (handle held by the model)'}`, rc, allowed)
    const privateEphemeral = !pool.persistent && !pool.shared
    if (rc === RC_EEMPTY) pool.clear()
    else if (rc === 0 || (privateEphemeral && (rc === 1 || rc === RC_EFAULT)))
      pool.deletePage(oid, index)
    else if (rc === 1 && pool.shared) pool.objects.get(oidKey(oid))!.lastClient = client.id
    return { page: rc === 1 ? page : null }
  }

  /** FLUSH_PAGE (§3.5): always done; -EFROZEN when the owner is frozen, else 1. */
  flushPage(clientId: number, poolId: number, oid: ModelOid, index: number, rc: number): void {
    const client = this.guest(clientId)
    const pool = this.#lookup(client, poolId)
    if (pool === null) return expectRc(`FLUSH_PAGE pool ${poolId} (no pool)`, rc, [RC_ENODEV])
    pool.deletePage(oid, index)
    expectRc(`FLUSH_PAGE ${pool.kind} pool ${pool.serial}`, rc, [
      this.#owner(pool).frozen ? RC_EFROZEN : 1,
    ])
  }

  /** FLUSH_OBJECT (§3.6). */
  flushObject(clientId: number, poolId: number, oid: ModelOid, rc: number): void {
    const client = this.guest(clientId)
    const pool = this.#lookup(client, poolId)
    if (pool === null) return expectRc(`FLUSH_OBJECT pool ${poolId} (no pool)`, rc, [RC_ENODEV])
    pool.deleteObject(oidKey(oid))
    expectRc(`FLUSH_OBJECT ${pool.kind} pool ${pool.serial}`, rc, [
      this.#owner(pool).frozen ? RC_EFROZEN : 1,
    ])
  }

  // ---------------------------------------------------------------------------------------
  // Control (spec §5.2, §5.6, D6).

  #forClients(cliId: number, action: (client: ModelClient) => void): number {
    if (cliId === ALL_CLIENTS) {
      for (const client of this.clients.values()) action(client)
      return 0
    }
    const client = this.clients.get(cliId)
    if (client === undefined) return RC_FAIL
    action(client)
    return 0
  }

  setFrozen(cliId: number, frozen: boolean, rc: number): void {
    const expected = this.#forClients(cliId, (client) => (client.frozen = frozen))
    expectRc(`${frozen ? 'FREEZE' : 'THAW'} ${cliId}`, rc, [expected])
  }

  setWeight(cliId: number, weight: number, rc: number): void {
    const expected = this.#forClients(cliId, (client) => (client.weight = weight))
    expectRc(`SET_WEIGHT ${cliId}`, rc, [expected])
  }

  setCap(cliId: number, cap: number, rc: number): void {
    const expected = cap > 100 ? RC_EINVAL : this.#forClients(cliId, (client) => (client.cap = cap))
    expectRc(`SET_CAP ${cliId} ${cap}`, rc, [expected])
  }

  /** SET_COMPRESS: refused (-1) per client while dedup is on (spec §5.2, 2014 rule). */
  setCompress(cliId: number, on: boolean, rc: number): void {
    let refused = false
    const expected = this.#forClients(cliId, (client) => {
      if (on && this.options.dedup) refused = true
      else client.compress = on
    })
    if (on && !this.options.dedup && expected === 0 && this.clients.size > 0)
      this.#densePersistent = true
    expectRc(`SET_COMPRESS ${cliId} ${on}`, rc, [refused ? RC_FAIL : expected])
  }

  /** TMEMC_FLUSH: all clients only; evicts (ephemeral pages are "maybe" anyway). */
  flush(cliId: number, rc: number): void {
    if (cliId !== ALL_CLIENTS) return expectRc(`TMEMC_FLUSH ${cliId}`, rc, [RC_FAIL])
    const kbMax = this.options.pages * 4
    if (!(rc >= 0 && rc % 4 === 0 && rc <= kbMax)) {
      throw new ModelMismatch(`TMEMC_FLUSH returned ${rc}, expected a multiple of 4 in 0..${kbMax}`)
    }
  }

  list(cliId: number, rc: number): void {
    const known = cliId === ALL_CLIENTS || this.clients.has(cliId)
    expectRc(`TMEMC_LIST ${cliId}`, rc, [known ? 0 : RC_FAIL])
  }

  /** TMEM_AUTH (§5.6): 0xFFFF sets global auth; else per-client table (non-zero = allow). */
  auth(cliId: number, uuidLo: bigint, uuidHi: bigint, flag: number, rc: number): void {
    const what = `TMEM_AUTH ${cliId} flag ${flag}`
    if (cliId === ALL_CLIENTS) {
      this.globalAuth = flag !== 0
      return expectRc(what, rc, [1])
    }
    const client = this.clients.get(cliId)
    if (client === undefined) return expectRc(what, rc, [RC_EINVAL])
    const at = findAuth(client, uuidLo, uuidHi)
    if (flag === 0) {
      if (at >= 0) client.auth[at] = [ALL_ONES, ALL_ONES]
      return expectRc(what, rc, [at >= 0 ? 1 : 0])
    }
    if (at >= 0) return expectRc(what, rc, [1])
    const empty = findAuth(client, ALL_ONES, ALL_ONES)
    if (empty < 0) return expectRc(what, rc, [RC_ENOMEM])
    client.auth[empty] = [uuidLo, uuidHi]
    expectRc(what, rc, [1])
  }
}

function findAuth(client: ModelClient, uuidLo: bigint, uuidHi: bigint): number {
  return client.auth.findIndex(([lo, hi]) => lo === uuidLo && hi === uuidHi)
}

/** The bytes a put stores: the frame, zeros (NEW_PAGE), or zeros plus a range (WRITE). */
function storedBytes(frame: Uint8Array | null, fill: PutFill): Uint8Array {
  const page = new Uint8Array(PAGE_BYTES)
  if (fill.kind === 'copy') page.set(frame!.subarray(0, PAGE_BYTES))
  if (fill.kind === 'range' && frame !== null) {
    const { tmemOffset, pfnOffset, len } = fill.range
    page.set(frame.subarray(pfnOffset, pfnOffset + len), tmemOffset)
  }
  return page
}
