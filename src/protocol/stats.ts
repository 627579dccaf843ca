/**
 * The STATS reply (docs/protocol.md, "Stats"): after the rc, UTF-8 JSON of three parts —
 *
 *   { daemon: { pid, uptimeMs, graceMs, ..., counters }, sessions: [{ id, name, ... }],
 *     host: { budgetPages, ..., clients: [{ id, ..., pools: [{ slot, ... }] }] } }
 *
 * `host` is the engine's `stats()` snapshot as it is (src/engine/stats.ts makes it), `daemon`
 * the daemon's own counters and `sessions` its client names.
 *
 * Each shape below is written once, as a checker; the types are derived from the checkers, so
 * `decodeStats` validates exactly what the types promise. A field that is missing or of the
 * wrong type fails the decode with a TypeError naming its path (`host.clients[2].pages`);
 * fields a newer daemon adds are kept as they are, unchecked. Control plane: allocates.
 *
 * An empty STATS request asks for the whole host in one reply (capped at 1 MiB, -ENOMEM past
 * it). A STATS request with a body (`encodeStatsRequest`, tmem's paged form) asks for a page
 * of clients or for one client; its reply is the same shape, holding only those clients and
 * their sessions, plus `page` (`decodeStatsPage`).
 */
import { NAME_BYTES_MAX, readU32LE, writeU32LE } from './frame.js'

/** What a STATS request with a body asks for. */
export type StatsRequest =
  | { form: 'page'; first: number; maxBytes: number }
  | { form: 'id'; id: number }
  | { form: 'name'; name: string }

export const STATS_FORM_PAGE = 1
export const STATS_FORM_ID = 2
export const STATS_FORM_NAME = 3
/** u32 form, u32 client id, u32 max bytes, u32 name bytes; then the name. */
export const STATS_REQUEST_FIXED_BYTES = 16
export const STATS_REQUEST_BYTES_MAX = STATS_REQUEST_FIXED_BYTES + NAME_BYTES_MAX
/** A page's reply body when the request says 0: small enough to build in a few ms. */
export const STATS_PAGE_BYTES_DEFAULT = 256 * 1024
/** The id no client has: ends a page listing (`page.next`) and means "none" in a request. */
export const STATS_NO_CLIENT = 0xffff

/** The body of a STATS request in the paged form (docs/protocol.md "STATS"). */
export function encodeStatsRequest(request: StatsRequest): Uint8Array {
  const name = request.form === 'name' ? Buffer.from(request.name, 'utf8') : Buffer.alloc(0)
  if (name.length > NAME_BYTES_MAX)
    throw new RangeError(`A name is at most ${NAME_BYTES_MAX} bytes`)
  const body = new Uint8Array(STATS_REQUEST_FIXED_BYTES + name.length)
  const form =
    request.form === 'page'
      ? STATS_FORM_PAGE
      : request.form === 'id'
        ? STATS_FORM_ID
        : STATS_FORM_NAME
  writeU32LE(body, 0, form)
  writeU32LE(
    body,
    4,
    request.form === 'page' ? request.first : request.form === 'id' ? request.id : 0,
  )
  writeU32LE(body, 8, request.form === 'page' ? request.maxBytes : 0)
  writeU32LE(body, 12, name.length)
  body.set(name, STATS_REQUEST_FIXED_BYTES)
  return body
}

/** Reads a STATS request body; null when it is not one (bad form, id, lengths or UTF-8). */
export function decodeStatsRequest(
  bytes: Uint8Array,
  offset: number,
  length: number,
): StatsRequest | null {
  if (length < STATS_REQUEST_FIXED_BYTES) return null
  const form = readU32LE(bytes, offset)
  const id = readU32LE(bytes, offset + 4)
  const maxBytes = readU32LE(bytes, offset + 8)
  const nameBytes = readU32LE(bytes, offset + 12)
  if (nameBytes !== length - STATS_REQUEST_FIXED_BYTES || nameBytes > NAME_BYTES_MAX) return null
  if (form !== STATS_FORM_NAME && nameBytes !== 0) return null
  if (id >= STATS_NO_CLIENT || (form !== STATS_FORM_PAGE && maxBytes !== 0)) return null
  if (form === STATS_FORM_PAGE) return { form: 'page', first: id, maxBytes }
  if (form === STATS_FORM_ID) return { form: 'id', id }
  if (form !== STATS_FORM_NAME || id !== 0 || nameBytes === 0) return null
  const at = offset + STATS_REQUEST_FIXED_BYTES
  try {
    const name = new TextDecoder('utf-8', { fatal: true }).decode(
      bytes.subarray(at, at + nameBytes),
    )
    return { form: 'name', name }
  } catch {
    return null
  }
}

