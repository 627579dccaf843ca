/**
 * Pools: creation with the flag validation and shared-pool rules of docs/semantics.md "New pool" (docs/semantics.md "Decision: v0 clients", "Decision: shared pools"),
 * destruction (docs/semantics.md "Destroy pool", "Decision: dying pools and ownership", "Decision: destroy during migration") and shared-pool authorisation (TMEM_AUTH, docs/semantics.md "Shared-pool authorisation"). The pool
 * records live in the core's `PoolTable`; this file decides who may create, join and destroy
 * them. Control plane: may allocate.
 */
import {
  EINVAL,
  ENOMEM,
  EPERM,
  MAX_GLOBAL_SHARED_POOLS,
  MAX_POOLS_PER_DOMAIN,
  TMEM_POOL_PAGESIZE_MASK,
  TMEM_POOL_PAGESIZE_SHIFT,
  TMEM_POOL_PERSIST,
  TMEM_POOL_PRECOMPRESSED,
  TMEM_POOL_RESERVED_BITS,
  TMEM_POOL_SHARED,
  TMEM_POOL_VERSION_MASK,
  TMEM_POOL_VERSION_SHIFT,
} from '../abi/constants.js'
import { assert } from '../util/assert.js'
import type { Core } from './core.js'
import type { Client, Pool } from './model.js'
import { CHECK_BYTES } from './payload.js'
import {
  listAppend,
  listUnlink,
  NONE,
  SLOT_COMPRESSED,
  SLOT_CONTENT,
  SLOT_KIND_MASK,
} from './store.js'

const ALL_ONES = 0xffffffffffffffffn

export class Pools {
  readonly #core: Core

  constructor(core: Core) {
    this.#core = core
  }

  /**
   * NEW_POOL (slot -1: the lowest empty slot) or RESTORE_NEW (an explicit slot). Returns the
   * slot, or -EPERM / -ENOMEM.
   */
  create(client: Client, slot: number, flags: number, uuidLo: bigint, uuidHi: bigint): number {
    const version = (flags >>> TMEM_POOL_VERSION_SHIFT) & TMEM_POOL_VERSION_MASK
    if (version !== this.#expectedVersion(client)) {
      this.#diagnose(client, version)
      return -EPERM
    }
    if (((flags >>> TMEM_POOL_PAGESIZE_SHIFT) & TMEM_POOL_PAGESIZE_MASK) !== 0) return -EPERM
    if ((flags & TMEM_POOL_PRECOMPRESSED) !== 0) return -EPERM
    if ((flags & TMEM_POOL_RESERVED_BITS) !== 0) return -EPERM
    const persistent = (flags & TMEM_POOL_PERSIST) !== 0
    let shared = (flags & TMEM_POOL_SHARED) !== 0
    if (shared && persistent) return -EPERM // shared persistent pools are refused (docs/semantics.md "Decision: shared pools")
    if (slot < 0) {
      slot = client.pools.indexOf(null)
      if (slot < 0) return -EPERM
    } else if (slot >= MAX_POOLS_PER_DOMAIN || client.pools[slot] !== null) {
      return -EPERM
    }
    if (shared && uuidLo === ALL_ONES && uuidHi === ALL_ONES) shared = false
    if (shared && !this.#authorised(client, uuidLo, uuidHi)) shared = false
    if (shared) return this.#joinOrCreateShared(client, slot, uuidLo, uuidHi)
    const pool = this.#core.pools.add(client, slot, persistent, false, uuidLo, uuidHi)
    client.pools[slot] = pool
    return slot
  }

  /** The ABI version a client's pool flags must carry (docs/semantics.md "Decision: v0 clients"). */
  #expectedVersion(client: Client): number {
    return client.abi === 0 && this.#core.options.acceptV0 ? 0 : 1
  }

