/**
 * Density features, example by example (spec §3.3, §4.3, §4.7, §5.7, §7; issue 4):
 *  - corruption: a byte flipped inside a compressed or tze chunk in the arena (found through
 *    the slot columns) makes `checkInvariants` throw, and no get, READ or save read ever
 *    returns the corrupted bytes (ephemeral: dropped, get returns 0; persistent: -EFAULT);
 *  - counters: `cp`/`cb` (and down again on flush), `cn` for a random page, `cm` out of
 *    memory, `Gd`/`Sc`/`Sm`/`Ep` for duplicate content, `Zt`/`Gz`, in LIST and in host.stats();
 *  - payload kinds: a zero page uses no frame; GET, READ, WRITE and SAVE_GET_NEXT_PAGE see
 *    the original bytes of compressed, tze and filled pages;
 *  - codecs: every available codec round-trips, and `zlib` (node:zlib, always present) works
 *    whether or not the native packages built; dedup's second chance (spec §4.3).
 */
import { describe, test } from 'node:test'
import { spawnSync } from 'node:child_process'
import assert from 'node:assert/strict'
import { Host } from '../../src/engine/host.js'
import type { HostOptions } from '../../src/engine/options.js'
import { availableCodecs, createCodec, type CodecName } from '../../src/engine/codecs.js'
import { checkInvariants } from '../../src/engine/invariants.js'
import { CHECK_BYTES } from '../../src/engine/payload.js'
import type { Pool } from '../../src/engine/model.js'
import type { TmemOp } from '../../src/abi/types.js'
import { makeContent, PAGE_BYTES, type ContentKind } from '../helpers/density-pages.js'
import {
  checkDensityCounters,
  findSlot,
  poolSlots,
  storedPayload,
  type PayloadKind,
} from '../helpers/density-peek.js'

const CMD = {
  control: 0,
  newPool: 1,
  put: 4,
  get: 5,
  flushPage: 6,
  flushObject: 7,
  read: 8,
  write: 9,
}
const SUB = { list: 4, setCompress: 7, saveBegin: 10, saveNextPage: 19, saveEnd: 21 }
const FLAGS = { ephemeral: 0x01000000, persistent: 0x01000001, shared: 0x01000002 }
const EFAULT = -14
const ENOMEM = -12
const SENTINEL = 0x5a

/** A tiny driver: one host, guest ops by (client, pool, object, index). */
class Bench {
  readonly host: Host

  constructor(options: HostOptions) {
    this.host = new Host({ pages: 64, reservePages: 0, sharedAuth: false, ...options })
  }

  newPool(client: number, flags: number, uuid: [bigint, bigint] = [0n, 0n]): number {
    const rc = this.host.op(client, {
      cmd: CMD.newPool,
      poolId: 0,
      creat: { uuid, flags, arg1: 0 },
    })
    assert.ok(rc >= 0, `NEW_POOL returned ${rc}`)
    return rc
  }

  gen(
    cmd: number,
    pool: number,
    object: number,
    index: number,
    range = { tmemOffset: 0, pfnOffset: 0, len: 0 },
  ): TmemOp {
    return { cmd, poolId: pool, gen: { oid: [BigInt(object), 0n, 0n], index, ...range, cmfn: 0n } }
  }

  put(client: number, pool: number, object: number, index: number, page: Uint8Array): number {
    return this.host.op(client, this.gen(CMD.put, pool, object, index), page)
  }

  /** GET into a sentinel-filled frame: the return code and the frame. */
  get(
    client: number,
    pool: number,
    object: number,
    index: number,
  ): { rc: number; data: Uint8Array } {
    const data = new Uint8Array(PAGE_BYTES).fill(SENTINEL)
    return { rc: this.host.op(client, this.gen(CMD.get, pool, object, index), data), data }
  }

  read(
    client: number,
    pool: number,
    object: number,
    index: number,
    tmemOffset: number,
    pfnOffset: number,
    len: number,
  ): { rc: number; data: Uint8Array } {
    const data = new Uint8Array(PAGE_BYTES).fill(SENTINEL)
    return {
      rc: this.host.op(
        client,
        this.gen(CMD.read, pool, object, index, { tmemOffset, pfnOffset, len }),
        data,
      ),
      data,
    }
  }

