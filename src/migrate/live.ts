/**
 * Live migration of a tmem client from one daemon to another (docs/migration.md), driven over
 * two control connections, as a table of phases, each a function of the run's state
 * (`Migration`, live-state.ts):
 *
 *   preflight   live-preflight.ts  refusals before anything moves (MigrationError codes)
 *   shell       live-shell.ts      SAVE_BEGIN(PRECOPY) on the source; the empty client and
 *                                  its pools on the target
 *   precopy     live-precopy.ts    every persistent pool's pages: pushed by the source daemon,
 *                                  or relayed through this process
 *   changes     live-changes.ts    change-log rounds while the client runs
 *   frozen      live-switch.ts     FREEZE, BIND, MOVED, last drain, ACTIVATE on the target
 *   rollback    live-rollback.ts   any failure before ACTIVATE: the client runs on at the source
 *
 * A phase throws a MigrationStepError (or a connection error) naming the side, the request and
 * the real cause; the caller gets a MigrationError (code EMIGRATE) with it as `cause`.
 */
import { type ControlTarget, type TmemControlClient, connectControl } from '../client/control.js'
import { type MigratePhase, MigrationError } from '../errors/mod.js'
import { changeRounds } from './live-changes.js'
import { precopy, pushTarget } from './live-precopy.js'
import { preflight } from './live-preflight.js'
import { settleRemote } from './live-remote.js'
import { rollback } from './live-rollback.js'
import { shell } from './live-shell.js'
import { type MigrateOptions, Migration, requestTimeout } from './live-state.js'
import { destroySource, switchOver } from './live-switch.js'

export { type MigrateOptions, type MigrateProgress, REQUEST_TIMEOUT_MS } from './live-state.js'
export {
  type MigratePhase,
  MigrationError,
  type MigrationErrorCode,
  MigrationStepError,
} from '../errors/mod.js'

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

/** The phases after preflight, in order; a failure in any of them rolls back. */
const PHASES: readonly { phase: MigratePhase; run: (m: Migration) => Promise<void> }[] = [
  { phase: 'shell', run: shell },
  { phase: 'precopy', run: precopy },
  { phase: 'changes', run: changeRounds },
  { phase: 'frozen', run: switchOver },
]

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
  const timeoutMs = requestTimeout(options)
  const opened: TmemControlClient[] = []
  let m: Migration | null = null
  try {
    const source = await open(options.source, 'source', opened, timeoutMs)
    const target = await open(options.target, 'target', opened, timeoutMs)
    m = new Migration(source, target, options, pushTarget(options.target))
    return await run(m)
  } finally {
    for (const control of opened)
      await closeWithin(control, m?.stalled.has(control) === true ? -1 : timeoutMs)
  }
}

/** Goodbye within `timeoutMs` (0: no limit), else the connection is dropped; -1: dropped now. */
async function closeWithin(control: TmemControlClient, timeoutMs: number): Promise<void> {
  if (timeoutMs < 0) {
    control.destroy()
    return
  }
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<void>((resolve) => {
    if (timeoutMs > 0) timer = setTimeout(resolve, timeoutMs)
  })
  await Promise.race([control.close().catch(() => undefined), expired])
  clearTimeout(timer)
  control.destroy()
}

async function run(m: Migration): Promise<MigrateResult> {
  m.plan = await preflight(m)
  try {
    for (const { phase, run: runPhase } of PHASES) {
      m.phase = phase
      await runPhase(m)
    }
  } catch (error) {
    throw await rollback(m, error)
  }
  m.phase = 'done'
  // The source keeps its copy when it did not let go of remote keys the target now uses.
  if (await settleRemote(m)) await destroySource(m)
  m.report(true)
  return result(m)
}

function result(m: Migration): MigrateResult {
  const elapsedMs = performance.now() - m.start
  return {
    name: m.name,
    sourceId: m.sourceId,
    targetId: m.targetId,
    abi: m.plan.abi,
    pools: m.pools.size,
    pages: m.pages,
    bytes: m.bytes,
    pagesAtStart: m.pagesTotal,
    rounds: m.rounds,
    frozenPages: m.frozenPages,
    frozenWindowMs: m.frozenWindowMs ?? 0,
    elapsedMs,
    bytesPerSecond: elapsedMs > 0 ? m.bytes / (elapsedMs / 1000) : 0,
    frozen: m.wasFrozen,
    notified: m.notified,
    address: m.plan.address,
    pushedPages: m.pushedPages,
  }
}

async function open(
  given: TmemControlClient | ControlTarget,
  which: 'source' | 'target',
  opened: TmemControlClient[],
  timeoutMs: number,
): Promise<TmemControlClient> {
  if ('control' in given) return given
  try {
    const control = await connectControl(given, { name: `tmem-migrate-${which}`, timeoutMs })
    opened.push(control)
    return control
  } catch (error) {
    const where = 'path' in given ? given.path : `${given.host}:${given.port}`
    const detail = error instanceof Error ? error.message : String(error)
    throw new MigrationError(
      'EUNREACHABLE',
      'preflight',
      `Cannot migrate: the ${which} daemon at ${where} is unreachable (${detail}); nothing was moved`,
      { cause: error },
    )
  }
}
