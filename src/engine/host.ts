/**
 * The tmem host: the hypervisor's part. `op()`/`opBytes()` are the guest hypercall,
 * `control()`/`controlBytes()` the privileged entry (dom0's role). Every command returns the
 * spec's value (pool slot, 1, 0 or a negative errno) and bad input never throws.
 *
 * Data plane: PUT/GET/FLUSH read the op's fields into preallocated scratch (`#oid`, numbers
 * on the instance), find the object and page through the hash tables of `store.ts`, and
 * copy page bytes with Buffer.prototype.copy between the caller's buffer and a frame. No
 * object, view or closure is created per page.
 *
 * Memory (docs/semantics.md "Memory", "Decision: eviction quota", "Decision: cap", "Decision: memory budget"): the host has a budget of frames. Ephemeral pages are on a
 * global LRU and their owner's LRU; persistent pages are never evicted. Before a put the
 * minimum-reserve step evicts while fewer than `reservePages` frames are free. When a frame
 * is needed and none is free, eviction makes room; a persistent put that still finds no room
 * returns -ENOMEM.
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
import {
  OP_CMD,
  OP_CREAT_ARG1,
  OP_CREAT_FLAGS,
  OP_CREAT_UUID0,
  OP_CTRL_ARG1,
  OP_CTRL_ARG2,
  OP_CTRL_CLI_ID,
  OP_CTRL_SUBOP,
  OP_POOL_ID,
  opLayout,
} from '../abi/layout.js'
import type { TmemOp } from '../abi/types.js'
import { readU32LE } from '../util/le.js'
import { Frames } from './frames.js'
import { createCodec } from './codecs.js'
import { Contents } from './dedup.js'
import { Payloads } from './payload.js'
import {
  Client,
  TIME_FLUSH,
  TIME_FLUSH_OBJECT,
  TIME_GET,
  TIME_GET_FAILED,
  TIME_PUT,
  TIME_PUT_FAILED,
  TimeStats,
} from './model.js'
import { type HostOptions, type ResolvedHostOptions, resolveHostOptions } from './options.js'
import { newListHead, Store } from './store.js'
import { Pages } from './pages.js'
import { Pools } from './pools.js'
import { Control } from './control.js'
import { renderList } from './list.js'
import { type HostStats, snapshotStats } from './stats.js'
import { GuestClient } from './friendly.js'

/** The largest client id a caller may use; 0xFFFF means "all clients" in control ops. */
export const CLIENT_ID_MAX = 0xfffe

const U32 = 0x100000000

/**
 * Stands in for a data argument that is not a Uint8Array (a JS caller's mistake): too short
 * for any page or record, so it fails exactly as a short buffer does (-EFAULT where used).
 */
const UNUSABLE_BUFFER = new Uint8Array(0)

/** The caller's data argument: a buffer, none (null or undefined), or UNUSABLE_BUFFER. */
function bufferArgument(data: unknown): Uint8Array | null {
  if (data === null || data === undefined) return null
  return data instanceof Uint8Array ? data : UNUSABLE_BUFFER
}

/** Whether `version` is an ABI version this host speaks (0 or 1). */
function isAbiVersion(version: unknown): version is 0 | 1 {
  return version === 0 || version === 1
}


/** Global counters of the LIST `G=` line (docs/semantics.md "Statistics"). */
export class GlobalCounters {
  totalOps = 0
  erroredOps = 0
  failedCopies = 0
  failedSubpageAllocs = 0
  failedPageAllocs = 0
  evicted = 0
  evictAttempts = 0
  relinquished = 0
  relinquishAttempts = 0
  relinquishEvictsMax = 0
  ephemeralCount = 0
  ephemeralMax = 0
  objectCount = 0
  objectMax = 0
  pageCount = 0
  pageMax = 0
  contentCount = 0
  contentMax = 0
  goodEphemeralPuts = 0
  dedupPuts = 0
  tzeBytes = 0
  compressedBytes = 0
  /** Stored pages that failed their check on read (never served). Not a LIST key. */
  corruptPages = 0
}

/**
 * The scratch form of the op being executed. Filled from ABI bytes or a decoded op, then
 * read by the command handlers. One per host, reused by every call.
 */
