/**
 * Live migration of a tmem client from one daemon to another (docs/migration.md), driven over
 * two control connections:
 *
 *   preflight   source knows the client; target reachable, speaks migration, serves the
 *               client's ABI, has no client of that name. Refusals here change nothing.
 *   shell       source SAVE_BEGIN(TMEM_SAVE_PRECOPY): the client keeps running, every
 *               persistent change is logged. Target: RESTORE_BEGIN (v0: SESSION CREATE),
 *               compress, weight, cap, and every pool 1:1 (TMEM_AUTH + TMEM_RESTORE_NEW).
 *   pre-copy    each persistent pool's pages, SAVE_GET_PAGES -> RESTORE_PAGES, several
 *               batches in flight, bounded by the pool's page count at the start.
 *   changes     SAVE_GET_CHANGES -> RESTORE_PAGES rounds while the client runs, until a
 *               round is small (or `maxRounds`).
 *   frozen      FREEZE the source; drain the log; target BIND (pending: hellos wait);
 *               source MOVED (the client is told where it went and its ops stop running
 *               here); drain what came in between; FREEZE the target if the client was
 *               frozen before; target ACTIVATE (the client resumes there); source DESTROY.
 *
 * Any failure before ACTIVATE rolls back: source UNFENCE and SAVE_END (the client keeps all its
 * pages and runs on), target DESTROY of the half-made client when the target is reachable.
 */
import { readFileSync } from 'node:fs'
import { resolve as resolvePath } from 'node:path'
import { readU32LE } from '../util/le.js'
import {
  MAX_POOLS_PER_DOMAIN,
  PAGE_RECORD_HEADER_BYTES,
  PAGE_SIZE,
  TMEM_AUTH,
  TMEM_CLIENT_COMPRESS,
  TMEM_CLIENT_FROZEN,
  TMEM_POOL_PERSIST,
  TMEM_POOL_SHARED,
  TMEM_POOL_VERSION_MASK,
  TMEM_POOL_VERSION_SHIFT,
  TMEM_RESTORE_NEW,
  TMEM_SAVE_PRECOPY,
  TMEMC_FREEZE,
  TMEMC_RESTORE_BEGIN,
  TMEMC_RESTORE_PAGES,
  TMEMC_SAVE_BEGIN,
  TMEMC_SAVE_END,
  TMEMC_SAVE_GET_CHANGES,
  TMEMC_SAVE_GET_CLIENT_CAP,
  TMEMC_SAVE_GET_CLIENT_FLAGS,
  TMEMC_SAVE_GET_CLIENT_WEIGHT,
  TMEMC_SAVE_GET_PAGES,
  TMEMC_SAVE_GET_POOL_FLAGS,
  TMEMC_SAVE_GET_POOL_NPAGES,
  TMEMC_SAVE_GET_POOL_UUID,
  TMEMC_SET_CAP,
  TMEMC_SET_COMPRESS,
  TMEMC_SET_WEIGHT,
  rcName,
} from '../abi/constants.js'
import { controlOp } from '../abi/codec.js'
import { type ControlTarget, type TmemControlClient, connectControl } from '../client/control.js'
import type { DaemonStats } from '../protocol/stats.js'
import { TmemConnectionError } from '../client/errors.js'
import { CONTROL_DATA_BYTES_MAX } from '../protocol/frame.js'
import {
  BIND_PENDING,
  SESSION_ACTIVATE,
  SESSION_BIND,
  SESSION_CREATE,
  SESSION_DESTROY,
  SESSION_ENOENT,
  SESSION_FREE_ID,
  SESSION_LOOKUP,
  SESSION_MOVED,
  SESSION_PUSH,
  SESSION_ECONNREFUSED,
  SESSION_EINVAL,
  SESSION_UNFENCE,
  STATE_ENGINE,
  STATE_SESSION,
  STATE_TCP,
  type SessionMessage,
  type SessionReply,
  emptySession,
  formatClientAddress,
} from '../protocol/session-frame.js'
import { MigrateError } from './errors.js'
import { pipeline } from './pipeline.js'

/** Longest drain after MOVED before the migration gives up and rolls back. */
const FINAL_DRAIN_MS = 10_000
/** Pages per SESSION PUSH request; progress is reported between two. */
const PUSH_SLICE_PAGES = 32_768

export type MigratePhase = 'preflight' | 'shell' | 'precopy' | 'changes' | 'frozen' | 'switch' | 'done'

export interface MigrateProgress {
  phase: MigratePhase
  /** Change-log round (0 during the pre-copy pass). */
  round: number
  /** Page records moved so far (puts and flushes), and their bytes. */
  pages: number
  bytes: number
  /** Persistent pages the source had when the migration began. */
  pagesTotal: number
  elapsedMs: number
  bytesPerSecond: number
  pagesPerSecond: number
  /** Set once the frozen window has ended. */
  frozenWindowMs: number | null
  done: boolean
}

