/**
 * The closed-loop load generator shared by all servers. A case is `connections x depth`:
 * each connection runs `depth` lanes, each lane keeps one request in flight and issues the
 * next as soon as its reply comes (so `depth` requests are in flight per connection).
 * Connection j owns the keys `order[i]` with `i % connections == j` (tmem pools are private
 * to a connection, so every server gets the same partition), visited in a seeded random order.
 *
 * A trial runs for a fixed time; only operations that complete before the deadline count, and
 * each one's latency (issue to reply, performance.now) is recorded. The server's CPU time
 * (/proc/<pid>/stat, all threads) and this process's CPU time are read around the trial.
 */
import type { Corpus } from './corpus.js'
import { PAGE } from './corpus.js'
import type { Conn } from './drivers.js'
import { cpuSeconds } from './servers.js'

export type Op = 'put' | 'get'

export interface TrialResult {
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

export async function trial(
  conns: Conn[],
  depth: number,
  op: Op,
  workload: Workload,
  corpus: Corpus,
  milliseconds: number,
  serverPid: number,
): Promise<TrialResult> {
  let count = 0
  let badReads = 0
  const cpu0 = cpuSeconds(serverPid)
  const client0 = process.cpuUsage()
  const start = performance.now()
  const deadline = start + milliseconds
  const lane = async (conn: Conn, j: number): Promise<void> => {
    const scratch = new Uint8Array(PAGE)
    while (true) {
      const issued = performance.now()
      if (issued >= deadline) return
      const key = workload.next(j)
      const page = corpus.page(key)
      if (op === 'put') await conn.put(key, page)
      else if (!(await conn.get(key, page, scratch))) badReads++
      const done = performance.now()
      if (done <= deadline && count < LATENCY_CAPACITY) latencies[count++] = done - issued
    }
  }
  await Promise.all(conns.flatMap((conn, j) => Array.from({ length: depth }, () => lane(conn, j))))
  const client = process.cpuUsage(client0)
  const serverCpuSeconds = cpuSeconds(serverPid) - cpu0
  const seconds = milliseconds / 1000
  const sorted = latencies.subarray(0, count).sort()
  return {
    ops: count,
    seconds,
    opsPerSecond: count / seconds,
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
