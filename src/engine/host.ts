/**
 * The tmem host: the hypervisor's part. `op()`/`opBytes()` are the guest hypercall,
 * `control()`/`controlBytes()` the privileged entry (dom0's role). Every command returns the
 * spec's value (pool slot, 1, 0 or a negative errno) and bad input never throws.
 *
 * The host decodes the ABI (into its one `OpScratch`, see op-scratch.ts), checks the caller,
 * times the op and dispatches it: page commands to the engine core (core.ts), which owns every
 * page, list and counter; pool commands to `Pools`; TMEM_CONTROL to `Control`. It keeps no
 * engine state of its own beyond the scratch and the timer.
 *
 * Data plane: PUT/GET/FLUSH read the op's fields into the scratch and pass the oid, the index
 * and the caller's buffer to the core as arguments. No object, view or closure is created per
 * page.
 *
 * Before a PUT or NEW_PAGE the minimum-reserve step (docs/semantics.md "Minimum reserve") evicts while fewer than
 * `reservePages` frames are free.
 */
import {
  EFAULT,
  EINVAL,
  ENODEV,
  ENOSYS,
  EPERM,
  MAX_POOLS_PER_DOMAIN,
  PAGE_SIZE,
  TMEM_AUTH,
  TMEM_CONTROL,
  TMEM_DESTROY_POOL,
  TMEM_FLUSH_OBJECT,
  TMEM_FLUSH_PAGE,
  TMEM_GET_PAGE,
  TMEM_NEW_PAGE,
  TMEM_NEW_POOL,
  TMEM_PUT_PAGE,
  TMEM_READ,
  TMEM_RESTORE_NEW,
  TMEM_WRITE,
} from '../abi/constants.js'
import type { TmemOp } from '../abi/types.js'
import { Control } from './control.js'
import { Core, FILL_COPY, FILL_RANGE, FILL_ZERO } from './core.js'
import { GuestClient } from './friendly.js'
import { renderList } from './list.js'
import {
  type Client,
  type Pool,
  TIME_FLUSH,
  TIME_FLUSH_OBJECT,
  TIME_GET,
  TIME_GET_FAILED,
  TIME_PUT,
  TIME_PUT_FAILED,
} from './model.js'
import { bufferArgument, isAbiVersion, isRange, rangeValid } from './host-args.js'
import { fillOp, OpScratch, readOpBytes } from './op-scratch.js'
import { type HostOptions, type ResolvedHostOptions, resolveHostOptions } from './options.js'
import { Pools } from './pools.js'
import { describeVictim, EvictedPage, expandStored } from './victim.js'
import {
  type HostStats,
  type StatsTotals,
  snapshotStats,
  StatsPass,
  statsTotals,
  topClientIds,
} from './stats.js'

/** The largest client id a caller may use; 0xFFFF means "all clients" in control ops. */
export const CLIENT_ID_MAX = 0xfffe

export class Host {
  readonly options: ResolvedHostOptions
  /** The engine core: every page, list, table and counter. For tests, tools and benchmarks. */
  readonly core: Core
  readonly #pools: Pools
  readonly #control: Control
  readonly #scratch = new OpScratch()

  constructor(options: HostOptions = {}) {
    this.options = resolveHostOptions(options)
    this.core = new Core(this.options)
    this.#pools = new Pools(this.core)
    this.#control = new Control(this.core)
  }

  /** Reasons for refusals a person should see (v0 guest refused, and so on). */
  get onDiagnostic(): ((clientId: number, message: string) => void) | null {
    return this.core.onDiagnostic
  }

  set onDiagnostic(report: ((clientId: number, message: string) => void) | null) {
    this.core.onDiagnostic = report
  }

  /**
   * The remote tier's demotion hook (src/engine/victim.ts): called with each evicted
   * ephemeral page, before its storage is freed. The page object is reused; copy from it.
   */
  set onEvictEphemeral(report: ((page: EvictedPage) => void) | null) {
    const core = this.core
    if (report === null) {
      core.onEvict = null
      return
    }
    const page = new EvictedPage()
    core.onEvict = (pool, slot) => {
      describeVictim(core, pool, slot, page)
      report(page)
    }
  }