export interface MigrateOptions {
  /** The source daemon's control connection, or where to reach it. */
  source: TmemControlClient | ControlTarget
  /** The target daemon's control connection, or where to reach it. */
  target: TmemControlClient | ControlTarget
  /** The client on the source: its name, or its client id. */
  client: string | number
  onProgress?: (progress: MigrateProgress) => void
  /** Least time between two progress reports. Default 200 ms. */
  progressIntervalMs?: number
  /**
   * Where clients connect on the target, as the MOVED notice says it (`unix:/path` or
   * `tcp:host:port`). Default: what the target reports, the same transport as the client's.
   */
  targetClientAddress?: string
  /** Change-log rounds before freezing, at most. Default 8. */
  maxRounds?: number
  /** Freeze once a change round moved at most this many records. Default 512. */
  smallRoundPages?: number
  /** Bytes per batch. Default 1 MiB (the control frame limit). */
  batchBytes?: number
  /** Batches in flight during the pre-copy pass. Default 4. */
  depth?: number
  /**
   * Let the source daemon send the pre-copy pages straight to the target (SESSION PUSH)
   * instead of relaying them through this process. Default true; it needs `target` as an
   * address (not a connection), and falls back to the relay when the source cannot push.
   */
  push?: boolean
}

export interface MigrateResult {
  name: string | null
  sourceId: number
  targetId: number
  abi: 0 | 1
  pools: number
  /** Page records moved (pre-copy pages and change records). */
  pages: number
  bytes: number
  /** Persistent pages the client had on the source at the start. */
  pagesAtStart: number
  /** Change-log rounds while the client ran, and records moved in the frozen window. */
  rounds: number
  frozenPages: number
  /** From FREEZE on the source to ACTIVATE on the target. */
  frozenWindowMs: number
  elapsedMs: number
  bytesPerSecond: number
  /** The client was frozen before and is frozen on the target too. */
  frozen: boolean
  /** The client's connection was told where it went (false: it was not connected). */
  notified: boolean
  /** Pre-copy pages the source daemon pushed straight to the target (the rest were relayed). */
  pushedPages: number
  /** Where the client connects now. */
  address: string
}

export type MigrationErrorCode =
  /** The target (or source) daemon cannot be reached. Nothing moved. */
  | 'EUNREACHABLE'
  /** The source has no such client. Nothing moved. */
  | 'ENOCLIENT'
  /** The target already has a client of that name (or cannot take its id). Nothing moved. */
  | 'EEXIST'
  /** The target does not serve the client's ABI (v0 without --accept-v0). Nothing moved. */
  | 'EABI'
  /** The target daemon does not support live migration. Nothing moved. */
  | 'ENOTSUPP'
  /** The migration failed part-way; see `phase` and `rolledBack`. */
  | 'EMIGRATE'

export class MigrationError extends MigrateError {
  override readonly name = 'MigrationError'
  declare readonly code: MigrationErrorCode
  readonly phase: MigratePhase
  /** True when the source client was left as it was (running, all its pages). */
  readonly sourceIntact: boolean
  /** What became of the half-made client on the target. */
  readonly targetCleanup: 'none' | 'destroyed' | 'unreachable'

  constructor(
    code: MigrationErrorCode,
    phase: MigratePhase,
    message: string,
    detail: { sourceIntact?: boolean; targetCleanup?: 'none' | 'destroyed' | 'unreachable'; cause?: unknown } = {},
  ) {
    super(code, message)
    this.phase = phase
    this.sourceIntact = detail.sourceIntact ?? true
    this.targetCleanup = detail.targetCleanup ?? 'none'
    if (detail.cause !== undefined) this.cause = detail.cause
  }
}

const RECORD_BYTES = PAGE_RECORD_HEADER_BYTES + PAGE_SIZE

interface PoolInfo {
  slot: number
  flags: number
  uuid: [bigint, bigint]
  persistent: boolean
  shared: boolean
  pages: number
}

/**
 * Moves a running client from the source daemon to the target daemon.
 *
 * @throws {MigrationError} A preflight refusal (nothing moved) or a failure part-way (rolled
 *   back: the client keeps running on the source with all its pages).
 * @example
 * ```ts
 * const result = await migrateClient({
 *   source: { path: '/run/tmem/a/control.sock' },
 *   target: { path: '/run/tmem/b/control.sock' },
 *   client: 'web-1',
 *   onProgress: (p) => console.error(p.phase, p.pages, (p.bytesPerSecond / 1e6).toFixed(0), 'MB/s'),
 * })
 * console.log(`frozen for ${result.frozenWindowMs.toFixed(1)} ms`)
 * ```
 */
