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
 */
import { createServer, type Server } from 'node:http'
import type { Logger } from 'pino'
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { TcpAddress } from './config.js'

type Labels = Record<string, string>

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
  readonly #collect: () => Sample[]

  constructor(collect: () => Sample[]) {
    this.#collect = collect
    collectDefaultMetrics({ register: this.registry, prefix: 'tmem_process_' })
  }

  /** The exposition text for one scrape. */
  async render(): Promise<string> {
    for (const gauge of this.#gauges.values()) gauge.reset()
    for (const sample of this.#collect()) this.#gauge(sample).set(sample.labels, sample.value)
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

/**
 * Samples for the engine snapshot (`host.stats()`): its top-level numbers are host-wide, and
 * `clients: [{ id, ..., pools: [{ slot, ... }] }]` holds the per-client and per-pool counters.
 */
export function hostSamples(
  stats: unknown,
  nameOf: (clientId: number) => string,
  out: Sample[],
): void {
  if (typeof stats !== 'object' || stats === null) return
  flattenSamples('tmem', stats, {}, out, HOST_SKIP)
  const clients = (stats as { clients?: unknown }).clients
  if (!Array.isArray(clients)) return
  for (const client of clients as unknown[]) {
    if (typeof client !== 'object' || client === null) continue
    const record = client as { id?: unknown; pools?: unknown }
    const id = typeof record.id === 'number' ? record.id : -1
    const clientLabels = { client: String(id), name: nameOf(id) }
    flattenSamples('tmem_client', client, clientLabels, out, CLIENT_SKIP)
    if (!Array.isArray(record.pools)) continue
    for (const pool of record.pools as unknown[]) {
      if (typeof pool !== 'object' || pool === null) continue
      const slot = (pool as { slot?: unknown }).slot
      const poolLabels = { ...clientLabels, pool: String(slot) }
      flattenSamples('tmem_pool', pool, poolLabels, out, POOL_SKIP)
    }
  }
}
