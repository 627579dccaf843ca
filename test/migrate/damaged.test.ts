/**
 * Damaged, truncated and inconsistent streams are rejected with a SaveStreamError whose code
 * and place are stable, before the target sees a single call; a target that refuses a good
 * stream half-way gets the half-made client removed again. Streams are built here byte by
 * byte (naive builder), independently of the library's writer.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import type { Host, TmemOp } from '../../src/index.js'
import {
  type ControlChannel,
  hostChannel,
  RestoreError,
  restoreClient,
  type RestoreOptions,
  SaveStreamError,
} from '../../src/migrate/mod.js'
import { naive } from '../helpers/naive-bytes.js'
import { F, Guest, hostSnapshot, newHost, page, plainChannel } from './helpers.js'

const END = 0xffffffff
const seedText = process.env['TMEM_SEED']

interface PageSpec {
  oid: [bigint, bigint, bigint]
  index: number
  seed: number
}

interface PoolSpec {
  id: number
  flags: number
  /** n_pages as written; defaults to the number of pages. */
  n?: number
  uuid?: [bigint, bigint]
  pages?: PageSpec[]
  /** Write the page terminator after the pages. */
  terminator?: boolean
}

interface StreamSpec {
  marker?: number
  version?: number
  maxPools?: number
  sep1?: number
  clientFlags?: number
  weight?: number
  cap?: number
  sep2?: number
  pools: PoolSpec[]
  endOfPools?: number
  /** Invalidation records (pool, oid, index); undefined: no -6 section. */
  invalidations?: { poolId: number; oid: [bigint, bigint, bigint]; index: number }[]
  extraMarker?: number
  trailing?: number[]
}

/** A v1 stream from a spec, byte by byte. */
function build(spec: StreamSpec): Uint8Array {
  const b = naive()
  b.s32le(spec.marker ?? -5)
  b.u32le(spec.version ?? 1)
    .u32le(spec.maxPools ?? 16)
    .u32le(spec.sep1 ?? END)
  b.u32le(spec.clientFlags ?? 0)
    .u32le(spec.weight ?? 0)
    .u32le(spec.cap ?? 0)
    .u32le(spec.sep2 ?? END)
  for (const pool of spec.pools) {
    const pages = pool.pages ?? []
    const uuid = pool.uuid ?? [0n, 0n]
    b.u32le(pool.id)
      .u32le(pool.flags)
      .u32le(pool.n ?? pages.length)
      .u64le(uuid[0])
      .u64le(uuid[1])
    for (const p of pages)
      b.u64le(p.oid[0])
        .u64le(p.oid[1])
        .u64le(p.oid[2])
        .u32le(p.index)
        .raw(...page(p.seed))
    if (pool.terminator === true) b.raw(...new Array<number>(24).fill(0xff))
  }
  b.u32le(spec.endOfPools ?? END)
  if (spec.invalidations !== undefined) {
    b.s32le(spec.extraMarker ?? -6)
    for (const inv of spec.invalidations)
      b.u32le(inv.poolId).u64le(inv.oid[0]).u64le(inv.oid[1]).u64le(inv.oid[2]).u32le(inv.index)
    b.u32le(END)
  }
  if (spec.trailing !== undefined) b.raw(...spec.trailing)
  return b.done(b.length)
}

const O1: [bigint, bigint, bigint] = [0x15n, 0n, 0n]
const O2: [bigint, bigint, bigint] = [0x16n, 0x1n, 0x2n]

/** Ephemeral pool 0, persistent pool 1 with two pages; 32 + 28 + 28 + 2 × 4124 + 4 bytes. */
function base(): StreamSpec {
  return {
    pools: [
      { id: 0, flags: F.PRIVATE_EPH },
      {
        id: 1,
        flags: F.PRIVATE_PERS,
        pages: [
          { oid: O1, index: 7, seed: 7 },
          { oid: O2, index: 8, seed: 8 },
        ],
      },
    ],
  }
}

/** A channel that counts the calls it passes on. */
function counting(host: Host): { channel: ControlChannel; calls: () => number } {
  let calls = 0
  return {
    channel: {
      control: (op: TmemOp, data?: Uint8Array | null) => {
        calls++
        return host.control(op, data ?? null)
      },
      destroyClient: (cliId: number) => {
        calls++
        return host.destroyClient(cliId)
      },
    },
    calls: () => calls,
  }
}

/** A target with another client holding pages, and a snapshot of it. */
function target(options: Parameters<typeof newHost>[0] = {}): { host: Host; before: string } {
  const host = newHost(options)
  const other = new Guest(host, 40)
  other.newPool(F.PRIVATE_PERS)
  other.newPool(F.PRIVATE_EPH)
  for (let i = 0; i < 3; i++) {
    other.put(0, [1n, 0n, 0n], i, page(100 + i))
    other.put(1, [2n, 0n, 0n], i, page(200 + i))
  }
  return { host, before: hostSnapshot(host) }
}