export async function migrateClient(options: MigrateOptions): Promise<MigrateResult> {
  const opened: TmemControlClient[] = []
  try {
    const source = await open(options.source, 'source', opened)
    const target = await open(options.target, 'target', opened)
    return await new Migration(source, target, options).run()
  } finally {
    for (const control of opened) await control.close().catch(() => undefined)
  }
}

async function open(
  given: TmemControlClient | ControlTarget,
  which: 'source' | 'target',
  opened: TmemControlClient[],
): Promise<TmemControlClient> {
  if ('control' in given) return given
  try {
    const control = await connectControl(given, { name: `tmem-migrate-${which}` })
    opened.push(control)
    return control
  } catch (error) {
    const where = 'path' in given ? given.path : `${given.host}:${given.port}`
    const detail = error instanceof Error ? error.message : String(error)
    throw new MigrationError('EUNREACHABLE', 'preflight', `Cannot migrate: the ${which} daemon at ${where} is unreachable (${detail}); nothing was moved`, { cause: error })
  }
}

class Migration {
  readonly #source: TmemControlClient
  readonly #target: TmemControlClient
  readonly #options: MigrateOptions
  readonly #start = performance.now()
  readonly #batchBytes: number
  readonly #perBatch: number
  readonly #depth: number
  #phase: MigratePhase = 'preflight'
  #round = 0
  #pages = 0
  #bytes = 0
  #pagesTotal = 0
  #lastReport = 0
  #frozenWindowMs: number | null = null
  // What has been done, for rollback.
  #sourceId = 0
  #targetId = 0
  #name: string | null = null
  #saveBegun = false
  #targetCreated = false
  #moved = false
  readonly #pools = new Map<number, PoolInfo>()
  /** RESTORE_PAGES batches sent to the target and not yet answered. */
  readonly #applying = new Set<Promise<void>>()
  /** Where the source daemon can reach the target's control endpoint (PUSH), or null: relay. */
  #pushTo: PushTarget | null
  #pushedPages = 0

  constructor(source: TmemControlClient, target: TmemControlClient, options: MigrateOptions) {
    this.#source = source
    this.#target = target
    this.#options = options
    this.#batchBytes = Math.min(options.batchBytes ?? CONTROL_DATA_BYTES_MAX, CONTROL_DATA_BYTES_MAX)
    if (this.#batchBytes < RECORD_BYTES) throw new RangeError(`batchBytes must hold one page record (${RECORD_BYTES} bytes)`)
    this.#perBatch = Math.floor(this.#batchBytes / RECORD_BYTES)
    this.#depth = Math.max(1, options.depth ?? 4)
    this.#pushTo = options.push === false ? null : pushTarget(options.target)
  }

  async run(): Promise<MigrateResult> {
    const plan = await this.#preflight()
    try {
      return await this.#migrate(plan)
    } catch (error) {
      throw await this.#rollback(error)
    }
  }

  // -------------------------------------------------------------------------------------
  // Preflight: refusals before anything moves.

  async #preflight(): Promise<{ abi: 0 | 1; address: string; hasSession: boolean; targetGraceMs: number }> {
    const wanted = this.#options.client
    const lookup = typeof wanted === 'number'
      ? await this.#sessionOn(this.#source, { ...emptySession(SESSION_LOOKUP), clientId: wanted })
      : await this.#sessionOn(this.#source, { ...emptySession(SESSION_LOOKUP), name: wanted })
    if (lookup.rc < 0 || (lookup.flags & (STATE_ENGINE | STATE_SESSION)) === 0) {
      throw new MigrationError('ENOCLIENT', 'preflight', `Cannot migrate: the source has no client ${JSON.stringify(wanted)}; nothing was moved`)
    }
    const hasSession = (lookup.flags & STATE_SESSION) !== 0
    this.#sourceId = lookup.rc
    this.#name = hasSession ? lookup.name : null
    const abi: 0 | 1 = hasSession ? (lookup.abi === 0 ? 0 : 1) : await this.#engineAbi()

    let stats: DaemonStats
    try {
      stats = await this.#target.stats()
    } catch (error) {
      throw new MigrationError('EUNREACHABLE', 'preflight', `Cannot migrate: the target daemon does not answer (${errorText(error)}); nothing was moved`, { cause: error })
    }
    const daemon = stats.daemon as Record<string, unknown>
    if (daemon['migration'] !== 1) {
      throw new MigrationError('ENOTSUPP', 'preflight', 'Cannot migrate: the target daemon does not support live migration (no SESSION requests); nothing was moved')
    }
    const abis = Array.isArray(daemon['abis']) ? (daemon['abis'] as unknown[]) : [1]
    if (!abis.includes(abi)) {
      throw new MigrationError('EABI', 'preflight', abi === 0
        ? 'Cannot migrate: the client speaks tmem ABI v0 and the target does not serve v0 (start it with --accept-v0); nothing was moved'
        : 'Cannot migrate: the client speaks tmem ABI v1 and the target does not serve v1; nothing was moved')
    }
    if (this.#name !== null) {
      const there = await this.#sessionOn(this.#target, { ...emptySession(SESSION_LOOKUP), name: this.#name })
      if (there.rc >= 0) {
        throw new MigrationError('EEXIST', 'preflight', `Cannot migrate: the target already has a client named ${this.#name} (id ${there.rc}); nothing was moved`)
      }
    }
    const address = this.#options.targetClientAddress ?? pickAddress(daemon['clientAddresses'], (lookup.flags & STATE_TCP) !== 0)
    if (address === null && hasSession) {
      throw new MigrationError('ENOTSUPP', 'preflight', 'Cannot migrate: the target daemon has no client endpoint the client could move to; nothing was moved')
    }
    const graceMs = typeof daemon['graceMs'] === 'number' ? daemon['graceMs'] : 30_000
    return { abi, address: address ?? '', hasSession, targetGraceMs: graceMs }
  }

