/**
 * Live saves: the client keeps running while its pages are written. Pages it flushes or
 * replaces meanwhile (a replacing put fails with -ENOSPC and drops the page while migrating)
 * are written to the -6 section, and restore replays them, so the target ends up with
 * exactly the source's pages at the end of the save, never a page the client removed.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import type { Oid } from '../../src/index.js'
import {
  hostChannel,
  inspectSaveStream,
  memorySink,
  restoreClient,
  saveClient,
  SaveError,
  saveInvalidations,
  SaveStreamError,
  type StreamSink,
} from '../../src/migrate/mod.js'
import { ALL_ONES, check, F, Guest, newHost, page, picture } from './helpers.js'

const seedText = process.env['TMEM_SEED']

/** Persistent pages of a client, as `slot:oid:index → first bytes`, read with guest GETs. */
function contents(
  guest: Guest,
  keys: { slot: number; oid: Oid; index: number }[],
): Map<string, string> {
  const out = new Map<string, string>()
  for (const k of keys) {
    const data = guest.get(k.slot, k.oid, k.index)
    if (data !== null)
      out.set(
        `${k.slot}:${k.oid.join(',')}:${k.index}`,
        Buffer.from(data.subarray(0, 8)).toString('hex'),
      )
  }
  return out
}

void describe('live save', () => {
  void test('pages removed during the save become invalidations and stay removed on the target', async () => {
    const host = newHost()
    const guest = new Guest(host, 3)
    guest.newPool(F.PRIVATE_PERS)
    guest.newPool(F.PRIVATE_PERS)
    const keys: { slot: number; oid: Oid; index: number }[] = []
    for (let i = 0; i < 10; i++) {
      guest.put(0, [1n, 0n, 0n], i, page(i))
      guest.put(1, [2n, 0n, 0n], i, page(100 + i))
      keys.push({ slot: 0, oid: [1n, 0n, 0n], index: i }, { slot: 1, oid: [2n, 0n, 0n], index: i })
    }
    keys.push({ slot: 0, oid: [1n, 0n, 0n], index: 20 })
    const memory = memorySink()
    let first = true
    const sink: StreamSink = (chunk) => {
      if (first) {
        first = false
        // The guest keeps running: page 0 was sent already, 9 and object 2 not yet.
        assert.equal(guest.flushPage(0, [1n, 0n, 0n], 0), -1000) // done, but -EFROZEN
        assert.equal(guest.flushPage(0, [1n, 0n, 0n], 9), -1000)
        assert.equal(guest.flushObject(1, [2n, 0n, 0n]), -1000)
        assert.equal(guest.put(0, [1n, 0n, 0n], 5, page(55)), -28) // replaced while migrating: dropped
        assert.equal(guest.put(0, [1n, 0n, 0n], 20, page(20)), -1000) // new pages wait
      }
      memory.sink(chunk)
    }
    const result = await saveClient(hostChannel(host), 3, sink, { live: true, chunkBytes: 8192 })
    assert.equal(result.live, true)
    assert.deepEqual(result.endedEarly, [0, 1])
    assert.equal(picture(host, 3).frozen, true, 'still in the save until saveInvalidations ends it')
    const extra = await saveInvalidations(hostChannel(host), 3, memory.sink)
    assert.equal(extra.invalidations, 13)
    assert.equal(picture(host, 3).frozen, false)
    assert.equal(host.stats().clients.find((c) => c.id === 3)!.liveMigrating, false)

    const bytes = memory.bytes()
    const summary = await inspectSaveStream(bytes, { requireInvalidations: true })
    assert.equal(summary.invalidations, 13)
    assert.deepEqual(
      summary.pools.map((p) => [p.poolId, p.pages, p.endedEarly]),
      [
        [0, 8, true],
        [1, 0, true],
      ],
    )

    const target = newHost()
    const restored = await restoreClient(hostChannel(target), 3, bytes, {
      requireInvalidations: true,
    })
    assert.equal(restored.invalidations, 13)
    const expected = contents(guest, keys)
    assert.equal(expected.size, 7)
    assert.deepEqual(contents(new Guest(target, 3), keys), expected)
    check(target)

    // Without its -6 section the stream still restores, but with a stale page: why it matters.
    const sectionOnly = bytes.subarray(0, result.bytes)
    await assert.rejects(
      restoreClient(hostChannel(newHost()), 3, sectionOnly, { requireInvalidations: true }),
      SaveStreamError,
    )
    const stale = newHost()
    await restoreClient(hostChannel(stale), 3, sectionOnly)
    assert.notEqual(new Guest(stale, 3).get(0, [1n, 0n, 0n], 0), null)
  })

  void test('a failing live save ends migration mode and unfreezes', async () => {
    const host = newHost()
    const guest = new Guest(host, 2)
    guest.newPool(F.PRIVATE_PERS)
    guest.put(0, [ALL_ONES, ALL_ONES, ALL_ONES], 0, page(0))
    await assert.rejects(
      saveClient(hostChannel(host), 2, memorySink().sink, { live: true }),
      SaveError,
    )
    const stats = host.stats().clients.find((c) => c.id === 2)!
    assert.deepEqual([stats.frozen, stats.liveMigrating], [false, false])
  })

  void test('property: with random removals during the save, the target equals the source at the end', async () => {
    const removal = fc.record(
      {
        atChunk: fc.integer({ min: 0, max: 12 }),
        kind: fc.constantFrom('flush', 'flush-object', 'replace'),
        slot: fc.integer({ min: 0, max: 2 }),
        object: fc.integer({ min: 0, max: 3 }),
        index: fc.integer({ min: 0, max: 5 }),
      },
      { noNullPrototype: true },
    )
    await fc.assert(
      fc.asyncProperty(fc.array(removal, { maxLength: 25 }), async (removals) => {
        const host = newHost()
        const guest = new Guest(host, 9)
        const keys: { slot: number; oid: Oid; index: number }[] = []
        for (let slot = 0; slot < 3; slot++) {
          guest.newPool(slot === 1 ? F.PRIVATE_EPH : F.PRIVATE_PERS)
          for (let object = 0; object < 4; object++) {
            for (let index = 0; index < 6; index++) {
              const oid: Oid = [BigInt(object), 0n, BigInt(slot)]
              guest.put(slot, oid, index, page(slot * 1000 + object * 10 + index))
              keys.push({ slot, oid, index })
            }
          }
        }
        const memory = memorySink()
        let chunk = 0
        const sink = async (bytes: Uint8Array): Promise<void> => {
          for (const r of removals) {
            if (r.atChunk !== chunk) continue
            const oid: Oid = [BigInt(r.object), 0n, BigInt(r.slot)]
            if (r.kind === 'flush') guest.flushPage(r.slot, oid, r.index)
            else if (r.kind === 'flush-object') guest.flushObject(r.slot, oid)
            else guest.put(r.slot, oid, r.index, page(77))
          }
          chunk++
          memory.sink(bytes)
          await new Promise<void>((resolve) => setImmediate(resolve))
        }
        await saveClient(hostChannel(host), 9, sink, { live: true, chunkBytes: 8192 })
        await saveInvalidations(hostChannel(host), 9, memory.sink)
        const target = newHost()
        await restoreClient(hostChannel(target), 9, memory.bytes(), { requireInvalidations: true })
        const persistentKeys = keys.filter((k) => k.slot !== 1)
        assert.deepEqual(
          contents(new Guest(target, 9), persistentKeys),
          contents(guest, persistentKeys),
        )
      }),
      seedText === undefined ? { numRuns: 60 } : { numRuns: 60, seed: Number(seedText) },
    )
  })
})