/** Restores `bytes` as client 7 and expects a SaveStreamError with `code`, target untouched. */
async function rejects(
  bytes: Uint8Array,
  code: string,
  place: { offset?: number; poolId?: number; page?: number } = {},
  options: RestoreOptions = {},
): Promise<SaveStreamError> {
  const { host, before } = target()
  const { channel, calls } = counting(host)
  let caught: unknown = null
  try {
    await restoreClient(channel, 7, bytes, options)
  } catch (error) {
    caught = error
  }
  assert.ok(
    caught instanceof SaveStreamError,
    `expected SaveStreamError ${code}, got ${String(caught)}`,
  )
  assert.equal(caught.code, code, caught.message)
  if (place.offset !== undefined) assert.equal(caught.offset, place.offset, caught.message)
  if (place.poolId !== undefined) assert.equal(caught.poolId, place.poolId, caught.message)
  if (place.page !== undefined) assert.equal(caught.page, place.page, caught.message)
  assert.equal(calls(), 0, 'the target must not see a call for a bad stream')
  assert.equal(host.hasClient(7), false)
  assert.equal(hostSnapshot(host), before)
  return caught
}

void describe('truncation', () => {
  void test('every proper prefix of a stream is ETRUNCATED and touches nothing', async () => {
    const bytes = build(base())
    assert.equal(bytes.length, 32 + 28 + 28 + 2 * 4124 + 4)
    const host = newHost()
    const { channel, calls } = counting(host)
    for (let length = 0; length < bytes.length; length++) {
      await assert.rejects(
        restoreClient(channel, 7, bytes.subarray(0, length)),
        (error: unknown) => {
          assert.ok(error instanceof SaveStreamError, `prefix ${length}: ${String(error)}`)
          assert.equal(error.code, 'ETRUNCATED', `prefix ${length}: ${error.message}`)
          assert.ok(error.offset <= length, `prefix ${length}: offset ${error.offset}`)
          return true
        },
      )
    }
    assert.equal(calls(), 0)
    assert.equal(host.hasClient(7), false)
    // The whole stream is fine.
    await restoreClient(channel, 7, bytes)
  })

  void test('with requireInvalidations, every prefix of a live stream is ETRUNCATED', async () => {
    const spec = base()
    spec.invalidations = [{ poolId: 1, oid: O1, index: 7 }]
    const bytes = build(spec)
    const host = newHost()
    const { channel, calls } = counting(host)
    for (let length = 0; length < bytes.length; length++) {
      await assert.rejects(
        restoreClient(channel, 7, bytes.subarray(0, length), { requireInvalidations: true }),
        (error: unknown) => error instanceof SaveStreamError && error.code === 'ETRUNCATED',
        `prefix ${length}`,
      )
    }
    assert.equal(calls(), 0)
    // Without the option, the tmem section alone is a complete (non-live) stream.
    const sectionEnd = bytes.length - 4 - 32 - 4
    await rejects(
      bytes.subarray(0, sectionEnd),
      'ETRUNCATED',
      { offset: sectionEnd },
      { requireInvalidations: true },
    )
    await restoreClient(channel, 7, bytes.subarray(0, sectionEnd))
  })

  void test('the message says where: offset, pool and page record', async () => {
    const bytes = build(base())
    const error = await rejects(bytes.subarray(0, 60 + 28 + 4124 + 100), 'ETRUNCATED', {
      poolId: 1,
      page: 1,
    })
    assert.match(error.message, /page record 1 of pool 1/)
    assert.match(error.message, /at byte 4236/)
  })
})

void describe('markers, version and header', () => {
  void test('a flipped -5 marker is EBADMARKER', async () => {
    for (let byte = 0; byte < 4; byte++) {
      const bytes = build(base())
      bytes[byte]! ^= 0x10
      await rejects(bytes, 'EBADMARKER', { offset: 0 })
    }
    await rejects(build({ ...base(), marker: -6 }), 'EBADMARKER', { offset: 0 })
  })

  void test('a flipped -6 marker, or bytes after the stream, are EBADMARKER', async () => {
    const live = { ...base(), invalidations: [{ poolId: 1, oid: O1, index: 7 }] }
    const end = 32 + 28 + 28 + 2 * 4124 + 4
    await rejects(build({ ...live, extraMarker: -5 }), 'EBADMARKER', { offset: end })
    await rejects(build({ ...base(), trailing: [0, 0, 0, 0] }), 'EBADMARKER', { offset: end })
    await rejects(build({ ...live, trailing: [1] }), 'EBADMARKER', { offset: end + 4 + 32 + 4 })
  })

  void test('versions other than 0 and 1 are EBADVERSION', async () => {
    for (const version of [2, 3, 0x100, END])
      await rejects(build({ ...base(), version }), 'EBADVERSION', { offset: 4 })
  })

  void test('max_pools 17, bad separators, unknown client flags and cap > 100 are EBADHEADER', async () => {
    await rejects(build({ ...base(), maxPools: 17 }), 'EBADHEADER', { offset: 8 })
    await rejects(build({ ...base(), sep1: 0 }), 'EBADHEADER', { offset: 12 })
    await rejects(build({ ...base(), clientFlags: 4 }), 'EBADHEADER', { offset: 16 })
    await rejects(build({ ...base(), cap: 101 }), 'EBADHEADER', { offset: 24 })
    await rejects(build({ ...base(), sep2: 0xfffffffe }), 'EBADHEADER', { offset: 28 })
  })
})

