/**
 * Save and restore over a daemon's control connection (`networkChannel`).
 *
 * Save: the channel's prefetch answers the saver's page-by-page SAVE_GET_NEXT_PAGE from
 * SAVE_GET_PAGES batches and reuses their buffers. Two oracles: the pages the test put (read back from the stream by a walk written
 * here from the spec's §6.2 layout), and the in-process save of the same history on an
 * engine `Host`, which asks the engine page by page and must give the same bytes after the
 * client header. Batches as small as 7 pages make many refills and pool switches.
 *
 * Restore: the channel sends RESTORE_PUT_PAGE calls as pipelined RESTORE_PAGES batches. The
 * restored client, saved again, must give the stream that was restored; a target too small
 * for it must refuse a batch, and the restore must then leave no client behind.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { type TmemClient, connect, connectControl } from '../../src/client/mod.js'
import {
  RestoreError,
  memorySink,
  networkChannel,
  restoreClient,
  saveClient,
} from '../../src/migrate/mod.js'
import { startDaemon } from '../helpers/daemon.js'
import { F, Guest, PAGE, newHost, page, saveBytes } from './helpers.js'

// Spec §6.2, retyped: the client header is 8 u32 words; a pool record is pool id, flags,
// n_pages (u32 each) and a 16-byte UUID; a page record is a 24-byte OID, a u32 index, a page.
const HEADER_BYTES = 32
const POOL_RECORD_BYTES = 28
const PAGE_RECORD_BYTES = 24 + 4 + PAGE

interface Put {
  pool: number
  oid: number
  index: number
  seed: number
}

/** The history both sides replay: puts, replacements and flushes over four pools. */
function history(): { pools: number[]; puts: Put[]; flushes: Put[] } {
  const puts: Put[] = []
  const flushes: Put[] = []
  for (let i = 0; i < 600; i++) puts.push({ pool: 0, oid: 1 + (i % 6), index: i, seed: i })
  for (let i = 0; i < 40; i++) puts.push({ pool: 1, oid: 9, index: i, seed: 5000 + i }) // ephemeral
  for (let i = 0; i < 300; i++) puts.push({ pool: 3, oid: 77, index: i * 3, seed: 9000 + i })
  for (let i = 0; i < 600; i += 37)
    puts.push({ pool: 0, oid: 1 + (i % 6), index: i, seed: 20_000 + i }) // replace
  for (let i = 0; i < 300; i += 41) flushes.push({ pool: 3, oid: 77, index: i * 3, seed: 0 })
  return { pools: [F.PRIVATE_PERS, F.PRIVATE_EPH, F.PRIVATE_PERS, F.PRIVATE_PERS], puts, flushes }
}

/** The persistent pages the stream carries, by "pool/oid/index", with their page seeds. */
function walk(stream: Uint8Array): Map<string, number> {
  const view = new DataView(stream.buffer, stream.byteOffset, stream.length)
  const pages = new Map<string, number>()
  let at = HEADER_BYTES
  while (at + 4 <= stream.length) {
    const poolId = view.getUint32(at, true)
    if (poolId === 0xffffffff) break // end of pools
    const count = view.getUint32(at + 8, true)
    at += POOL_RECORD_BYTES
    for (let n = 0; n < count; n++) {
      const oid = view.getBigUint64(at, true)
      const index = view.getUint32(at + 24, true)
      const seed = view.getUint32(at + 28, true) & 0xffffff // page(seed) starts with its seed (24 bits)
      pages.set(`${poolId}/${oid}/${index}`, seed)
      assert.deepEqual(
        stream.subarray(at + 28, at + 28 + PAGE),
        page(seed),
        `page ${poolId}/${oid}/${index}`,
      )
      at += PAGE_RECORD_BYTES
    }
  }
  assert.equal(at + 4, stream.length, 'the end-of-pools word closes the stream')
  return pages
}

/** Replays the history through the client library; returns the client. */
async function replay(socketPath: string, name: string): Promise<TmemClient> {
  const { pools, puts, flushes } = history()
  const client = await connect({ path: socketPath }, { name })
  for (const flags of pools) await client.newPool({ persistent: (flags & 1) === 1 })
  for (const p of puts) await client.put(p.pool, p.oid, p.index, page(p.seed))
  for (const f of flushes) await client.flushPage(f.pool, f.oid, f.index)
  return client
}

