/**
 * The state of one live migration run (`Migration`) and the requests every phase makes
 * through it. The phases (live-*.ts) are functions of a `Migration`; each records in it what
 * it has done, so that rollback (live-rollback.ts) knows what to undo.
 */
import {
  PAGE_RECORD_HEADER_BYTES,
  PAGE_SIZE,
  TMEMC_FREEZE,
  TMEMC_RESTORE_BEGIN,
  TMEMC_RESTORE_PAGES,
  TMEMC_SAVE_BEGIN,
  TMEMC_SAVE_END,
  TMEMC_SAVE_GET_CHANGES,
  TMEMC_SAVE_GET_PAGES,
  TMEMC_SAVE_GET_POOL_FLAGS,
  TMEMC_SAVE_GET_POOL_NPAGES,
  TMEMC_SAVE_GET_POOL_UUID,
  cmdName,
} from '../abi/constants.js'
import { controlOp } from '../abi/codec.js'
import type { ControlResult, ControlTarget, TmemControlClient } from '../client/control.js'
import type { DaemonStats } from '../protocol/stats.js'
import type { TmemOp } from '../abi/types.js'
import {
  type MigratePhase,
  MigrationStepError,
  type MigrationSide,
  TmemConnectionError,
} from '../errors/mod.js'
import { CONTROL_DATA_BYTES_MAX } from '../protocol/frame.js'
import {
  SESSION_ACTIVATE,
  SESSION_BIND,
  SESSION_CREATE,
  SESSION_DESTROY,
  SESSION_FREE_ID,
  SESSION_LOOKUP,
  SESSION_MOVED,
  SESSION_PUSH,
  SESSION_UNFENCE,
  type SessionMessage,
  type SessionReply,
} from '../protocol/session-frame.js'

/**
 * Default deadline of each request a migration makes to a daemon, and of each connection's
 * hello and goodbye (docs/migration.md, "Deadlines"). A PUSH slice (32768 pages, 128 MiB) must
 * be applied within it too: 4 MB/s at the least.
 */
export const REQUEST_TIMEOUT_MS = 30_000

/** Bytes of one page record (header and page). */
export const RECORD_BYTES = PAGE_RECORD_HEADER_BYTES + PAGE_SIZE

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
  /**
   * Longest wait for the answer to any one request to either daemon (and for each
   * connection's hello and goodbye), in ms. A daemon that does not answer in time fails the
   * migration with causeCode ETIMEDOUT, and the migration rolls back. Default 30 000
   * (REQUEST_TIMEOUT_MS); 0 for no deadline.
   */
  requestTimeoutMs?: number
  /**
   * The most memory the source daemon's change log of this client may hold during pre-copy,
   * in bytes (rounded up to KiB). Past it changes are coalesced to one per page; if even that
   * does not fit, the migration fails with causeCode ECHANGELOG and rolls back (the client
   * runs on at the source). Default: the daemon's, 64 MiB (docs/migration.md).
   */
  changeLogBytesMax?: number
}

/** What preflight found out: how the client moves. */
export interface MigrationPlan {
  abi: 0 | 1
  /** Where the client connects on the target (the MOVED notice), or '' without a session. */
  address: string
  /** The client has a daemon session (a name, a connection) besides its engine state. */
  hasSession: boolean
  targetGraceMs: number
}

export interface PoolInfo {
  slot: number
  flags: number
  uuid: [bigint, bigint]
  persistent: boolean
  shared: boolean
  pages: number
}

/** Where the source daemon can reach the target's control endpoint (SESSION PUSH). */
export interface PushTarget {
  address: string
  secret: Uint8Array | null
}