export class OpScratch {
  cmd = 0
  poolId = 0
  /** 192-bit oid as six little-endian u32 words (oid[0] low, oid[0] high, oid[1] low, ...). */
  readonly oid = new Uint32Array(6)
  index = 0
  tmemOffset = 0
  pfnOffset = 0
  len = 0
  cmfn = 0n
  uuidLo = 0n
  uuidHi = 0n
  flags = 0
  arg1 = 0
  arg2 = 0
  subop = 0
  cliId = 0
}

export class Host {
  readonly options: ResolvedHostOptions
  /** @internal */ readonly frames: Frames
  /** @internal */ readonly store: Store
  /** @internal */ readonly counters = new GlobalCounters()
  /** @internal */ readonly times = new TimeStats()
  /** @internal */ readonly globalLru = newListHead()
  /** @internal Clients by id. */ readonly clientsById: (Client | undefined)[] = []
  /** @internal Clients in creation order. */ readonly clientOrder: Client[] = []
  /** @internal */ readonly scratch = new OpScratch()
  /** @internal */ readonly pages: Pages
  /** @internal Payload storage: frames, sub-page chunks, the codec. */
  readonly payloads: Payloads
  /** @internal Dedup content descriptors, when dedup is on. */
  readonly contents: Contents | null
  /** @internal */ readonly pools: Pools
  /** @internal */ readonly control_: Control
  /** @internal Sum of all client weights. */ weightTotal = 0
  /** @internal Global shared-pool authorisation ("global auth", TMEM_AUTH to all clients). */
  globalAuth = false
  /** Reasons for refusals a person should see (v0 guest refused, and so on). */
  onDiagnostic: ((clientId: number, message: string) => void) | null = null

  constructor(options: HostOptions = {}) {
    this.options = resolveHostOptions(options)
    this.frames = new Frames(this.options.pages)
    this.store = new Store(this.options.descriptors, this.options.descriptors)
    this.payloads = new Payloads(this.frames, createCodec(this.options.codec))
    this.contents = this.options.dedup ? new Contents(this.options.descriptors) : null
    this.pages = new Pages(this)
    this.pools = new Pools(this)
    this.control_ = new Control(this)
  }

  // ---------------------------------------------------------------------------------------
  // Entry points.