  write(
    client: number,
    pool: number,
    object: number,
    index: number,
    source: Uint8Array,
    tmemOffset: number,
    pfnOffset: number,
    len: number,
  ): number {
    return this.host.op(
      client,
      this.gen(CMD.write, pool, object, index, { tmemOffset, pfnOffset, len }),
      source,
    )
  }

  flushPage(client: number, pool: number, object: number, index: number): number {
    return this.host.op(client, this.gen(CMD.flushPage, pool, object, index))
  }

  ctrl(
    subop: number,
    cliId: number,
    arg1 = 0,
    arg2 = 0,
    poolId = 0,
    data: Uint8Array | null = null,
  ): number {
    return this.host.control(
      { cmd: CMD.control, poolId, ctrl: { subop, cliId, arg1, arg2, oid: [0n, 0n, 0n], buf: 0n } },
      data,
    )
  }

  /** The value of `key` on the first long-form LIST line starting with `prefix`. */
  stat(prefix: string, key: string): number {
    const line = this.host
      .listText(0xffff, true)
      .split('\n')
      .find((l) => l.startsWith(prefix))
    assert.ok(line !== undefined, `no LIST line ${prefix}`)
    const match = new RegExp(`[=,]${key}:(-?\\d+)`).exec(line)
    assert.ok(match !== null, `no ${key} in ${line}`)
    return Number(match[1])
  }

  pool(client: number, slot: number): Pool {
    const pool = this.host.core.clientsById[client]?.pools[slot]
    assert.ok(pool !== null && pool !== undefined, `client ${client} has no pool ${slot}`)
    return pool
  }

  slot(client: number, slot: number, object: number, index: number): number {
    return findSlot(
      this.host,
      this.pool(client, slot),
      new Uint32Array([object, 0, 0, 0, 0, 0]),
      index,
    )
  }

  payload(
    client: number,
    slot: number,
    object: number,
    index: number,
  ): ReturnType<typeof storedPayload> {
    return storedPayload(this.host, this.slot(client, slot, object, index))
  }

  check(): void {
    checkInvariants(this.host)
    checkDensityCounters(this.host)
  }
}

function page(kind: ContentKind, seed: number): Uint8Array {
  return makeContent(kind, seed)
}

/** A tze page whose random prefix is `length` bytes (the header counts). */
function tzePage(length: number, seed: number): Uint8Array {
  const bytes = makeContent('random', seed)
  bytes.fill(0, length)
  return bytes
}

function assertPage(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.ok(Buffer.compare(actual, expected) === 0, `${what}: bytes differ`)
}

/** Flips one byte of a stored chunk: `at` bytes into its payload (negative: in the u32 check). */
function corrupt(
  b: Bench,
  client: number,
  poolSlot: number,
  object: number,
  index: number,
  at: number,
): PayloadKind {
  const payload = b.payload(client, poolSlot, object, index)
  assert.ok(
    payload.arena !== null && payload.kind !== 'plain',
    `page is ${payload.kind}, not a chunk`,
  )
  const where =
    at < 0
      ? payload.at + 4 + at
      : payload.at + CHECK_BYTES + Math.min(at, payload.bytes - CHECK_BYTES - 1)
  payload.arena[where] = payload.arena[where]! ^ 0x41
  return payload.kind
}

const CODECS = availableCodecs()

