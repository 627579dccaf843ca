/**
 * Shared by the live-migration tests (live-migrate-*.test.ts): a writer that keeps putting,
 * replacing and flushing through the client library, with a model of what it last put, and
 * the check of a daemon's pages against that model. Each scenario has a file of its own, so
 * each runs in a process of its own.
 */
import assert from 'node:assert/strict'
import { createServer, createConnection, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import type { TmemClient } from '../../src/client/mod.js'
import { type DaemonHandle, type StartOptions, startDaemon } from '../helpers/daemon.js'

export const PAGE = 4096

export { HANG_GUARD_MS } from '../helpers/hang.js'

export function page(tag: number): Uint8Array {
  const bytes = new Uint8Array(PAGE)
  const view = new DataView(bytes.buffer)
  for (let i = 0; i < PAGE; i += 64) view.setUint32(i, (tag * 2654435761 + i) >>> 0, true)
  view.setUint32(4, tag, true)
  return bytes
}

export interface Key {
  pool: number
  oid: number
  index: number
}

const keyText = (key: Key): string => `${key.pool}/${key.oid}/${key.index}`

/**
 * The writer: `lanes` sequential loops on disjoint objects (so each key's ops are ordered),
 * each putting new pages, replacing and flushing. EFROZEN on a new put means "not stored";
 * a flush is done even when it reports EFROZEN (docs/semantics.md "Flush page").
 * `reached(n)` is the event a test waits on instead of sleeping: "the writer has done n ops".
 */
export class Writer {
  readonly model = new Map<string, number>()
  readonly touched = new Map<string, Key>()
  readonly errors: unknown[] = []
  frozenSeen = 0
  ops = 0
  #tag = 0
  #stop = false
  #lanes: Promise<void>[] = []
  #waiters: { ops: number; resolve: () => void; reject: (error: unknown) => void }[] = []

  constructor(
    readonly client: TmemClient,
    readonly pools: number[],
  ) {}

  async put(key: Key): Promise<void> {
    const tag = ++this.#tag
    this.touched.set(keyText(key), key)
    try {
      await this.client.put(key.pool, key.oid, key.index, page(tag))
      this.model.set(keyText(key), tag)
    } catch (error) {
      if ((error as { code?: string }).code !== 'EFROZEN') throw error
      this.frozenSeen++
    }
  }

  async flush(key: Key): Promise<void> {
    this.touched.set(keyText(key), key)
    try {
      await this.client.flushPage(key.pool, key.oid, key.index)
    } catch (error) {
      if ((error as { code?: string }).code !== 'EFROZEN') throw error
      this.frozenSeen++
    }
    this.model.delete(keyText(key))
  }

  start(lanes: number): void {
    for (let lane = 0; lane < lanes; lane++) this.#lanes.push(this.#run(lane))
  }

  async #run(lane: number): Promise<void> {
    let step = 0
    while (!this.#stop) {
      step++
      const pool = this.pools[step % this.pools.length]!
      const oid = 1000 + lane * 100 + (step % 7)
      const index = (step * 13) % 64
      const key = { pool, oid, index }
      try {
        if (step % 5 === 3) await this.flush(key)
        else await this.put(key)
        this.ops++
        this.#wake()
      } catch (error) {
        this.errors.push(error)
        for (const waiter of this.#waiters.splice(0)) waiter.reject(error)
        return
      }
    }
  }

  /** Resolves once the lanes have done `ops` ops in all; rejects if a lane fails first. */
  reached(ops: number): Promise<void> {
    if (this.errors.length > 0)
      return Promise.reject(new Error('a writer lane failed', { cause: this.errors[0] }))
    if (this.ops >= ops) return Promise.resolve()
    return new Promise((resolve, reject) => this.#waiters.push({ ops, resolve, reject }))
  }

  #wake(): void {
    if (this.#waiters.length === 0) return
    const due = this.#waiters.filter((waiter) => this.ops >= waiter.ops)
    this.#waiters = this.#waiters.filter((waiter) => this.ops < waiter.ops)
    for (const waiter of due) waiter.resolve()
  }

  async stop(): Promise<void> {
    this.#stop = true
    await Promise.all(this.#lanes)
  }
}

export async function fill(writer: Writer, pages: number): Promise<void> {
  const puts: Promise<void>[] = []
  for (let i = 0; i < pages; i++) {
    puts.push(
      writer.put({ pool: writer.pools[i % writer.pools.length]!, oid: 10 + (i % 50), index: i }),
    )
    if (puts.length >= 64) await Promise.all(puts.splice(0))
  }
  await Promise.all(puts)
}

/** Every page of the model is there with its bytes; every other touched key is absent. */
export async function checkAgainstModel(client: TmemClient, writer: Writer): Promise<void> {
  const checks: Promise<void>[] = []
  for (const [text, key] of writer.touched) {
    checks.push(
      client.get(key.pool, key.oid, key.index).then((got) => {
        const want = writer.model.get(text)
        if (want === undefined) assert.equal(got, null, `flushed page ${text} reappeared`)
        else assert.deepEqual(got, page(want), `page ${text} is missing or stale`)
      }),
    )
    if (checks.length >= 64) await Promise.all(checks.splice(0))
  }
  await Promise.all(checks)
}

/** Two daemons; if one fails to start, the other is stopped (a leaked child would keep the test file from ending). */
export async function daemonPair(
  first: StartOptions = {},
  second: StartOptions = first,
): Promise<[DaemonHandle, DaemonHandle]> {
  const started = await Promise.allSettled([startDaemon(first), startDaemon(second)])
  if (started[0].status === 'fulfilled' && started[1].status === 'fulfilled')
    return [started[0].value, started[1].value]
  for (const result of started) if (result.status === 'fulfilled') await result.value.stop()
  throw started[0].status === 'rejected'
    ? started[0].reason
    : (started[1] as PromiseRejectedResult).reason
}

/**
 * A Unix-socket relay in front of a daemon's socket that plays "the target died part-way":
 * it forwards every connection both ways until one connection has sent `limit` bytes towards
 * the daemon, then forwards nothing more towards it and calls `cut()` once (the test kills
 * the daemon there). When the daemon's side closes, the relay closes the other side. `cut`
 * says whether that happened. The cut is an event of the byte stream, not of time: whatever
 * the machine's speed, the target has had exactly `limit` bytes of that connection.
 */
export interface CuttingRelay {
  path: string
  readonly cut: boolean
  close(): Promise<void>
}

export async function cuttingRelay(
  dir: string,
  targetPath: string,
  limit: number,
  cut: () => void,
): Promise<CuttingRelay> {
  const path = join(dir, 'relay.sock')
  let cutting = false
  const sockets = new Set<Socket>()
  const server: Server = createServer((inbound) => {
    const outbound = createConnection(targetPath)
    sockets.add(inbound).add(outbound)
    let sent = 0
    inbound.on('data', (chunk: Buffer) => {
      if (cutting) return
      const room = limit - sent
      if (chunk.length < room) {
        sent += chunk.length
        outbound.write(chunk)
        return
      }
      outbound.write(chunk.subarray(0, room))
      sent = limit
      cutting = true
      cut()
    })
    outbound.on('data', (chunk: Buffer) => inbound.write(chunk))
    const closeBoth = (): void => {
      inbound.destroy()
      outbound.destroy()
    }
    inbound.on('close', closeBoth).on('error', closeBoth)
    outbound.on('close', closeBoth).on('error', closeBoth)
  })
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, resolve))
  return {
    path,
    get cut() {
      return cutting
    },
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