  /**
   * The guest hypercall with a decoded op. `data` is the 4096-byte page of a put (read) or a
   * get (written). `version` is the caller's ABI; a client keeps the version of its first
   * call. Returns the spec's value; never throws on bad input.
   */
  op(clientId: number, op: TmemOp, data?: Uint8Array | null, version: 0 | 1 = 1): number {
    this.counters.totalOps++
    if (!isAbiVersion(version)) return this.#fail(-EINVAL)
    const rc = this.#fillScratch(op, version)
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
    this.counters.totalOps++
    if (!isAbiVersion(version)) return this.#fail(-EINVAL)
    if (!this.#readScratch(bytes, offset, version)) return this.#fail(-EFAULT)
    return this.#guest(clientId, version, bufferArgument(data), dataOffset)
  }

  /**
   * The privileged entry: TMEM_CONTROL, TMEM_AUTH and TMEM_RESTORE_NEW. `data` is the tool
   * buffer (LIST text, save records, restore pages). Guest commands here return -EPERM.
   */
  control(op: TmemOp, data?: Uint8Array | null): number {
    this.counters.totalOps++
    const rc = this.#fillScratch(op, 1)
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
    this.counters.totalOps++
    if (!isAbiVersion(version)) return this.#fail(-EINVAL)
    if (!this.#readScratch(bytes, offset, version)) return this.#fail(-EFAULT)
    const buffer = bufferArgument(data)
    if (buffer !== null && !isRange(buffer, dataOffset, dataLength)) return this.#fail(-EFAULT)
    return this.#privileged(version, buffer, dataOffset, buffer === null ? 0 : dataLength)
  }

  // ---------------------------------------------------------------------------------------
  // Control-plane helpers for embedders and the daemon.

  hasClient(clientId: number): boolean {
    return this.clientsById[clientId] !== undefined
  }

  clientIds(): number[] {
    return this.clientOrder.map((client) => client.id)
  }

  /** Destroys a client as Xen does for a dead domain: every pool flushed and destroyed. */
  destroyClient(clientId: number): boolean {
    const client = this.clientsById[clientId]
    if (client === undefined) return false
    client.liveMigrating = false
    for (let slot = 0; slot < MAX_POOLS_PER_DOMAIN; slot++) {
      if (client.pools[slot] !== null) this.pools.destroy(client, slot)
    }
    this.weightTotal -= client.weight
    this.clientsById[clientId] = undefined
    this.clientOrder.splice(this.clientOrder.indexOf(client), 1)
    return true
  }

  /** The exact TMEMC_LIST text (docs/semantics.md "LIST"). `cliId` 0xFFFF lists every client. */
  listText(cliId = 0xffff, long = false): string {
    return renderList(this, cliId, long, Number.MAX_SAFE_INTEGER)
  }

  /** A JSON-able snapshot of every counter, for metrics and readable listings. */
  stats(): HostStats {
    return snapshotStats(this)
  }

  /** The friendly layer: a guest's view with pools and oids as numbers or bigints. */
  client(clientId: number, version: 0 | 1 = 1): GuestClient {
    return new GuestClient(this, clientId, version)
  }

  // ---------------------------------------------------------------------------------------
  // Dispatch.

  /** @internal Counts a failed call (`Te`) and passes its return code through. */
  fail(rc: number): number {
    return this.#fail(rc)
  }

  #fail(rc: number): number {
    if (rc < 0) this.counters.erroredOps++
    return rc
  }

  /** @internal The client for a guest call, created on first use as in Xen. */
  clientFor(clientId: number, version: 0 | 1): Client {
    let client = this.clientsById[clientId]
    if (client === undefined) {
      client = new Client(clientId, version, this.options.compress && !this.options.dedup)
      this.clientsById[clientId] = client
      this.clientOrder.push(client)
    }
    return client
  }

  #guest(clientId: number, version: 0 | 1, data: Uint8Array | null, dataOffset: number): number {
    const s = this.scratch
    if (!Number.isInteger(clientId) || clientId < 0 || clientId > CLIENT_ID_MAX) {
      return this.#fail(-EINVAL)
    }
    // Privileged commands never create a client for the caller (docs/semantics.md "Dispatch" step 5, docs/semantics.md "Decision: who is who").
    if (s.cmd === TMEM_CONTROL || s.cmd === TMEM_AUTH || s.cmd === TMEM_RESTORE_NEW) {
      return this.#fail(-EPERM)
    }
    const client = this.clientFor(clientId, version)
    if (client.abi !== version) return this.#fail(-EINVAL)
    switch (s.cmd) {
      case TMEM_NEW_POOL:
        return this.#fail(this.pools.create(client, -1, s.flags, s.uuidLo, s.uuidHi))
      case TMEM_DESTROY_POOL: {
        // Timed as a flush, whatever the result (docs/semantics.md "Dispatch" step 9).
        const start = this.#startTimer()
        const rc = this.pools.destroyByGuest(client, s.poolId)
        this.#time(client, TIME_FLUSH, start)
        return this.#fail(rc)
      }
      case TMEM_PUT_PAGE:
      case TMEM_NEW_PAGE:
      case TMEM_WRITE:
      case TMEM_GET_PAGE:
      case TMEM_READ:
      case TMEM_FLUSH_PAGE:
      case TMEM_FLUSH_OBJECT:
        return this.#fail(this.#pageCommand(client, data, dataOffset))
      default:
        // TMEM_XCHG and unknown commands (docs/semantics.md "Decision: legacy and unknown commands").
        return this.#fail(-ENOSYS)
    }
  }

