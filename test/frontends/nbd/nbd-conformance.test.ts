/**
 * The NBD server against the text of proto.md (the NBD project's doc/proto.md), probe by
 * probe, where protocol.test.ts does not already go: command flags across commands, lengths
 * above the stated maximum, zero lengths, offsets at the end of the export and near 2^64,
 * BLOCK_STATUS over many pages, metadata context selection, INFO requests, DISC with requests
 * in flight and a WRITE cut off mid-payload. Each probe quotes the sentence it checks. Every
 * expected byte comes from the naive builder (naive.ts) and a plain model of the disk.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { Host } from '../../../src/engine/host.js'
import { SessionTable } from '../../../src/server/sessions.js'
import { NbdServer, parseExportSpec } from '../../../src/frontends/nbd/mod.js'
import {
  NaiveBE,
  RawClient,
  chunk,
  expectBytes,
  goPayload,
  metaPayload,
  openExport,
  option,
  optionReply,
  request,
  simpleReply,
} from './naive.js'
import { missing, uri } from './tools.js'

const execFileAsync = promisify(execFile)

/** Merges adjacent extents of the same kind. */
function merge(extents: [number, number, boolean][]): [number, number, boolean][] {
  const out: [number, number, boolean][] = []
  for (const [offset, length, data] of extents) {
    const last = out[out.length - 1]
    if (last !== undefined && last[2] === data && last[0] + last[1] === offset) last[1] += length
    else out.push([offset, length, data])
  }
  return out
}

const KiB = 1024
const MiB = 1024 * KiB
const DISK_BYTES = MiB
const BIG_BYTES = 128 * MiB
const ERR = 2 ** 31
const EPERM = 1
const EINVAL = 22
const ENOSPC = 28

// Commands and command flags as proto.md numbers them.
const READ = 0
const WRITE = 1
const DISC = 2
const FLUSH = 3
const TRIM = 4
const CACHE = 5
const WRITE_ZEROES = 6
const BLOCK_STATUS = 7
const FUA = 1
const NO_HOLE = 2
const DF = 4
const REQ_ONE = 8
const FAST_ZERO = 16

let dir: string
let socketPath: string
let server: NbdServer

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nbd-conf-'))
  socketPath = join(dir, 'nbd.sock')
  const log = pino({ level: 'silent' })
  const host = new Host({ bytes: 16 * MiB })
  const sessions = new SessionTable(host, 0, log)
  server = await NbdServer.start(host, sessions, log, {
    socketPath,
    listen: null,
    exports: [
      parseExportSpec('name=disk,size=1M'),
      parseExportSpec('name=big,size=128M'),
      parseExportSpec('name=ro,size=64K,readonly'),
    ],
    connectionCountMax: 16,
  })
})

after(async () => {
  await server.close()
  rmSync(dir, { recursive: true, force: true })
})

let cookie = 1000

/** An error chunk: NBD_REPLY_TYPE_ERROR (2^15 + 1), DONE, the error, no message. */
function errorChunk(c: number, error: number): Buffer {
  return chunk(1, 32769, c, new NaiveBE().u32(error).u16(0))
}

/** A request whose offset is any u64 (request() takes a JS number). */
function request64(type: number, flags: number, c: number, offset: bigint, length: number): Buffer {
  return new NaiveBE().u32(0x25609513).u16(flags).u16(type).u64(c).u64(offset).u32(length).buffer()
}

/** Option replies up to and including the final one (anything but NBD_REP_INFO / META_CONTEXT). */
async function optionReplies(
  client: RawClient,
  code: number,
): Promise<{ type: number; data: Buffer }[]> {
  const out: { type: number; data: Buffer }[] = []
  for (;;) {
    const head = await client.read(20)
    assert.equal(head.subarray(0, 8).toString('hex'), '0003e889045565a9', 'option reply magic')
    assert.equal(head.readUInt32BE(8), code, 'option reply names its option')
    const type = head.readUInt32BE(12)
    const data = await client.read(head.readUInt32BE(16))
    out.push({ type, data })
    if (type !== 3 && type !== 4) return out
  }
}

