/**
 * The readable forms of `tmem list`: a host summary, a client table and a pool table built from
 * the daemon's STATS (the engine's `host.stats()` plus the daemon's session names), and the
 * `--json` form for scripts. Pure functions of a STATS reply, so they are easy to test.
 *
 * Derived figures follow Xen's `xen-tmem-list-parse` (docs/semantics.md "LIST"): get hit rate `gs/gt`,
 * compression `cb/(cp·4096)`, dedup `Gd/Ep` and `1 − Sc/Ec`, tze `1 − Zt/(Sc·4096)`.
 * A shared pool's counters belong to the pool, not to one sharer: a client's hit rate counts
 * only the pools it owns, so a shared pool is not counted twice. A client's SIZE is its pages
 * times 4 KiB, before compression (the engine keeps stored bytes per host, not per client);
 * cp/cb are cumulative, as in Xen, so the compression figure is the ratio achieved so far.
 */
import { PAGE_SIZE } from '../abi/constants.js'
import type {
  ClientStats,
  DaemonStats,
  HostStats,
  PoolStats,
  ShmSection,
  StatsTotals,
} from '../protocol/stats.js'
import { formatBytes } from '../util/units.js'
import { hostStats } from './clients.js'

/** `host.stats()` with each client's session name (null when it has none, e.g. restored). */
export type NamedHostStats = Omit<HostStats, 'clients'> & {
  clients: (ClientStats & { name: string | null })[]
}

/** The `--json` document: the engine's stats, clients named, only `cliId`'s when given. */
export function listJson(stats: DaemonStats, cliId: number | null): NamedHostStats {
  const host = hostStats(stats)
  const clients = host.clients
    .filter((client) => cliId === null || client.id === cliId)
    .map((client) => ({ ...client, name: sessionName(stats, client.id) }))
  return { ...host, clients }
}

/** The readable table: host summary (all clients only), clients, then pools. */
export function listTable(stats: DaemonStats, cliId: number | null): string {
  const host = hostStats(stats)
  const clients = host.clients.filter((client) => cliId === null || client.id === cliId)
  const out: string[] = []
  if (cliId === null) {
    out.push(...hostSummary(host, totalsOf(host)), ...shmSummary(stats.daemon.shm), '')
  }
  if (clients.length === 0) {
    out.push('no clients')
    return `${out.join('\n')}\n`
  }
  const remote = hasRemote(host)
  out.push(...columns([clientHeader(remote), ...clientRows(stats, clients, remote)]))
  const pools = poolRows(clients, remote)
  out.push('')
  out.push(...(pools.length === 0 ? ['no pools'] : columns([poolHeader(remote), ...pools])))
  return `${out.join('\n')}\n`
}

/** The remote tier's part of the stats (docs/remote.md "Observing"), or null without one. */
function remoteOf(host: HostStats): { health: string; pages: number; bytes: number } | null {
  const remote = (host as { remote?: { health: string; pages: number; bytes: number } }).remote
  return remote ?? null
}

/** A row with a REMOTE column at `at` when the daemon has a remote tier: remote pages. */
function withRemote(
  row: readonly string[],
  at: number,
  item: ClientStats | PoolStats | null,
  remote: boolean,
): string[] {
  if (!remote) return [...row]
  let pages = 0
  if (item !== null && 'pools' in item) {
    for (const pool of item.pools) if (pool.ownerId === item.id) pages += remotePages(pool)
  } else if (item !== null) pages = remotePages(item)
  return [...row.slice(0, at), item === null ? 'REMOTE' : count(pages), ...row.slice(at)]
}

function remotePages(pool: PoolStats): number {
  return (pool as PoolStats & { remotePages?: number }).remotePages ?? 0
}

/** True when the daemon has a remote tier: the tables get a REMOTE column. */
export function hasRemote(host: HostStats): boolean {
  return remoteOf(host) !== null
}

export function clientHeader(remote: boolean): string[] {
  return withRemote(CLIENT_HEADER, 9, null, remote)
}

export function poolHeader(remote: boolean): string[] {
  return withRemote(POOL_HEADER, 4, null, remote)
}

/** The host-wide sums the summary needs, from a reply that holds every client. */
export function totalsOf(host: HostStats): StatsTotals {
  const sum = (of: (client: ClientStats) => number): number =>
    host.clients.reduce((total, client) => total + of(client), 0)
  return {
    clients: host.clients.length,
    pools: sum((client) => client.pools.filter((p) => p.ownerId === client.id).length),
    compressedPages: sum((client) => client.compressedPages),
    compressedBytes: sum((client) => client.compressedBytes),
    compressPoor: sum((client) => client.compressPoor),
  }
}