/** One live migration run: its connections, settings, counters, and what has been done. */
export class Migration {
  readonly source: TmemControlClient
  readonly target: TmemControlClient
  readonly options: MigrateOptions
  readonly start = performance.now()
  readonly batchBytes: number
  /** Page records per full batch. */
  readonly perBatch: number
  readonly depth: number
  /** Deadline of each request, in ms (0: none). */
  readonly requestTimeoutMs: number
  /** Connections dropped because they did not answer in time. */
  readonly stalled = new Set<TmemControlClient>()
  phase: MigratePhase = 'preflight'
  plan: MigrationPlan = { abi: 1, address: '', hasSession: false, targetGraceMs: 0 }
  round = 0
  rounds = 0
  pages = 0
  bytes = 0
  pagesTotal = 0
  pushedPages = 0
  frozenPages = 0
  frozenWindowMs: number | null = null
  lastReport = 0
  /** The client's flags, weight and cap on the source (shell), and whether it was frozen. */
  clientFlags = 0
  wasFrozen = false
  notified = false
  // What has been done, for rollback.
  sourceId = 0
  targetId = 0
  name: string | null = null
  saveBegun = false
  targetCreated = false
  moved = false
  readonly pools = new Map<number, PoolInfo>()
  /** RESTORE_PAGES batches sent to the target and not yet answered. */
  readonly applying = new Set<Promise<void>>()
  /** Where the source daemon can reach the target (PUSH), or null: relay. */
  pushTo: PushTarget | null

  constructor(
    source: TmemControlClient,
    target: TmemControlClient,
    options: MigrateOptions,
    pushTo: PushTarget | null,
  ) {
    this.source = source
    this.target = target
    this.options = options
    this.batchBytes = Math.min(options.batchBytes ?? CONTROL_DATA_BYTES_MAX, CONTROL_DATA_BYTES_MAX)
    if (this.batchBytes < RECORD_BYTES)
      throw new RangeError(`batchBytes must hold one page record (${RECORD_BYTES} bytes)`)
    this.perBatch = Math.floor(this.batchBytes / RECORD_BYTES)
    this.depth = Math.max(1, options.depth ?? 4)
    this.pushTo = options.push === false ? null : pushTo
    this.requestTimeoutMs = requestTimeout(options)
  }

  control(side: MigrationSide): TmemControlClient {
    return side === 'source' ? this.source : this.target
  }

  /**
   * Runs one request on `side` within the deadline. Past it the promise rejects with a
   * TmemConnectionError ETIMEDOUT and, with `drop`, the connection is dropped: a late answer
   * would only confuse, and the rollback's requests then fail at once instead of waiting too.
   */
  async within<T>(side: MigrationSide, what: string, request: Promise<T>, drop = true): Promise<T> {
    const ms = this.requestTimeoutMs
    if (ms === 0) return request
    const control = this.control(side)
    let timer: NodeJS.Timeout | undefined
    const expired = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        reject(
          new TmemConnectionError(
            'ETIMEDOUT',
            `the ${side} daemon did not answer ${what} within ${ms} ms`,
          ),
        )
        if (drop) {
          this.stalled.add(control)
          control.destroy()
        }
      }, ms)
    })
    try {
      return await Promise.race([request, expired])
    } finally {
      clearTimeout(timer)
    }
  }

  /** A control subop on one side; resolves with its rc. */
  async ctrl(
    side: MigrationSide,
    subop: number,
    cliId: number,
    poolId = 0,
    arg1 = 0,
    arg2 = 0,
  ): Promise<number> {
    const { rc } = await this.op(side, controlOp(subop, cliId, poolId, arg1, arg2))
    return rc
  }

  /** A control subop that must not fail: a negative rc throws a MigrationStepError. */
  async ctrlOk(
    side: MigrationSide,
    subop: number,
    step: string,
    cliId: number,
    poolId = 0,
    arg1 = 0,
  ): Promise<number> {
    const rc = await this.ctrl(side, subop, cliId, poolId, arg1)
    if (rc < 0) throw new MigrationStepError(side, step, rc)
    return rc
  }

  /** A privileged op (TMEM_CONTROL, TMEM_AUTH, TMEM_RESTORE_NEW) on one side, within the deadline. */
  op(
    side: MigrationSide,
    op: TmemOp,
    data: Uint8Array | null = null,
    outputBytes?: number,
  ): Promise<ControlResult> {
    return this.within(side, opName(op), this.control(side).control(op, data, outputBytes))
  }

  /** `controlWith` on one side (the reply's buffer handed over in place), within the deadline. */
  opWith<T>(
    side: MigrationSide,
    op: TmemOp,
    data: Uint8Array | null,
    outputBytes: number,
    consume: (rc: number, bytes: Uint8Array, offset: number, length: number) => T,
  ): Promise<T> {
    return this.within(
      side,
      opName(op),
      this.control(side).controlWith(op, data, outputBytes, consume),
    )
  }

  /** A SESSION request on one side; resolves with the reply, whatever its rc. */
  session(side: MigrationSide, message: SessionMessage, drop = true): Promise<SessionReply> {
    return this.within(
      side,
      `SESSION ${SESSION_NAMES[message.cmd] ?? message.cmd}`,
      this.control(side).session(message),
      drop,
    )
  }

  /**
   * The target's STATS, within the deadline: the daemon's section (one client's request, so
   * it works however many clients the target holds; the client itself does not matter).
   */
  targetStats(): Promise<DaemonStats> {
    return this.within('target', 'STATS', this.target.statsPage({ form: 'id', id: 0 }))
  }

  /** Reports progress (at most every `progressIntervalMs`, and always when `done`). */
  report(done: boolean): void {
    const callback = this.options.onProgress
    if (callback === undefined) return
    const now = performance.now()
    if (!done && now - this.lastReport < (this.options.progressIntervalMs ?? 200)) return
    this.lastReport = now
    const elapsedMs = now - this.start
    const seconds = elapsedMs / 1000
    callback({
      phase: this.phase,
      round: this.round,
      pages: this.pages,
      bytes: this.bytes,
      pagesTotal: this.pagesTotal,
      elapsedMs,
      bytesPerSecond: seconds > 0 ? this.bytes / seconds : 0,
      pagesPerSecond: seconds > 0 ? this.pages / seconds : 0,
      frozenWindowMs: this.frozenWindowMs,
      done,
    })
  }
}

