/**
 * The save stream against independent oracles: the spec's §6.2 worked example and a v0
 * stream, both built byte by byte with the naive builder at offsets typed from the spec's
 * record table; and the library calls around them (files, progress, the all-ones OID, the
 * "no tmem" case, v0 clients of an acceptV0 host).
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import {
  hostChannel,
  inspectSaveStream,
  memorySink,
  restoreClient,
  saveClient,
  saveClientToFile,
  SaveError,
  type Progress,
} from '../../src/migrate/mod.js'
import { naive } from '../helpers/naive-bytes.js'
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

const U32_END = 0xffffffff

/** The §6.2 worked example: one private persistent pool in slot 0, UUID 0, two pages. */
function workedExample(pageA: Uint8Array, pageB: Uint8Array): Uint8Array {
  const b = naive()
  b.at(0).s32le(-5)
  b.at(4).u32le(1).at(8).u32le(16).at(12).u32le(U32_END)
  b.at(16).u32le(0).at(20).u32le(0).at(24).u32le(0).at(28).u32le(U32_END)
  // pool record: id 0, flags 01 00 00 01, n 2, uuid 0
  b.at(32)
    .u32le(0)
    .at(36)
    .raw(0x01, 0x00, 0x00, 0x01)
    .at(40)
    .u32le(2)
    .at(44)
    .u64le(0n)
    .at(52)
    .u64le(0n)
  // page records: oid {0x15, 0, 0}, index 7 then 8
  b.at(60)
    .raw(0x15, 0, 0, 0, 0, 0, 0, 0)
    .zeros(16)
    .at(84)
    .u32le(7)
    .at(88)
    .raw(...pageA)
  b.at(4184)
    .raw(0x15, 0, 0, 0, 0, 0, 0, 0)
    .zeros(16)
    .at(4208)
    .u32le(8)
    .at(4212)
    .raw(...pageB)
  b.at(8308).raw(0xff, 0xff, 0xff, 0xff)
  return b.done(8312)
}

void describe('the §6.2 worked example', () => {
  void test('saving the example client writes exactly the 8312 bytes of the spec', async () => {
    const host = newHost()
    const guest = new Guest(host, 1)
    assert.equal(guest.newPool(F.PRIVATE_PERS), 0)
    assert.equal(guest.put(0, [0x15n, 0n, 0n], 7, page(7)), 1)
    assert.equal(guest.put(0, [0x15n, 0n, 0n], 8, page(8)), 1)
    const memory = memorySink()
    const result = await saveClient(hostChannel(host), 1, memory.sink)
    const bytes = memory.bytes()
    assert.equal(bytes.length, 8312)
    assert.equal(hexOf(bytes), hexOf(workedExample(page(7), page(8))))
    assert.deepEqual(
      {
        saved: result.saved,
        pools: result.pools,
        pages: result.pages,
        bytes: result.bytes,
        endedEarly: result.endedEarly,
      },
      { saved: true, pools: 1, pages: 2, bytes: 8312, endedEarly: [] },
    )
    // A non-live save ends with SAVE_END: the client is not left frozen.
    assert.equal(picture(host, 1).frozen, false)
    assert.equal(guest.put(0, [0x16n, 0n, 0n], 0, page(1)), 1)
  })

  void test('the example bytes restore into a fresh host with both pages', async () => {
    const host = newHost()
    const result = await restoreClient(hostChannel(host), 9, workedExample(page(7), page(8)))
    assert.equal(result.pages, 2)
    assert.equal(result.streamVersion, 1)
    const guest = new Guest(host, 9)
    assert.deepEqual(guest.get(0, [0x15n, 0n, 0n], 7), page(7))
    assert.deepEqual(guest.get(0, [0x15n, 0n, 0n], 8), page(8))
    assert.equal(picture(host, 9).slots[0]!.flags, F.PRIVATE_PERS)
    check(host)
  })

  void test('the Xen-2010 variant (pool flags without the version) restores as v1', async () => {
    const bytes = workedExample(page(7), page(8))
    bytes[39] = 0 // flags 01 00 00 00
    const host = newHost()
    await restoreClient(hostChannel(host), 9, bytes)
    assert.equal(picture(host, 9).slots[0]!.flags, F.PRIVATE_PERS)
  })
})

