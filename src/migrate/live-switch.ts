/**
 * Switch-over (docs/migration.md, "The frozen window"). FREEZE stops new puts (Xen still lets
 * a frozen client replace a page and flush), so the switch comes right after it: target BIND
 * (pending: hellos wait), source MOVED (the client is told where it went and its ops stop
 * running there), then the log is drained to the end, FREEZE on the target if the client was
 * frozen before, and target ACTIVATE (the client resumes there). Then the source copy goes.
 */
import { TMEMC_FREEZE } from '../abi/constants.js'
import { MigrationStepError } from '../errors/mod.js'
import {
  BIND_PENDING,
  SESSION_ACTIVATE,
  SESSION_BIND,
  SESSION_DESTROY,
  SESSION_MOVED,
  emptySession,
} from '../protocol/session-frame.js'
import { drainChanges } from './live-changes.js'
import { handOverRemote } from './live-remote.js'
import { setOnTarget, syncPools } from './live-shell.js'
import type { Migration } from './live-state.js'

/** Longest drain after MOVED before the migration gives up and rolls back. */
export const FINAL_DRAIN_MS = 10_000

export async function switchOver(m: Migration): Promise<void> {
  const frozenStart = performance.now()
  const pagesBeforeFreeze = m.pages
  if (m.saveBegun) await m.ctrlOk('source', TMEMC_FREEZE, 'FREEZE', m.sourceId)
  if (m.plan.hasSession && m.name !== null) await redirect(m, m.name)
  // Everything the client changed up to MOVED; nothing should be added after it. The drain
  // is bounded in time all the same: if the log keeps filling (a client still running ops
  // on the source), the migration fails and rolls back instead of draining for ever.
  if (m.saveBegun) await finalDrain(m)
  await syncPools(m)
  await handOverRemote(m)
  if (m.wasFrozen) await setOnTarget(m, TMEMC_FREEZE, 0, 'FREEZE')
  if (m.plan.hasSession && m.name !== null) {
    const activated = await m.session('target', { ...emptySession(SESSION_ACTIVATE), name: m.name })
    if (activated.rc < 0)
      throw new MigrationStepError('target', 'SESSION ACTIVATE', activated.rc, m.name)
  }
  m.frozenWindowMs = performance.now() - frozenStart
  m.frozenPages = m.pages - pagesBeforeFreeze
}

/** Target BIND (pending), then source MOVED: the client's ops stop on the source. */
async function redirect(m: Migration, name: string): Promise<void> {
  const bound = await m.session('target', {
    ...emptySession(SESSION_BIND),
    name,
    clientId: m.targetId,
    abi: m.plan.abi,
    flags: BIND_PENDING,
  })
  if (bound.rc !== m.targetId || bound.secret === null)
    throw new MigrationStepError('target', 'SESSION BIND', bound.rc, name)
  const moved = await m.session('source', {
    ...emptySession(SESSION_MOVED),
    name,
    address: m.plan.address,
    secret: bound.secret,
    graceMs: m.plan.targetGraceMs,
  })
  if (moved.rc < 0) throw new MigrationStepError('source', 'SESSION MOVED', moved.rc, name)
  m.moved = true
  m.notified = moved.rc === 1
}

/** The drain after MOVED, bounded by FINAL_DRAIN_MS; throws when the log never empties. */
async function finalDrain(m: Migration): Promise<void> {
  const step = m.perBatch * m.depth * 16
  const deadline = Date.now() + FINAL_DRAIN_MS
  do {
    if ((await drainChanges(m, step)) < step) return
  } while (Date.now() < deadline)
  throw new MigrationStepError(
    'source',
    'SAVE_GET_CHANGES',
    'EDRAIN',
    `the change log did not empty within ${FINAL_DRAIN_MS} ms after MOVED`,
  )
}

/** After the switch: the client lives on the target, so the source copy goes. */
export async function destroySource(m: Migration): Promise<void> {
  try {
    await m.session('source', { ...emptySession(SESSION_DESTROY), clientId: m.sourceId })
  } catch {
    // The source went away after the switch: its copy is gone with it.
  }
}
