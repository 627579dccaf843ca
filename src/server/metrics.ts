/**
 * The opt-in Prometheus endpoint (`--metrics 127.0.0.1:PORT`, GET /metrics). At each scrape
 * it reads one snapshot: the engine's LIST counters (`host.stats()`: host-wide, per client, per
 * pool) and the daemon's own counters (connections, frames, rejects by reason, sessions), and
 * publishes every numeric field as a gauge:
 *
 *   tmem_<host-wide field>                           e.g. tmem_total_ops
 *   tmem_client_<field>{client="1",name="web-1"}    e.g. tmem_client_ephemeral_pages
 *   tmem_pool_<field>{client="1",name="web-1",pool="0"}
 *   tmem_daemon_<counter>                            e.g. tmem_daemon_frames_rejected
 *   tmem_daemon_frames_rejected_by_reason{reason="bad_magic"}
 *
 * Field names are taken from the snapshot as they are (camelCase to snake_case), so a counter
 * the engine adds shows up without a change here. Booleans become 0/1. Control plane: allocates.
 *
 * Bounds (any client can make clients and pools, and the endpoint needs no login):
 * - Only the `METRICS_LABELLED_CLIENTS_MAX` clients holding the most pages (ties: lower client
 *   id) get `tmem_client_*` and `tmem_pool_*` series; every other client is counted in the
 *   host-wide aggregates (`tmem_clients`, `tmem_pools`, `tmem_clients_unlabelled`, and the
 *   engine's own host-wide totals). So a scrape has a bounded number of series whatever the
 *   number of clients.
 * - The walk that counts every client and picks the labelled ones looks at
 *   `METRICS_CLIENTS_PER_TURN` client ids per turn of the event loop (engine StatsPass), so
 *   a scrape of 65,535 clients x 16 pools lets ops of other clients through every few ms.
 * - Scrapes are shared: one that arrives while another is being built, or within
 *   `METRICS_REUSE_MS` of the last, gets the same text; the snapshot is taken at most once per
 *   that interval however often the endpoint is hit.
 */
import { createServer, type Server } from 'node:http'
import type { Logger } from 'pino'
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { TcpAddress } from './config.js'

type Labels = Record<string, string>

/** Clients with their own labelled series at a scrape: the top this many by pages held. */
export const METRICS_LABELLED_CLIENTS_MAX = 16
/**
 * Client ids the metrics walk looks at per turn of the event loop: 2,048 clients x 16 pools
 * is about 3 ms of cache misses here (a whole walk of 65,535 x 16 was 70-100 ms).
 */
export const METRICS_CLIENTS_PER_TURN = 2048
/** A scrape within this long of the last one gets the same text (no new snapshot). */
export const METRICS_REUSE_MS = 1000

/** One value to publish. */
export interface Sample {
  name: string
  help: string
  labels: Labels
  value: number
}

export class Metrics {
  readonly registry = new Registry()
  readonly #gauges = new Map<string, Gauge>()
  readonly #collect: () => Sample[] | Promise<Sample[]>
  readonly #reuseMs: number
  #last: { atMs: number; text: Promise<string> } | null = null

  constructor(collect: () => Sample[] | Promise<Sample[]>, reuseMs = METRICS_REUSE_MS) {
    this.#collect = collect
    this.#reuseMs = reuseMs
    collectDefaultMetrics({ register: this.registry, prefix: 'tmem_process_' })
  }