/**
 * A v0 stream: 8-byte OIDs, 8-byte page terminator, 16-byte invalidation records, pool flags
 * with version 0. Pool 2 persistent (3 pages announced, 2 present, then the terminator), pool 5
 * ephemeral, and an invalidation of the first page.
 */
function v0Stream(): Uint8Array {
  const b = naive()
  b.at(0).s32le(-5).at(4).u32le(0).at(8).u32le(16).at(12).u32le(U32_END)
  b.at(16).u32le(1).at(20).u32le(3).at(24).u32le(50).at(28).u32le(U32_END)
  b.at(32)
    .u32le(2)
    .at(36)
    .u32le(0x00000001)
    .at(40)
    .u32le(3)
    .at(44)
    .u64le(0x1111n)
    .at(52)
    .u64le(0x2222n)
  b.at(60)
    .u64le(0x99n)
    .at(68)
    .u32le(1)
    .at(72)
    .raw(...page(1))
  b.at(4168)
    .u64le(0xdeadbeefcafe0123n)
    .at(4176)
    .u32le(0xffffffff)
    .at(4180)
    .raw(...page(2))
  b.at(8276).u64le(ALL_ONES) // v0 page terminator: 8 bytes of ff
  b.at(8284)
    .u32le(5)
    .at(8288)
    .u32le(0x00000000)
    .at(8292)
    .u32le(0)
    .at(8296)
    .u64le(0x5n)
    .at(8304)
    .u64le(0x6n)
  b.at(8312).u32le(U32_END)
  b.at(8316).s32le(-6)
  b.at(8320).u32le(2).at(8324).u64le(0x99n).at(8332).u32le(1)
  b.at(8336).u32le(U32_END)
  return b.done(8340)
}

