/**
 * What the tier reports: its counters, and the `remote` parts of the STATS snapshot that
 * `tmem list`, the metrics endpoint and tests read (docs/remote.md "Observing"). The fields
 * ride along in the engine's JSON snapshot (the STATS decoder passes unknown fields through):
 * `host.remote` for the tier, and per pool `remotePages`, `remoteBytes`; per client
 * `remotePolicy`, `remoteQuotaBytes`.
 */
import type { HostStats } from '../protocol/stats.js'
import type { RemoteCalls, RemoteHealth } from './cluster.js'
import type { ClientPolicies } from './policy.js'
import { POLICY_NAMES } from './policy.js'
import type { Presence } from './presence.js'
import type { TurnMeter, TurnsSection } from './turns.js'
import type { ChangeQueue } from './queue.js'

export class RemoteCounters {
  /** Evicted ephemeral pages listed remote (zero pages included: they are never sent). */
  demoted = 0
  /** Gets answered from a remote copy, and remote copies that could not answer. */
  hits = 0
  misses = 0
  /** A remote copy missing, at another version, or undecodable when read. */
  stale = 0
  fetchFailed = 0
  /** Persistent puts the cluster took, and those it could not take (-ENOMEM). */
  persistentPuts = 0
  persistentRefused = 0
  /** Pages not sent because the client's remote quota was reached. */
  quotaRefused = 0
}

/** The tier's section of the STATS snapshot. */
export interface RemoteSection {
  health: RemoteHealth
  /** 1 while the cluster answers (a metrics gauge: tmem_remote_up). */
  up: boolean
  hostId: string
  pages: number
  persistentPages: number
  bytes: number
  queued: number
  dropped: number
  batches: number
  calls: RemoteCalls
  counters: RemoteCounters
  /** The remote work of the event loop's turns (turns.ts). */
  turns: TurnsSection
}

export interface RemoteView {
  readonly presence: Presence
  readonly policies: ClientPolicies
  readonly counters: RemoteCounters
  readonly queue: ChangeQueue
  readonly store: { health: RemoteHealth; calls: RemoteCalls; meter: TurnMeter }
  readonly hostId: string
}

/** `stats` with the tier's numbers added (in place; returned for chaining). */
export function remoteSection(stats: HostStats, tier: RemoteView): HostStats {
  let pages = 0
  let persistentPages = 0
  let bytes = 0
  for (const pool of tier.presence.pools()) {
    pages += pool.pages
    bytes += pool.bytes
    if (pool.persistent) persistentPages += pool.pages
  }
  for (const client of stats.clients) {
    const extra = client as typeof client & Record<string, unknown>
    extra['remotePolicy'] = POLICY_NAMES[tier.policies.policy(client.id)] ?? 'off'
    extra['remoteQuotaBytes'] = tier.policies.quotaBytes(client.id)
    for (const pool of client.pools) {
      const remote = tier.presence.pool(pool.ownerId, pool.poolId)
      const fields = pool as typeof pool & Record<string, unknown>
      fields['remotePages'] = remote?.pages ?? 0
      fields['remoteBytes'] = remote?.bytes ?? 0
    }
  }
  const section: RemoteSection = {
    health: tier.store.health,
    up: tier.store.health === 'up',
    hostId: tier.hostId,
    pages,
    persistentPages,
    bytes,
    queued: tier.queue.length,
    dropped: tier.queue.dropped,
    batches: tier.queue.batches,
    calls: tier.store.calls,
    counters: tier.counters,
    turns: tier.store.meter.section(),
  }
  ;(stats as HostStats & { remote?: RemoteSection }).remote = section
  return stats
}