void describe('inconsistent pools, pages and invalidations', () => {
  void test('a duplicate pool id is EBADPOOL at the second record', async () => {
    const spec = base()
    spec.pools.push({ id: 0, flags: F.PRIVATE_EPH })
    const error = await rejects(build(spec), 'EBADPOOL', {
      poolId: 0,
      offset: 32 + 28 + 28 + 2 * 4124,
    })
    assert.match(error.message, /appears twice/)
  })

  void test('a pool id at or above max_pools is EBADPOOL', async () => {
    await rejects(build({ ...base(), maxPools: 1 }), 'EBADPOOL', { poolId: 1, offset: 60 })
    // A flipped end-of-pools word reads as a pool id.
    await rejects(build({ ...base(), endOfPools: 0x7fffffff }), 'EBADPOOL', { poolId: 0x7fffffff })
  })

  void test('pool flags a host would refuse are EBADPOOL', async () => {
    const bad = [
      0x01000100, // reserved bit
      0x01000004, // precompressed
      0x01000011, // 8 KiB pages
      0x02000001, // version 2
      0x01000003, // shared and persistent
    ]
    for (const flags of bad) {
      const spec = base()
      spec.pools[1]!.flags = flags
      await rejects(build(spec), 'EBADPOOL', { poolId: 1, offset: 64 })
    }
  })

  void test('an ephemeral pool with pages is EBADPOOL', async () => {
    const spec = base()
    spec.pools[0] = { id: 0, flags: F.PRIVATE_EPH, pages: [{ oid: O1, index: 1, seed: 1 }] }
    await rejects(build(spec), 'EBADPOOL', { poolId: 0, offset: 40 })
  })

  void test('n_pages lying: too many is caught, too few is caught', async () => {
    // One more page than present, last pool: the stream ends inside the phantom page.
    const more = base()
    more.pools[1]!.n = 3
    await rejects(build(more), 'ETRUNCATED', { poolId: 1, page: 2 })
    // One more, with a pool after it: that pool record is read as page data, and the stream
    // ends early.
    const moreThenPool = base()
    moreThenPool.pools.reverse()
    moreThenPool.pools[0]!.n = 3
    await rejects(build(moreThenPool), 'ETRUNCATED')
    // Far too many.
    const huge = base()
    huge.pools[1]!.n = 0xfffffffe
    await rejects(build(huge), 'ETRUNCATED', { poolId: 1, page: 2 })
    // One fewer: the second page record is read as a pool record (pool id 0x16 >= 16).
    const fewer = base()
    fewer.pools[1]!.n = 1
    await rejects(build(fewer), 'EBADPOOL', { poolId: 0x16 })
    // One fewer, with a small OID: its words read as pool 0 again.
    const fewerSmall = base()
    fewerSmall.pools[1]!.pages![1]!.oid = [0n, 0n, 0n]
    fewerSmall.pools[1]!.n = 1
    await rejects(build(fewerSmall), 'EBADPOOL', { poolId: 0 })
    // Zero pages announced for a pool that has them.
    const none = base()
    none.pools[1]!.n = 0
    await assert.rejects(restoreClient(hostChannel(newHost()), 7, build(none)), SaveStreamError)
  })

  void test('the same (OID, index) twice in a pool is EBADPAGE', async () => {
    const spec = base()
    spec.pools[1]!.pages!.push({ oid: O2, index: 8, seed: 9 })
    await rejects(build(spec), 'EBADPAGE', { poolId: 1, page: 2 })
  })

  void test('an invalidation for a pool the stream does not have is EBADINV', async () => {
    const spec = {
      ...base(),
      invalidations: [
        { poolId: 1, oid: O1, index: 7 },
        { poolId: 3, oid: O1, index: 7 },
      ],
    }
    const error = await rejects(build(spec), 'EBADINV', { poolId: 3 })
    assert.equal(error.invalidation, 1)
  })

  void test('a terminator ends a pool early, as a live save writes it', async () => {
    const spec = base()
    spec.pools[1]!.n = 5
    spec.pools[1]!.terminator = true
    const host = newHost()
    const result = await restoreClient(hostChannel(host), 7, build(spec))
    assert.equal(result.pages, 2)
    assert.deepEqual(new Guest(host, 7).get(1, O2, 8), page(8))
  })

  void test('any single corrupted byte: restored, or rejected with the target untouched', async () => {
    const good = build({ ...base(), invalidations: [{ poolId: 1, oid: O1, index: 7 }] })
    // Only the non-page bytes are interesting: offsets in the header, the records' fields
    // and the sections around them.
    const fieldOffsets: number[] = []
    for (let i = 0; i < 88 + 28; i++) fieldOffsets.push(i)
    for (let i = 88 + 4124; i < 88 + 4124 + 28; i++) fieldOffsets.push(i)
    for (let i = good.length - 44; i < good.length; i++) fieldOffsets.push(i)
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...fieldOffsets),
        fc.integer({ min: 1, max: 255 }),
        async (at, xor) => {
          const bytes = Uint8Array.from(good)
          bytes[at]! ^= xor
          const { host, before } = target()
          const { channel, calls } = counting(host)
          try {
            await restoreClient(channel, 7, bytes)
          } catch (error) {
            if (error instanceof SaveStreamError) {
              assert.equal(calls(), 0)
              assert.equal(hostSnapshot(host), before)
              return
            }
            assert.ok(error instanceof RestoreError, String(error))
            assert.equal(error.cleanup, 'destroyed')
            assert.equal(host.hasClient(7), false)
            return
          }
          assert.equal(host.hasClient(7), true)
        },
      ),
      seedText === undefined ? { numRuns: 400 } : { numRuns: 400, seed: Number(seedText) },
    )
  })
})