/** Reads `value` as a T, or throws a TypeError naming `path`. */
type Check<T> = (value: unknown, path: string) => T

type Checked<S extends Record<string, Check<unknown>>> = { [K in keyof S]: ReturnType<S[K]> }

function wrong(path: string, what: string): never {
  throw new TypeError(`STATS reply: ${path} is not ${what}`)
}

const num: Check<number> = (value, path) =>
  typeof value === 'number' ? value : wrong(path, 'a number')
const bool: Check<boolean> = (value, path) =>
  typeof value === 'boolean' ? value : wrong(path, 'a boolean')
const str: Check<string> = (value, path) =>
  typeof value === 'string' ? value : wrong(path, 'a string')

function list<T>(item: Check<T>): Check<T[]> {
  return (value, path) => {
    if (!Array.isArray(value)) return wrong(path, 'an array')
    return (value as unknown[]).map((element, i) => item(element, `${path}[${i}]`))
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function record<T>(item: Check<T>): Check<Record<string, T>> {
  return (value, path) => {
    if (!isObject(value)) return wrong(path, 'an object')
    const out: Record<string, T> = {}
    for (const [key, element] of Object.entries(value)) out[key] = item(element, `${path}.${key}`)
    return out
  }
}

/** An object with (at least) the fields of `shape`; other fields pass through unchecked. */
function object<S extends Record<string, Check<unknown>>>(shape: S): Check<Checked<S>> {
  return (value, path) => {
    if (!isObject(value)) return wrong(path, 'an object')
    const out: Record<string, unknown> = { ...value }
    for (const [key, check] of Object.entries(shape)) out[key] = check(value[key], `${path}.${key}`)
    return out as Checked<S>
  }
}

/** A field an older daemon leaves out: undefined then, else checked by `check`. */
function optional<T>(check: Check<T>): Check<T | undefined> {
  return (value, path) => (value === undefined ? undefined : check(value, path))
}

const uuidHalves: Check<[string, string]> = (value, path) => {
  const halves = list(str)(value, path)
  return halves.length === 2 ? [halves[0] ?? '', halves[1] ?? ''] : wrong(path, 'two hex strings')
}

const abiVersion: Check<0 | 1> = (value, path) =>
  value === 0 || value === 1 ? value : wrong(path, 'an ABI version (0 or 1)')

const checkPool = object({
  /** Slot in the listed client's table. */
  slot: num,
  /** The pool's `pool_id` (the owner's slot; differs for a shared pool joined by another). */
  poolId: num,
  ownerId: num,
  persistent: bool,
  shared: bool,
  /** `[uuid_lo, uuid_hi]` as lower-case hex. */
  uuid: uuidHalves,
  pages: num,
  pagesMax: num,
  objects: num,
  objectsMax: num,
  puts: num,
  goodPuts: num,
  dupPutsFlushed: num,
  dupPutsReplaced: num,
  noMemoryPuts: num,
  gets: num,
  foundGets: num,
  flushes: num,
  flushesFound: num,
  flushObjects: num,
  flushObjectsFound: num,
})

const checkClient = object({
  id: num,
  abi: abiVersion,
  weight: num,
  cap: num,
  compress: bool,
  frozen: bool,
  liveMigrating: bool,
  ephemeralPages: num,
  ephemeralPagesMax: num,
  succEphemeralGets: num,
  succPersistentPuts: num,
  succPersistentGets: num,
  compressedPages: num,
  compressedBytes: num,
  compressPoor: num,
  compressNoMemory: num,
  cyclesNs: num,
  pools: list(checkPool),
})

const checkHost = object({
  budgetPages: num,
  framesUsed: num,
  framesUsedMax: num,
  framesFree: num,
  ephemeralPages: num,
  ephemeralPagesMax: num,
  persistentPages: num,
  objects: num,
  objectsMax: num,
  pages: num,
  pagesMax: num,
  totalOps: num,
  erroredOps: num,
  failedCopies: num,
  failedSubpageAllocs: num,
  failedPageAllocs: num,
  evicted: num,
  evictAttempts: num,
  relinquished: num,
  goodEphemeralPuts: num,
  dedupPuts: num,
  contentDescriptors: num,
  tzeBytes: num,
  compressedBytes: num,
  /** Stored pages that failed their check when read (never served; not a LIST key). */
  corruptPages: num,
  freeableMb: num,
  times: record(object({ count: num, totalNs: num, maxNs: num, minNs: num })),
  clients: list(checkClient),
})

/** The shared-memory transport (issue 12): the daemon's regions and its ring counters. */
const checkShm = object({
  /** False when regions are not offered (`--no-shm`, no addon, not Linux); `reason` says why. */
  available: bool,
  reason: str,
  /** Regions mapped now, and their bytes (header, rings and frames). */
  regions: num,
  bytesMapped: num,
  /** Regions made since the daemon started (ATTACH answered 0). */
  regionsAttached: num,
  /** ATTACH requests refused: bad sizes, over the limits, or not offered. */
  regionsRefused: num,
  /** Regions whose client broke the ring protocol (its connection was closed). */
  regionsBroken: num,
  /** Ops run from submission rings; entries answered without running (bad reserved or cmfn). */
  opsServed: num,
  opsRefused: num,
  /** SHM_KICK notices sent to sleeping clients, SHM_KICK frames received from clients. */
  kicksSent: num,
  kicksReceived: num,
  /** Turns that found a completion ring full (a client not reading its completions). */
  ringFull: num,
  /** Times the daemon stopped polling a region and slept until kicked. */
  sleeps: num,
})

/** The daemon's event-loop delay (server/event-loop.ts). */
const checkEventLoop = object({
  resolutionMs: num,
  /** The largest since the daemon started listening. */
  maxMs: num,
  /** The largest and the 99th percentile in the last full second. */
  lastSecondMaxMs: num,
  lastSecondP99Ms: num,
  // With TMEM_LOOP_CPU=1 also busyMaxMs and lastSecondBusyMaxMs (the same gaps counted in the
  // process's CPU time): passed through unchecked, as fields a newer daemon adds are.
})

/** Busy polling of the event loop (util/busy-poll.ts, `--busy-poll`). */
const checkBusyPoll = object({
  budgetUs: num,
  /** Why it is off; '' when on. */
  off: str,
  polls: num,
  hits: num,
  sleeps: num,
  score: num,
})

const checkDaemon = object({
  pid: num,
  uptimeMs: num,
  graceMs: num,
  acceptV0: bool,
  /** The tmem ABI versions served to clients; what live migration checks on a target. */
  abis: list(num),
  /** 1: the daemon serves SESSION requests (live migration). */
  migration: num,
  /** Where clients connect, as MOVED writes it (`unix:/path`, `tcp:host:port`). */
  clientAddresses: list(str),
  connections: num,
  clientConnections: num,
  controlConnections: num,
  /** Sessions held (named clients). */
  sessions: num,
  connectionsAccepted: num,
  connectionsClosed: num,
  /** Refused at accept (over the connection cap) or at hello. */
  connectionsRefused: num,
  framesReceived: num,
  /** Malformed frames; each closed its connection. */
  framesRejected: num,
  opsExecuted: num,
  controlsExecuted: num,
  /** CONTROL frames on the client endpoint, OP frames and STATS on the wrong endpoint. */
  controlDenied: num,
  /** v0 hellos accepted as connections while v0 is not served. */
  v0Refused: num,
  /** SESSION frames run (live migration's control requests). */
  sessionCommands: num,
  /** Saves a control connection began and left open when it closed: ended with SAVE_END. */
  savesAbandoned: num,
  /** Pages this daemon sent straight to another daemon (SESSION PUSH of live migration). */
  pushedPages: num,
  sessionsCreated: num,
  sessionsResumed: num,
  sessionsTakenOver: num,
  sessionsExpired: num,
  sessionsReleased: num,
  sessionsBound: num,
  sessionsMovedAway: num,
  sessionsDestroyed: num,
  /** Detached clients ended early to stay within the client limits. */
  sessionsReaped: num,
  /** The client limits in force, and how many clients are detached now. */
  limits: object({ clientsPerEndpointMax: num, detachedClientsMax: num, detached: num }),
  /** Rejected frames by reason name (frame.ts REJECT_NAMES, without `none`). */
  framesRejectedByReason: record(num),
  /** Shared-memory regions and rings; absent from daemons before issue 12's counters. */
  shm: optional(checkShm),
  /** Event-loop delay; absent from daemons before issue 14's. */
  eventLoop: optional(checkEventLoop),
  /** Busy polling; absent from daemons before issue 10's. */
  busyPoll: optional(checkBusyPoll),
  /** Ops answered late (remote tier) not answered yet; absent before issue 14. */
  deferredOps: optional(num),
})

const checkSession = object({
  id: num,
  name: str,
  abi: num,
  connected: bool,
  /** How long the client has been away (0 while connected). */
  detachedMs: num,
  /** Bound by a migration and waiting for activate. */
  pending: bool,
  /** Moved to another daemon; hellos here are redirected. */
  moved: bool,
})

const checkStats = object({
  daemon: checkDaemon,
  sessions: list(checkSession),
  host: checkHost,
})

function nullable<T>(item: Check<T>): Check<T | null> {
  return (value, path) => (value === null ? null : item(value, path))
}

const checkPage = object({
  /** The id to ask for next (`first` of the next request), or -1: no more clients. */
  next: num,
  /** Host-wide sums over every client; on the first page of a listing (first = 0), else null. */
  totals: nullable(
    object({
      clients: num,
      pools: num,
      compressedPages: num,
      compressedBytes: num,
      compressPoor: num,
    }),
  ),
})

const checkStatsPage = object({
  daemon: checkDaemon,
  sessions: list(checkSession),
  host: checkHost,
  page: checkPage,
})

export type PoolStats = ReturnType<typeof checkPool>
export type ClientStats = ReturnType<typeof checkClient>
/** The engine's `stats()` snapshot. */
export type HostStats = ReturnType<typeof checkHost>
/** The daemon's own part of STATS: what it is, and its counters. */
export type DaemonSection = ReturnType<typeof checkDaemon>
export type SessionStats = ReturnType<typeof checkSession>
/** The daemon's shared-memory section (`daemon.shm`). */
export type ShmSection = ReturnType<typeof checkShm>
export type EventLoopSection = ReturnType<typeof checkEventLoop>
/** The whole STATS reply body. */
export type DaemonStats = ReturnType<typeof checkStats>

/**
 * Reads the JSON body of a STATS reply (`bytes[offset, offset + length)`). Throws a
 * SyntaxError when it is not JSON, a TypeError naming the first field that is missing or of
 * the wrong type.
 */
export function decodeStats(bytes: Uint8Array, offset: number, length: number): DaemonStats {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset + offset, length).toString('utf8')
  return checkStats(JSON.parse(text) as unknown, 'stats')
}

/** The paged STATS reply: a DaemonStats of some clients, and where the listing goes next. */
export type StatsPage = ReturnType<typeof checkStatsPage>
export type StatsTotals = NonNullable<StatsPage['page']['totals']>

/** Reads the JSON body of a paged STATS reply; throws as `decodeStats` does. */
export function decodeStatsPage(bytes: Uint8Array, offset: number, length: number): StatsPage {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset + offset, length).toString('utf8')
  return checkStatsPage(JSON.parse(text) as unknown, 'stats')
}

/** The JSON body of a STATS reply. */
export function encodeStats(stats: DaemonStats): string {
  return JSON.stringify(stats)
}