  /** The ABI of an engine client with no session, from its pools' version bits. */
  async #engineAbi(): Promise<0 | 1> {
    for (let slot = 0; slot < MAX_POOLS_PER_DOMAIN; slot++) {
      const flags = await this.#ctrl(this.#source, TMEMC_SAVE_GET_POOL_FLAGS, this.#sourceId, slot)
      if (flags === -1) continue
      return ((flags >>> TMEM_POOL_VERSION_SHIFT) & TMEM_POOL_VERSION_MASK) === 0 ? 0 : 1
    }
    return 1
  }

  // -------------------------------------------------------------------------------------
  // The migration proper.

  async #migrate(plan: { abi: 0 | 1; address: string; hasSession: boolean; targetGraceMs: number }): Promise<MigrateResult> {
    const source = this.#source
    const target = this.#target
    const sourceId = this.#sourceId

    // Shell.
    this.#phase = 'shell'
    const begun = await this.#ctrl(source, TMEMC_SAVE_BEGIN, sourceId, 0, TMEM_SAVE_PRECOPY)
    this.#saveBegun = begun === 1
    const clientFlags = begun === 1 ? await this.#ctrl(source, TMEMC_SAVE_GET_CLIENT_FLAGS, sourceId) : 0
    const weight = begun === 1 ? await this.#ctrl(source, TMEMC_SAVE_GET_CLIENT_WEIGHT, sourceId) : 0
    const cap = begun === 1 ? await this.#ctrl(source, TMEMC_SAVE_GET_CLIENT_CAP, sourceId) : 0
    const wasFrozen = clientFlags >= 0 && (clientFlags & TMEM_CLIENT_FROZEN) !== 0

    this.#targetId = await this.#pickTargetId(sourceId)
    if (plan.abi === 1) {
      const rc = await this.#ctrl(target, TMEMC_RESTORE_BEGIN, this.#targetId)
      if (rc !== 1) throw new Error(`RESTORE_BEGIN of client ${this.#targetId} on the target returned ${rc}`)
    } else {
      const reply = await this.#sessionOn(target, { ...emptySession(SESSION_CREATE), clientId: this.#targetId, abi: 0 })
      if (reply.rc !== this.#targetId) throw new Error(`SESSION CREATE of v0 client ${this.#targetId} on the target returned ${reply.rc}`)
    }
    this.#targetCreated = true
    if (begun === 1) {
      await this.#set(TMEMC_SET_COMPRESS, (clientFlags & TMEM_CLIENT_COMPRESS) !== 0 ? 1 : 0, 'compression')
      await this.#set(TMEMC_SET_WEIGHT, weight === -2 ? 0xffffffff : weight >>> 0, 'weight')
      if (cap >= 0 && cap <= 100) await this.#set(TMEMC_SET_CAP, cap, 'cap')
    }
    await this.#syncPools()
    for (const pool of this.#pools.values()) this.#pagesTotal += pool.pages
    this.#report(false)

    // Pre-copy.
    this.#phase = 'precopy'
    for (const pool of this.#pools.values()) {
      if (pool.persistent && pool.pages > 0) await this.#precopyPool(pool)
    }

    // Change rounds while the client runs.
    this.#phase = 'changes'
    const maxRounds = this.#options.maxRounds ?? 8
    const small = this.#options.smallRoundPages ?? 512
    // A round moves at most about what the client had: a writer faster than the copy does
    // not keep a round going for ever (the rounds then end at maxRounds).
    const roundLimit = Math.max(this.#pagesTotal, 4 * this.#perBatch)
    let rounds = 0
    if (this.#saveBegun) {
      while (rounds < maxRounds) {
        rounds++
        this.#round = rounds
        const moved = await this.#drainChanges(roundLimit)
        if (moved <= small) break
      }
    }

    // Frozen window. FREEZE stops new puts (Xen still lets a frozen client replace a page and
    // flush), so the switch comes right after it: MOVED stops every op of the client on the
    // source, and only then is the log drained to the end.
    this.#phase = 'frozen'
    const frozenStart = performance.now()
    const pagesBeforeFreeze = this.#pages
    if (this.#saveBegun) {
      const rc = await this.#ctrl(source, TMEMC_FREEZE, sourceId)
      if (rc < 0) throw new Error(`FREEZE of client ${sourceId} on the source returned ${rc}`)
    }
    let secret: Uint8Array | null = null
    let notified = false
    if (plan.hasSession && this.#name !== null) {
      const bound = await this.#sessionOn(target, {
        ...emptySession(SESSION_BIND), name: this.#name, clientId: this.#targetId, abi: plan.abi, flags: BIND_PENDING,
      })
      if (bound.rc !== this.#targetId || bound.secret === null) throw new Error(`BIND of ${this.#name} on the target returned ${rcText(bound.rc)}`)
      secret = bound.secret
      const moved = await this.#sessionOn(source, {
        ...emptySession(SESSION_MOVED), name: this.#name, address: plan.address, secret, graceMs: plan.targetGraceMs,
      })
      if (moved.rc < 0) throw new Error(`MOVED of ${this.#name} on the source returned ${rcText(moved.rc)}`)
      this.#moved = true
      notified = moved.rc === 1
    }
    // Everything the client changed up to MOVED; nothing should be added after it. The drain
    // is bounded in time all the same: if the log keeps filling (a client still running ops
    // on the source), the migration fails and rolls back instead of draining for ever.
    if (this.#saveBegun) await this.#finalDrain()
    await this.#syncPools()
    if (wasFrozen) await this.#set(TMEMC_FREEZE, 0, 'freeze')
    if (plan.hasSession && this.#name !== null) {
      const activated = await this.#sessionOn(target, { ...emptySession(SESSION_ACTIVATE), name: this.#name })
      if (activated.rc < 0) throw new Error(`ACTIVATE of ${this.#name} on the target returned ${rcText(activated.rc)}`)
    }
    this.#frozenWindowMs = performance.now() - frozenStart
    const frozenPages = this.#pages - pagesBeforeFreeze

    // The client now lives on the target: the source copy goes.
    this.#phase = 'done'
    try {
      await this.#sessionOn(source, { ...emptySession(SESSION_DESTROY), clientId: sourceId })
    } catch {
      // The source went away after the switch: its copy is gone with it.
    }
    this.#report(true)
    const elapsedMs = performance.now() - this.#start
    return {
      name: this.#name,
      sourceId,
      targetId: this.#targetId,
      abi: plan.abi,
      pools: this.#pools.size,
      pages: this.#pages,
      bytes: this.#bytes,
      pagesAtStart: this.#pagesTotal,
      rounds,
      frozenPages,
      frozenWindowMs: this.#frozenWindowMs,
      elapsedMs,
      bytesPerSecond: elapsedMs > 0 ? this.#bytes / (elapsedMs / 1000) : 0,
      frozen: wasFrozen,
      notified,
      address: plan.address,
      pushedPages: this.#pushedPages,
    }
  }

  /** The source id when the target has no client with it, else a free one. */
  async #pickTargetId(sourceId: number): Promise<number> {
    const there = await this.#sessionOn(this.#target, { ...emptySession(SESSION_LOOKUP), clientId: sourceId })
    if (there.rc === SESSION_ENOENT) return sourceId
    const free = await this.#sessionOn(this.#target, emptySession(SESSION_FREE_ID))
    if (free.rc <= 0) throw new Error('the target has no free client id')
    return free.rc
  }

  /** Creates on the target every pool the source has and the target does not yet. */
  async #syncPools(): Promise<void> {
    const slots = Array.from({ length: MAX_POOLS_PER_DOMAIN }, (_, slot) => slot).filter((slot) => !this.#pools.has(slot))
    const flags = await Promise.all(slots.map((slot) => this.#ctrl(this.#source, TMEMC_SAVE_GET_POOL_FLAGS, this.#sourceId, slot)))
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i]!
      const poolFlags = flags[i]!
      if (poolFlags === -1) continue
      const persistent = (poolFlags & TMEM_POOL_PERSIST) !== 0
      const shared = (poolFlags & TMEM_POOL_SHARED) !== 0
      const uuid = await this.#poolUuid(slot)
      const pages = persistent ? Math.max(0, await this.#ctrl(this.#source, TMEMC_SAVE_GET_POOL_NPAGES, this.#sourceId, slot)) : 0
      if (shared) {
        const rc = await this.#target.control({ cmd: TMEM_AUTH, poolId: 0, creat: { uuid, flags: 1, arg1: this.#targetId } })
        if (rc.rc < 0) throw new Error(`TMEM_AUTH for shared pool ${slot} on the target returned ${rcName(rc.rc)}`)
      }
      const created = await this.#target.control({ cmd: TMEM_RESTORE_NEW, poolId: slot, creat: { uuid, flags: poolFlags >>> 0, arg1: this.#targetId } })
      if (created.rc !== slot) throw new Error(`TMEM_RESTORE_NEW of pool ${slot} (flags 0x${(poolFlags >>> 0).toString(16)}) on the target returned ${created.rc}`)
      const check = await this.#ctrl(this.#target, TMEMC_SAVE_GET_POOL_FLAGS, this.#targetId, slot)
      const kind = TMEM_POOL_PERSIST | TMEM_POOL_SHARED
      if (check < 0 || (check & kind) !== (poolFlags & kind)) {
        throw new Error(`pool ${slot} came back on the target with flags 0x${(check >>> 0).toString(16)} instead of 0x${(poolFlags >>> 0).toString(16)}`)
      }
      this.#pools.set(slot, { slot, flags: poolFlags, uuid, persistent, shared, pages })
    }
  }

  async #poolUuid(slot: number): Promise<[bigint, bigint]> {
    const op = controlOp(TMEMC_SAVE_GET_POOL_UUID, this.#sourceId, slot)
    const { rc, data } = await this.#source.control(op, null, 16)
    if (rc < 0) throw new Error(`SAVE_GET_POOL_UUID of pool ${slot} returned ${rc}`)
    const view = Buffer.from(data.buffer, data.byteOffset, 16)
    return [view.readBigUInt64LE(0), view.readBigUInt64LE(8)]
  }

  /**
   * The pre-copy pass of one pool: SAVE_GET_PAGES batches, `depth` in flight, each forwarded
   * to the target as it arrives (straight from the reply buffer into the RESTORE_PAGES frame).
   * Bounded by the pool's page count at the start: pages put since are in the change log.
   */
  async #precopyPool(pool: PoolInfo): Promise<void> {
    let pages = pool.pages
    if (this.#pushTo !== null) {
      const pushed = await this.#pushPool(pool)
      if (pushed.ended) return
      pages -= pushed.pages
      if (pages <= 0) return
    }
    await this.#relayPool(pool, pages)
  }

  /**
   * Pre-copy by SESSION PUSH, in slices of PUSH_SLICE_PAGES. When the source cannot push
   * (an older daemon: EINVAL; the target not reachable from the source: ECONNREFUSED), and
   * nothing was sent by that request, the relay takes over from the same save cursor.
   */
  async #pushPool(pool: PoolInfo): Promise<{ pages: number; ended: boolean }> {
    const to = this.#pushTo!
    let pages = 0
    while (pages < pool.pages) {
      const slice = Math.min(PUSH_SLICE_PAGES, pool.pages - pages)
      const reply = await this.#sessionOn(this.#source, {
        ...emptySession(SESSION_PUSH), clientId: this.#sourceId, flags: pool.slot, graceMs: slice,
        address: to.address, secret: to.secret, peerId: this.#targetId,
      })
      if (reply.rc === SESSION_EINVAL || reply.rc === SESSION_ECONNREFUSED) {
        this.#pushTo = null
        return { pages, ended: false }
      }
      if (reply.rc < 0) throw new Error(`PUSH of pool ${pool.slot} from the source to the target returned ${rcText(reply.rc)}`)
      pages += reply.rc
      this.#pushedPages += reply.rc
      this.#pages += reply.rc
      this.#bytes += reply.rc * RECORD_BYTES
      this.#report(false)
      if (reply.rc < slice) return { pages, ended: true }
    }
    return { pages, ended: false }
  }

  /** Pre-copy relayed through this process: SAVE_GET_PAGES from the source, RESTORE_PAGES to the target. */
  async #relayPool(pool: PoolInfo, pagesMax: number): Promise<void> {
    const fetches = Math.ceil(pagesMax / this.#perBatch)
    let issued = 0
    let ended = false
    const applied: Promise<void>[] = []
    const op = controlOp(TMEMC_SAVE_GET_PAGES, this.#sourceId, pool.slot, this.#batchBytes)
    const fetchOne = async (): Promise<void> => {
      const result = await this.#source.controlWith(op, null, this.#batchBytes, (rc, bytes, offset) => {
        if (rc <= 0) return rc
        const length = rc * RECORD_BYTES
        applied.push(this.#startApply(bytes.subarray(offset, offset + length), rc))
        return rc
      })
      if (result < 0) throw new Error(`SAVE_GET_PAGES of pool ${pool.slot} returned ${rcName(result)} (${result})`)
      if (result < this.#perBatch) ended = true
    }
    await pipeline(this.#depth, () => this.#applyRoom(), () => issued < fetches && !ended, () => {
      issued++
      return fetchOne()
    })
    await Promise.all(applied)
  }

  /**
   * Drains the change log, `depth` batches in flight, each forwarded to the target in the
   * order the source gave them. Stops once a batch comes back not full (the log was empty at
   * that moment; after MOVED nothing is added, so it stays empty) or `limit` records have
   * moved. A batch that names a pool the target does not have yet (created on the source
   * since the last sync) and every batch after it are held until the pool is created there.
   * Returns the records moved.
   */
  async #drainChanges(limit: number): Promise<number> {
    let moved = 0
    let caughtUp = false
    let blocked = false
    const held: { records: Uint8Array; count: number }[] = []
    const applied: Promise<void>[] = []
    const op = controlOp(TMEMC_SAVE_GET_CHANGES, this.#sourceId, 0, this.#batchBytes)
    const fetchOne = async (): Promise<void> => {
      const rc = await this.#source.controlWith(op, null, this.#batchBytes, (rc, bytes, offset, length) => {
        if (rc <= 0) {
          if (rc === 0) caughtUp = true
          return rc
        }
        const walked = walkRecords(bytes, offset, length, rc, this.#pools)
        if (walked.length < 0) return -22
        if (walked.length + RECORD_BYTES <= this.#batchBytes) caughtUp = true
        const records = bytes.subarray(offset, offset + walked.length)
        if (blocked || walked.unknownPool) {
          blocked = true
          held.push({ records: records.slice(), count: rc })
        } else {
          applied.push(this.#startApply(records, rc))
        }
        moved += rc
        return rc
      })
      if (rc < 0) throw new Error(`SAVE_GET_CHANGES returned ${rcName(rc)} (${rc})`)
    }
    await pipeline(this.#depth, () => this.#applyRoom(), (inFlight) => !caughtUp && moved + inFlight * this.#perBatch < limit, fetchOne)
    await Promise.all(applied)
    if (held.length > 0) {
      await this.#syncPools()
      for (const batch of held) await this.#apply(batch.records, batch.count)
    }
    return moved
  }

  /** The drain after MOVED, bounded by FINAL_DRAIN_MS; throws when the log never empties. */
  async #finalDrain(): Promise<void> {
    const step = this.#perBatch * this.#depth * 16
    const deadline = Date.now() + FINAL_DRAIN_MS
    do {
      if ((await this.#drainChanges(step)) < step) return
    } while (Date.now() < deadline)
    throw new Error(`the change log did not empty within ${FINAL_DRAIN_MS} ms after MOVED`)
  }

  /**
   * Starts RESTORE_PAGES of a batch (its frame is built now, so `records` may be a view of a
   * reply buffer). The returned promise is marked handled; await it later.
   */
  #startApply(records: Uint8Array, count: number): Promise<void> {
    const applying = handled(this.#apply(records, count).finally(() => this.#applying.delete(applying)))
    this.#applying.add(applying)
    return applying
  }

  /**
   * Back-pressure from the target: no new fetch while `depth` batches wait for the target.
   * Without it a slow target (one touching fresh memory) lets the relay queue hundreds of
   * megabytes of frames and spend its time collecting them.
   */
  async #applyRoom(): Promise<void> {
    while (this.#applying.size >= this.#depth) await Promise.race(this.#applying)
  }

  /** RESTORE_PAGES of `count` records on the target. */
  async #apply(records: Uint8Array, count: number): Promise<void> {
    const op = controlOp(TMEMC_RESTORE_PAGES, this.#targetId, 0, records.length)
    const rc = await this.#target.controlWith(op, records, 0, (value) => value)
    if (rc !== count) throw new Error(`RESTORE_PAGES on the target returned ${rcName(rc)} (${rc}) for ${count} records`)
    this.#pages += count
    this.#bytes += records.length
    this.#report(false)
  }

  async #set(subop: number, value: number, what: string): Promise<void> {
    const rc = await this.#ctrl(this.#target, subop, this.#targetId, 0, value)
    if (rc < 0) throw new Error(`the target refused ${what} ${value} (${rcName(rc)})`)
  }

  async #ctrl(control: TmemControlClient, subop: number, cliId: number, poolId = 0, arg1 = 0): Promise<number> {
    const { rc } = await control.control(controlOp(subop, cliId, poolId, arg1))
    return rc
  }

  async #sessionOn(control: TmemControlClient, message: SessionMessage): Promise<SessionReply> {
    return control.session(message)
  }

  // -------------------------------------------------------------------------------------
  // Rollback.

  async #rollback(error: unknown): Promise<MigrationError> {
    if (error instanceof MigrationError) return error
    const phase = this.#phase
    let sourceIntact = true
    let targetCleanup: 'none' | 'destroyed' | 'unreachable' = 'none'
    // The source first: the client must get running again there.
    try {
      if (this.#moved && this.#name !== null) {
        await this.#sessionOn(this.#source, { ...emptySession(SESSION_UNFENCE), name: this.#name })
      }
      if (this.#saveBegun) await this.#ctrl(this.#source, TMEMC_SAVE_END, this.#sourceId)
    } catch {
      sourceIntact = false
    }
    if (this.#targetCreated) {
      try {
        const rc = await this.#sessionOn(this.#target, { ...emptySession(SESSION_DESTROY), clientId: this.#targetId })
        targetCleanup = rc.rc >= 0 ? 'destroyed' : 'unreachable'
      } catch {
        targetCleanup = 'unreachable'
      }
    }
    const why = error instanceof TmemConnectionError
      ? `a daemon connection failed (${error.code}: ${error.message})`
      : errorText(error)
    const source = sourceIntact
      ? 'the client keeps running on the source with all its pages'
      : 'the source did not answer the rollback (SAVE_END); it ends the save itself when this connection closes'
    const target = targetCleanup === 'destroyed'
      ? 'the partial copy on the target was destroyed'
      : targetCleanup === 'unreachable' ? 'the target is unreachable, so its partial copy could not be removed' : 'nothing was created on the target'
    return new MigrationError('EMIGRATE', phase, `Migration failed during ${phase}: ${why}; ${source}; ${target}`, { sourceIntact, targetCleanup, cause: error })
  }

  #report(done: boolean): void {
    const callback = this.#options.onProgress
    if (callback === undefined) return
    const now = performance.now()
    if (!done && now - this.#lastReport < (this.#options.progressIntervalMs ?? 200)) return
    this.#lastReport = now
    const elapsedMs = now - this.#start
    const seconds = elapsedMs / 1000
    callback({
      phase: this.#phase,
      round: this.#round,
      pages: this.#pages,
      bytes: this.#bytes,
      pagesTotal: this.#pagesTotal,
      elapsedMs,
      bytesPerSecond: seconds > 0 ? this.#bytes / seconds : 0,
      pagesPerSecond: seconds > 0 ? this.#pages / seconds : 0,
      frozenWindowMs: this.#frozenWindowMs,
      done,
    })
  }
}