/** Marks a promise as handled (it is awaited later), so an early rejection is not fatal. */
export function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined)
  return promise
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/** The deadline of a migration's requests: the option, else REQUEST_TIMEOUT_MS. */
export function requestTimeout(options: MigrateOptions): number {
  const ms = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS
  if (!Number.isFinite(ms) || ms < 0)
    throw new RangeError('requestTimeoutMs must be 0 (no deadline) or a positive number of ms')
  return ms
}

/** The request's name for a deadline message: a control subop's, else the command's. */
function opName(op: TmemOp): string {
  return 'ctrl' in op
    ? (SUBOP_NAMES[op.ctrl.subop] ?? `control subop ${op.ctrl.subop}`)
    : cmdName(op.cmd)
}

/** Names of the control subops a migration sends (abi/constants.ts has no table of them). */
const SUBOP_NAMES: Readonly<Record<number, string>> = {
  [TMEMC_FREEZE]: 'FREEZE',
  [TMEMC_RESTORE_BEGIN]: 'RESTORE_BEGIN',
  [TMEMC_RESTORE_PAGES]: 'RESTORE_PAGES',
  [TMEMC_SAVE_BEGIN]: 'SAVE_BEGIN',
  [TMEMC_SAVE_END]: 'SAVE_END',
  [TMEMC_SAVE_GET_CHANGES]: 'SAVE_GET_CHANGES',
  [TMEMC_SAVE_GET_PAGES]: 'SAVE_GET_PAGES',
  [TMEMC_SAVE_GET_POOL_FLAGS]: 'SAVE_GET_POOL_FLAGS',
  [TMEMC_SAVE_GET_POOL_NPAGES]: 'SAVE_GET_POOL_NPAGES',
  [TMEMC_SAVE_GET_POOL_UUID]: 'SAVE_GET_POOL_UUID',
}

const SESSION_NAMES: Readonly<Record<number, string>> = {
  [SESSION_LOOKUP]: 'LOOKUP',
  [SESSION_FREE_ID]: 'FREE_ID',
  [SESSION_CREATE]: 'CREATE',
  [SESSION_BIND]: 'BIND',
  [SESSION_ACTIVATE]: 'ACTIVATE',
  [SESSION_DESTROY]: 'DESTROY',
  [SESSION_MOVED]: 'MOVED',
  [SESSION_UNFENCE]: 'UNFENCE',
  [SESSION_PUSH]: 'PUSH',
}