void describe('density: corrupt chunks are caught, never served', () => {
  interface CorruptCase {
    name: string
    options: HostOptions
    kind: PayloadKind
    content: () => Uint8Array
  }
  const cases: CorruptCase[] = [
    ...CODECS.map((codec): CorruptCase => ({
      name: `compressed (${codec})`,
      options: { compress: true, codec },
      kind: 'compressed',
      content: () => page('text', 7),
    })),
    { name: 'tze', options: { tze: true }, kind: 'tze', content: () => tzePage(1000, 7) },
  ]
  for (const c of cases) {
    for (const at of [-2, 0, 5, 10_000]) {
      void test(`${c.name} chunk, byte ${at < 0 ? 'in the check' : at === 10_000 ? 'at the end' : at}: invariants throw; ephemeral get → 0, persistent → -EFAULT`, () => {
        const b = new Bench(c.options)
        const eph = b.newPool(1, FLAGS.ephemeral)
        const pers = b.newPool(1, FLAGS.persistent)
        const original = c.content()
        assert.equal(b.put(1, eph, 1, 0, original), 1)
        assert.equal(b.put(1, pers, 1, 0, original), 1)
        assert.equal(b.put(1, pers, 1, 1, page('text', 99)), 1)
        b.check()
        assert.equal(b.payload(1, eph, 1, 0).kind, c.kind)

        // Ephemeral: the walker sees it; the get misses and the page is gone.
        corrupt(b, 1, eph, 1, 0, at)
        assert.throws(() => checkInvariants(b.host), /fails its check/)
        const eGet = b.get(1, eph, 1, 0)
        assert.equal(eGet.rc, 0)
        assert.ok(
          eGet.data.every((x) => x === SENTINEL),
          'the frame was written',
        )
        b.check()
        assert.equal(b.get(1, eph, 1, 0).rc, -1001, 'the pool is empty now')

        // Persistent: -EFAULT for GET, READ and the save read; the page stays and stays caught.
        corrupt(b, 1, pers, 1, 0, at)
        assert.throws(() => checkInvariants(b.host), /fails its check/)
        for (let i = 0; i < 2; i++) {
          const pGet = b.get(1, pers, 1, 0)
          assert.equal(pGet.rc, EFAULT)
          assert.ok(
            pGet.data.every((x) => x === SENTINEL),
            'the frame was written',
          )
        }
        const pRead = b.read(1, pers, 1, 0, 0, 0, 64)
        assert.equal(pRead.rc, EFAULT)
        assert.ok(pRead.data.every((x) => x === SENTINEL))
        assert.equal(b.ctrl(SUB.saveBegin, 1), 1)
        const record = new Uint8Array(32 + PAGE_BYTES).fill(SENTINEL)
        assert.equal(b.ctrl(SUB.saveNextPage, 1, record.length, 0, pers, record), EFAULT)
        assert.ok(
          record.subarray(32).every((x) => x === SENTINEL),
          'the save record carries page bytes',
        )
        assert.equal(b.ctrl(SUB.saveEnd, 1), 0)
        assert.equal(b.host.core.counters.corruptPages, 5)
        assert.equal(b.host.stats().corruptPages, 5)
        // The healthy neighbour is still served.
        assertPage(b.get(1, pers, 1, 1).data, page('text', 99), 'neighbour')
        // Flushing the corrupt page leaves a clean host.
        assert.equal(b.flushPage(1, pers, 1, 0), 1)
        b.check()
      })
    }
  }

  void test('dedup: corrupt shared content is dropped from every page that shares it, and never matched again', () => {
    const b = new Bench({ dedup: true, tze: true })
    const pool = b.newPool(1, FLAGS.ephemeral)
    const original = tzePage(800, 3)
    for (let i = 0; i < 3; i++) assert.equal(b.put(1, pool, 1, i, original), 1)
    b.check()
    assert.equal(b.stat('G=', 'Sc'), 1)
    assert.equal(b.payload(1, pool, 1, 0).kind, 'tze')
    assert.ok(b.payload(1, pool, 1, 0).shared)
    corrupt(b, 1, pool, 1, 1, 100)
    assert.throws(() => checkInvariants(b.host), /fails its check/)
    // A new put of the same bytes does not share the corrupt content: it gets its own.
    assert.equal(b.put(1, pool, 2, 0, original), 1)
    assert.equal(b.stat('G=', 'Sc'), 2)
    assertPage(b.get(1, pool, 2, 0).data, original, 'fresh copy')
    for (let i = 0; i < 3; i++) {
      const got = b.get(1, pool, 1, i)
      assert.equal(got.rc, 0)
      assert.ok(got.data.every((x) => x === SENTINEL))
    }
    b.check()
    assert.equal(b.stat('G=', 'Sc'), 0)
    assert.equal(b.stat('G=', 'Zt'), 0)
  })
})