void describe('v0 streams are upgraded to v1', () => {
  void test('a hand-built v0 stream restores as a v1 client', async () => {
    const host = newHost()
    const result = await restoreClient(hostChannel(host), 4, v0Stream())
    assert.deepEqual(
      {
        v: result.streamVersion,
        pools: result.pools,
        pages: result.pages,
        inv: result.invalidations,
      },
      { v: 0, pools: 2, pages: 2, inv: 1 },
    )
    const guest = new Guest(host, 4)
    // The OID became [object, 0, 0]; index 0xFFFFFFFF is an ordinary index.
    assert.deepEqual(guest.get(2, [0xdeadbeefcafe0123n, 0n, 0n], 0xffffffff), page(2))
    // The invalidation record flushed the other page.
    assert.equal(guest.get(2, [0x99n, 0n, 0n], 1), null)
    const seen = picture(host, 4)
    assert.equal(seen.slots[2]!.flags, F.PRIVATE_PERS)
    assert.equal(seen.slots[5]!.flags, F.PRIVATE_EPH)
    assert.equal(seen.slots[2]!.uuid, '1111000000000000' + '2222000000000000')
    assert.equal(seen.slots[0]!.flags, -1)
    assert.deepEqual([seen.weight, seen.cap, seen.compress, seen.frozen], [3, 50, true, false])
    // The restored client speaks v1: its pages are reachable with v1 ops and saving it again
    // gives a v1 stream.
    const again = await inspectSaveStream(await saveBytes(host, 4))
    assert.equal(again.header.version, 1)
    assert.deepEqual(
      again.pools.map((pool) => [pool.poolId, pool.flags]),
      [
        [2, F.PRIVATE_PERS],
        [5, F.PRIVATE_EPH],
      ],
    )
    check(host)
  })

  void test('a v0 client of an acceptV0 host is saved as a v1 stream and restores anywhere', async () => {
    const source = newHost({ acceptV0: true })
    const rc = source.op(
      3,
      { cmd: 1, poolId: 0, creat: { uuid: [0n, 0n], flags: 0x00000001, arg1: 0 } },
      null,
      0,
    )
    assert.equal(rc, 0)
    const put = source.op(
      3,
      {
        cmd: 4,
        poolId: 0,
        gen: { oid: [0x77n, 0n, 0n], index: 4, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
      },
      page(4),
      0,
    )
    assert.equal(put, 1)
    const bytes = await saveBytes(source, 3)
    const summary = await inspectSaveStream(bytes)
    assert.equal(summary.header.version, 1)
    assert.equal(summary.pools[0]!.flags, F.PRIVATE_PERS)
    const target = newHost()
    await restoreClient(hostChannel(target), 3, bytes)
    assert.deepEqual(new Guest(target, 3).get(0, [0x77n, 0n, 0n], 4), page(4))
  })
})

void describe('save corner cases', () => {
  void test('no client, or a client without pools: nothing is written', async () => {
    const host = newHost()
    let calls = 0
    const sink = (): void => {
      calls++
    }
    assert.equal((await saveClient(hostChannel(host), 12, sink)).saved, false)
    new Guest(host, 12).put(0, [1n, 0n, 0n], 0, page(0)) // creates the client, no pool
    assert.equal((await saveClient(hostChannel(host), 12, sink)).saved, false)
    assert.equal(calls, 0)
  })

  void test('a persistent page with the all-ones OID fails the save by name and unfreezes', async () => {
    const host = newHost()
    const guest = new Guest(host, 2)
    guest.newPool(F.PRIVATE_PERS)
    guest.put(0, [1n, 2n, 3n], 0, page(1))
    guest.put(0, [ALL_ONES, ALL_ONES, ALL_ONES], 42, page(2))
    await assert.rejects(saveClient(hostChannel(host), 2, memorySink().sink), (error: unknown) => {
      assert.ok(error instanceof SaveError)
      assert.equal(error.code, 'EALLONESOID')
      assert.equal(error.poolId, 0)
      assert.equal(error.index, 42)
      return true
    })
    assert.equal(picture(host, 2).frozen, false)
    // OIDs with some all-ones words are fine.
    guest.flushPage(0, [ALL_ONES, ALL_ONES, ALL_ONES], 42)
    guest.put(0, [ALL_ONES, ALL_ONES, 0n], 43, page(3))
    const target = newHost()
    await restoreClient(hostChannel(target), 2, await saveBytes(host, 2))
    assert.deepEqual(new Guest(target, 2).get(0, [ALL_ONES, ALL_ONES, 0n], 43), page(3))
  })

  void test('weight 0xFFFFFFFF is saved as -2 (0xFFFFFFFE), as Xen does; the rest is exact', async () => {
    const host = newHost()
    const guest = new Guest(host, 6)
    guest.newPool(F.PRIVATE_EPH)
    host.control(ctrl(SUB.SET_WEIGHT, 6, 0, 0xffffffff))
    host.control(ctrl(SUB.SET_CAP, 6, 0, 100))
    const bytes = await saveBytes(host, 6)
    assert.equal(hexOf(bytes.subarray(20, 28)), 'feffffff' + '64000000')
    const target = newHost()
    await restoreClient(hostChannel(target), 6, bytes)
    assert.deepEqual([picture(target, 6).weight, picture(target, 6).cap], [0xfffffffe, 100])
  })

  void test('a frozen client stays frozen through the save and is restored frozen after its pages', async () => {
    const host = newHost()
    const guest = new Guest(host, 8)
    guest.newPool(F.PRIVATE_PERS)
    guest.put(0, [5n, 0n, 0n], 5, page(5))
    host.control(ctrl(SUB.FREEZE, 8))
    const bytes = await saveBytes(host, 8)
    assert.equal(picture(host, 8).frozen, true)
    assert.equal(bytes[16], 2) // client flags: FROZEN
    const target = newHost()
    const result = await restoreClient(hostChannel(target), 8, bytes)
    assert.equal(result.frozen, true)
    assert.equal(picture(target, 8).frozen, true)
    assert.deepEqual(new Guest(target, 8).get(0, [5n, 0n, 0n], 5), page(5))
  })
})

void describe('files, streams and progress', () => {
  void test('saveClientToFile writes atomically and restoreClient reads the file in two passes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tmem-save-'))
    try {
      const host = newHost()
      const guest = new Guest(host, 3)
      guest.newPool(F.PRIVATE_EPH)
      guest.newPool(F.PRIVATE_PERS)
      for (let i = 0; i < 300; i++) guest.put(1, [BigInt(i % 7), BigInt(i), 0n], i, page(i))
      const path = join(dir, 'client3.tmem')
      const saved = await saveClientToFile(hostChannel(host), 3, path)
      assert.equal(saved.pages, 300)
      assert.deepEqual(await readdir(dir), ['client3.tmem'])
      const file = await readFile(path)
      assert.equal(file.length, saved.bytes)
      assert.equal(file.length, 32 + 28 * 2 + 300 * (28 + 4096) + 4)
      const target = newHost()
      const result = await restoreClient(hostChannel(target), 3, path)
      assert.equal(result.pages, 300)
      const back = new Guest(target, 3)
      for (let i = 0; i < 300; i += 37)
        assert.deepEqual(back.get(1, [BigInt(i % 7), BigInt(i), 0n], i), page(i))
      // Nothing saved: no file appears.
      const none = join(dir, 'none.tmem')
      assert.equal((await saveClientToFile(hostChannel(host), 99, none)).saved, false)
      assert.deepEqual(await readdir(dir), ['client3.tmem'])
      // A failed save leaves no file either.
      guest.put(1, [ALL_ONES, ALL_ONES, ALL_ONES], 0, page(0))
      await assert.rejects(saveClientToFile(hostChannel(host), 3, join(dir, 'bad.tmem')), SaveError)
      assert.deepEqual(await readdir(dir), ['client3.tmem'])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  void test('the bytes do not depend on the chunk size the sink sees', async () => {
    const host = newHost()
    const guest = new Guest(host, 4)
    guest.newPool(F.PRIVATE_PERS)
    guest.newPool(F.SHARED_EPH, [9n, 9n])
    guest.newPool(F.PRIVATE_PERS)
    for (let i = 0; i < 40; i++) guest.put(i % 3 === 1 ? 0 : i % 3, [BigInt(i), 1n, 2n], i, page(i))
    const reference = hexOf(await saveBytes(host, 4))
    for (const chunkBytes of [8192, 8193, 12345, 65536]) {
      const chunks: number[] = []
      const memory = memorySink()
      await saveClient(
        hostChannel(host),
        4,
        (chunk) => {
          chunks.push(chunk.length)
          memory.sink(chunk)
        },
        { chunkBytes },
      )
      assert.equal(hexOf(memory.bytes()), reference, `chunkBytes ${chunkBytes}`)
      assert.ok(chunks.every((length) => length <= chunkBytes))
    }
  })

  void test('a file torn in the middle is rejected before the target is touched', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tmem-save-'))
    try {
      const bytes = workedExample(page(1), page(2))
      const path = join(dir, 'torn.tmem')
      await writeFile(path, bytes.subarray(0, 5000))
      const target = newHost()
      await assert.rejects(restoreClient(hostChannel(target), 1, path), {
        name: 'SaveStreamError',
        code: 'ETRUNCATED',
      })
      assert.equal(target.hasClient(1), false)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  void test('an async iterable source (a Node readable) is read into memory', async () => {
    const bytes = workedExample(page(1), page(2))
    const chunks = [bytes.subarray(0, 3), bytes.subarray(3, 4100), bytes.subarray(4100)]
    const target = newHost()
    const result = await restoreClient(hostChannel(target), 1, Readable.from(chunks))
    assert.equal(result.pages, 2)
  })

  void test('progress: pages, bytes and rate per phase, with a final report', async () => {
    const host = newHost()
    const guest = new Guest(host, 5)
    guest.newPool(F.PRIVATE_PERS)
    for (let i = 0; i < 50; i++) guest.put(0, [1n, 0n, 0n], i, page(i))
    const reports: Progress[] = []
    const onProgress = (progress: Progress): void => {
      reports.push(progress)
    }
    const bytes = await saveBytes(host, 5, { onProgress, progressIntervalMs: 0 })
    const target = newHost()
    await restoreClient(hostChannel(target), 5, bytes, { onProgress, progressIntervalMs: 0 })
    for (const phase of ['save', 'validate', 'restore'] as const) {
      const mine = reports.filter((report) => report.phase === phase)
      const last = mine[mine.length - 1]!
      assert.equal(last.done, true, phase)
      assert.equal(last.pages, 50, phase)
      assert.equal(last.bytes, bytes.length, phase)
      assert.ok(last.bytesPerSecond >= 0 && Number.isFinite(last.bytesPerSecond), phase)
      for (let i = 1; i < mine.length; i++) assert.ok(mine[i]!.pages >= mine[i - 1]!.pages, phase)
      assert.ok(mine.length >= 50, `${phase}: a report per page with interval 0`)
    }
    assert.equal(reports.find((report) => report.phase === 'save')!.pagesTotal, 50)
    assert.equal(reports.find((report) => report.phase === 'validate')!.bytesTotal, bytes.length)
  })
})
