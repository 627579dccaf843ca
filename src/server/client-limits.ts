/**
 * Bounds on what clients can make the daemon keep (docs/daemon.md, "Limits"): any process that
 * can open the client socket can say hello as a new anonymous client, drop the connection and
 * start again, and each client it leaves behind keeps a client id, a session and the engine's
 * per-client state for the grace period. Without a bound, a loop of such hellos used every
 * client id in seconds (new clients and restores refused until the grace ran out) and pushed
 * a 64 MiB daemon past 700 MB.
 *
 * - Clients per endpoint: sessions made by hellos through the Unix socket, and through TCP,
 *   are counted apart, each at most `clientsPerEndpointMax` (attached or in their grace
 *   period). Node does not expose SO_PEERCRED, so the peer's uid is unknown and the endpoint is
 *   the finest unit. Clients bound by the control plane (restore, migration) are not counted.
 * - Detached clients: at most `detachedClientsMax` clients wait in their grace period; one
 *   more detaching reaps the one detached longest ago (its pools destroyed, as at the end of
 *   its grace). A hello that finds its endpoint full, or no free client id, reaps the oldest
 *   detached client (of that endpoint, or any) instead of being refused.
 * - A connection that said hello and then leaves a frame half sent is closed by the daemon's
 *   sweep (`frameIdleTimeoutMs`, see daemon.ts), so it cannot hold a slot for ever.
 *
 * Control plane: allocates freely.
 */

/** Sessions made by hellos through one endpoint kind (Unix socket, TCP), attached or detached. */
export const CLIENTS_PER_ENDPOINT_MAX = 2048
/** Clients in their grace period at once; past this the one detached longest ago is reaped. */
export const DETACHED_CLIENTS_MAX = 1024
/** A hello'd connection with a frame half sent and no frame completed for this long is closed. */
export const FRAME_IDLE_TIMEOUT_MS = 30_000

export interface ClientLimits {
  clientsPerEndpointMax: number
  detachedClientsMax: number
}

export const DEFAULT_CLIENT_LIMITS: ClientLimits = {
  clientsPerEndpointMax: CLIENTS_PER_ENDPOINT_MAX,
  detachedClientsMax: DETACHED_CLIENTS_MAX,
}

/** The endpoint a holder's `remote` names: `unix`, or `tcp` for a peer address. */
export function endpointOf(remote: string): string {
  return remote === 'unix' ? 'unix' : 'tcp'
}

/**
 * Bookkeeping for the limits above, keyed by any session object. `S` is opaque here: the
 * session table says when a session is made, detached, attached again and ended.
 */
export class ClientQuota<S extends object> {
  readonly limits: ClientLimits
  /** Sessions made by a hello, by endpoint. */
  readonly #endpointOf = new Map<S, string>()
  readonly #perEndpoint = new Map<string, number>()
  /** Detached sessions in their grace period, oldest first (a Set keeps insertion order). */
  readonly #detached = new Set<S>()
  /** Sessions reaped to make room, for stats. */
  reaped = 0

  constructor(limits: Partial<ClientLimits> = {}) {
    this.limits = { ...DEFAULT_CLIENT_LIMITS, ...limits }
  }

  get detachedCount(): number {
    return this.#detached.size
  }

  /** Clients made through `endpoint` now. */
  countOf(endpoint: string): number {
    return this.#perEndpoint.get(endpoint) ?? 0
  }

  /** True when `endpoint` is below its limit. */
  hasRoom(endpoint: string): boolean {
    return this.countOf(endpoint) < this.limits.clientsPerEndpointMax
  }

  /** A session made by a hello through `endpoint`. */
  made(session: S, endpoint: string): void {
    this.#endpointOf.set(session, endpoint)
    this.#perEndpoint.set(endpoint, this.countOf(endpoint) + 1)
  }

  /** The session entered its grace period (again: it moves to the back of the queue). */
  detached(session: S): void {
    this.#detached.delete(session)
    this.#detached.add(session)
  }

  /** The session has a connection again, or its grace timer stopped for another reason. */
  attached(session: S): void {
    this.#detached.delete(session)
  }

  /** The session is gone. */
  ended(session: S): void {
    this.#detached.delete(session)
    const endpoint = this.#endpointOf.get(session)
    if (endpoint === undefined) return
    this.#endpointOf.delete(session)
    this.#perEndpoint.set(endpoint, this.countOf(endpoint) - 1)
  }

  /** The detached session to reap when there are too many detached ones, else null. */
  overflow(): S | null {
    if (this.#detached.size <= this.limits.detachedClientsMax) return null
    return this.oldestDetached(null)
  }

  /** The session detached longest ago (made through `endpoint`, unless null), or null. */
  oldestDetached(endpoint: string | null): S | null {
    for (const session of this.#detached) {
      if (endpoint === null || this.#endpointOf.get(session) === endpoint) return session
    }
    return null
  }

  /** Forgets everything (daemon shutdown). */
  clear(): void {
    this.#detached.clear()
  }
}