  #pageCommand(client: Client, data: Uint8Array | null, dataOffset: number): number {
    const s = this.scratch
    const slot = s.poolId >>> 0
    const pool = slot < MAX_POOLS_PER_DOMAIN ? client.pools[slot] : null
    if (pool === null || pool === undefined) return -ENODEV
    const pages = this.pages
    switch (s.cmd) {
      case TMEM_PUT_PAGE: {
        const start = this.#startTimer()
        pages.reserve(client)
        const rc = pages.put(client, pool, data, dataOffset, Pages.FILL_COPY)
        this.#time(client, rc === 1 ? TIME_PUT : TIME_PUT_FAILED, start)
        return rc
      }
      case TMEM_NEW_PAGE:
        pages.reserve(client)
        return pages.put(client, pool, data, dataOffset, Pages.FILL_ZERO)
      case TMEM_WRITE:
        if (!this.#rangeValid()) return -EINVAL
        return pages.put(client, pool, data, dataOffset, Pages.FILL_RANGE)
      case TMEM_GET_PAGE: {
        const start = this.#startTimer()
        const rc = pages.get(client, pool, data, dataOffset, false)
        this.#time(client, rc === 1 ? TIME_GET : TIME_GET_FAILED, start)
        return rc
      }
      case TMEM_READ:
        if (!this.#rangeValid()) return -EINVAL
        return pages.get(client, pool, data, dataOffset, true)
      case TMEM_FLUSH_PAGE: {
        const start = this.#startTimer()
        const rc = pages.flushPage(pool)
        this.#time(client, TIME_FLUSH, start)
        return rc
      }
      default: {
        const start = this.#startTimer()
        const rc = pages.flushObject(pool)
        this.#time(client, TIME_FLUSH_OBJECT, start)
        return rc
      }
    }
  }

  /** Ops seen by the timer, for sampling. */
  #timedOps = 0

  /**
   * Starts timing an op: the clock reading, or -1 when this op is not sampled. Every op is
   * counted; with the default clock only one op in `timingSample` reads it, because on Node 20
   * every high-resolution clock call makes a little garbage (see options.ts).
   */
  #startTimer(): number {
    if ((++this.#timedOps & (this.options.timingSample - 1)) !== 0) return -1
    return this.options.clockNs()
  }

  /** Records an op against the `T=` line and the caller's `Tc` (docs/semantics.md "LIST"). */
  #time(client: Client, tag: number, start: number): void {
    if (start < 0) {
      this.times.count[tag]!++
      return
    }
    const elapsed = this.options.clockNs() - start
    const weight = this.options.timingSample
    this.times.record(tag, elapsed, weight)
    if (elapsed > 0 && elapsed < 1e9) client.cycles += elapsed * weight
  }

  /** The 2012 range rule for READ/WRITE (docs/semantics.md "Decision: legacy and unknown commands"). */
  #rangeValid(): boolean {
    const s = this.scratch
    if (s.tmemOffset > PAGE_SIZE || s.pfnOffset > PAGE_SIZE || s.len > PAGE_SIZE) return false
    if (s.len !== 0 && (s.tmemOffset + s.len > PAGE_SIZE || s.pfnOffset + s.len > PAGE_SIZE)) {
      return false
    }
    return true
  }