void describe('density: LIST and stats counters (spec §5.7, §7)', () => {
  for (const codec of CODECS) {
    void test(`${codec}: cp/cb count compressed pages and go down on flush; cn a random page; zero pages take no frame`, () => {
      const b = new Bench({ compress: true, codec })
      const pool = b.newPool(1, FLAGS.ephemeral)
      const text = page('text', 1)
      assert.equal(b.put(1, pool, 1, 0, text), 1)
      const cb1 = b.stat('C=', 'cb')
      assert.equal(b.stat('C=', 'cp'), 1)
      assert.ok(cb1 > 0 && cb1 <= 2048 - CHECK_BYTES, `cb ${cb1}`)
      assert.equal(
        b.payload(1, pool, 1, 0).bytes,
        cb1 + CHECK_BYTES,
        'the chunk is the codec bytes plus the check',
      )
      assert.equal(b.put(1, pool, 1, 1, page('heap', 2)), 1)
      assert.equal(b.stat('C=', 'cp'), 2)
      const cb2 = b.stat('C=', 'cb')
      assert.ok(cb2 > cb1)
      // A random page does not shrink: stored plain, counted poor, not compressed.
      const frames = b.host.core.frames.used
      assert.equal(b.put(1, pool, 1, 2, page('random', 3)), 1)
      assert.equal(b.stat('C=', 'cn'), 1)
      assert.equal(b.stat('C=', 'cp'), 2)
      assert.equal(b.host.core.frames.used, frames + 1)
      assert.equal(b.payload(1, pool, 1, 2).kind, 'plain')
      // Zero and same-filled pages: no payload, no frame, not compressed.
      const before = b.host.core.frames.used
      for (let i = 0; i < 8; i++)
        assert.equal(b.put(1, pool, 2, i, i % 2 === 0 ? page('zero', 0) : page('filled', i)), 1)
      assert.equal(b.host.core.frames.used, before)
      assert.equal(b.payload(1, pool, 2, 0).kind, 'filled')
      assert.equal(b.payload(1, pool, 2, 0).bytes, 0)
      assert.equal(b.stat('C=', 'cp'), 2)
      b.check()
      // The same numbers in host.stats().
      const stats = b.host.stats()
      const client = stats.clients.find((c) => c.id === 1)!
      assert.equal(client.compressedPages, 2)
      assert.equal(client.compressedBytes, cb2)
      assert.equal(client.compressPoor, 1)
      assert.equal(client.compress, true)
      // Flush and get (destructive on a private ephemeral pool) take them off again.
      assert.equal(b.flushPage(1, pool, 1, 0), 1)
      assert.equal(b.stat('C=', 'cp'), 1)
      assert.equal(b.stat('C=', 'cb'), cb2 - cb1)
      assertPage(b.get(1, pool, 1, 1).data, page('heap', 2), 'heap page')
      assert.equal(b.stat('C=', 'cp'), 0)
      assert.equal(b.stat('C=', 'cb'), 0)
      assert.equal(b.stat('C=', 'cn'), 1, 'cn is an event count, it stays')
      b.check()
    })
  }

  void test('cm: compression out of memory is counted and the put fails with -ENOMEM', () => {
    const b = new Bench({ compress: true, codec: 'zlib', pages: 1 })
    const pool = b.newPool(1, FLAGS.persistent)
    assert.equal(b.put(1, pool, 1, 0, page('random', 1)), 1) // the only frame, plain
    assert.equal(b.put(1, pool, 1, 1, page('text', 2)), ENOMEM) // needs a class frame
    assert.equal(b.stat('C=', 'cm'), 1)
    assert.equal(b.stat('C=', 'cp'), 0)
    assert.equal(b.stat('P=', 'px'), 1)
    b.check()
  })

  void test('a duplicate put of a compressed page replaces the bytes and the counts', () => {
    const b = new Bench({ compress: true, codec: CODECS[0]! })
    const pool = b.newPool(1, FLAGS.persistent)
    assert.equal(b.put(1, pool, 1, 0, page('text', 1)), 1)
    assert.equal(b.put(1, pool, 1, 0, page('random', 2)), 1)
    assert.equal(b.stat('C=', 'cp'), 0)
    assert.equal(b.stat('C=', 'cn'), 0, 'cn counts non-duplicate puts only (spec §7.2)')
    assertPage(b.get(1, pool, 1, 0).data, page('random', 2), 'replaced by random')
    assert.equal(b.put(1, pool, 1, 0, page('heap', 3)), 1)
    assert.equal(b.stat('C=', 'cp'), 1)
    assert.equal(b.stat('P=', 'pr'), 2)
    assertPage(b.get(1, pool, 1, 0).data, page('heap', 3), 'replaced by heap')
    // Turning compression off: the next duplicate put stores plain.
    assert.equal(b.ctrl(SUB.setCompress, 1, 0), 0)
    assert.equal(b.put(1, pool, 1, 0, page('text', 4)), 1)
    assert.equal(b.stat('C=', 'cp'), 0)
    assert.equal(b.payload(1, pool, 1, 0).kind, 'plain')
    b.check()
  })

  void test('dedup: Gd counts puts that matched, Sc/Sm live and peak content descriptors, Ep every good ephemeral put', () => {
    const b = new Bench({ dedup: true })
    const p1 = b.newPool(1, FLAGS.ephemeral)
    const p2 = b.newPool(2, FLAGS.ephemeral)
    const pers = b.newPool(1, FLAGS.persistent)
    const dup = page('dup', 0)
    for (let i = 0; i < 3; i++) assert.equal(b.put(1, p1, 1, i, dup), 1)
    assert.equal(b.put(2, p2, 1, 0, dup), 1) // across clients too
    assert.equal(b.put(1, p1, 1, 9, page('random', 5)), 1)
    const framesBefore = b.host.core.frames.used
    assert.equal(b.put(1, pers, 1, 0, dup), 1) // persistent pages are never deduplicated
    assert.equal(b.host.core.frames.used, framesBefore + 1)
    assert.equal(b.payload(1, pers, 1, 0).shared, false)
    assert.equal(b.stat('G=', 'Gd'), 3)
    assert.equal(b.stat('G=', 'Sc'), 2)
    assert.equal(b.stat('G=', 'Sm'), 2)
    assert.equal(b.stat('G=', 'Ep'), 5)
    assert.equal(b.stat('G=', 'Gz'), 0, 'no compression with dedup on: SET_COMPRESS is refused')
    assert.equal(
      b.host.core.frames.used,
      3,
      'one frame per distinct content, one for the persistent page',
    )
    b.check()
    // Every sharer reads the original bytes; the content goes with its last reference.
    for (let i = 0; i < 3; i++) assertPage(b.get(1, p1, 1, i).data, dup, `sharer ${i}`)
    assert.equal(b.stat('G=', 'Sc'), 2)
    assertPage(b.get(2, p2, 1, 0).data, dup, 'client 2')
    assert.equal(b.stat('G=', 'Sc'), 1)
    assert.equal(b.stat('G=', 'Sm'), 2)
    assert.equal(b.host.stats().contentDescriptors, 1)
    assert.equal(b.host.stats().dedupPuts, 3)
    b.check()
  })

  void test('dedup + tze: Zt sums trimmed bytes of content descriptors; zero pages share a fill word', () => {
    const b = new Bench({ dedup: true, tze: true })
    const pool = b.newPool(1, FLAGS.ephemeral)
    const half = tzePage(1000, 1) // 1000 bytes → 1000 rounded up to 8-byte words
    assert.equal(b.put(1, pool, 1, 0, half), 1)
    assert.equal(b.put(1, pool, 1, 1, half), 1)
    assert.equal(b.stat('G=', 'Zt'), 1000)
    assert.equal(b.put(1, pool, 1, 2, tzePage(1001, 2)), 1)
    assert.equal(b.stat('G=', 'Zt'), 1000 + 1008)
    const frames = b.host.core.frames.used
    for (let i = 0; i < 4; i++) assert.equal(b.put(1, pool, 2, i, page('zero', 0)), 1)
    assert.equal(b.host.core.frames.used, frames)
    assert.equal(b.payload(1, pool, 2, 0).kind, 'filled')
    assert.equal(b.stat('G=', 'Sc'), 3)
    assert.equal(b.stat('G=', 'Gd'), 4)
    assert.equal(b.stat('G=', 'Gz'), 0)
    b.check()
    assert.equal(b.flushPage(1, pool, 1, 2), 1)
    assert.equal(b.stat('G=', 'Zt'), 1000)
    assert.equal(b.host.stats().tzeBytes, 1000)
    b.check()
  })

  void test('the shared pool owner leaving hands its cp/cb to the heir (D9)', () => {
    const b = new Bench({ compress: true, codec: CODECS[0]! })
    const uuid: [bigint, bigint] = [5n, 6n]
    const s1 = b.newPool(1, FLAGS.shared, uuid)
    const s2 = b.newPool(2, FLAGS.shared, uuid)
    assert.equal(b.put(2, s2, 1, 0, page('text', 1)), 1) // stored for the owner, client 1
    assert.equal(b.put(1, s1, 2, 0, page('text', 2)), 1)
    assert.equal(b.host.stats().clients.find((c) => c.id === 1)!.compressedPages, 2)
    assert.equal(b.host.stats().clients.find((c) => c.id === 2)!.compressedPages, 0)
    // Client 2 reads object 1, so it is the object's last client (spec §3.4 step 7).
    assertPage(b.get(2, s2, 1, 0).data, page('text', 1), 'shared get')
    b.check()
    // Client 1 leaves: its last-touched object 2 goes, object 1 passes to client 2.
    assert.ok(b.host.destroyClient(1))
    const heir = b.host.stats().clients.find((c) => c.id === 2)!
    assert.equal(heir.compressedPages, 1)
    b.check()
    assertPage(b.get(2, s2, 1, 0).data, page('text', 1), 'after the hand-over')
    assert.equal(
      b.host.stats().clients.find((c) => c.id === 2)!.compressedPages,
      1,
      'a shared-pool get keeps the page',
    )
    assert.equal(b.flushPage(2, s2, 1, 0), 1)
    assert.equal(b.host.stats().clients.find((c) => c.id === 2)!.compressedPages, 0)
    assert.equal(b.host.stats().clients.find((c) => c.id === 2)!.compressedBytes, 0)
    b.check()
  })
})

