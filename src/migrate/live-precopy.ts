/**
 * Pre-copy (docs/migration.md, "Push"): each persistent pool's pages as they were when the
 * migration began, while the client runs. The source daemon pushes them straight to the
 * target (SESSION PUSH); when it cannot, they are relayed through this process
 * (SAVE_GET_PAGES -> RESTORE_PAGES, `depth` batches in flight).
 */
import { readFileSync } from 'node:fs'
import { resolve as resolvePath } from 'node:path'
import { TMEMC_SAVE_GET_PAGES } from '../abi/constants.js'
import { controlOp } from '../abi/codec.js'
import type { ControlTarget, TmemControlClient } from '../client/control.js'
import { MigrationStepError } from '../errors/mod.js'
import {
  SESSION_ECONNREFUSED,
  SESSION_EINVAL,
  SESSION_PUSH,
  type SessionReply,
  emptySession,
  formatClientAddress,
} from '../protocol/session-frame.js'
import { applyRoom, startApply } from './live-apply.js'
import { type Migration, type PoolInfo, type PushTarget, RECORD_BYTES } from './live-state.js'
import { pipeline } from './pipeline.js'

/** Pages per SESSION PUSH request; progress is reported between two. */
export const PUSH_SLICE_PAGES = 32_768

export async function precopy(m: Migration): Promise<void> {
  for (const pool of m.pools.values()) {
    if (pool.persistent && pool.pages > 0) await precopyPool(m, pool)
  }
}

/** One pool, bounded by its page count at the start: pages put since are in the change log. */
async function precopyPool(m: Migration, pool: PoolInfo): Promise<void> {
  let pages = pool.pages
  if (m.pushTo !== null) {
    const pushed = await pushPool(m, m.pushTo, pool)
    if (pushed.ended) return
    pages -= pushed.pages
    if (pages <= 0) return
  }
  await relayPool(m, pool, pages)
}

/**
 * Pre-copy by SESSION PUSH, in slices of PUSH_SLICE_PAGES. When the source cannot push
 * (an older daemon: EINVAL; the target not reachable from the source: ECONNREFUSED), and
 * nothing was sent by that request, the relay takes over from the same save cursor.
 */
async function pushPool(
  m: Migration,
  to: PushTarget,
  pool: PoolInfo,
): Promise<{ pages: number; ended: boolean }> {
  let pages = 0
  while (pages < pool.pages) {
    const slice = Math.min(PUSH_SLICE_PAGES, pool.pages - pages)
    const reply = await m.session(
      'source',
      {
        ...emptySession(SESSION_PUSH),
        clientId: m.sourceId,
        flags: pool.slot,
        graceMs: slice,
        address: to.address,
        secret: to.secret,
        peerId: m.targetId,
      },
      false,
    ) // no answer in time: most likely the target, so the source stays usable for the rollback
    if (reply.rc === SESSION_EINVAL || reply.rc === SESSION_ECONNREFUSED) {
      m.pushTo = null
      return { pages, ended: false }
    }
    if (reply.rc < 0) throw pushFailure(pool, reply)
    pages += reply.rc
    m.pushedPages += reply.rc
    m.pages += reply.rc
    m.bytes += reply.rc * RECORD_BYTES
    m.report(false)
    if (reply.rc < slice) return { pages, ended: true }
  }
  return { pages, ended: false }
}

/**
 * The error of a failed PUSH. When the target refused a batch, the reply names its errno in
 * `graceMs` and the reason in `address` (docs/migration.md, "Push"): that is the real cause
 * (ENOMEM on a full target), not the source's -EIO.
 */
function pushFailure(pool: PoolInfo, reply: SessionReply): MigrationStepError {
  const step = `PUSH of pool ${pool.slot}`
  const reason = reply.address
  if (reply.graceMs > 0 && reply.graceMs < 0x10000) {
    return new MigrationStepError(
      'target',
      `RESTORE_PAGES (${step} from the source)`,
      -reply.graceMs,
      reason,
    )
  }
  return new MigrationStepError('source', step, reply.rc, reason === '' ? 'to the target' : reason)
}

/** Pre-copy relayed through this process: SAVE_GET_PAGES from the source, RESTORE_PAGES to the target. */
async function relayPool(m: Migration, pool: PoolInfo, pagesMax: number): Promise<void> {
  const fetches = Math.ceil(pagesMax / m.perBatch)
  let issued = 0
  let ended = false
  const applied: Promise<void>[] = []
  const op = controlOp(TMEMC_SAVE_GET_PAGES, m.sourceId, pool.slot, m.batchBytes)
  const fetchOne = async (): Promise<void> => {
    const result = await m.opWith('source', op, null, m.batchBytes, (rc, bytes, offset) => {
      if (rc > 0)
        applied.push(startApply(m, bytes.subarray(offset, offset + rc * RECORD_BYTES), rc))
      return rc
    })
    if (result < 0)
      throw new MigrationStepError('source', 'SAVE_GET_PAGES', result, `pool ${pool.slot}`)
    if (result < m.perBatch) ended = true
  }
  await pipeline(
    m.depth,
    () => applyRoom(m),
    () => issued < fetches && !ended,
    () => {
      issued++
      return fetchOne()
    },
  )
  await Promise.all(applied)
}

/**
 * The target's control endpoint as the source daemon would dial it: an absolute socket path,
 * or TCP with the token (64 hex digits, carried as 32 bytes). Null when it cannot be named
 * (a connection object was given, or an unusual token): then pages are relayed.
 */
export function pushTarget(target: TmemControlClient | ControlTarget): PushTarget | null {
  if ('control' in target) return null
  if ('path' in target)
    return { address: formatClientAddress({ path: resolvePath(target.path) }), secret: null }
  let token = target.token ?? ''
  if (target.token === undefined && target.tokenFile !== undefined) {
    try {
      token = readFileSync(target.tokenFile, 'utf8').trim()
    } catch {
      return null
    }
  }
  if (!/^[0-9a-fA-F]{64}$/.test(token)) return null
  return {
    address: formatClientAddress({ host: target.host, port: target.port }),
    secret: Buffer.from(token, 'hex'),
  }
}