  #privileged(version: 0 | 1, data: Uint8Array | null, dataOffset: number, dataLength: number): number {
    const s = this.scratch
    switch (s.cmd) {
      case TMEM_CONTROL:
        return this.#fail(this.control_.run(version, data, dataOffset, dataLength))
      case TMEM_AUTH:
        return this.#fail(this.pools.auth(s.arg1 & 0xffff, s.uuidLo, s.uuidHi, s.flags))
      case TMEM_RESTORE_NEW: {
        const client = this.clientsById[s.arg1 & 0xffff]
        if (client === undefined) return this.#fail(-EPERM)
        return this.#fail(this.pools.create(client, s.poolId >>> 0, s.flags, s.uuidLo, s.uuidHi))
      }
      default:
        return this.#fail(-EPERM)
    }
  }

  // ---------------------------------------------------------------------------------------
  // Reading ops into the scratch.

  #readScratch(bytes: Uint8Array, offset: number, version: 0 | 1): boolean {
    const layout = opLayout(version)
    if (!(bytes instanceof Uint8Array) || !Number.isInteger(offset) || offset < 0) return false
    if (offset + layout.bytes > bytes.length) return false
    const s = this.scratch
    s.cmd = readU32LE(bytes, offset + OP_CMD)
    s.poolId = readU32LE(bytes, offset + OP_POOL_ID) | 0
    if (s.cmd === TMEM_CONTROL) {
      s.subop = readU32LE(bytes, offset + OP_CTRL_SUBOP)
      s.cliId = readU32LE(bytes, offset + OP_CTRL_CLI_ID)
      s.arg1 = readU32LE(bytes, offset + OP_CTRL_ARG1)
      s.arg2 = readU32LE(bytes, offset + OP_CTRL_ARG2)
      this.#readOid(bytes, offset + layout.ctrlOid, layout.oidWords)
    } else if (s.cmd === TMEM_NEW_POOL || s.cmd === TMEM_AUTH || s.cmd === TMEM_RESTORE_NEW) {
      s.uuidLo = BigInt(readU32LE(bytes, offset + OP_CREAT_UUID0)) |
        (BigInt(readU32LE(bytes, offset + OP_CREAT_UUID0 + 4)) << 32n)
      s.uuidHi = BigInt(readU32LE(bytes, offset + OP_CREAT_UUID0 + 8)) |
        (BigInt(readU32LE(bytes, offset + OP_CREAT_UUID0 + 12)) << 32n)
      s.flags = readU32LE(bytes, offset + OP_CREAT_FLAGS)
      s.arg1 = readU32LE(bytes, offset + OP_CREAT_ARG1)
    } else {
      this.#readOid(bytes, offset + layout.genOid, layout.oidWords)
      s.index = readU32LE(bytes, offset + layout.genIndex)
      s.tmemOffset = readU32LE(bytes, offset + layout.genTmemOffset)
      s.pfnOffset = readU32LE(bytes, offset + layout.genPfnOffset)
      s.len = readU32LE(bytes, offset + layout.genLen)
      s.cmfn = 0n
      if (this.options.frameResolver !== null) {
        s.cmfn = BigInt(readU32LE(bytes, offset + layout.genCmfn)) |
          (BigInt(readU32LE(bytes, offset + layout.genCmfn + 4)) << 32n)
      }
    }
    return true
  }

  #readOid(bytes: Uint8Array, at: number, words: number): void {
    const oid = this.scratch.oid
    for (let i = 0; i < 6; i++) oid[i] = i < words * 2 ? readU32LE(bytes, at + 4 * i) : 0
  }

  /** Fills the scratch from a decoded op; returns 0, or -EFAULT for a malformed op object. */
  #fillScratch(op: TmemOp, version: 0 | 1): number {
    try {
      const s = this.scratch
      s.cmd = u32(op.cmd)
      s.poolId = s32(op.poolId)
      if ('ctrl' in op) {
        s.subop = u32(op.ctrl.subop)
        s.cliId = u32(op.ctrl.cliId)
        s.arg1 = u32(op.ctrl.arg1)
        s.arg2 = u32(op.ctrl.arg2)
        this.#fillOid(op.ctrl.oid, version)
      } else if ('creat' in op) {
        s.uuidLo = u64(op.creat.uuid[0])
        s.uuidHi = u64(op.creat.uuid[1])
        s.flags = u32(op.creat.flags)
        s.arg1 = u32(op.creat.arg1)
      } else if ('gen' in op) {
        this.#fillOid(op.gen.oid, version)
        s.index = u32(op.gen.index)
        s.tmemOffset = u32(op.gen.tmemOffset)
        s.pfnOffset = u32(op.gen.pfnOffset)
        s.len = u32(op.gen.len)
        s.cmfn = u64(op.gen.cmfn)
      } else {
        return -EFAULT
      }
      return 0
    } catch {
      return -EFAULT
    }
  }

  #fillOid(oid: readonly bigint[], version: 0 | 1): void {
    const words = this.scratch.oid
    for (let i = 0; i < 3; i++) {
      const value = u64(oid[i] ?? 0n)
      if (version === 0 && i > 0 && value !== 0n) throw new RangeError('A v0 oid has one word')
      words[2 * i] = Number(value & 0xffffffffn)
      words[2 * i + 1] = Number(value >> 32n)
    }
  }
}

/** Whether `[offset, offset + length)` are whole numbers that lie inside `buffer`. */
function isRange(buffer: Uint8Array, offset: number, length: number): boolean {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length)) return false
  return offset >= 0 && length >= 0 && offset + length <= buffer.length
}

function u32(value: number): number {
  if (!Number.isInteger(value) || value < 0 || value >= U32) throw new RangeError('Not a u32')
  return value
}

function s32(value: number): number {
  if (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff) {
    throw new RangeError('Not an s32')
  }
  return value
}

function u64(value: bigint): bigint {
  if (typeof value !== 'bigint' || value < 0n || value > 0xffffffffffffffffn) {
    throw new RangeError('Not a u64')
  }
  return value
}