void describe('density: every payload kind reads back as the original bytes', () => {
  interface KindsCase {
    name: string
    options: HostOptions
    kinds: PayloadKind[]
  }
  const modes: KindsCase[] = [
    ...CODECS.map((codec): KindsCase => ({
      name: `compress ${codec} + tze`,
      options: { compress: true, codec, tze: true },
      kinds: ['compressed', 'tze', 'filled', 'plain'],
    })),
    { name: 'tze', options: { tze: true }, kinds: ['tze', 'filled', 'plain'] },
  ]
  // Contents that land in each kind (tze: a random prefix just too long to compress into a chunk).
  const contents: [string, () => Uint8Array][] = [
    ['text', () => page('text', 11)],
    ['random', () => page('random', 12)],
    ['zero', () => page('zero', 0)],
    ['0xABABABAB', () => page('filled', 0)],
    ['tze 2040', () => tzePage(2040, 13)],
    ['tze 24', () => tzePage(24, 14)],
    ['tze long', () => page('tzeLong', 15)],
  ]
  for (const mode of modes) {
    void test(`${mode.name}: GET, READ, WRITE and SAVE_GET_NEXT_PAGE`, () => {
      const b = new Bench(mode.options)
      const pers = b.newPool(1, FLAGS.persistent)
      const eph = b.newPool(1, FLAGS.ephemeral)
      const seen = new Set<PayloadKind>()
      contents.forEach(([, make], i) => {
        assert.equal(b.put(1, pers, 1, i, make()), 1)
        assert.equal(b.put(1, eph, 1, i, make()), 1)
        seen.add(b.payload(1, pers, 1, i).kind)
      })
      assert.deepEqual([...seen].sort(), [...mode.kinds].sort())
      b.check()
      contents.forEach(([name, make], i) => {
        const original = make()
        assertPage(b.get(1, pers, 1, i).data, original, `GET ${name}`)
        // READ: a range lands at pfn_offset of the caller's frame, the rest untouched.
        const r = b.read(1, pers, 1, i, 100, 7, 3000)
        assert.equal(r.rc, 1)
        const expected = new Uint8Array(PAGE_BYTES).fill(SENTINEL)
        expected.set(original.subarray(100, 3100), 7)
        assertPage(r.data, expected, `READ ${name}`)
        assertPage(b.get(1, eph, 1, i).data, original, `ephemeral GET ${name}`)
      })
      // Save reads every persistent page in put order, decompressed.
      assert.equal(b.ctrl(SUB.saveBegin, 1), 1)
      contents.forEach(([name, make], i) => {
        const record = new Uint8Array(32 + PAGE_BYTES)
        assert.equal(b.ctrl(SUB.saveNextPage, 1, record.length, 0, pers, record), 1)
        assert.equal(new DataView(record.buffer).getUint32(4, true), i)
        assertPage(record.subarray(32), make(), `SAVE_GET_NEXT_PAGE ${name}`)
      })
      assert.equal(b.ctrl(SUB.saveEnd, 1), 0)
      // WRITE = zero page then copy the range: a short range makes a tze page; a zero range a zero page.
      const source = page('random', 20)
      assert.equal(b.write(1, pers, 2, 0, source, 8, 0, 64), 1)
      const written = new Uint8Array(PAGE_BYTES)
      written.set(source.subarray(0, 64), 8)
      assertPage(b.get(1, pers, 2, 0).data, written, 'WRITE of 64 bytes')
      assert.notEqual(b.payload(1, pers, 2, 0).kind, 'plain')
      assert.equal(b.write(1, pers, 2, 1, source, 0, 0, 0), 1)
      assert.equal(b.payload(1, pers, 2, 1).kind, 'filled')
      assertPage(b.get(1, pers, 2, 1).data, new Uint8Array(PAGE_BYTES), 'WRITE of nothing')
      b.check()
    })
  }
})