void test(
  'a save over the control connection carries every persistent page once, as the in-process save does',
  { timeout: 60_000 },
  async () => {
    const daemon = await startDaemon()
    try {
      const { pools, puts, flushes } = history()
      const client = await replay(daemon.socketPath, 'saved')

      const host = newHost()
      const guest = new Guest(host, 1)
      for (const flags of pools) guest.newPool(flags)
      for (const p of puts) guest.put(p.pool, [BigInt(p.oid), 0n, 0n], p.index, page(p.seed))
      for (const f of flushes) guest.flushPage(f.pool, [BigInt(f.oid), 0n, 0n], f.index)
      const inProcess = await saveBytes(host, 1)

      const model = new Map<string, number>()
      for (const p of puts)
        if (pools[p.pool] === F.PRIVATE_PERS) model.set(`${p.pool}/${p.oid}/${p.index}`, p.seed)
      for (const f of flushes) model.delete(`${f.pool}/${f.oid}/${f.index}`)

      const control = await connectControl({ path: daemon.controlPath })
      for (const batchBytes of [7 * (40 + PAGE), undefined]) {
        const memory = memorySink()
        const result = await saveClient(
          networkChannel(control, batchBytes === undefined ? {} : { batchBytes }),
          client.clientId,
          memory.sink,
        )
        assert.equal(result.pages, model.size)
        const stream = memory.bytes()
        assert.deepEqual(walk(stream), model)
        assert.deepEqual(
          stream.subarray(HEADER_BYTES),
          inProcess.subarray(HEADER_BYTES),
          `batch ${batchBytes ?? 'default'}`,
        )
      }
      await control.close()
      await client.close()
    } finally {
      await daemon.stop()
    }
  },
)

void test(
  'a restore over the control connection, batched, gives back the stream it restored',
  { timeout: 60_000 },
  async () => {
    const [a, b] = await Promise.all([startDaemon(), startDaemon()])
    try {
      const client = await replay(a.socketPath, 'original')
      const controlA = await connectControl({ path: a.controlPath })
      const saved = memorySink()
      await saveClient(networkChannel(controlA), client.clientId, saved.sink)
      const stream = saved.bytes()

      const controlB = await connectControl({ path: b.controlPath })
      // Batches of 5 pages: many batches, several in flight, the last one partial.
      const result = await restoreClient(
        networkChannel(controlB, { batchBytes: 5 * (40 + PAGE) }),
        42,
        stream,
      )
      assert.equal(result.pages, walk(stream).size)
      const again = memorySink()
      await saveClient(networkChannel(controlB), 42, again.sink)
      assert.deepEqual(again.bytes(), stream)
      assert.equal(
        ((await controlB.stats()).host as { persistentPages: number }).persistentPages,
        result.pages,
      )
      await controlA.close()
      await controlB.close()
      await client.close()
    } finally {
      await Promise.all([a.stop(), b.stop()])
    }
  },
)

void test(
  'a batched restore the target cannot hold fails on a batch and leaves no client',
  { timeout: 60_000 },
  async () => {
    // 1 MiB of memory is 256 page frames; the stream has 892 pages (compression is off).
    const [a, b] = await Promise.all([startDaemon(), startDaemon({ args: ['--memory', '1M'] })])
    try {
      const client = await replay(a.socketPath, 'too-big')
      const controlA = await connectControl({ path: a.controlPath })
      const saved = memorySink()
      await saveClient(networkChannel(controlA), client.clientId, saved.sink)
      const controlB = await connectControl({ path: b.controlPath })
      const error = await restoreClient(
        networkChannel(controlB, { batchBytes: 16 * (40 + PAGE) }),
        42,
        saved.bytes(),
      ).then(
        () => null,
        (caught: unknown) => caught,
      )
      assert.ok(error instanceof RestoreError, `got ${String(error)}`)
      assert.equal(error.step, 'TMEMC_RESTORE_PAGES')
      assert.ok(error.rc !== undefined && error.rc < 0)
      assert.equal(error.cleanup, 'destroyed')
      assert.match(error.message, /RESTORE_PAGES of the stream's pages \d+ to \d+/)
      const clients = ((await controlB.stats()).host as { clients: unknown[] }).clients
      assert.deepEqual(clients, [], 'the half-restored client is gone')
      await controlA.close()
      await controlB.close()
      await client.close()
    } finally {
      await Promise.all([a.stop(), b.stop()])
    }
  },
)