  /** Pool `poolId` of a client: -1 when absent, else 1 when persistent plus 2 when shared. */
  poolKind(clientId: number, poolId: number): number {
    const pool = this.core.clientsById[clientId]?.pools[poolId]
    if (pool === null || pool === undefined) return -1
    return (pool.persistent ? 1 : 0) | (pool.shared ? 2 : 0)
  }

  /** A page from the stored form `onEvictEphemeral` handed out (victim.ts `expandStored`). */
  expandStored(kind: number, input: Uint8Array, start: number, end: number, page: Uint8Array) {
    return expandStored(this.core, kind, input, start, end, page)
  }

  // ---------------------------------------------------------------------------------------
  // Entry points.

  /**
   * The guest hypercall with a decoded op. `data` is the 4096-byte page of a put (read) or a
   * get (written). `version` is the caller's ABI; a client keeps the version of its first
   * call. Returns the spec's value; never throws on bad input.
   */
  op(clientId: number, op: TmemOp, data?: Uint8Array | null, version: 0 | 1 = 1): number {
    this.core.counters.totalOps++
    if (!isAbiVersion(version)) return this.#fail(-EINVAL)
    const rc = fillOp(this.#scratch, op, version)
    if (rc !== 0) return this.#fail(rc)
    return this.#guest(clientId, version, bufferArgument(data), 0)
  }

  /**
   * The guest hypercall read straight from a `struct tmem_op` in ABI layout at
   * `bytes[offset]` (56 bytes v1, 40 bytes v0). The page is `data[dataOffset..+4096]`.
   * Allocates nothing on the put/get/flush path.
   */
  opBytes(
    clientId: number,
    bytes: Uint8Array,
    offset: number,
    version: 0 | 1,
    data: Uint8Array | null,
    dataOffset: number,
  ): number {
    this.core.counters.totalOps++
    if (!isAbiVersion(version)) return this.#fail(-EINVAL)
    if (!this.#read(bytes, offset, version)) return this.#fail(-EFAULT)
    return this.#guest(clientId, version, bufferArgument(data), dataOffset)
  }

  /**
   * opBytes on pages index .. index + count - 1 of the op (page i at `data[dataOffset + 4096
   * i]`), each counted, checked and run as its own call, its return code in `results[i]`;
   * the op is decoded once (the NBD frontend's multi-page requests). Allocates nothing.
   */
  opPagesBytes(
    clientId: number,
    bytes: Uint8Array,
    offset: number,
    version: 0 | 1,
    count: number,
    data: Uint8Array | null,
    dataOffset: number,
    results: Int32Array,
  ): void {
    const rc = !isAbiVersion(version) ? -EINVAL : this.#read(bytes, offset, version) ? 0 : -EFAULT
    const first = this.#scratch.index
    for (let i = 0; i < Math.min(count, results.length); i++) {
      this.core.counters.totalOps++
      this.#scratch.index = first + i
      results[i] =
        rc !== 0 || first + i > 0xffffffff
          ? this.#fail(rc || -EINVAL)
          : this.#guest(clientId, version, bufferArgument(data), dataOffset + i * PAGE_SIZE)
    }
  }

  /**
   * The privileged entry: TMEM_CONTROL, TMEM_AUTH and TMEM_RESTORE_NEW. `data` is the tool
   * buffer (LIST text, save records, restore pages). Guest commands here return -EPERM.
   */
  control(op: TmemOp, data?: Uint8Array | null): number {
    this.core.counters.totalOps++
    const rc = fillOp(this.#scratch, op, 1)
    if (rc !== 0) return this.#fail(rc)
    const buffer = bufferArgument(data)
    return this.#privileged(1, buffer, 0, buffer === null ? 0 : buffer.length)
  }

  /** The privileged entry reading the op from ABI bytes; the tool buffer is `data[off..+len]`. */
  controlBytes(
    bytes: Uint8Array,
    offset: number,
    version: 0 | 1,
    data: Uint8Array | null,
    dataOffset: number,
    dataLength: number,
  ): number {
    this.core.counters.totalOps++
    if (!isAbiVersion(version)) return this.#fail(-EINVAL)
    if (!this.#read(bytes, offset, version)) return this.#fail(-EFAULT)
    const buffer = bufferArgument(data)
    if (buffer !== null && !isRange(buffer, dataOffset, dataLength)) return this.#fail(-EFAULT)
    return this.#privileged(version, buffer, dataOffset, buffer === null ? 0 : dataLength)
  }

  // ---------------------------------------------------------------------------------------
  // Control-plane helpers for embedders and the daemon.

  hasClient(clientId: number): boolean {
    return this.core.clientsById[clientId] !== undefined
  }

  clientIds(): number[] {
    return this.core.clientOrder.map((client) => client.id)
  }

  /** Destroys a client as Xen does for a dead domain: every pool flushed and destroyed. */
  destroyClient(clientId: number): boolean {
    const core = this.core
    const client = core.clientsById[clientId]
    if (client === undefined) return false
    client.liveMigrating = false
    for (let slot = 0; slot < MAX_POOLS_PER_DOMAIN; slot++) {
      if (client.pools[slot] !== null) this.#pools.destroy(client, slot)
    }
    core.setWeight(client, 0)
    core.clientsById[clientId] = undefined
    core.clientOrder.splice(core.clientOrder.indexOf(client), 1)
    return true
  }

  /** The exact TMEMC_LIST text (docs/semantics.md "LIST"). `cliId` 0xFFFF lists every client. */
  listText(cliId = 0xffff, long = false): string {
    return renderList(this.core, cliId, long, Number.MAX_SAFE_INTEGER)
  }

  /** A JSON-able snapshot of every counter, for metrics and readable listings. */
  stats(): HostStats {
    return snapshotStats(this.core)
  }

  /**
   * The snapshot with only the clients of `ids` that exist, in that order: one client, or a
   * page of a listing, at a cost that does not grow with the host.
   */
  statsOf(ids: readonly number[]): HostStats {
    const byId = this.core.clientsById
    const clients: Client[] = []
    for (const id of ids) {
      const client = byId[id]
      if (client !== undefined) clients.push(client)
    }
    return snapshotStats(this.core, clients)
  }

  /** Host-wide sums over the clients (pools, compression), without a snapshot of each. */
  statsTotals(): StatsTotals {
    return statsTotals(this.core)
  }

  /** The ids of the `max` clients holding the most pages (ties: lower id), most first. */
  topClientIds(max: number): number[] {
    return topClientIds(this.core, max)
  }

  /** The sums and the top `max` clients, gathered in steps (metrics, see StatsPass). */
  statsPass(max: number): StatsPass {
    return new StatsPass(this.core, max)
  }

  /** The friendly layer: a guest's view with pools and oids as numbers or bigints. */
  client(clientId: number, version: 0 | 1 = 1): GuestClient {
    return new GuestClient(this, clientId, version)
  }

  // ---------------------------------------------------------------------------------------
  // Dispatch.

  /** Counts a failed call (`Te`) and passes its return code through. */
  #fail(rc: number): number {
    if (rc < 0) this.core.counters.erroredOps++
    return rc
  }

  #read(bytes: Uint8Array, offset: number, version: 0 | 1): boolean {
    return readOpBytes(this.#scratch, bytes, offset, version, this.options.frameResolver !== null)
  }

  #guest(clientId: number, version: 0 | 1, data: Uint8Array | null, dataOffset: number): number {
    const s = this.#scratch
    if (!Number.isInteger(clientId) || clientId < 0 || clientId > CLIENT_ID_MAX) {
      return this.#fail(-EINVAL)
    }
    // Privileged commands never create a client for the caller (docs/semantics.md "Dispatch" step 5, docs/semantics.md "Decision: who is who").
    if (s.cmd === TMEM_CONTROL || s.cmd === TMEM_AUTH || s.cmd === TMEM_RESTORE_NEW) {
      return this.#fail(-EPERM)
    }
    const client = this.core.clientFor(clientId, version)
    if (client.abi !== version) return this.#fail(-EINVAL)
    switch (s.cmd) {
      case TMEM_NEW_POOL:
        return this.#fail(this.#pools.create(client, -1, s.flags, s.uuidLo, s.uuidHi))
      case TMEM_DESTROY_POOL: {
        // Timed as a flush, whatever the result (docs/semantics.md "Dispatch" step 9).
        const timer = this.core.timer
        const start = timer.startOp(client)
        const rc = this.#pools.destroyByGuest(client, s.poolId)
        timer.endOp(client, TIME_FLUSH, start)
        return this.#fail(rc)
      }
      case TMEM_PUT_PAGE:
      case TMEM_NEW_PAGE:
      case TMEM_WRITE:
      case TMEM_GET_PAGE:
      case TMEM_READ:
      case TMEM_FLUSH_PAGE:
      case TMEM_FLUSH_OBJECT:
        return this.#fail(this.#pageCommand(s, client, data, dataOffset))
      default:
        // TMEM_XCHG and unknown commands (docs/semantics.md "Decision: legacy and unknown commands").
        return this.#fail(-ENOSYS)
    }
  }

  /** A page command of op `s` for `client`, timed (docs/semantics.md "Guest commands", "LIST" `T=`). */
  #pageCommand(s: OpScratch, client: Client, data: Uint8Array | null, dataOffset: number): number {
    const slot = s.poolId >>> 0
    const pool = slot < MAX_POOLS_PER_DOMAIN ? client.pools[slot] : null
    if (pool === null || pool === undefined) return -ENODEV
    const core = this.core
    const timer = core.timer
    switch (s.cmd) {
      case TMEM_PUT_PAGE: {
        const start = timer.startOp(client)
        core.eviction.reserve(client)
        const rc = core.put(client, pool, s.oid, s.index, data, dataOffset, FILL_COPY, s)
        timer.endOp(client, rc === 1 ? TIME_PUT : TIME_PUT_FAILED, start)
        return rc
      }
      case TMEM_GET_PAGE: {
        const start = timer.startOp(client)
        const rc = core.get(client, pool, s.oid, s.index, data, dataOffset, false, s)
        timer.endOp(client, rc === 1 ? TIME_GET : TIME_GET_FAILED, start)
        return rc
      }
      case TMEM_FLUSH_PAGE: {
        const start = timer.startOp(client)
        const rc = core.flushPage(pool, s.oid, s.index)
        timer.endOp(client, TIME_FLUSH, start)
        return rc
      }
      case TMEM_FLUSH_OBJECT: {
        const start = timer.startOp(client)
        const rc = core.flushObject(pool, s.oid)
        timer.endOp(client, TIME_FLUSH_OBJECT, start)
        return rc
      }
      default: {
        timer.startUntimed()
        const rc = this.#untimedCommand(s, client, pool, data, dataOffset)
        timer.endUntimed()
        return rc
      }
    }
  }

  /** NEW_PAGE, WRITE and READ: not timed (docs/semantics.md "Dispatch" step 9). */
  #untimedCommand(
    s: OpScratch,
    client: Client,
    pool: Pool,
    data: Uint8Array | null,
    dataOffset: number,
  ): number {
    const core = this.core
    switch (s.cmd) {
      case TMEM_NEW_PAGE:
        core.eviction.reserve(client)
        return core.put(client, pool, s.oid, s.index, data, dataOffset, FILL_ZERO, s)
      case TMEM_WRITE:
        if (!rangeValid(s)) return -EINVAL
        return core.put(client, pool, s.oid, s.index, data, dataOffset, FILL_RANGE, s)
      default:
        if (!rangeValid(s)) return -EINVAL
        return core.get(client, pool, s.oid, s.index, data, dataOffset, true, s)
    }
  }

  #privileged(
    version: 0 | 1,
    data: Uint8Array | null,
    dataOffset: number,
    dataLength: number,
  ): number {
    const s = this.#scratch
    switch (s.cmd) {
      case TMEM_CONTROL:
        return this.#fail(this.#control.run(s, version, data, dataOffset, dataLength))
      case TMEM_AUTH:
        return this.#fail(this.#pools.auth(s.arg1 & 0xffff, s.uuidLo, s.uuidHi, s.flags))
      case TMEM_RESTORE_NEW: {
        const client = this.core.clientsById[s.arg1 & 0xffff]
        if (client === undefined) return this.#fail(-EPERM)
        return this.#fail(this.#pools.create(client, s.poolId >>> 0, s.flags, s.uuidLo, s.uuidHi))
      }
      default:
        return this.#fail(-EPERM)
    }
  }
}
