/**
 * Round-trip property: a random client (every pool kind, shared pools made by the client or
 * joined from another, holes in the slot table, odd OIDs up to 192 bits and index 0xFFFFFFFF,
 * flushes, replacements, weights, caps, compression, frozen) is saved, then restored into a
 * fresh host whose defaults differ; the restored client has the same persistent pages (checked
 * against a model of what the guest put), pool ids, flags, UUIDs, weight, cap, compress and
 * frozen state, and saving it again gives the same bytes. The source is as it was before.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import type { Oid } from '../../src/index.js'
import { hostChannel, inspectSaveStream, restoreClient } from '../../src/migrate/mod.js'
import {
  ALL_ONES,
  check,
  ctrl,
  F,
  Guest,
  hexOf,
  newHost,
  page,
  picture,
  saveBytes,
  SUB,
} from './helpers.js'

const seedText = process.env['TMEM_SEED']

type Kind = 'private-ephemeral' | 'private-persistent' | 'shared-ephemeral' | 'shared-joined'

const word = fc.oneof(
  { weight: 4, arbitrary: fc.bigInt({ min: 0n, max: 3n }) },
  { weight: 2, arbitrary: fc.bigInt({ min: 0n, max: ALL_ONES }) },
  { weight: 1, arbitrary: fc.constant(ALL_ONES) },
)
const oidArb = fc
  .tuple(word, word, word)
  .filter(([a, b, c]) => !(a === ALL_ONES && b === ALL_ONES && c === ALL_ONES))
  .map((oid): Oid => oid)
const indexArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 3 }) },
  { weight: 1, arbitrary: fc.constant(0xffffffff) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
)

const clientArb = fc.record(
  {
    cliId: fc.integer({ min: 0, max: 0xfffe }),
    pools: fc.array(
      fc.record(
        {
          kind: fc.constantFrom<Kind>(
            'private-ephemeral',
            'private-persistent',
            'private-persistent',
            'shared-ephemeral',
            'shared-joined',
          ),
          uuid: fc.tuple(fc.bigInt({ min: 0n, max: ALL_ONES }), fc.bigInt({ min: 0n, max: 5n })),
        },
        { noNullPrototype: true },
      ),
      { minLength: 1, maxLength: 16 },
    ),
    holes: fc.array(fc.integer({ min: 0, max: 15 }), { maxLength: 4 }),
    ops: fc.array(
      fc.record(
        {
          slot: fc.integer({ min: 0, max: 15 }),
          op: fc.constantFrom('put', 'put', 'put', 'flush', 'flush-object'),
          oid: oidArb,
          index: indexArb,
          seed: fc.integer({ min: 0, max: 0xffffff }),
        },
        { noNullPrototype: true },
      ),
      { maxLength: 60 },
    ),
    weight: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xfffffffe })),
    cap: fc.integer({ min: 0, max: 100 }),
    compress: fc.boolean(),
    frozen: fc.boolean(),
    targetCompress: fc.boolean(),
    targetSharedAuth: fc.boolean(),
  },
  { noNullPrototype: true },
)

function key(slot: number, oid: Oid, index: number): string {
  return `${slot}:${oid.join(',')}:${index}`
}

void test('save then restore gives the same client, and saving it again the same bytes', async () => {
  await fc.assert(
    fc.asyncProperty(clientArb, async (spec) => {
      const source = newHost({ pages: 512, sharedAuth: false })
      const cliId = spec.cliId
      const guest = new Guest(source, cliId)
      const other = new Guest(source, cliId === 0 ? 1 : cliId - 1)
      for (const pool of spec.pools) {
        const uuid: [bigint, bigint] = [pool.uuid[0], pool.uuid[1]]
        switch (pool.kind) {
          case 'private-ephemeral':
            assert.ok(guest.newPool(F.PRIVATE_EPH, uuid) >= 0)
            break
          case 'private-persistent':
            assert.ok(guest.newPool(F.PRIVATE_PERS, uuid) >= 0)
            break
          case 'shared-ephemeral':
            assert.ok(guest.newPool(F.SHARED_EPH, uuid) >= 0)
            break
          case 'shared-joined':
            other.newPool(F.SHARED_EPH, uuid)
            other.put(0, [1n, 0n, 0n], 0, page(1))
            assert.ok(guest.newPool(F.SHARED_EPH, uuid) >= 0)
            break
        }
      }
      for (const slot of spec.holes) guest.destroyPool(slot)
      source.control(ctrl(SUB.SET_WEIGHT, cliId, 0, spec.weight))
      source.control(ctrl(SUB.SET_CAP, cliId, 0, spec.cap))
      source.control(ctrl(SUB.SET_COMPRESS, cliId, 0, spec.compress ? 1 : 0))

      const persistent = new Set(
        source
          .stats()
          .clients.find((c) => c.id === cliId)
          ?.pools.filter((p) => p.persistent)
          .map((p) => p.slot) ?? [],
      )
      const model = new Map<string, { slot: number; oid: Oid; index: number; seed: number }>()
      for (const op of spec.ops) {
        switch (op.op) {
          case 'put': {
            const rc = guest.put(op.slot, op.oid, op.index, page(op.seed))
            if (persistent.has(op.slot)) {
              assert.equal(rc, 1)
              model.set(key(op.slot, op.oid, op.index), {
                slot: op.slot,
                oid: op.oid,
                index: op.index,
                seed: op.seed,
              })
            }
            break
          }
          case 'flush':
            guest.flushPage(op.slot, op.oid, op.index)
            model.delete(key(op.slot, op.oid, op.index))
            break
          case 'flush-object':
            guest.flushObject(op.slot, op.oid)
            for (const [k, entry] of model) {
              if (entry.slot === op.slot && entry.oid.join(',') === op.oid.join(','))
                model.delete(k)
            }
            break
        }
      }
      if (spec.frozen) source.control(ctrl(SUB.FREEZE, cliId))
      const hasPools =
        spec.pools.length > new Set(spec.holes.filter((slot) => slot < spec.pools.length)).size
      if (!hasPools) return

      const before = picture(source, cliId)
      const bytes = await saveBytes(source, cliId)
      assert.deepEqual(picture(source, cliId), before, 'the source is as it was')
      const summary = await inspectSaveStream(bytes)
      assert.equal(summary.pages, model.size)

      const target = newHost({
        pages: 512,
        compress: spec.targetCompress,
        sharedAuth: spec.targetSharedAuth,
      })
      const result = await restoreClient(hostChannel(target), cliId, bytes)
      assert.equal(result.pages, model.size)
      assert.deepEqual(picture(target, cliId), before)
      assert.deepEqual(
        [before.weight, before.cap, before.compress, before.frozen],
        [spec.weight, spec.cap, spec.compress, spec.frozen],
      )
      const back = new Guest(target, cliId)
      for (const entry of model.values()) {
        const got = back.get(entry.slot, entry.oid, entry.index)
        assert.ok(got !== null, `page ${key(entry.slot, entry.oid, entry.index)} missing`)
        assert.equal(hexOf(got), hexOf(page(entry.seed)))
      }
      check(target)
      assert.equal(
        hexOf(await saveBytes(target, cliId)),
        hexOf(bytes),
        'saving the restored client gives the same bytes',
      )
    }),
    seedText === undefined ? { numRuns: 150 } : { numRuns: 150, seed: Number(seedText) },
  )
})