/**
 * Walks `count` page records: their total length (or -1 if they do not fit `length` or have
 * a bad kind), the page records among them, and whether one names a pool not in `pools`.
 */
function walkRecords(
  bytes: Uint8Array,
  offset: number,
  length: number,
  count: number,
  pools: ReadonlyMap<number, PoolInfo>,
): { length: number; pages: number; unknownPool: boolean } {
  let at = offset
  let pages = 0
  let unknownPool = false
  const end = offset + length
  for (let i = 0; i < count; i++) {
    if (at + PAGE_RECORD_HEADER_BYTES > end) return { length: -1, pages, unknownPool }
    const poolId = readU32LE(bytes, at)
    const kind = readU32LE(bytes, at + 32)
    if (!pools.has(poolId)) unknownPool = true
    if (kind === 1) {
      pages++
      at += RECORD_BYTES
    } else if (kind === 0) {
      at += PAGE_RECORD_HEADER_BYTES
    } else {
      return { length: -1, pages, unknownPool }
    }
    if (at > end) return { length: -1, pages, unknownPool }
  }
  return { length: at - offset, pages, unknownPool }
}

/** The target address for the MOVED notice: the client's own transport when the target has it. */
function pickAddress(addresses: unknown, tcp: boolean): string | null {
  if (!Array.isArray(addresses)) return null
  const list = addresses.filter((entry): entry is string => typeof entry === 'string')
  const preferred = list.find((entry) => entry.startsWith(tcp ? 'tcp:' : 'unix:'))
  return preferred ?? list[0] ?? null
}

/** Marks a promise as handled (it is awaited later), so an early rejection is not fatal. */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined)
  return promise
}

function rcText(rc: number): string {
  return rc >= 0 ? String(rc) : `${rcName(rc)} (${rc})`
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

interface PushTarget {
  address: string
  secret: Uint8Array | null
}

/**
 * The target's control endpoint as the source daemon would dial it: an absolute socket path,
 * or TCP with the token (64 hex digits, carried as 32 bytes). Null when it cannot be named
 * (a connection object was given, or an unusual token): then pages are relayed.
 */
function pushTarget(target: TmemControlClient | ControlTarget): PushTarget | null {
  if ('control' in target) return null
  if ('path' in target) return { address: formatClientAddress({ path: resolvePath(target.path) }), secret: null }
  let token = target.token ?? ''
  if (target.token === undefined && target.tokenFile !== undefined) {
    try {
      token = readFileSync(target.tokenFile, 'utf8').trim()
    } catch {
      return null
    }
  }
  if (!/^[0-9a-fA-F]{64}$/.test(token)) return null
  return { address: formatClientAddress({ host: target.host, port: target.port }), secret: Buffer.from(token, 'hex') }
}