  /** The exposition text for one scrape (shared with scrapes close to it, see above). */
  render(): Promise<string> {
    const now = Date.now()
    const last = this.#last
    if (last !== null && now - last.atMs < this.#reuseMs) return last.text
    const text = this.#build()
    this.#last = { atMs: now, text }
    text.catch(() => {
      if (this.#last?.text === text) this.#last = null
    })
    return text
  }

  async #build(): Promise<string> {
    const samples = await this.#collect()
    for (const gauge of this.#gauges.values()) gauge.reset()
    for (const sample of samples) this.#gauge(sample).set(sample.labels, sample.value)
    return this.registry.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }

  #gauge(sample: Sample): Gauge {
    let gauge = this.#gauges.get(sample.name)
    if (gauge === undefined) {
      gauge = new Gauge({
        name: sample.name,
        help: sample.help,
        labelNames: Object.keys(sample.labels),
        registers: [this.registry],
      })
      this.#gauges.set(sample.name, gauge)
    }
    return gauge
  }
}

/** Serves GET /metrics on `address`; resolves once listening. */
export async function serveMetrics(
  metrics: Metrics,
  address: TcpAddress,
  log: Logger,
): Promise<Server> {
  const server = createServer((request, response) => {
    if (request.method !== 'GET' || (request.url ?? '').split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('Not found; try /metrics\n')
      return
    }
    metrics.render().then(
      (text) => response.writeHead(200, { 'content-type': metrics.contentType }).end(text),
      (error: unknown) => {
        log.error({ err: error }, 'metrics scrape failed')
        response.writeHead(500, { 'content-type': 'text/plain' }).end('Scrape failed\n')
      },
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: address.host, port: address.port }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return server
}

/** `framesRejected` -> `frames_rejected`; anything outside [a-z0-9_] becomes `_`. */
export function snakeCase(name: string): string {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_')
}

/**
 * Flattens the numeric and boolean fields of `record` into samples named `prefix_<field>`;
 * nested objects continue the name (`prefix_<field>_<inner>`); arrays are skipped (the
 * caller walks clients and pools itself).
 */
export function flattenSamples(
  prefix: string,
  record: unknown,
  labels: Labels,
  out: Sample[],
  skip: ReadonlySet<string> = new Set(),
): void {
  if (typeof record !== 'object' || record === null || Array.isArray(record)) return
  for (const [key, value] of Object.entries(record)) {
    if (skip.has(key)) continue
    const name = `${prefix}_${snakeCase(key)}`
    if (typeof value === 'number' && Number.isFinite(value)) {
      out.push({ name, help: `tmem ${key}`, labels, value })
    } else if (typeof value === 'boolean') {
      out.push({ name, help: `tmem ${key} (1 = true)`, labels, value: value ? 1 : 0 })
    } else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      flattenSamples(name, value, labels, out)
    }
  }
}

const HOST_SKIP = new Set(['clients'])
const CLIENT_SKIP = new Set(['id', 'pools', 'name'])
const POOL_SKIP = new Set(['slot', 'uuid'])

interface ClientRecord {
  id?: unknown
  pools?: unknown
}

/** Pages a client holds: the sum of its pools' `pages`. */
function clientPages(client: ClientRecord): number {
  if (!Array.isArray(client.pools)) return 0
  let pages = 0
  for (const pool of client.pools as unknown[]) {
    const value = (pool as { pages?: unknown } | null)?.pages
    if (typeof value === 'number' && Number.isFinite(value)) pages += value
  }
  return pages
}

function clientId(client: ClientRecord): number {
  return typeof client.id === 'number' ? client.id : -1
}

/**
 * The `max` clients holding the most pages (ties: the lower id first), in that order. One pass
 * keeping a sorted list of at most `max`: O(clients × max) compares, nothing per other client.
 */
export function topClients(clients: readonly unknown[], max: number): ClientRecord[] {
  const top: { client: ClientRecord; pages: number; id: number }[] = []
  const before = (a: { pages: number; id: number }, b: { pages: number; id: number }): boolean =>
    a.pages > b.pages || (a.pages === b.pages && a.id < b.id)
  for (const entry of clients) {
    if (typeof entry !== 'object' || entry === null || max <= 0) continue
    const client = entry as ClientRecord
    const item = { client, pages: clientPages(client), id: clientId(client) }
    if (top.length === max && !before(item, top[max - 1]!)) continue
    let at = top.length
    while (at > 0 && before(item, top[at - 1]!)) at--
    top.splice(at, 0, item)
    if (top.length > max) top.pop()
  }
  return top.map((item) => item.client)
}

/** Clients and pools of a snapshot that holds every client. */
function countOf(clients: readonly unknown[]): { clients: number; pools: number } {
  let pools = 0
  for (const client of clients) {
    const list = (client as ClientRecord | null)?.pools
    if (Array.isArray(list)) pools += list.length
  }
  return { clients: clients.length, pools }
}

/**
 * Samples for the engine snapshot (`host.stats()`): its top-level numbers are host-wide, and
 * `clients: [{ id, ..., pools: [{ slot, ... }] }]` holds the per-client and per-pool counters,
 * of which only the top `labelledMax` clients by pages get series (with their pools); the
 * rest are counted in `tmem_clients`, `tmem_pools` and `tmem_clients_unlabelled`. The daemon
 * hands in a snapshot of the labelled clients only, with `counts` for the whole host.
 */
export function hostSamples(
  stats: unknown,
  nameOf: (clientId: number) => string,
  out: Sample[],
  labelledMax = METRICS_LABELLED_CLIENTS_MAX,
  counts?: { clients: number; pools: number },
): void {
  if (typeof stats !== 'object' || stats === null) return
  flattenSamples('tmem', stats, {}, out, HOST_SKIP)
  const clients = (stats as { clients?: unknown }).clients
  if (!Array.isArray(clients)) return
  const top = topClients(clients as unknown[], labelledMax)
  const { clients: clientCount, pools } = counts ?? countOf(clients as unknown[])
  out.push({
    name: 'tmem_clients',
    help: 'Clients the engine knows',
    labels: {},
    value: clientCount,
  })
  out.push({ name: 'tmem_pools', help: 'Pools of all clients', labels: {}, value: pools })
  out.push({
    name: 'tmem_clients_unlabelled',
    help: `Clients without their own series (only the ${labelledMax} holding the most pages have them)`,
    labels: {},
    value: clientCount - top.length,
  })
  for (const client of top) {
    const id = clientId(client)
    const clientLabels = { client: String(id), name: nameOf(id) }
    flattenSamples('tmem_client', client, clientLabels, out, CLIENT_SKIP)
    if (!Array.isArray(client.pools)) continue
    for (const pool of client.pools as unknown[]) {
      if (typeof pool !== 'object' || pool === null) continue
      const slot = (pool as { slot?: unknown }).slot
      const poolLabels = { ...clientLabels, pool: String(slot) }
      flattenSamples('tmem_pool', pool, poolLabels, out, POOL_SKIP)
    }
  }
}
