/**
 * Live migration between two real daemon processes while a writer (the client library) keeps
 * putting, replacing and flushing persistent pages. The oracle is a Map of what the writer
 * last put for each key: afterwards every such page is on the target with its bytes, nothing
 * the writer flushed reappears, and the writer's own connection followed the client (its
 * later ops land on the target). Then the same with the target killed mid-copy: the source
 * keeps every page and the writer keeps working there.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, connectControl, type TmemClient } from '../../src/client/mod.js'
import { migrateClient, MigrationError, type MigrateProgress } from '../../src/migrate/mod.js'
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js'

const PAGE = 4096

function page(tag: number): Uint8Array {
  const bytes = new Uint8Array(PAGE)
  const view = new DataView(bytes.buffer)
  for (let i = 0; i < PAGE; i += 64) view.setUint32(i, (tag * 2654435761 + i) >>> 0, true)
  view.setUint32(4, tag, true)
  return bytes
}

interface Key {
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
class Writer {
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

async function fill(writer: Writer, pages: number): Promise<void> {
  const puts: Promise<void>[] = []
  for (let i = 0; i < pages; i++) {
    puts.push(writer.put({ pool: writer.pools[i % writer.pools.length]!, oid: 10 + (i % 50), index: i }))
    if (puts.length >= 64) await Promise.all(puts.splice(0))
  }
  await Promise.all(puts)
}

/** Every page of the model is there with its bytes; every other touched key is absent. */
async function checkAgainstModel(client: TmemClient, writer: Writer): Promise<void> {
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

async function daemonPair(): Promise<[DaemonHandle, DaemonHandle]> {
  return Promise.all([startDaemon(), startDaemon()])
}

void test('live migration under a writer: every last put arrives, no flush reappears, the client follows', async (t) => {
  const [a, b] = await daemonPair()
  try {
    const client = await connect({ path: a.socketPath }, { name: 'writer-1' })
    const pools = [await client.newPool({ persistent: true }), await client.newPool({ persistent: true })]
    const ephemeral = await client.newPool()
    await client.put(ephemeral, 1, 1, page(1))
    const writer = new Writer(client, pools)
    await fill(writer, 3000)
    let moved = ''
    client.on('moved', (address: string) => (moved = address))

    writer.start(4)
    await new Promise((resolve) => setTimeout(resolve, 100))
    const reports: MigrateProgress[] = []
    const result = await migrateClient({
      source: { path: a.controlPath },
      target: { path: b.controlPath },
      client: 'writer-1',
      onProgress: (progress) => reports.push(progress),
      progressIntervalMs: 0,
      batchBytes: 64 * (40 + PAGE), // small batches: many round trips while the writer runs
    })
    // Later ops land on the target.
    await new Promise((resolve) => setTimeout(resolve, 150))
    await writer.stop()
    assert.deepEqual(writer.errors, [])
    const opsAfter = writer.ops
    await writer.put({ pool: pools[0]!, oid: 99_999, index: 1 })

    t.diagnostic(`${result.pagesAtStart} pages at start, ${result.pages} records moved in ${result.rounds} rounds, ` +
      `frozen ${result.frozenWindowMs.toFixed(1)} ms (${result.frozenPages} records), writer ${writer.ops} ops, ${writer.frozenSeen} EFROZEN`)
    assert.equal(result.name, 'writer-1')
    assert.ok(result.pagesAtStart >= 1000, `${result.pagesAtStart} pages at start`)
    assert.ok(result.pages >= result.pagesAtStart)
    assert.ok(result.notified)
    assert.ok(result.frozenWindowMs < 2000, `frozen for ${result.frozenWindowMs} ms`)
    assert.ok(reports.some((r) => r.phase === 'precopy'))
    assert.ok(reports.at(-1)?.done)
    assert.equal(moved, `unix:${b.socketPath}`)
    assert.equal(client.address, `unix:${b.socketPath}`)
    assert.ok(opsAfter > 0)

    await checkAgainstModel(client, writer)
    // The ephemeral pool came along (empty, as Xen's save records ephemeral pools).
    assert.equal(await client.get(ephemeral, 1, 1), null)
    await client.put(ephemeral, 1, 2, page(2))

    const controlA = await connectControl({ path: a.controlPath })
    const controlB = await connectControl({ path: b.controlPath })
    const statsA = await controlA.stats()
    const statsB = await controlB.stats()
    assert.equal(statsA.sessions.length, 0, 'the source copy is destroyed')
    assert.equal((statsA.host as { persistentPages: number }).persistentPages, 0)
    const session = statsB.sessions.find((s) => s.name === 'writer-1')
    assert.ok(session?.connected, 'the writer is connected to the target')
    assert.equal((statsB.host as { persistentPages: number }).persistentPages, writer.model.size)
    await controlA.close()
    await controlB.close()
    await client.close()
  } finally {
    await Promise.all([a.stop(), b.stop()])
  }
})

void test('target killed mid-copy: the source keeps every page and the writer keeps working', async () => {
  const [a, b] = await daemonPair()
  try {
    const client = await connect({ path: a.socketPath }, { name: 'survivor' })
    const pools = [await client.newPool({ persistent: true })]
    const writer = new Writer(client, pools)
    await fill(writer, 6000)
    writer.start(2)
    let killed = false
    const error = await migrateClient({
      source: { path: a.controlPath },
      target: { path: b.controlPath },
      client: 'survivor',
      batchBytes: 16 * (40 + PAGE),
      depth: 1,
      onProgress: (progress) => {
        if (!killed && progress.phase === 'precopy' && progress.pages >= 1500) {
          killed = true
          b.process.kill('SIGKILL')
        }
      },
      progressIntervalMs: 0,
    }).then(() => null, (caught: unknown) => caught)
    assert.ok(killed, 'the target was killed during the pre-copy')
    assert.ok(error instanceof MigrationError, `got ${String(error)}`)
    assert.equal(error.code, 'EMIGRATE')
    assert.equal(error.sourceIntact, true)
    assert.equal(error.targetCleanup, 'unreachable')
    assert.match(error.message, /keeps running on the source/)

    // The writer never noticed (no EFROZEN: the source was never frozen) and keeps going.
    await new Promise((resolve) => setTimeout(resolve, 100))
    await writer.stop()
    assert.deepEqual(writer.errors, [])
    assert.equal(writer.frozenSeen, 0)
    assert.equal(client.address, `unix:${a.socketPath}`)
    await writer.put({ pool: pools[0]!, oid: 77, index: 7 })
    await checkAgainstModel(client, writer)

    const control = await connectControl({ path: a.controlPath })
    const stats = await control.stats()
    const engine = (stats.host as { clients: { id: number; frozen: boolean; liveMigrating: boolean }[] }).clients
    assert.equal(engine.length, 1)
    assert.equal(engine[0]!.frozen, false)
    assert.equal(engine[0]!.liveMigrating, false, 'SAVE_END ended the pre-copy')
    assert.equal((stats.host as { persistentPages: number }).persistentPages, writer.model.size)
    await control.close()
    await client.close()
  } finally {
    await Promise.all([a.stop(), b.stop()])
  }
})

void test('a client that was away during the migration is redirected when it comes back', async () => {
  const [a, b] = await daemonPair()
  try {
    const first = await connect({ path: a.socketPath }, { name: 'sleeper' })
    const pool = await first.newPool({ persistent: true })
    for (let i = 0; i < 50; i++) await first.put(pool, 5, i, page(i))
    const secret = first.secret
    await first.disconnect() // the process went away; the client waits out its grace period
    const result = await migrateClient({ source: { path: a.controlPath }, target: { path: b.controlPath }, client: 'sleeper' })
    assert.equal(result.notified, false)

    // The process comes back to the old daemon with its old secret and is sent on.
    const back = await connect({ path: a.socketPath }, { name: 'sleeper', secret })
    assert.equal(back.resumed, true)
    assert.equal(back.address, `unix:${b.socketPath}`)
    assert.notEqual(back.secret, secret, 'the new daemon gave the client its own secret')
    for (let i = 0; i < 50; i++) assert.deepEqual(await back.get(pool, 5, i), page(i))
    await back.close()
  } finally {
    await Promise.all([a.stop(), b.stop()])
  }
})