export function clientRows(
  stats: DaemonStats,
  clients: readonly ClientStats[],
  remote: boolean,
): string[][] {
  return clients.map((client) => withRemote(clientRow(stats, client), 9, client, remote))
}

export function poolRows(clients: readonly ClientStats[], remote: boolean): string[][] {
  return clients.flatMap((client) =>
    client.pools.map((pool) => withRemote(poolRow(client, pool), 4, pool, remote)),
  )
}

/** The summary lines at the head of the table. */
export function hostSummary(host: HostStats, totals: StatsTotals): string[] {
  const used = host.framesUsed
  return [
    `tmem host: ${formatBytes(host.budgetPages * PAGE_SIZE)} budget (${count(host.budgetPages)} pages), ` +
      `${plural(totals.clients, 'client')}, ${plural(totals.pools, 'pool')}, ` +
      `${count(host.totalOps)} ops (${count(host.erroredOps)} failed)`,
    `memory:  ${formatBytes(used * PAGE_SIZE)} used of ${formatBytes(host.budgetPages * PAGE_SIZE)} ` +
      `(${count(used)} pages, ${percent(used, host.budgetPages)}), ` +
      `${count(Math.max(0, host.budgetPages - used))} pages free, ${host.freeableMb} MiB freeable`,
    `pages:   ${count(host.ephemeralPages)} ephemeral, ${count(host.persistentPages)} persistent, ` +
      `${count(host.objects)} objects; ${count(host.evicted)} evicted`,
    `savings: ${savings(host, totals)}`,
    ...remoteLine(host),
  ]
}

function remoteLine(host: HostStats): string[] {
  const remote = remoteOf(host)
  if (remote === null) return []
  return [
    `remote:  cluster ${remote.health}, ${count(remote.pages)} pages ` +
      `(${formatBytes(remote.bytes)} in the cluster)`,
  ]
}

/** The shared-memory line of the summary; none from a daemon that does not report it. */
export function shmSummary(shm: ShmSection | undefined): string[] {
  if (shm === undefined) return []
  if (!shm.available) return [`shm:     off (${shm.reason})`]
  return [
    `shm:     ${plural(shm.regions, 'region')} mapped (${formatBytes(shm.bytesMapped)}), ` +
      `${count(shm.regionsAttached)} attached so far, ${count(shm.regionsRefused)} refused, ` +
      `${count(shm.regionsBroken)} broken; ${count(shm.opsServed)} ops via rings ` +
      `(${count(shm.opsRefused)} refused); kicks ${count(shm.kicksSent)} sent, ` +
      `${count(shm.kicksReceived)} received; ${count(shm.ringFull)} ring full`,
  ]
}

function savings(host: HostStats, totals: StatsTotals): string {
  const parts: string[] = []
  const { compressedPages, compressedBytes, compressPoor: poor } = totals
  if (compressedPages > 0) {
    const raw = compressedPages * PAGE_SIZE
    parts.push(
      `compression ${plural(compressedPages, 'page')} compressed so far to ${formatBytes(compressedBytes)} ` +
        `(${percent(raw - compressedBytes, raw)} saved${poor > 0 ? `, ${count(poor)} poor` : ''})`,
    )
  } else if (poor > 0) {
    parts.push(`compression: ${count(poor)} pages did not shrink enough`)
  }
  if (
    host.dedupPuts > 0 ||
    (host.contentDescriptors > 0 && host.contentDescriptors < host.ephemeralPages)
  ) {
    parts.push(
      `dedup ${count(host.dedupPuts)} of ${count(host.goodEphemeralPuts)} ephemeral puts ` +
        `(${percent(host.dedupPuts, host.goodEphemeralPuts)}), ${count(host.ephemeralPages)} pages in ` +
        `${count(host.contentDescriptors)} frames (${percent(host.ephemeralPages - host.contentDescriptors, host.ephemeralPages)} saved)`,
    )
  }
  if (host.tzeBytes > 0 && host.contentDescriptors > 0) {
    const raw = host.contentDescriptors * PAGE_SIZE
    parts.push(
      `tze ${formatBytes(host.tzeBytes)} kept of ${formatBytes(raw)} (${percent(raw - host.tzeBytes, raw)} saved)`,
    )
  }
  return parts.length === 0 ? 'none (compression, dedup and tze off or unused)' : parts.join('; ')
}