/** Handshake with structured replies and SET_META_CONTEXT `queries`, then GO `name`. */
async function openWithMeta(name: string, queries: string[]): Promise<RawClient> {
  const client = await RawClient.open(socketPath)
  await client.handshake()
  client.write(option(8))
  await expectBytes(client, optionReply(8, 1), 'STRUCTURED_REPLY ack')
  client.write(option(10, metaPayload(name, queries)))
  await optionReplies(client, 10)
  client.write(option(7, goPayload(name)))
  const replies = await optionReplies(client, 7)
  assert.equal(replies[replies.length - 1]?.type, 1, 'GO ends with ACK')
  return client
}

void describe('command flags (proto.md "Command flags")', { timeout: 20_000 }, () => {
  // "bit 0, NBD_CMD_FLAG_FUA; This flag is valid for all commands, provided
  // NBD_FLAG_SEND_FUA has been negotiated, in which case the server MUST accept all
  // commands with this bit set (even by ignoring the bit)."
  void test('FUA is accepted on READ, FLUSH, CACHE and BLOCK_STATUS', async () => {
    const data = Buffer.alloc(4096, 0x3c)
    const client = await openExport(socketPath, 'disk', true)
    let c = ++cookie
    client.write(request(WRITE, FUA, c, 0, 4096, data))
    await expectBytes(client, simpleReply(0, c), 'WRITE with FUA')
    c = ++cookie
    client.write(request(READ, FUA, c, 0, 4096))
    await expectBytes(client, chunk(1, 1, c, new NaiveBE().u64(0).raw(data)), 'READ with FUA')
    c = ++cookie
    client.write(request(READ, FUA | DF, c, 0, 4096))
    await expectBytes(client, chunk(1, 1, c, new NaiveBE().u64(0).raw(data)), 'READ, FUA + DF')
    c = ++cookie
    client.write(request(FLUSH, FUA, c, 0, 0))
    await expectBytes(client, simpleReply(0, c), 'FLUSH with FUA')
    c = ++cookie
    client.write(request(CACHE, FUA, c, 0, 4096))
    await expectBytes(client, simpleReply(0, c), 'CACHE with FUA')
    c = ++cookie
    client.write(request(BLOCK_STATUS, FUA | REQ_ONE, c, 0, 8192))
    await expectBytes(
      client,
      chunk(1, 5, c, new NaiveBE().u32(1).u32(4096).u32(0)),
      'BLOCK_STATUS with FUA: page 0 is data',
    )
    client.close()
    const simple = await openExport(socketPath, 'disk', false)
    c = ++cookie
    simple.write(request(READ, FUA, c, 0, 4096))
    await expectBytes(simple, simpleReply(0, c, data), 'simple READ with FUA')
    simple.close()
  })

  // "The server SHOULD return NBD_EINVAL if it receives an unknown command flag. It also
  // SHOULD return NBD_EINVAL if it receives a request with a flag not explicitly documented
  // as applicable to the given request."
  void test('flags of other commands, and unknown flags, get EINVAL', async () => {
    const client = await openExport(socketPath, 'disk', true)
    const cases: [number, number, string][] = [
      [READ, NO_HOLE, 'NO_HOLE on READ'],
      [READ, REQ_ONE, 'REQ_ONE on READ'],
      [READ, FAST_ZERO, 'FAST_ZERO on READ'],
      [TRIM, NO_HOLE, 'NO_HOLE on TRIM'],
      [TRIM, FAST_ZERO, 'FAST_ZERO on TRIM'],
      [CACHE, DF, 'DF on CACHE'],
      [BLOCK_STATUS, DF, 'DF on BLOCK_STATUS'],
      [FLUSH, REQ_ONE, 'REQ_ONE on FLUSH'],
      [WRITE_ZEROES, 0x8000, 'bit 15 on WRITE_ZEROES'],
    ]
    for (const [type, flags, what] of cases) {
      const c = ++cookie
      client.write(request(type, flags, c, 0, 4096))
      await expectBytes(client, errorChunk(c, EINVAL), what)
    }
    // WRITE's payload follows even when its flags are wrong: read and dropped.
    const c = ++cookie
    client.write(request(WRITE, DF, c, 0, 4096, Buffer.alloc(4096, 0xff)))
    await expectBytes(client, errorChunk(c, EINVAL), 'DF on WRITE')
    const c2 = ++cookie
    client.write(request(READ, 0, c2, 0, 4096))
    await expectBytes(
      client,
      chunk(1, 1, c2, new NaiveBE().u64(0).raw(Buffer.alloc(4096, 0x3c))),
      'the refused WRITE changed nothing',
    )
    client.close()
  })
})

