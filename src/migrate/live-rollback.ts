/**
 * Rollback (docs/migration.md, "Failures"): any failure before ACTIVATE puts the source back
 * (UNFENCE after MOVED, SAVE_END: the client keeps all its pages and runs on) and destroys
 * the half-made client on the target when the target answers. The result is the
 * MigrationError the caller sees, naming the phase and the real cause.
 */
import { TMEMC_SAVE_END } from '../abi/constants.js'
import { MigrationError, type TargetCleanup, TmemConnectionError } from '../errors/mod.js'
import { SESSION_DESTROY, SESSION_UNFENCE, emptySession } from '../protocol/session-frame.js'
import { type Migration, errorText } from './live-state.js'

export async function rollback(m: Migration, error: unknown): Promise<MigrationError> {
  if (error instanceof MigrationError) return error
  const sourceIntact = await restoreSource(m)
  const targetCleanup = await cleanTarget(m)
  const why =
    error instanceof TmemConnectionError
      ? `a daemon connection failed (${error.code}: ${error.message})`
      : errorText(error)
  const source = sourceIntact
    ? 'the client keeps running on the source with all its pages'
    : 'the source did not answer the rollback (SAVE_END); it ends the save itself when this connection closes'
  const target =
    targetCleanup === 'destroyed'
      ? 'the partial copy on the target was destroyed'
      : targetCleanup === 'unreachable'
        ? 'the target is unreachable, so its partial copy could not be removed'
        : 'nothing was created on the target'
  return new MigrationError(
    'EMIGRATE',
    m.phase,
    `Migration failed during ${m.phase}: ${why}; ${source}; ${target}`,
    { sourceIntact, targetCleanup, cause: error },
  )
}

/** The source first: the client must get running again there. True when the source answered. */
async function restoreSource(m: Migration): Promise<boolean> {
  try {
    if (m.moved && m.name !== null)
      await m.session('source', { ...emptySession(SESSION_UNFENCE), name: m.name })
    if (m.saveBegun) await m.ctrl('source', TMEMC_SAVE_END, m.sourceId)
    return true
  } catch {
    return false
  }
}

async function cleanTarget(m: Migration): Promise<TargetCleanup> {
  if (!m.targetCreated) return 'none'
  try {
    const reply = await m.session('target', {
      ...emptySession(SESSION_DESTROY),
      clientId: m.targetId,
    })
    return reply.rc >= 0 ? 'destroyed' : 'unreachable'
  } catch {
    return 'unreachable'
  }
}