  #diagnose(client: Client, version: number): void {
    const report = this.#core.onDiagnostic
    if (report === null) return
    const expected = this.#expectedVersion(client)
    const reason =
      client.abi === 0 && !this.#core.options.acceptV0
        ? 'tmem ABI v0 client refused: this host speaks ABI v1 (start it with acceptV0 to serve v0)'
        : `pool flags carry tmem ABI version ${version}, expected ${expected}`
    report(client.id, reason)
  }

  #authorised(client: Client, uuidLo: bigint, uuidHi: bigint): boolean {
    if (!this.#core.options.sharedAuth || this.#core.globalAuth) return true
    return findAuth(client, uuidLo, uuidHi) >= 0
  }

  #joinOrCreateShared(client: Client, slot: number, uuidLo: bigint, uuidHi: bigint): number {
    const table = this.#core.pools.shared
    const existing = table.find(
      (pool) => pool !== null && pool.uuidLo === uuidLo && pool.uuidHi === uuidHi,
    )
    if (existing !== undefined && existing !== null) {
      existing.sharers.push(client)
      client.pools[slot] = existing
      return slot
    }
    const tableSlot = table.indexOf(null)
    if (tableSlot < 0) return -EPERM
    const pool = this.#core.pools.add(client, slot, false, true, uuidLo, uuidHi)
    pool.sharedSlot = tableSlot
    pool.sharers.push(client)
    table[tableSlot] = pool
    client.pools[slot] = pool
    return slot
  }

  /** TMEM_DESTROY_POOL from a guest (docs/semantics.md "Destroy pool", "Decision: destroy during migration"). Returns 1, or 0 for no pool. */
  destroyByGuest(client: Client, poolId: number): number {
    const slot = poolId >>> 0
    if (slot >= MAX_POOLS_PER_DOMAIN) return 0
    const pool = client.pools[slot]
    if (pool === null || pool === undefined) return 0
    if (client.liveMigrating || pool.owner.liveMigrating) return 0
    this.destroy(client, slot)
    return 1
  }

  /** Clears a client's slot and flushes and destroys the pool on its behalf. */
  destroy(client: Client, slot: number): void {
    const pool = client.pools[slot]
    assert(pool !== null && pool !== undefined, 'Pools destroy of an empty slot')
    client.pools[slot] = null
    if (pool.shared && !this.#leaveShared(client, pool)) return
    this.#destroyPages(pool)
    this.#core.pools.remove(pool)
  }

  /**
   * A sharer leaves a shared pool: its objects go, ownership may pass on (docs/semantics.md "Decision: dying pools and ownership"). Returns true
   * when nobody is left and the pool must be destroyed.
   */
  #leaveShared(client: Client, pool: Pool): boolean {
    const core = this.#core
    const store = core.store
    for (let object = pool.objects[0]!; object !== NONE;) {
      const next = store.objectPoolNext[object]!
      if (store.objectLastClient[object] === client.id) core.removeObject(pool, object)
      object = next
    }
    pool.sharers.splice(pool.sharers.indexOf(client), 1)
    const heir = pool.sharers[0]
    if (heir === undefined) {
      core.pools.shared[pool.sharedSlot] = null
      return true
    }
    if (pool.owner === client) this.#transferOwnership(pool, heir)
    return false
  }

  /**
   * Moves only this pool's pages between the two clients' LRUs and counts (docs/semantics.md "Decision: dying pools and ownership"), including the
   * compressed pages and bytes (`cp`/`cb`), which are released against the new owner later.
   */
  #transferOwnership(pool: Pool, heir: Client): void {
    const core = this.#core
    const store = core.store
    const previous = pool.owner
    for (let slot = core.globalLru[0]!; slot !== NONE; slot = store.listNext[slot]!) {
      if (store.objectPool[store.slotObject(slot)] !== pool.gid) continue
      listUnlink(store.clientPrev, store.clientNext, previous.lru, slot)
      listAppend(store.clientPrev, store.clientNext, heir.lru, slot)
      previous.ephemeralCount--
      if (++heir.ephemeralCount > heir.ephemeralMax) heir.ephemeralMax = heir.ephemeralCount
      if ((store.slotFlags(slot) & (SLOT_KIND_MASK | SLOT_CONTENT)) === SLOT_COMPRESSED) {
        // The stored bytes include the chunk's check; `cb` counts codec bytes only.
        const bytes = store.slotBytes(slot) - CHECK_BYTES
        previous.compressedPages--
        previous.compressedBytes -= bytes
        heir.compressedPages++
        heir.compressedBytes += bytes
      }
    }
    pool.owner = heir
    pool.poolId = heir.pools.indexOf(pool)
  }

  #destroyPages(pool: Pool): void {
    const core = this.#core
    // A dying pool's pages are not eviction candidates and not recorded as invalidations.
    pool.destroying = true
    while (pool.objects[0] !== NONE) core.removeObject(pool, pool.objects[0]!)
    assert(pool.pageCount === 0, 'Pools destroyed pool still has pages')
  }

  /** TMEM_AUTH (docs/semantics.md "Shared-pool authorisation"): 1 = authorise, 0 = revoke, other non-zero = authorise. */
  auth(cliId: number, uuidLo: bigint, uuidHi: bigint, flag: number): number {
    if (cliId === 0xffff) {
      this.#core.globalAuth = flag !== 0
      return 1
    }
    const client = this.#core.clientsById[cliId]
    if (client === undefined) return -EINVAL
    const at = findAuth(client, uuidLo, uuidHi)
    if (flag === 0) {
      if (at < 0) return 0
      client.auth[at * 2] = ALL_ONES
      client.auth[at * 2 + 1] = ALL_ONES
      return 1
    }
    if (at >= 0) return 1
    const empty = findAuth(client, ALL_ONES, ALL_ONES)
    if (empty < 0) return -ENOMEM
    client.auth[empty * 2] = uuidLo
    client.auth[empty * 2 + 1] = uuidHi
    return 1
  }
}

function findAuth(client: Client, uuidLo: bigint, uuidHi: bigint): number {
  for (let i = 0; i < MAX_GLOBAL_SHARED_POOLS; i++) {
    if (client.auth[i * 2] === uuidLo && client.auth[i * 2 + 1] === uuidHi) return i
  }
  return -1
}