void describe(
  'lengths and offsets (proto.md "Block size constraints")',
  { timeout: 60_000 },
  () => {
    // "The server SHOULD report an NBD_EINVAL error if the client's request ... is larger than
    // the advertised maximum block size." and "The server SHOULD NOT return NBD_EOVERFLOW
    // except as documented in response to NBD_CMD_READ when NBD_CMD_FLAG_DF is supported."
    // The maximum we state in NBD_INFO_BLOCK_SIZE is 32 MiB.
    void test('READ and WRITE above the maximum block size: EINVAL, and the stream goes on', async () => {
      for (const structured of [true, false]) {
        const client = await openExport(socketPath, 'disk', structured)
        const expected = (c: number): Buffer =>
          structured ? errorChunk(c, EINVAL) : simpleReply(EINVAL, c)
        let c = ++cookie
        client.write(request(READ, 0, c, 0, 32 * MiB + 512))
        await expectBytes(client, expected(c), `READ over 32 MiB (structured ${structured})`)
        c = ++cookie
        client.write(request(WRITE, 0, c, 0, 32 * MiB + 512, Buffer.alloc(32 * MiB + 512, 0x77)))
        await expectBytes(client, expected(c), `WRITE over 32 MiB (structured ${structured})`)
        c = ++cookie
        client.write(request(READ, 0, c, 4096, 4096))
        const zeros = Buffer.alloc(4096)
        await expectBytes(
          client,
          structured
            ? chunk(1, 1, c, new NaiveBE().u64(4096).raw(zeros))
            : simpleReply(0, c, zeros),
          'the dropped payload wrote nothing',
        )
        client.close()
      }
    })

    // "The client SHOULD NOT request a ... length of 0; the behavior of a server on such a
    // request is unspecified although the server SHOULD NOT disconnect." (READ is in
    // protocol.test.ts.)
    void test('zero-length WRITE, TRIM, WRITE_ZEROES, CACHE, BLOCK_STATUS: an error, no disconnect', async () => {
      const client = await openExport(socketPath, 'disk', true)
      for (const type of [WRITE, TRIM, WRITE_ZEROES, CACHE, BLOCK_STATUS]) {
        const c = ++cookie
        client.write(request(type, 0, c, 4096, 0))
        await expectBytes(client, errorChunk(c, EINVAL), `type ${type}, length 0`)
      }
      const c = ++cookie
      client.write(request(READ, 0, c, 0, 4096))
      await expectBytes(
        client,
        chunk(1, 1, c, new NaiveBE().u64(0).raw(Buffer.alloc(4096, 0x3c))),
        'still connected, data intact',
      )
      client.close()
    })

    // "It SHOULD return NBD_EINVAL if it receives a read or trim request including one or more
    // sectors beyond the size of the device", "The server SHOULD return NBD_ENOSPC if it
    // receives a write request including one or more sectors beyond the size of the device"
    // (the same for WRITE_ZEROES), "The server SHOULD return NBD_EINVAL if it receives a
    // NBD_CMD_BLOCK_STATUS request including one or more sectors beyond the size". Offsets near
    // 2^64 must not wrap around to the start of the export.
    void test('offsets at the end and near 2^64: EINVAL or ENOSPC, nothing wraps', async () => {
      const client = await openExport(socketPath, 'disk', true)
      const size = BigInt(DISK_BYTES)
      const offsets: [bigint, number][] = [
        [size, 1],
        [size - 512n, 1024],
        [2n ** 63n, 4096],
        [2n ** 64n - 4096n, 8192], // offset + length wraps to 4096 in 64-bit arithmetic
        [2n ** 64n - 1n, 1],
        [2n ** 53n + 1n, 4096],
      ]
      const kinds: [number, number][] = [
        [READ, EINVAL],
        [TRIM, EINVAL],
        [CACHE, EINVAL],
        [BLOCK_STATUS, EINVAL],
        [WRITE_ZEROES, ENOSPC],
        [WRITE, ENOSPC],
      ]
      for (const [offset, length] of offsets) {
        for (const [type, error] of kinds) {
          const c = ++cookie
          const head = request64(type, 0, c, offset, length)
          client.write(type === WRITE ? Buffer.concat([head, Buffer.alloc(length, 0xee)]) : head)
          await expectBytes(client, errorChunk(c, error), `type ${type} at ${offset} + ${length}`)
        }
      }
      const c = ++cookie
      client.write(request(READ, 0, c, 0, 8192))
      await expectBytes(
        client,
        chunk(1, 1, c, new NaiveBE().u64(0).raw(Buffer.alloc(4096, 0x3c)).raw(Buffer.alloc(4096))),
        'pages 0 and 1 as they were',
      )
      client.close()
    })

    void test('a read-only export: WRITE_ZEROES is EPERM, CACHE and BLOCK_STATUS work', async () => {
      const client = await openWithMeta('ro', ['base:allocation'])
      let c = ++cookie
      client.write(request(WRITE_ZEROES, 0, c, 0, 4096))
      await expectBytes(client, errorChunk(c, EPERM), 'WRITE_ZEROES on a read-only export')
      c = ++cookie
      client.write(request(CACHE, 0, c, 0, 4096))
      await expectBytes(client, simpleReply(0, c), 'CACHE')
      c = ++cookie
      client.write(request(BLOCK_STATUS, 0, c, 0, 64 * KiB))
      await expectBytes(
        client,
        chunk(
          1,
          5,
          c,
          new NaiveBE()
            .u32(1)
            .u32(64 * KiB)
            .u32(3),
        ),
        'BLOCK_STATUS: all hole and zero',
      )
      client.close()
    })
  },
)