void describe('density: codecs and feature detection', () => {
  void test('zlib is always available and the engine runs on it alone', () => {
    assert.ok(CODECS.includes('zlib'))
    assert.equal(CODECS[CODECS.length - 1], 'zlib', 'zlib is the last resort')
    const b = new Bench({ compress: true, codec: 'zlib' })
    assert.equal(b.host.core.payloads.codec?.name, 'zlib')
    const pool = b.newPool(1, FLAGS.persistent)
    const pages = (
      ['text', 'heap', 'random', 'zero', 'filled', 'tze', 'tzeLong', 'dup'] as ContentKind[]
    ).map((kind, i) => page(kind, i))
    pages.forEach((p, i) => assert.equal(b.put(1, pool, 1, i, p), 1))
    b.check()
    pages.forEach((p, i) => assertPage(b.get(1, pool, 1, i).data, p, `page ${i}`))
    assert.ok(b.stat('C=', 'cp') >= 3)
  })

  void test('without the native packages (require fails) the engine falls back to zlib and the JS fingerprint', () => {
    // A child process whose require() refuses the optional codec packages, as on a machine
    // where they did not build; it runs compression and dedup through the engine.
    const preload = `
      const Module = (await import('node:module')).default
      const resolve = Module._resolveFilename
      const blocked = /^(zstd-napi|lz4)([/]|$)/
      Module._resolveFilename = function (request, ...rest) {
        if (blocked.test(request)) { const e = new Error('Cannot find module ' + request); e.code = 'MODULE_NOT_FOUND'; throw e }
        return resolve.call(this, request, ...rest)
      }
    `
    const engine = new URL('../../src/engine/', import.meta.url).href
    const script =
      preload +
      `
      const codecs = await import('${engine}codecs.js')
      const { Host } = await import('${engine}host.js')
      const { checkInvariants } = await import('${engine}invariants.js')
      const out = { codecs: codecs.availableCodecs(), fingerprint: codecs.fingerprintName(), ok: true }
      for (const options of [{ compress: true }, { dedup: true, tze: true }]) {
        const host = new Host({ pages: 16, reservePages: 0, ...options })
        const pool = host.client(1).newPool({})
        const pages = [Buffer.alloc(4096, 'tmem density '), Buffer.alloc(4096), Buffer.alloc(4096, 'tmem density ')]
        pages.forEach((p, i) => pool.put(1, i, p))
        checkInvariants(host)
        out[Object.keys(options).join('+')] = host.listText(0xffff, true)
        out.ok &&= pages.every((p, i) => Buffer.compare(pool.get(1, i), p) === 0)
      }
      process.stdout.write(JSON.stringify(out))
    `
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
    })
    assert.equal(child.status, 0, child.stderr)
    const out = JSON.parse(child.stdout) as {
      codecs: string[]
      fingerprint: string
      ok: boolean
      compress: string
      'dedup+tze': string
    }
    assert.deepEqual(out.codecs, ['zlib'])
    assert.ok(out.ok, 'pages round-trip on zlib and the JS fingerprint')
    assert.match(out.compress, /\nC=CI:1,ww:0,ca:0,co:1,.*,cp:2,/)
    assert.match(out['dedup+tze'], /,Sc:2,Sm:2,Ep:3,Gd:1,/)
  })

  void test('a codec that is not installed gives null from createCodec; the default is the best one installed', () => {
    for (const name of ['zstd', 'lz4', 'zlib'] as CodecName[]) {
      const codec = createCodec(name)
      if (CODECS.includes(name)) assert.equal(codec?.name, name)
      else assert.equal(codec, null)
    }
    assert.equal(createCodec()?.name, CODECS[0])
  })

  for (const codec of CODECS) {
    void test(`${codec}: compress writes into the caller buffer and decompress restores exactly one page`, () => {
      const c = createCodec(codec)!
      const out = new Uint8Array(PAGE_BYTES * 2)
      for (const kind of ['text', 'heap', 'random', 'zero'] as ContentKind[]) {
        const original = Buffer.from(page(kind, 3))
        const size = c.compress(original, out)
        assert.ok(size > 0, `${kind} compressed to ${size}`)
        // Decompress from the middle of a larger buffer, as the engine does from an arena.
        const arena = new Uint8Array(size + 100)
        arena.set(out.subarray(0, size), 37)
        const back = Buffer.alloc(PAGE_BYTES)
        assert.equal(c.decompress(arena, 37, 37 + size, back), PAGE_BYTES)
        assertPage(back, original, kind)
        // A truncated stream never yields a full page.
        if (size > 8)
          assert.notEqual(
            c.decompress(arena, 37, 37 + Math.floor(size / 2), Buffer.alloc(PAGE_BYTES)),
            PAGE_BYTES,
          )
      }
    })
  }
})

