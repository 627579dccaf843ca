/**
 * The paged STATS replies (docs/protocol.md "STATS"): a page of clients from an id up, or one
 * client by id or by name, each client with its session, plus the daemon's section and the
 * host-wide part of the engine snapshot. A reply costs its own clients and the ids skipped
 * between them, never the whole host, so the daemon answers one in a few milliseconds however
 * many clients it holds (65,535 at most), and the CLI pages through the rest.
 * Control plane: allocates.
 */
import { setImmediate as setImmediatePromise } from 'node:timers/promises'
import {
  CONTROL_DATA_BYTES_MAX,
  RC_BYTES,
  STATS_REPLY_PAYLOAD_BYTES_MAX,
} from '../protocol/frame.js'
import {
  type ClientStats,
  type DaemonSection,
  type DaemonStats,
  type SessionStats,
  type StatsPage,
  type StatsRequest,
  STATS_NO_CLIENT,
  STATS_PAGE_BYTES_DEFAULT,
  type StatsTotals,
  encodeStats,
} from '../protocol/stats.js'
import type { HostLike } from './host-like.js'
import type { Session } from './session.js'
import type { SessionTable } from './sessions.js'

/** A reply body never goes past what one STATS reply frame carries. */
const REPLY_BYTES_MAX = CONTROL_DATA_BYTES_MAX - RC_BYTES
/** Ids looked up in the engine at a time while a page is filled. */
const CHUNK_IDS = 64

/** A session as STATS lists it. */
export function sessionStats(session: Session, now: number): SessionStats & { held: boolean } {
  return {
    id: session.id,
    name: session.name,
    abi: session.abiVersion,
    connected: session.holder !== null,
    detachedMs: session.holder === null ? now - session.detachedAtMs : 0,
    pending: session.pending,
    moved: session.movedTo !== null,
    // Restored and kept with no grace timer until its first connection.
    held: session.hold,
  }
}

export interface PageSources {
  host: HostLike
  sessions: SessionTable
  daemonSection: () => DaemonSection
  /** Host-wide sums for a first page, when the caller has them already (see statsBody). */
  totals?: StatsTotals
}

/** The JSON body answering a paged STATS request. */
export function statsPageJson(sources: PageSources, request: StatsRequest): string {
  const now = Date.now()
  if (request.form === 'page') return pageJson(sources, request.first, request.maxBytes, now)
  const id =
    request.form === 'id' ? request.id : (sources.sessions.byName(request.name)?.id ?? null)
  const stats = sources.host.statsOf(id === null ? [] : [id])
  const session = id === null ? undefined : sources.sessions.byId(id)
  const reply: StatsPage = {
    daemon: sources.daemonSection(),
    sessions: session === undefined ? [] : [sessionStats(session, now)],
    host: stats,
    page: { next: -1, totals: null },
  }
  return JSON.stringify(reply)
}

/** Clients and sessions with an id from `first` up, while they fit in `maxBytes`. */
function pageJson(sources: PageSources, first: number, maxBytes: number, now: number): string {
  const { host, sessions } = sources
  const budget = Math.min(maxBytes === 0 ? STATS_PAGE_BYTES_DEFAULT : maxBytes, REPLY_BYTES_MAX)
  const reply: StatsPage = {
    daemon: sources.daemonSection(),
    sessions: [],
    host: host.statsOf([]),
    page: {
      next: STATS_NO_CLIENT,
      totals: first === 0 ? (sources.totals ?? host.statsTotals()) : null,
    },
  }
  let used = Buffer.byteLength(JSON.stringify(reply))
  let id = first
  while (id < STATS_NO_CLIENT) {
    const ids = presentIds(sources, id)
    if (ids.length === 0) break
    const byId = new Map<number, ClientStats>()
    for (const client of host.statsOf(ids).clients) byId.set(client.id, client)
    for (const candidate of ids) {
      const client = byId.get(candidate)
      const found = sessions.byId(candidate)
      const session = found === undefined ? undefined : sessionStats(found, now)
      const bytes = partBytes(client) + partBytes(session)
      if (used + bytes > budget && (reply.host.clients.length > 0 || reply.sessions.length > 0)) {
        reply.page.next = candidate
        return JSON.stringify(reply)
      }
      used += bytes
      if (client !== undefined) reply.host.clients.push(client)
      if (session !== undefined) reply.sessions.push(session)
    }
    id = ids[ids.length - 1]! + 1
  }
  reply.page.next = -1
  return JSON.stringify(reply)
}

/** Up to CHUNK_IDS ids from `from` up that name an engine client or a session. */
function presentIds(sources: PageSources, from: number): number[] {
  const ids: number[] = []
  for (let id = from; id < STATS_NO_CLIENT && ids.length < CHUNK_IDS; id++) {
    if (sources.host.hasClient(id) || sources.sessions.byId(id) !== undefined) ids.push(id)
  }
  return ids
}

/** Bytes a client or session adds to the reply (with its comma). */
function partBytes(part: object | undefined): number {
  return part === undefined ? 0 : Buffer.byteLength(JSON.stringify(part)) + 1
}

/**
 * The least JSON a client or a pool adds to a whole-host STATS reply (measured: about 300
 * bytes each); a host whose count times this passes the reply limit is answered -ENOMEM
 * without building the snapshot, which at 65,535 clients x 16 pools took seconds.
 */
const CLIENT_JSON_BYTES_MIN = 200
const POOL_JSON_BYTES_MIN = 200

/**
 * The body answering a STATS request: the whole host (`request` null), a page of clients, or
 * one client; null when the whole host cannot fit in a reply (-ENOMEM). What needs the
 * host-wide sums (the whole host, a first page) counts them first with a StatsPass walk of
 * `idsPerTurn` client ids per turn of the event loop, and so answers later: no STATS request
 * holds other clients up for more than a few ms, whatever the number of clients.
 */
export function statsBody(
  sources: PageSources,
  request: StatsRequest | null,
  snapshot: () => DaemonStats,
  idsPerTurn: number,
): string | null | Promise<string | null> {
  if (request !== null && !(request.form === 'page' && request.first === 0))
    return statsPageJson(sources, request)
  return walkTotals(sources.host, idsPerTurn).then((totals) => {
    if (request !== null) return statsPageJson({ ...sources, totals }, request)
    const least = totals.clients * CLIENT_JSON_BYTES_MIN + totals.pools * POOL_JSON_BYTES_MIN
    return least > STATS_REPLY_PAYLOAD_BYTES_MAX ? null : encodeStats(snapshot())
  })
}

async function walkTotals(host: HostLike, idsPerTurn: number): Promise<StatsTotals> {
  const pass = host.statsPass(0)
  while (!pass.step(idsPerTurn)) await setImmediatePromise()
  return pass.totals
}