void describe('BLOCK_STATUS and metadata contexts', { timeout: 30_000 }, () => {
  /** Pages of `big` written so far. */
  const written = new Set<number>()

  /** Checks one BLOCK_STATUS reply against proto.md's rules and the page model. */
  async function blockStatus(
    client: RawClient,
    contextId: number,
    offset: number,
    length: number,
    flags: number,
  ): Promise<[number, number][]> {
    const c = ++cookie
    client.write(request(BLOCK_STATUS, flags, c, offset, length))
    const head = await client.read(20)
    assert.equal(head.readUInt32BE(0), 0x668e33ef, 'structured reply magic')
    assert.equal(head.readUInt16BE(4), 1, 'DONE')
    assert.equal(head.readUInt16BE(6), 5, 'NBD_REPLY_TYPE_BLOCK_STATUS')
    const bytes = head.readUInt32BE(16)
    // "length MUST be 4 + (a positive integer multiple of 8)"
    assert.ok(bytes >= 12 && (bytes - 4) % 8 === 0, `chunk length ${bytes}`)
    const body = await client.read(bytes)
    assert.equal(body.readUInt32BE(0), contextId, 'the context id SET_META_CONTEXT gave')
    const extents: [number, number][] = []
    let at = offset
    for (let i = 4; i < bytes; i += 8) {
      const n = body.readUInt32BE(i)
      const state = body.readUInt32BE(i + 4)
      assert.ok(n > 0, 'extent lengths are nonzero')
      assert.equal(n % 512, 0, 'a multiple of the minimum block size (aligned request)')
      for (let page = Math.floor(at / 4096); page < Math.ceil((at + n) / 4096); page++) {
        assert.equal(state, written.has(page) ? 0 : 3, `state of page ${page}`)
      }
      extents.push([n, state])
      at += n
    }
    // "the sum of the length fields of the first N-1 extents (if any) MUST be less than the
    // requested length"; we never send a final extent past the request either.
    assert.ok(at - offset <= length, `extents cover ${at - offset} of ${length}`)
    // "If the client used the NBD_CMD_FLAG_REQ_ONE flag ... exactly one descriptor"
    if ((flags & REQ_ONE) !== 0) assert.equal(extents.length, 1, 'REQ_ONE: one extent')
    return extents
  }

  void test('a request over many pages: consecutive extents, true states, within the length', async () => {
    const client = await openWithMeta('big', ['base:allocation'])
    for (const page of [0, 5, 6, 256, 20_000, 30_000]) {
      const c = ++cookie
      client.write(request(WRITE, 0, c, page * 4096, 4096, Buffer.alloc(4096, 0x61)))
      await expectBytes(client, simpleReply(0, c), `write page ${page}`)
      written.add(page)
    }
    // Walk the whole export the way clients do: ask again where the last reply stopped.
    let offset = 0
    while (offset < BIG_BYTES) {
      const extents = await blockStatus(client, 1, offset, BIG_BYTES - offset, 0)
      offset += extents.reduce((sum, [n]) => sum + n, 0)
    }
    const one = await blockStatus(client, 1, 4 * 4096, 100 * MiB, REQ_ONE)
    assert.deepEqual(one, [[4096, 3]], 'REQ_ONE: page 4, a hole')
    await blockStatus(client, 1, 6 * 4096 + 512, 1024, REQ_ONE)
    client.close()
  })

  // libnbd and QEMU check what a server sends (chunk lengths, extents within the request,
  // progress): their maps of the whole 128 MiB export, past the pages one reply looks at, must
  // be the page model. Run asynchronously, since the server is in this process.
  void test('nbdinfo --map and qemu-img map walk the big export to the page model', async (t) => {
    const absent = missing('nbdinfo', 'qemu-img')
    if (absent !== false) {
      t.skip(absent)
      return
    }
    const expected: [number, number, boolean][] = []
    for (let page = 0; page < BIG_BYTES / 4096; page++) {
      const data = written.has(page)
      const last = expected[expected.length - 1]
      if (last !== undefined && last[2] === data) last[1] += 4096
      else expected.push([page * 4096, 4096, data])
    }
    const target = uri(socketPath, 'big')
    const nbdinfo = JSON.parse(
      (await execFileAsync('nbdinfo', ['--map', '--json', target])).stdout,
    ) as { offset: number; length: number; type: number }[]
    assert.deepEqual(
      merge(nbdinfo.map((e) => [e.offset, e.length, e.type === 0] as [number, number, boolean])),
      expected,
      'nbdinfo --map',
    )
    const qemu = JSON.parse(
      (await execFileAsync('qemu-img', ['map', '-f', 'raw', '--output=json', target])).stdout,
    ) as { start: number; length: number; data: boolean; zero: boolean }[]
    assert.deepEqual(
      merge(qemu.map((e) => [e.start, e.length, e.data] as [number, number, boolean])),
      expected,
      'qemu-img map',
    )
  })

  // "base: - the server MUST ignore this form during NBD_OPT_SET_META_CONTEXT, and MUST
  // support this as a wildcard during NBD_OPT_LIST_META_CONTEXT"; "If a [leaf-name] requested
  // by the client is not recognized, the server MUST ignore it"; "the server MUST ignore
  // query strings belonging to an unknown namespace."
  void test('LIST_META_CONTEXT: base: is a wildcard; unknown leaves and namespaces are ignored', async () => {
    const client = await RawClient.open(socketPath)
    await client.handshake()
    client.write(option(8))
    await expectBytes(client, optionReply(8, 1), 'structured')
    const allocation = optionReply(9, 4, new NaiveBE().u32(0).ascii('base:allocation'))
    const cases: [string[], Buffer[]][] = [
      [['base:'], [allocation]],
      [['base:allocation'], [allocation]],
      [['base:nothing-here'], []],
      [['x-other:thing', 'qemu:dirty-bitmap:a'], []],
      [['x-other:thing', 'base:'], [allocation]],
    ]
    for (const [queries, contexts] of cases) {
      client.write(option(9, metaPayload('disk', queries)))
      await expectBytes(client, Buffer.concat([...contexts, optionReply(9, 1)]), queries.join(','))
    }
    client.write(option(10, metaPayload('disk', ['base:', 'x-other:thing'])))
    await expectBytes(client, optionReply(10, 1), 'SET with base: selects nothing')
    client.close()
  })

  // "A client MUST NOT use NBD_CMD_BLOCK_STATUS unless it selected a nonzero number of
  // metadata contexts during negotiation ... Servers SHOULD reply with NBD_EINVAL".
  void test('SET_META_CONTEXT that selected nothing: BLOCK_STATUS is EINVAL', async () => {
    const client = await openWithMeta('disk', ['base:'])
    const c = ++cookie
    client.write(request(BLOCK_STATUS, 0, c, 0, 4096))
    await expectBytes(client, errorChunk(c, EINVAL), 'no context selected')
    client.close()
  })

  // "NBD_OPT_SET_META_CONTEXT: Change the set of active metadata contexts. Issuing this
  // command replaces all previously-set metadata contexts (including when this command
  // fails)".
  void test('a failed SET_META_CONTEXT drops the contexts an earlier one selected', async () => {
    const failures: [string, NaiveBE][] = [
      ['an unknown export', metaPayload('nope', ['base:allocation'])],
      ['a truncated query', new NaiveBE().u32(4).ascii('disk').u32(1).u32(15).ascii('base')],
    ]
    for (const [what, payload] of failures) {
      const client = await RawClient.open(socketPath)
      await client.handshake()
      client.write(option(8))
      await expectBytes(client, optionReply(8, 1), 'structured')
      client.write(option(10, metaPayload('disk', ['base:allocation'])))
      await expectBytes(
        client,
        Buffer.concat([
          optionReply(10, 4, new NaiveBE().u32(1).ascii('base:allocation')),
          optionReply(10, 1),
        ]),
        'base:allocation selected',
      )
      client.write(option(10, payload))
      const replies = await optionReplies(client, 10)
      assert.ok(replies[replies.length - 1]!.type >= ERR, `SET_META_CONTEXT with ${what} fails`)
      client.write(option(7, goPayload('disk')))
      await optionReplies(client, 7)
      const c = ++cookie
      client.write(request(BLOCK_STATUS, 0, c, 0, 4096))
      await expectBytes(client, errorChunk(c, EINVAL), `nothing selected after ${what}`)
      client.close()
    }
  })
})

