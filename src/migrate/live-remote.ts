/**
 * The client's remote pages in a live migration (docs/remote.md "Live migration"), in the
 * frozen window after the last drain, when they can no longer change:
 *
 * - Same cluster: the source EXPORTs its presence entries (the keys' namespace with them) and
 *   the target ADOPTs them; no page moves. After ACTIVATE the target commits the adoption and
 *   the source RELEASEs the entries (forgets them without deleting the keys) before it
 *   destroys its copy of the client.
 * - Another cluster, or a target without a tier: the source's remote persistent pages are read
 *   (REMOTE_PAGES) and sent as ordinary page records (RESTORE_PAGES), as the pre-copy sends
 *   local ones. Remote ephemeral pages are not sent (ephemeral pages may always be lost).
 *
 * A source without a tier answers EXPORT as an unknown subop: nothing to do. Rollback needs
 * nothing more: EXPORT and REMOTE_PAGES change nothing on the source, and the target forgets
 * borrowed (uncommitted) entries without deleting anything when the half-made client goes.
 */
import { EFAULT, PAGE_RECORD_HEADER_BYTES, PAGE_SIZE } from '../abi/constants.js'
import { controlOp } from '../abi/codec.js'
import { MigrationStepError } from '../errors/mod.js'
import { CONTROL_DATA_BYTES_MAX } from '../protocol/frame.js'
import {
  TMEMC_REMOTE_ADOPT,
  TMEMC_REMOTE_EXPORT,
  TMEMC_REMOTE_PAGES,
  TMEMC_REMOTE_RELEASE,
  TMEMC_SET_REMOTE,
  TMEMC_SET_REMOTE_QUOTA,
  parsePolicy,
} from '../remote/policy.js'
import { apply } from './live-apply.js'
import type { Migration } from './live-state.js'

/** Migrations whose target adopted the remote pages (committed after the switch). */
const adopted = new WeakSet<Migration>()

interface ExportPool {
  pool: number
  persistent: boolean
  pages: unknown[]
}

/**
 * In the shell: the client's remote policy and quota on the target, as weight and cap are
 * (read from the source's STATS, where its tier adds them). Nothing when the source has no
 * tier; a target without one answers the subops -EINVAL, which is ignored (it keeps every
 * page local, and copied remote pages land in its memory).
 */
export async function copyRemotePolicy(m: Migration): Promise<void> {
  const page = await m.within('source', 'STATS', m.source.statsPage({ form: 'id', id: m.sourceId }))
  const client = page.host.clients.find((entry) => entry.id === m.sourceId) as
    Record<string, unknown> | undefined
  const name = client?.['remotePolicy']
  const policy = typeof name === 'string' ? parsePolicy(name) : -1
  if (policy < 0) return
  if ((await m.ctrl('target', TMEMC_SET_REMOTE, m.targetId, 0, policy)) < 0) return
  const quota = client?.['remoteQuotaBytes']
  if (typeof quota === 'number' && Number.isSafeInteger(quota) && quota > 0) {
    await m.ctrl('target', TMEMC_SET_REMOTE_QUOTA, m.targetId, 0, Math.ceil(quota / PAGE_SIZE))
  }
}

/** In the frozen window: hands the remote pages over, or copies them into the stream. */
export async function handOverRemote(m: Migration): Promise<void> {
  const chunks: Uint8Array[] = []
  const pools = new Set<number>()
  let cursor = 0
  do {
    const op = controlOp(TMEMC_REMOTE_EXPORT, m.sourceId, 0, CONTROL_DATA_BYTES_MAX, cursor)
    const { rc, data } = await m.op('source', op, null, CONTROL_DATA_BYTES_MAX)
    if (rc === -EFAULT) throw new MigrationStepError('source', 'REMOTE_EXPORT', rc)
    if (rc < 0) return // no tier on the source: no remote pages
    const text = Buffer.from(data.subarray(0, rc)).toString('utf8')
    const page = JSON.parse(text) as { next: number; pools: ExportPool[] }
    for (const pool of page.pools) if (pool.persistent) pools.add(pool.pool)
    if (page.pools.length > 0) chunks.push(data.slice(0, rc))
    cursor = page.next
  } while (cursor >= 0)
  if (chunks.length === 0) return
  for (const chunk of chunks) {
    const op = controlOp(TMEMC_REMOTE_ADOPT, m.targetId, 0, 0, 0)
    const { rc } = await m.op('target', op, chunk, 0)
    if (rc < 0) {
      // Another cluster (-EXDEV), no tier, or no cluster: the pages travel in the stream.
      await m.ctrl('target', TMEMC_REMOTE_RELEASE, m.targetId)
      await copyRemotePages(
        m,
        [...pools].sort((a, b) => a - b),
      )
      return
    }
  }
  adopted.add(m)
}

/** The source's remote persistent pages of `pools` as page records to the target. */
async function copyRemotePages(m: Migration, pools: number[]): Promise<void> {
  for (const poolId of pools) {
    for (;;) {
      const op = controlOp(TMEMC_REMOTE_PAGES, m.sourceId, poolId, CONTROL_DATA_BYTES_MAX, 0)
      const { rc, data } = await m.op('source', op, null, CONTROL_DATA_BYTES_MAX)
      if (rc < 0) throw new MigrationStepError('source', 'REMOTE_PAGES', rc, `pool ${poolId}`)
      if (rc === 0) break
      const records = data.subarray(0, rc * (PAGE_RECORD_HEADER_BYTES + PAGE_SIZE))
      await apply(m, records, rc)
    }
  }
}

/**
 * After ACTIVATE: the target owns the adopted pages (commit) and the source forgets them
 * without deleting them. False when the source did not confirm: then its copy of the client
 * must not be destroyed (its destroy would delete keys the target now uses).
 */
export async function settleRemote(m: Migration): Promise<boolean> {
  if (!adopted.has(m)) return true
  try {
    await m.ctrl('target', TMEMC_REMOTE_ADOPT, m.targetId, 0, 1)
  } catch {
    // Left borrowed: a later destroy on the target leaves the keys (garbage, never an answer).
  }
  try {
    return (await m.ctrl('source', TMEMC_REMOTE_RELEASE, m.sourceId)) >= 0
  } catch {
    return false
  }
}