export const CLIENT_HEADER = [
  'ID',
  'NAME',
  'STATE',
  'WEIGHT',
  'CAP',
  'COMPRESS',
  'POOLS',
  'EPHEMERAL',
  'PERSISTENT',
  'SIZE',
  'GETS',
  'HIT',
]

function clientRow(stats: DaemonStats, client: ClientStats): string[] {
  const owned = client.pools.filter((pool) => pool.ownerId === client.id)
  const persistent = owned
    .filter((pool) => pool.persistent)
    .reduce((sum, pool) => sum + pool.pages, 0)
  const gets = owned.reduce((sum, pool) => sum + pool.gets, 0)
  const found = owned.reduce((sum, pool) => sum + pool.foundGets, 0)
  return [
    String(client.id),
    sessionName(stats, client.id) ?? '-',
    clientState(stats, client),
    String(client.weight),
    client.cap === 0 ? '-' : `${client.cap}%`,
    client.compress ? 'on' : 'off',
    String(client.pools.length),
    count(client.ephemeralPages),
    count(persistent),
    formatBytes((client.ephemeralPages + persistent) * PAGE_SIZE).replace(' ', ''),
    count(gets),
    gets === 0 ? '-' : percent(found, gets),
  ]
}

/** What the STATS reply says of a session beyond the typed fields (daemon.ts snapshot()). */
interface SessionFlags {
  pending?: boolean
  moved?: boolean
  held?: boolean
}

function sessionState(session: DaemonStats['sessions'][number] | undefined): string {
  if (session === undefined) return 'no-session'
  if (session.connected) return 'connected'
  const flags = session as SessionFlags
  // Kept without a grace timer (restored, waiting for its process), or waiting on a migration:
  // the time since it lost its connection would read as a countdown that is not running.
  if (flags.held === true) return 'restored'
  if (flags.pending === true) return 'incoming'
  if (flags.moved === true) return 'moved'
  return `detached-${Math.round(session.detachedMs / 1000)}s`
}

function clientState(stats: DaemonStats, client: ClientStats): string {
  const session = stats.sessions.find((candidate) => candidate.id === client.id)
  const states = [sessionState(session)]
  if (client.frozen) states.push('frozen')
  if (client.liveMigrating) states.push('migrating')
  return states.join(',')
}

export const POOL_HEADER = [
  'ID',
  'POOL',
  'KIND',
  'PAGES',
  'OBJECTS',
  'PUTS',
  'GETS',
  'HIT',
  'FLUSHES',
  'SHARED',
]

function poolRow(client: ClientStats, pool: PoolStats): string[] {
  const kind = `${pool.persistent ? 'persistent' : 'ephemeral'}${pool.shared ? ',shared' : ''}`
  const shared = pool.shared
    ? `${uuidText(pool.uuid)}${pool.ownerId === client.id ? '' : ` (owner ${pool.ownerId}, pool ${pool.poolId})`}`
    : ''
  return [
    String(client.id),
    String(pool.slot),
    kind,
    count(pool.pages),
    count(pool.objects),
    count(pool.puts),
    count(pool.gets),
    pool.gets === 0 ? '-' : percent(pool.foundGets, pool.gets),
    count(pool.flushes + pool.flushObjects),
    shared,
  ]
}

/** A pool's `[lo, hi]` hex as the tools' UUID string (hi first). */
function uuidText(uuid: [string, string]): string {
  const hex = uuid[1].padStart(16, '0') + uuid[0].padStart(16, '0')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

function sessionName(stats: DaemonStats, id: number): string | null {
  return stats.sessions.find((session) => session.id === id)?.name ?? null
}

/**
 * Left-aligned columns, two spaces apart, no trailing spaces. Only the last column (SHARED)
 * has spaces, so awk can split the rest. The widths only grow: rows printed a page at a time
 * stay aligned with the rows before them unless a later cell is wider.
 */
export class Columns {
  readonly #widths: number[] = []

  format(rows: readonly string[][]): string[] {
    const widths = this.#widths
    for (const row of rows)
      row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)))
    return rows.map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
  }
}

function columns(rows: string[][]): string[] {
  return new Columns().format(rows)
}

function count(value: number): string {
  return String(value)
}

function plural(value: number, noun: string): string {
  return `${value} ${noun}${value === 1 ? '' : 's'}`
}

function percent(part: number, whole: number): string {
  if (whole <= 0) return '0%'
  const value = (part * 100) / whole
  return `${value >= 10 || value === 0 ? Math.round(value) : value.toFixed(1)}%`
}
