/**
 * RESTORE_PAGES on the target, shared by the relayed pre-copy and the change rounds: batches
 * are sent as they arrive, at most `depth` wait for the target at a time.
 */
import { TMEMC_RESTORE_PAGES } from '../abi/constants.js'
import { controlOp } from '../abi/codec.js'
import { MigrationStepError } from '../errors/mod.js'
import { type Migration, handled } from './live-state.js'

/** RESTORE_PAGES of `count` records on the target. */
export async function apply(m: Migration, records: Uint8Array, count: number): Promise<void> {
  const op = controlOp(TMEMC_RESTORE_PAGES, m.targetId, 0, records.length)
  const rc = await m.opWith('target', op, records, 0, (value) => value)
  if (rc !== count) throw new MigrationStepError('target', 'RESTORE_PAGES', rc, `${count} records`)
  m.pages += count
  m.bytes += records.length
  m.report(false)
}

/**
 * Starts RESTORE_PAGES of a batch (its frame is built now, so `records` may be a view of a
 * reply buffer). The returned promise is marked handled; await it later.
 */
export function startApply(m: Migration, records: Uint8Array, count: number): Promise<void> {
  const applying = handled(apply(m, records, count).finally(() => m.applying.delete(applying)))
  m.applying.add(applying)
  return applying
}

/**
 * Back-pressure from the target: no new fetch while `depth` batches wait for the target.
 * Without it a slow target (one touching fresh memory) lets the relay queue hundreds of
 * megabytes of frames and spend its time collecting them.
 */
export async function applyRoom(m: Migration): Promise<void> {
  while (m.applying.size >= m.depth) await Promise.race(m.applying)
}
