/**
 * Change rounds (docs/migration.md, "Phases"): SAVE_GET_CHANGES -> RESTORE_PAGES while the
 * client runs, until a round is small or `maxRounds` have run. `drainChanges` is also the
 * last drain of the switch-over.
 */
import { ENOSPC, PAGE_RECORD_HEADER_BYTES, TMEMC_SAVE_GET_CHANGES } from '../abi/constants.js'
import { controlOp } from '../abi/codec.js'
import { MigrationStepError } from '../errors/mod.js'
import { readU32LE } from '../util/le.js'
import { apply, applyRoom, startApply } from './live-apply.js'
import { syncPools } from './live-shell.js'
import { type Migration, type PoolInfo, RECORD_BYTES } from './live-state.js'
import { pipeline } from './pipeline.js'

export async function changeRounds(m: Migration): Promise<void> {
  if (!m.saveBegun) return
  const maxRounds = m.options.maxRounds ?? 8
  const small = m.options.smallRoundPages ?? 512
  // A round moves at most about what the client had: a writer faster than the copy does
  // not keep a round going for ever (the rounds then end at maxRounds).
  const roundLimit = Math.max(m.pagesTotal, 4 * m.perBatch)
  while (m.rounds < maxRounds) {
    m.rounds++
    m.round = m.rounds
    if ((await drainChanges(m, roundLimit)) <= small) break
  }
}

/**
 * Drains the change log, `depth` batches in flight, each forwarded to the target in the
 * order the source gave them. Stops once a batch comes back not full (the log was empty at
 * that moment; after MOVED nothing is added, so it stays empty) or `limit` records have
 * moved. A batch that names a pool the target does not have yet (created on the source
 * since the last sync) and every batch after it are held until the pool is created there.
 * Returns the records moved.
 */
export async function drainChanges(m: Migration, limit: number): Promise<number> {
  let moved = 0
  let caughtUp = false
  let blocked = false
  const held: { records: Uint8Array; count: number }[] = []
  const applied: Promise<void>[] = []
  const op = controlOp(TMEMC_SAVE_GET_CHANGES, m.sourceId, 0, m.batchBytes)
  const fetchOne = async (): Promise<void> => {
    const rc = await m.opWith('source', op, null, m.batchBytes, (rc, bytes, offset, length) => {
      if (rc <= 0) {
        if (rc === 0) caughtUp = true
        return rc
      }
      const walked = walkRecords(bytes, offset, length, rc, m.pools)
      if (walked.length < 0) return -22
      if (walked.length + RECORD_BYTES <= m.batchBytes) caughtUp = true
      const records = bytes.subarray(offset, offset + walked.length)
      if (blocked || walked.unknownPool) {
        blocked = true
        held.push({ records: records.slice(), count: rc })
      } else {
        applied.push(startApply(m, records, rc))
      }
      moved += rc
      return rc
    })
    if (rc === -ENOSPC) throw changeLogFull(m)
    if (rc < 0) throw new MigrationStepError('source', 'SAVE_GET_CHANGES', rc)
  }
  await pipeline(
    m.depth,
    () => applyRoom(m),
    (inFlight) => !caughtUp && moved + inFlight * m.perBatch < limit,
    fetchOne,
  )
  await Promise.all(applied)
  if (held.length > 0) {
    await syncPools(m)
    for (const batch of held) await apply(m, batch.records, batch.count)
  }
  return moved
}

/** The source dropped the change log at its ceiling: the copy on the target cannot be finished. */
function changeLogFull(m: Migration): MigrationStepError {
  const given = m.options.changeLogBytesMax
  const ceiling = given === undefined ? "the source daemon's default" : `${given} bytes`
  return new MigrationStepError(
    'source',
    'SAVE_GET_CHANGES',
    'ECHANGELOG',
    `the client changed more distinct pages between two drains than its change log holds ` +
      `(ceiling ${ceiling}; raise it with --change-log-max)`,
  )
}

/**
 * Walks `count` page records: their total length (or -1 if they do not fit `length` or have
 * a bad kind), the page records among them, and whether one names a pool not in `pools`.
 */
export function walkRecords(
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
