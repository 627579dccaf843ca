/**
 * The part of the engine's `Host` (src/engine/host.ts) that the daemon calls. The daemon is
 * written against this shape so that it owns no engine code; `src/cli/daemon.ts` hands it the
 * real `Host`.
 */
import type { DeferredReply } from '../protocol/deferred.js'
import type { HostStats, StatsTotals } from '../protocol/stats.js'

export interface HostLike {
  /** A guest hypercall from its ABI bytes; `data` is the page (read for put, written for get). */
  opBytes(
    clientId: number,
    bytes: Uint8Array,
    offset: number,
    version: 0 | 1,
    data: Uint8Array | null,
    dataOffset: number,
  ): number
  /** opBytes on `count` pages in a row from the op's index, return codes in `results`. */
  opPagesBytes?(
    clientId: number,
    bytes: Uint8Array,
    offset: number,
    version: 0 | 1,
    count: number,
    data: Uint8Array | null,
    dataOffset: number,
    results: Int32Array,
  ): void
  /** The privileged entry: TMEM_CONTROL, TMEM_AUTH, TMEM_RESTORE_NEW. */
  controlBytes(
    bytes: Uint8Array,
    offset: number,
    version: 0 | 1,
    data: Uint8Array | null,
    dataOffset: number,
    dataLength: number,
  ): number
  hasClient(clientId: number): boolean
  /** Destroys a client as a dead domain (pools flushed and destroyed). */
  destroyClient(clientId: number): boolean
  /** JSON-able counter snapshot: host-wide numbers and `clients: [{ id, ..., pools: [...] }]`. */
  stats(): HostStats
  /**
   * Only for a host whose `opBytes` may return OP_DEFERRED (protocol/deferred.ts): the reply
   * of the op that just returned it. Called once, right after.
   */
  takeDeferred?(): Promise<DeferredReply>
  /**
   * True when the host's work in this turn of the event loop reached its budget, so further
   * ops that can wait should wait for a later turn (the remote tier's turn budget,
   * remote/turns.ts): a connection then leaves its next frames for the loop's check phase.
   */
  yieldTurn?(): boolean
  /** The same snapshot with only the clients of `ids` that exist (one client, a page). */
  statsOf(ids: readonly number[]): HostStats
  /** Host-wide sums over the clients (pools, compression), without a snapshot of each. */
  statsTotals(): StatsTotals
  /** The sums and the `max` clients holding the most pages, gathered in steps (metrics). */
  statsPass(max: number): StatsPassLike
}

/** The engine's StatsPass as the daemon sees it. */
export interface StatsPassLike {
  /** Looks at the next `ids` client ids; true once every id has been looked at. */
  step(ids: number): boolean
  readonly totals: StatsTotals
  readonly topIds: number[]
}
