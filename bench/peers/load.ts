/**
 * The closed-loop load generator shared by all servers. A case is `connections x depth`:
 * each connection runs `depth` lanes, each lane keeps one request in flight and issues the
 * next as soon as its reply comes (so `depth` requests are in flight per connection).
 * Connection j owns the keys `order[i]` with `i % connections == j` (tmem pools are private
 * to a connection, so every server gets the same partition), visited in a seeded random order.
 *
 * With `batch` > 1 a lane's request is a batch of that many pages (`putMany`/`getMany`: Redis
 * MSET/MGET, memcached quiet `ms`/`mg` + `mn`, tmem's batch API); ops are then pages, and the
 * latency is the batch's.
 *
 * A trial runs for a fixed time; only operations that complete before the deadline count, and
 * each request's latency (issue to reply, performance.now) is recorded. The server's CPU time
 * (/proc/<pid>/stat, all threads) and this process's CPU time are read around the trial.
 */
import type { Corpus } from './corpus.js'
import { PAGE } from './corpus.js'
import type { Conn } from './drivers.js'
import { cpuSeconds } from './servers.js'

export type Op = 'put' | 'get'

export interface TrialResult {
  /** Pages put or got (one per request, `batch` per batch). */
  ops: number
  seconds: number
  opsPerSecond: number
  p50us: number
  p99us: number
  serverCpuSeconds: number
  clientCpuSeconds: number
  /** Gets that missed or returned other bytes (must be 0). */
  badReads: number
}

/** The keys each connection owns, and where each connection's walk is. */
export class Workload {
  readonly slices: Uint32Array[]
  readonly #cursor: number[]

  constructor(order: Uint32Array, connections: number) {
    this.slices = []
    for (let j = 0; j < connections; j++) {
      const slice = new Uint32Array(Math.ceil((order.length - j) / connections))
      for (let i = j, at = 0; i < order.length; i += connections) slice[at++] = order[i]!
      this.slices.push(slice)
    }
    this.#cursor = this.slices.map(() => 0)
  }

  next(connection: number): number {
    const slice = this.slices[connection]!
    const at = this.#cursor[connection]!
    this.#cursor[connection] = at + 1 >= slice.length ? 0 : at + 1
    return slice[at]!
  }
}

const LATENCY_CAPACITY = 4_000_000
const latencies = new Float64Array(LATENCY_CAPACITY)

/** Puts every key of every slice, `depth` in flight per connection (untimed preload). */
export async function preload(
  conns: Conn[],
  workload: Workload,
  corpus: Corpus,
  depth: number,
): Promise<void> {
  await Promise.all(
    conns.map(async (conn, j) => {
      const slice = workload.slices[j]!
      let next = 0
      await Promise.all(
        Array.from({ length: depth }, async () => {
          while (next < slice.length) {
            const key = slice[next++]!
            await conn.put(key, corpus.page(key))
          }
        }),
      )
    }),
  )
}

/** How the lanes of a trial issue: `depth` lanes per connection, `batch` pages per request. */
export interface Shape {
  depth: number
  batch: number
}

export async function trial(
  conns: Conn[],
  shape: Shape,
  op: Op,
  workload: Workload,
  corpus: Corpus,
  milliseconds: number,
  serverPid: number,
): Promise<TrialResult> {
  let count = 0
  let ops = 0
  let badReads = 0
  const { depth, batch } = shape
  const cpu0 = cpuSeconds(serverPid)
  const client0 = process.cpuUsage()
  const start = performance.now()
  const deadline = start + milliseconds
  const record = (issued: number, pages: number): void => {
    const done = performance.now()
    if (done > deadline) return
    ops += pages
    if (count < LATENCY_CAPACITY) latencies[count++] = done - issued
  }
  const lane = async (conn: Conn, j: number): Promise<void> => {
    const scratch = new Uint8Array(PAGE)
    while (true) {
      const issued = performance.now()
      if (issued >= deadline) return
      const key = workload.next(j)
      const page = corpus.page(key)
      if (op === 'put') await conn.put(key, page)
      else if (!(await conn.get(key, page, scratch))) badReads++
      record(issued, 1)
    }
  }
  const batchLane = async (conn: Conn, j: number): Promise<void> => {
    const scratch = new Uint8Array(PAGE * batch)
    const keys = new Uint32Array(batch)
    const pages: Uint8Array[] = new Array<Uint8Array>(batch)
    while (true) {
      const issued = performance.now()
      if (issued >= deadline) return
      for (let i = 0; i < batch; i++) {
        keys[i] = workload.next(j)
        pages[i] = corpus.page(keys[i]!)
      }
      if (op === 'put') await conn.putMany(keys, pages)
      else badReads += batch - (await conn.getMany(keys, pages, scratch))
      record(issued, batch)
    }
  }
  const run = batch > 1 ? batchLane : lane
  await Promise.all(conns.flatMap((conn, j) => Array.from({ length: depth }, () => run(conn, j))))
  const client = process.cpuUsage(client0)
  const serverCpuSeconds = cpuSeconds(serverPid) - cpu0
  const seconds = milliseconds / 1000
  const sorted = latencies.subarray(0, count).sort()
  return {
    ops,
    seconds,
    opsPerSecond: ops / seconds,
    p50us: percentile(sorted, 0.5) * 1000,
    p99us: percentile(sorted, 0.99) * 1000,
    serverCpuSeconds,
    clientCpuSeconds: (client.user + client.system) / 1e6,
    badReads,
  }
}

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

/** The median trial by ops/s; latencies are the medians of the trials' percentiles. */
export interface Summary {
  opsPerSecond: number
  p50us: number
  p99us: number
  /** Server CPU microseconds per operation, over all trials. */
  serverCpuUs: number
  clientCpuUs: number
  trials: number[]
  badReads: number
}

export function summarize(results: TrialResult[]): Summary {
  const ops = results.reduce((sum, r) => sum + r.ops, 0)
  return {
    opsPerSecond: median(results.map((r) => r.opsPerSecond)),
    p50us: median(results.map((r) => r.p50us)),
    p99us: median(results.map((r) => r.p99us)),
    serverCpuUs: (results.reduce((sum, r) => sum + r.serverCpuSeconds, 0) / ops) * 1e6,
    clientCpuUs: (results.reduce((sum, r) => sum + r.clientCpuSeconds, 0) / ops) * 1e6,
    trials: results.map((r) => Math.round(r.opsPerSecond)),
    badReads: results.reduce((sum, r) => sum + r.badReads, 0),
  }
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}