void describe(
  'option haggling (proto.md "NBD_OPT_INFO and NBD_OPT_GO")',
  { timeout: 20_000 },
  () => {
    // "The server MUST ignore any information requests it does not understand." "The server
    // MUST send an NBD_INFO_EXPORT information type at some point before sending an
    // NBD_REP_ACK".
    void test('INFO: unknown information requests are ignored; a truncated list is invalid', async () => {
      const client = await RawClient.open(socketPath)
      await client.handshake()
      client.write(option(6, goPayload('disk', [0x7fff, 2, 0xffff, 1])))
      const replies = await optionReplies(client, 6)
      assert.equal(replies[replies.length - 1]?.type, 1, 'ACK last')
      const infos = new Map(
        replies.filter((r) => r.type === 3).map((r) => [r.data.readUInt16BE(0), r.data]),
      )
      assert.deepEqual(
        [...infos.keys()].sort(),
        [0, 1, 2, 3],
        'EXPORT, NAME, DESCRIPTION, BLOCK_SIZE',
      )
      const exportInfo = infos.get(0)!
      assert.equal(exportInfo.length, 12, 'INFO_EXPORT is 12 bytes')
      assert.equal(Number(exportInfo.readBigUInt64BE(2)), DISK_BYTES, 'INFO_EXPORT: the size')
      assert.equal(infos.get(1)!.subarray(2).toString(), 'disk')
      assert.equal(infos.get(2)!.subarray(2).toString(), 'tmem swap')
      // "32 bits, length of name (unsigned); MUST be no larger than the option data length - 6"
      const truncated = new NaiveBE().u32(4).ascii('disk').u16(3).u16(1)
      client.write(option(6, truncated))
      await expectBytes(client, optionReply(6, ERR + 3), 'a list shorter than its count')
      client.write(option(7, new NaiveBE().u32(4).ascii('disk')))
      await expectBytes(client, optionReply(7, ERR + 3), 'no count at all')
      client.write(option(7, new NaiveBE().u32(4).ascii('disk').u16(1).u16(1).u16(0)))
      await expectBytes(client, optionReply(7, ERR + 3), 'a list longer than its count')
      // Strings "MUST be no longer than 4096 bytes": the longest is looked up, one more is not.
      client.write(option(6, goPayload('a'.repeat(4096))))
      await expectBytes(client, optionReply(6, ERR + 6), 'a 4096-byte unknown name: ERR_UNKNOWN')
      client.write(option(6, goPayload('a'.repeat(4097))))
      const [longer] = await optionReplies(client, 6)
      assert.ok(longer!.type >= ERR, 'a 4097-byte name is an error')
      // The connection is still good: GO on the default export.
      client.write(option(7, goPayload('')))
      const go = await optionReplies(client, 7)
      assert.equal(go[go.length - 1]?.type, 1, 'GO "" (the default export) succeeds')
      client.write(request(DISC, 0, ++cookie, 0, 0))
      await client.closed
    })

    // "NBD_OPT_ABORT ... The client SHOULD NOT send any additional data with the option;
    // however, a server SHOULD ignore any data sent by the client rather than rejecting the
    // request as invalid."
    void test('ABORT with data is acknowledged and the server closes', async () => {
      const client = await RawClient.open(socketPath)
      await client.handshake()
      client.write(option(2, [1, 2, 3, 4]))
      await expectBytes(client, optionReply(2, 1), 'ABORT ack')
      await client.closed
    })
  },
)