void describe('density: dedup second chance (spec §4.3)', () => {
  void test('a page whose content is shared is skipped once by eviction, then evicted', () => {
    // 3 frames: a shared content (two pages) and two single pages; the next put evicts.
    const b = new Bench({ dedup: true, pages: 3 })
    const pool = b.newPool(1, FLAGS.ephemeral)
    const dup = page('dup', 1)
    assert.equal(b.put(1, pool, 1, 0, dup), 1) // oldest, shared
    assert.equal(b.put(1, pool, 2, 0, page('random', 1)), 1)
    assert.equal(b.put(1, pool, 3, 0, dup), 1) // shares with 1/0
    assert.equal(b.put(1, pool, 4, 0, page('random', 2)), 1) // 3 frames used
    assert.equal(b.host.core.frames.used, 3)
    // The next put needs a frame: 1/0 is at the head but shared, so it gets its second
    // chance and 2/0 goes instead.
    assert.equal(b.put(1, pool, 5, 0, page('random', 3)), 1)
    b.check()
    assert.equal(b.host.core.counters.evicted, 1)
    assert.equal(b.get(1, pool, 2, 0).rc, 0, 'the single page was evicted')
    const slot = b.slot(1, pool, 1, 0)
    assert.ok(
      (b.host.core.store.slotFlags(slot) & 4) !== 0,
      'second chance recorded on the shared page',
    )
    assert.equal(poolSlots(b.host, b.pool(1, pool)).length, 4)
    b.check()
  })
})

