/**
 * Shared by the live-migration tests (live-migrate-*.test.ts): a writer that keeps putting,
 * replacing and flushing through the client library, with a model of what it last put, and
 * the check of a daemon's pages against that model. Each scenario has a file of its own, so
 * each runs in a process of its own.
 */
import assert from 'node:assert/strict'
import type { TmemClient } from '../../src/client/mod.js'
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js'

export const PAGE = 4096

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
 * a flush is done even when it reports EFROZEN (spec §3.6).
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

  constructor(readonly client: TmemClient, readonly pools: number[]) {}

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
      } catch (error) {
        this.errors.push(error)
        return
      }
    }
  }

  async stop(): Promise<void> {
    this.#stop = true
    await Promise.all(this.#lanes)
  }
}

export async function fill(writer: Writer, pages: number): Promise<void> {
  const puts: Promise<void>[] = []
  for (let i = 0; i < pages; i++) {
    puts.push(writer.put({ pool: writer.pools[i % writer.pools.length]!, oid: 10 + (i % 50), index: i }))
    if (puts.length >= 64) await Promise.all(puts.splice(0))
  }
  await Promise.all(puts)
}

/** Every page of the model is there with its bytes; every other touched key is absent. */
export async function checkAgainstModel(client: TmemClient, writer: Writer): Promise<void> {
  const checks: Promise<void>[] = []
  for (const [text, key] of writer.touched) {
    checks.push(client.get(key.pool, key.oid, key.index).then((got) => {
      const want = writer.model.get(text)
      if (want === undefined) assert.equal(got, null, `flushed page ${text} reappeared`)
      else assert.deepEqual(got, page(want), `page ${text} is missing or stale`)
    }))
    if (checks.length >= 64) await Promise.all(checks.splice(0))
  }
  await Promise.all(checks)
}

export async function daemonPair(): Promise<[DaemonHandle, DaemonHandle]> {
  return Promise.all([startDaemon(), startDaemon()])
}