void describe('the target refuses', () => {
  void test('an existing client: EEXIST and the target is unchanged', async () => {
    const { host, before } = target()
    await assert.rejects(restoreClient(hostChannel(host), 40, build(base())), (error: unknown) => {
      assert.ok(error instanceof RestoreError)
      assert.equal(error.code, 'EEXIST')
      assert.equal(error.cleanup, 'none')
      return true
    })
    assert.equal(hostSnapshot(host), before)
  })

  void test('no memory half-way: ERESTORE, and the half-made client is destroyed again', async () => {
    const host = newHost({ pages: 8 })
    const other = new Guest(host, 40)
    other.newPool(F.PRIVATE_PERS)
    for (let i = 0; i < 7; i++) other.put(0, [1n, 0n, 0n], i, page(i))
    const before = hostSnapshot(host)
    await assert.rejects(restoreClient(hostChannel(host), 7, build(base())), (error: unknown) => {
      assert.ok(error instanceof RestoreError)
      assert.equal(error.code, 'ERESTORE')
      assert.equal(error.step, 'TMEMC_RESTORE_PUT_PAGE')
      assert.equal(error.rc, -12)
      assert.equal(error.poolId, 1)
      assert.equal(error.page, 1)
      assert.equal(error.cleanup, 'destroyed')
      assert.match(error.message, /ENOMEM/)
      return true
    })
    assert.equal(host.hasClient(7), false)
    assert.equal(hostSnapshot(host), before)
  })

  void test('without destroyClient the restored pages are flushed and the client is reported left', async () => {
    const host = newHost({ pages: 1 })
    await assert.rejects(restoreClient(plainChannel(host), 7, build(base())), (error: unknown) => {
      assert.ok(error instanceof RestoreError)
      assert.equal(error.cleanup, 'left')
      return true
    })
    const stats = host.stats()
    assert.equal(stats.pages, 0)
    assert.equal(host.hasClient(7), true)
  })

  void test('a shared pool the target will not share (no authorisation): ERESTORE, destroyed', async () => {
    const spec = base()
    spec.pools.push({ id: 4, flags: F.SHARED_EPH, uuid: [0x12n, 0x34n] })
    const host = newHost()
    await assert.rejects(
      restoreClient(hostChannel(host), 7, build(spec), { authorizeShared: false }),
      (error: unknown) =>
        error instanceof RestoreError &&
        error.code === 'ERESTORE' &&
        error.poolId === 4 &&
        error.cleanup === 'destroyed',
    )
    assert.equal(host.hasClient(7), false)
    // With authorisation (the default) it is re-created shared.
    await restoreClient(hostChannel(host), 7, build(spec))
    assert.equal(
      host
        .stats()
        .clients.find((c) => c.id === 7)!
        .pools.find((p) => p.slot === 4)!.shared,
      true,
    )
  })
})