void describe('density: a duplicate put of shared content (dedup)', () => {
  void test('repeating the shared bytes keeps the content; other bytes replace it', () => {
    // Two pages share one content; page 1/0 is put again with the same bytes, then page
    // 2/0 with new bytes. The expected counts follow the spec's rule, not the code: every
    // put whose bytes match a stored content is a dedup put (`Gd`), and a content lives as
    // long as one page points at it.
    const b = new Bench({ dedup: true, pages: 8 })
    const pool = b.newPool(1, FLAGS.ephemeral)
    const shared = page('dup', 7)
    const other = page('random', 8)
    const counters = b.host.core.counters
    assert.equal(b.put(1, pool, 1, 0, shared), 1)
    assert.equal(b.put(1, pool, 2, 0, shared), 1)
    assert.equal(counters.dedupPuts, 1)
    assert.equal(counters.contentCount, 1)
    // Second chance set by hand, as eviction would: a new put of the page clears it.
    const slot = b.slot(1, pool, 1, 0)
    const store = b.host.core.store
    store.setSlotFlags(slot, store.slotFlags(slot) | 4)
    assert.equal(b.put(1, pool, 1, 0, shared.slice()), 1)
    assert.equal(counters.dedupPuts, 2, 'the repeat is a dedup put')
    assert.equal(counters.contentCount, 1)
    assert.equal(store.slotFlags(slot) & 4, 0, 'second chance cleared by the new put')
    assert.equal(b.host.core.frames.used, 1)
    b.check()
    assert.equal(b.put(1, pool, 2, 0, other), 1)
    assert.equal(counters.dedupPuts, 2, 'new bytes are not a dedup put')
    assert.equal(counters.contentCount, 2)
    assert.equal(b.host.core.frames.used, 2)
    assert.deepEqual(b.get(1, pool, 1, 0).data, shared)
    assert.deepEqual(b.get(1, pool, 2, 0).data, other)
    // 1/0 was got (private ephemeral: gone); 2/0 likewise. Nothing is left.
    assert.equal(counters.contentCount, 0)
    b.check()
  })
})