void describe('disconnects (proto.md "NBD_CMD_DISC")', { timeout: 30_000 }, () => {
  // "A disconnect request. The server MUST handle all outstanding requests, shut down the TLS
  // session (if one is running), and close the TCP session."
  void test('DISC right behind a batch of requests: every reply comes, then the close', async () => {
    const client = await openExport(socketPath, 'disk', false)
    const page = (value: number): Buffer => Buffer.alloc(4096, value)
    const batch: Buffer[] = []
    const reads = new Map<number, Buffer>()
    const writes = new Set<number>()
    for (let i = 0; i < 24; i++) {
      const c = ++cookie
      if (i % 3 === 0) {
        batch.push(request(WRITE, i % 2 === 0 ? FUA : 0, c, (64 + i) * 4096, 4096, page(i)))
        writes.add(c)
      } else {
        // Pages 64.. were written just before in the same batch: reads see those writes.
        const source = 64 + i - (i % 3)
        batch.push(request(READ, 0, c, source * 4096, 4096))
        reads.set(c, page(i - (i % 3)))
      }
    }
    const flushCookie = ++cookie
    batch.push(request(FLUSH, 0, flushCookie, 0, 0))
    writes.add(flushCookie)
    batch.push(request(DISC, 0, ++cookie, 0, 0))
    client.write(Buffer.concat(batch))
    // Replies may come in any order; simple replies carry a READ's data right behind them.
    while (reads.size + writes.size > 0) {
      const head = await client.read(16)
      assert.equal(head.readUInt32BE(0), 0x67446698, 'simple reply magic')
      assert.equal(head.readUInt32BE(4), 0, 'no error')
      const c = Number(head.readBigUInt64BE(8))
      const expected = reads.get(c)
      if (expected !== undefined) {
        assert.ok((await client.read(4096)).equals(expected), `read ${c}`)
        reads.delete(c)
      } else {
        assert.ok(writes.delete(c), `cookie ${c} answered once`)
      }
    }
    assert.equal(reads.size + writes.size, 0, 'every request answered')
    await client.closed
  })

  void test('DISC behind 24 MiB of READ replies (more than the socket and the send limit hold)', async () => {
    const pattern = Buffer.alloc(MiB)
    for (let i = 0; i < MiB; i++) pattern[i] = (i * 7 + 3) & 255
    for (const structured of [false, true]) {
      const client = await openExport(socketPath, 'big', structured)
      const c = ++cookie
      client.write(request(WRITE, 0, c, 64 * MiB, MiB, pattern))
      await expectBytes(client, simpleReply(0, c), 'write 1 MiB')
      const first = cookie + 1
      const batch: Buffer[] = []
      for (let i = 0; i < 24; i++) batch.push(request(READ, 0, ++cookie, 64 * MiB, MiB))
      batch.push(request(DISC, 0, ++cookie, 0, 0))
      client.write(Buffer.concat(batch))
      // Replies in any order: each is a header naming its cookie, then the 1 MiB.
      const answered = new Set<number>()
      for (let i = 0; i < 24; i++) {
        const head = await client.read(structured ? 28 : 16)
        const got = Number(head.readBigUInt64BE(8))
        head.fill(0, 8, 16)
        const expected = structured
          ? new NaiveBE()
              .u32(0x668e33ef)
              .u16(1) // DONE
              .u16(1) // OFFSET_DATA
              .u64(0)
              .u32(8 + MiB)
              .u64(64 * MiB)
              .buffer()
          : simpleReply(0, 0)
        assert.equal(head.toString('hex'), expected.toString('hex'), `reply ${i}, cookie aside`)
        assert.ok(got >= first && got < first + 24 && !answered.has(got), `cookie ${got}`)
        answered.add(got)
        assert.ok((await client.read(MiB)).equals(pattern), `reply ${i} data`)
      }
      await client.closed
    }
  })

  void test('a WRITE cut off mid-payload harms no other page and no other connection', async () => {
    const victim = await openExport(socketPath, 'disk', false)
    let c = ++cookie
    const before = Buffer.alloc(4 * 4096, 0x5a)
    victim.write(request(WRITE, 0, c, 100 * 4096, before.length, before))
    await expectBytes(victim, simpleReply(0, c), 'victim writes pages 100-103')
    const hostile = await openExport(socketPath, 'disk', true)
    // Pages 101 (partly) to 102: only 3000 of 8192 payload bytes arrive.
    const cut = request(WRITE, 0, 1, 101 * 4096 + 100, 8192, Buffer.alloc(8192, 0xee))
    hostile.write(cut.subarray(0, 28 + 3000))
    hostile.close()
    await hostile.closed
    c = ++cookie
    victim.write(request(READ, 0, c, 100 * 4096, 4096))
    await expectBytes(victim, simpleReply(0, c, before.subarray(0, 4096)), 'page 100')
    c = ++cookie
    victim.write(request(READ, 0, c, 103 * 4096, 4096))
    await expectBytes(victim, simpleReply(0, c, before.subarray(0, 4096)), 'page 103')
    // A fresh connection works too.
    const fresh = await openExport(socketPath, 'disk', false)
    c = ++cookie
    fresh.write(request(READ, 0, c, 100 * 4096, 4096))
    await expectBytes(fresh, simpleReply(0, c, before.subarray(0, 4096)), 'page 100, again')
    fresh.close()
    victim.close()
  })
})
