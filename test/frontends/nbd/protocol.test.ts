/**
 * The NBD server byte for byte: an in-process engine, session table and NBD server on a Unix
 * socket, spoken to with raw bytes from the naive builder (test/frontends/nbd/naive.ts). Every
 * expected reply is built from proto.md's layouts and literal numbers, never from the server's
 * own code. Data is checked against a plain Buffer model of the disk.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
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

const MiB = 1024 * 1024
const DISK_BYTES = MiB
const ERR = 2 ** 31
// HAS_FLAGS 1 | FLUSH 4 | FUA 8 | TRIM 32 | WRITE_ZEROES 64 | MULTI_CONN 256 | CACHE 1024 | FAST_ZERO 2048
const FLAGS_SIMPLE = 1 + 4 + 8 + 32 + 64 + 256 + 1024 + 2048
const FLAGS_STRUCTURED = FLAGS_SIMPLE + 128 // SEND_DF

let dir: string
let socketPath: string
let server: NbdServer
let sessions: SessionTable

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nbd-proto-'))
  socketPath = join(dir, 'nbd.sock')
  const log = pino({ level: 'silent' })
  const host = new Host({ bytes: 16 * MiB })
  sessions = new SessionTable(host, 0, log)
  server = await NbdServer.start(host, sessions, log, {
    socketPath,
    listen: null,
    exports: [parseExportSpec('name=disk,size=1M'), parseExportSpec('name=ro,size=64K,readonly')],
    connectionCountMax: 16,
  })
})

after(async () => {
  await server.close()
  rmSync(dir, { recursive: true, force: true })
})

void describe('handshake', { timeout: 20_000 }, () => {
  void test('greeting: NBDMAGIC, IHAVEOPT, fixed newstyle and no zeroes', async () => {
    const client = await RawClient.open(socketPath)
    const greeting = await client.read(18)
    assert.equal(
      greeting.toString('hex'),
      new NaiveBE().ascii('NBDMAGIC').ascii('IHAVEOPT').u16(3).buffer().toString('hex'),
    )
    client.close()
  })

  void test('LIST names every export with its description, then ACK', async () => {
    const client = await RawClient.open(socketPath)
    await client.handshake()
    client.write(option(3))
    const entry = (name: string, description: string): Buffer =>
      optionReply(3, 2, new NaiveBE().u32(name.length).ascii(name).ascii(description))
    await expectBytes(
      client,
      Buffer.concat([entry('disk', 'tmem swap'), entry('ro', 'tmem swap'), optionReply(3, 1)]),
      'LIST',
    )
    client.write(option(3, [1]))
    await expectBytes(client, optionReply(3, ERR + 3), 'LIST with data is invalid')
    client.close()
  })

  void test('unknown and unsupported options get ERR_UNSUP and the connection goes on', async () => {
    const client = await RawClient.open(socketPath)
    await client.handshake()
    for (const code of [99, 5, 11, 4]) {
      client.write(option(code, [1, 2, 3]))
      await expectBytes(client, optionReply(code, ERR + 1), `option ${code}`)
    }
    client.write(option(6, goPayload('nope')))
    await expectBytes(client, optionReply(6, ERR + 6), 'INFO of an unknown export: ERR_UNKNOWN')
    client.write(option(7, new NaiveBE().u32(50).ascii('disk').u16(0)))
    await expectBytes(
      client,
      optionReply(7, ERR + 3),
      'GO with a name longer than its payload: ERR_INVALID',
    )
    client.write(option(7, goPayload('disk').u16(0)))
    await expectBytes(client, optionReply(7, ERR + 3), 'GO with trailing bytes: ERR_INVALID')
    client.write(option(8, [0]))
    await expectBytes(client, optionReply(8, ERR + 3), 'STRUCTURED_REPLY with data: ERR_INVALID')
    client.write(option(10, metaPayload('disk', ['base:allocation'])))
    await expectBytes(
      client,
      optionReply(10, ERR + 3),
      'SET_META_CONTEXT before structured replies: ERR_INVALID',
    )
    client.write(
      Buffer.concat([
        new NaiveBE().ascii('IHAVEOPT').u32(3).u32(70_000).buffer(),
        Buffer.alloc(70_000),
      ]),
    )
    await expectBytes(
      client,
      optionReply(3, ERR + 9),
      'an oversized option is skipped: ERR_TOO_BIG',
    )
    client.write(option(9, metaPayload('disk', [])))
    const context = new NaiveBE().u32(0).ascii('base:allocation')
    await expectBytes(
      client,
      Buffer.concat([optionReply(9, 4, context), optionReply(9, 1)]),
      'LIST_META_CONTEXT',
    )
    client.write(option(2))
    await expectBytes(client, optionReply(2, 1), 'ABORT is acknowledged')
    await client.closed
  })

  void test('GO answers the export, block sizes and name, then ACK', async () => {
    const client = await RawClient.open(socketPath)
    await client.handshake()
    client.write(option(8))
    await expectBytes(client, optionReply(8, 1), 'structured')
    client.write(option(7, goPayload('disk', [1, 3])))
    const expected = Buffer.concat([
      optionReply(7, 3, new NaiveBE().u16(0).u64(DISK_BYTES).u16(FLAGS_STRUCTURED)),
      optionReply(
        7,
        3,
        new NaiveBE()
          .u16(3)
          .u32(512)
          .u32(4096)
          .u32(32 * MiB),
      ),
      optionReply(7, 3, new NaiveBE().u16(1).ascii('disk')),
      optionReply(7, 1),
    ])
    await expectBytes(client, expected, 'GO replies')
    client.write(request(2, 0, 1, 0, 0))
    await client.closed
  })

  void test('EXPORT_NAME (old style end): size and flags, no zeroes; an unknown name closes', async () => {
    const client = await RawClient.open(socketPath)
    await client.handshake()
    client.write(new NaiveBE().ascii('IHAVEOPT').u32(1).u32(2).ascii('ro').buffer())
    await expectBytes(
      client,
      new NaiveBE()
        .u64(64 * 1024)
        .u16(FLAGS_SIMPLE + 2)
        .buffer(),
      'EXPORT_NAME reply (READ_ONLY 2)',
    )
    client.close()
    const other = await RawClient.open(socketPath)
    await other.handshake()
    other.write(new NaiveBE().ascii('IHAVEOPT').u32(1).u32(4).ascii('nope').buffer())
    await other.closed
  })

  void test('the export is a tmem client named nbd:disk', () => {
    const names = sessions.list().map((session) => session.name)
    assert.ok(names.includes('nbd:disk') && names.includes('nbd:ro'), names.join(','))
  })
})

void describe('transmission', { timeout: 20_000 }, () => {
  const model = Buffer.alloc(DISK_BYTES)
  let cookie = 100

  async function write(client: RawClient, offset: number, data: Buffer): Promise<void> {
    const c = ++cookie
    client.write(request(1, 0, c, offset, data.length, data))
    await expectBytes(client, simpleReply(0, c), `write ${data.length} at ${offset}`)
    data.copy(model, offset)
  }

  async function readStructured(client: RawClient, offset: number, length: number): Promise<void> {
    const c = ++cookie
    client.write(request(0, 0, c, offset, length))
    const expected = chunk(
      1,
      1,
      c,
      new NaiveBE().u64(offset).raw(model.subarray(offset, offset + length)),
    )
    await expectBytes(client, expected, `read ${length} at ${offset}`)
  }

  async function expectError(
    client: RawClient,
    req: Buffer,
    c: number,
    error: number,
    what: string,
  ): Promise<void> {
    client.write(req)
    await expectBytes(client, chunk(1, 32769, c, new NaiveBE().u32(error).u16(0)), what)
  }

  void test('unaligned, sub-page and multi-page writes read back as the model says', async () => {
    const client = await openExport(socketPath, 'disk', true)
    await write(client, 7, Buffer.from([0x5a]))
    await write(client, 4090, Buffer.alloc(20, 0x11))
    await write(client, 8192, Buffer.alloc(3 * 4096, 0x22))
    let seed = 12345
    const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31)
    for (let i = 0; i < 40; i++) {
      const offset = next() % (64 * 1024)
      const length = 1 + (next() % 9000)
      const data = Buffer.alloc(length)
      for (let j = 0; j < length; j++) data[j] = next() & 255
      await write(client, offset, data)
    }
    await readStructured(client, 0, 16)
    await readStructured(client, 0, 80 * 1024)
    await readStructured(client, 4095, 2)
    // Split a request and its payload at odd places: the stream may cut anywhere.
    const c = ++cookie
    const data = Buffer.alloc(10_000, 0x77)
    const bytes = request(1, 0, c, 100_003, data.length, data)
    let from = 0
    for (const cut of [5, 30, 4000, 9000, bytes.length]) {
      client.write(bytes.subarray(from, cut))
      from = cut
    }
    await expectBytes(client, simpleReply(0, c), 'split write')
    data.copy(model, 100_003)
    await readStructured(client, 96 * 1024, 20 * 1024)
    client.close()
  })

  void test('TRIM and WRITE_ZEROES zero pages; BLOCK_STATUS reports holes exactly there', async () => {
    const client = await openExport(socketPath, 'disk', true)
    await write(client, 200 * 4096, Buffer.alloc(8 * 4096, 0x33))
    let c = ++cookie
    client.write(request(4, 0, c, 201 * 4096, 2 * 4096)) // TRIM pages 201-202
    await expectBytes(client, simpleReply(0, c), 'trim')
    model.fill(0, 201 * 4096, 203 * 4096)
    c = ++cookie
    client.write(request(6, 0, c, 204 * 4096, 4096)) // WRITE_ZEROES page 204 (may punch)
    await expectBytes(client, simpleReply(0, c), 'write zeroes')
    c = ++cookie
    client.write(request(6, 2, c, 205 * 4096 + 100, 10)) // NO_HOLE, partial: data stays
    await expectBytes(client, simpleReply(0, c), 'write zeroes, partial')
    model.fill(0, 204 * 4096, 205 * 4096)
    model.fill(0, 205 * 4096 + 100, 205 * 4096 + 110)
    await readStructured(client, 199 * 4096, 10 * 4096)
    c = ++cookie
    client.write(request(7, 0, c, 199 * 4096, 10 * 4096))
    const data = 0
    const hole = 3
    const extents = new NaiveBE()
      .u32(1)
      .u32(4096)
      .u32(hole) // 199 never written
      .u32(4096)
      .u32(data) // 200
      .u32(2 * 4096)
      .u32(hole) // 201-202 trimmed
      .u32(4096)
      .u32(data) // 203
      .u32(4096)
      .u32(hole) // 204 zeroed without NO_HOLE
      .u32(3 * 4096)
      .u32(data) // 205-207
      .u32(4096)
      .u32(hole) // 208
    await expectBytes(client, chunk(1, 5, c, extents), 'block status')
    c = ++cookie
    client.write(request(7, 8, c, 199 * 4096 + 5, 10 * 4096)) // REQ_ONE, unaligned start
    await expectBytes(
      client,
      chunk(1, 5, c, new NaiveBE().u32(1).u32(4091).u32(hole)),
      'block status, one extent',
    )
    client.close()
  })

  void test('every bad request gets its error and the connection goes on', async () => {
    const client = await openExport(socketPath, 'disk', true)
    let c = ++cookie
    await expectError(
      client,
      request(0, 0, c, DISK_BYTES - 4, 8),
      c,
      22,
      'read past the end: EINVAL',
    )
    c = ++cookie
    await expectError(
      client,
      request(1, 0, c, DISK_BYTES - 4, 8, Buffer.alloc(8)),
      c,
      28,
      'write past the end: ENOSPC',
    )
    c = ++cookie
    await expectError(
      client,
      request(0, 0, c, 0, 32 * MiB + 1),
      c,
      22,
      'read over the maximum: EINVAL',
    )
    c = ++cookie
    await expectError(client, request(0, 2, c, 0, 512), c, 22, 'NO_HOLE on a read: EINVAL')
    c = ++cookie
    await expectError(client, request(0, 0x40, c, 0, 512), c, 22, 'unknown flag: EINVAL')
    c = ++cookie
    await expectError(client, request(9, 0, c, 0, 512), c, 22, 'unknown command: EINVAL')
    c = ++cookie
    await expectError(client, request(0, 0, c, 0, 0), c, 22, 'zero length: EINVAL')
    c = ++cookie
    await expectError(
      client,
      request(6, 16 | 2, c, 0, 4096),
      c,
      95,
      'FAST_ZERO with NO_HOLE: ENOTSUP',
    )
    c = ++cookie
    await expectError(
      client,
      request(4, 0, c, DISK_BYTES, 4096),
      c,
      22,
      'trim past the end: EINVAL',
    )
    await readStructured(client, 0, 4096)
    client.close()
  })

  void test('a read-only export refuses writes with EPERM; no meta context means BLOCK_STATUS EINVAL', async () => {
    const client = await openExport(socketPath, 'ro', false)
    let c = ++cookie
    client.write(request(1, 0, c, 0, 4096, Buffer.alloc(4096, 1)))
    await expectBytes(client, simpleReply(1, c), 'write: EPERM')
    c = ++cookie
    client.write(request(4, 0, c, 0, 4096))
    await expectBytes(client, simpleReply(1, c), 'trim: EPERM')
    c = ++cookie
    client.write(request(7, 0, c, 0, 4096))
    await expectBytes(client, simpleReply(22, c), 'block status without base:allocation: EINVAL')
    c = ++cookie
    client.write(request(0, 4, c, 0, 4096))
    await expectBytes(client, simpleReply(22, c), 'DF without structured replies: EINVAL')
    c = ++cookie
    client.write(request(0, 0, c, 0, 4096))
    await expectBytes(
      client,
      simpleReply(0, c, Buffer.alloc(4096)),
      'simple read of a never-written page: zeros',
    )
    client.close()
  })

  void test('a malformed request closes only its own connection', async () => {
    const victim = await openExport(socketPath, 'disk', false)
    const hostile = await openExport(socketPath, 'disk', true)
    hostile.write(Buffer.alloc(28, 0xee))
    await hostile.closed
    const c = ++cookie
    victim.write(request(0, 0, c, 0, 8192))
    await expectBytes(
      victim,
      simpleReply(0, c, model.subarray(0, 8192)),
      'the other connection still reads',
    )
    victim.write(request(2, 0, ++cookie, 0, 0))
    await victim.closed
  })
})

void describe('hostile input', { timeout: 30_000 }, () => {
  const SEED = Number(process.env['TMEM_SEED'] ?? Date.now() % 0x7fffffff)
  let state = SEED || 1
  const next = (): number => {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    return state >>> 0
  }
  const noise = (length: number): Buffer => Buffer.from(Array.from({ length }, () => next() & 255))

  void test(`random bytes in every phase close only their own connection (seed ${SEED}, TMEM_SEED replays)`, async () => {
    const victim = await openExport(socketPath, 'disk', true)
    const c0 = 9000
    victim.write(request(1, 0, c0, 0, 4096, Buffer.alloc(4096, 0x5e)))
    await expectBytes(victim, simpleReply(0, c0), 'victim write')
    for (let round = 0; round < 30; round++) {
      const phase = round % 3
      const client =
        phase === 2
          ? await openExport(socketPath, 'ro', next() % 2 === 0)
          : await RawClient.open(socketPath)
      if (phase === 1) await client.handshake()
      if (phase === 2 && next() % 2 === 0) {
        // Requests with the right magic and random fields; the read-only export keeps it harmless.
        for (let i = 0; i < 20; i++) {
          const type = next() % 10
          const length = next() % 3 === 0 ? next() : next() % 70_000
          const payload = type === 1 && length <= 70_000 ? noise(length) : undefined
          client.write(request(type, next() & 0xffff, i, next() % (128 * 1024), length, payload))
        }
      }
      client.write(noise(1 + (next() % 300)))
      client.close()
    }
    const c1 = 9001
    victim.write(request(0, 0, c1, 0, 4096))
    await expectBytes(
      victim,
      chunk(1, 1, c1, new NaiveBE().u64(0).raw(Buffer.alloc(4096, 0x5e))),
      'victim reads its page',
    )
    victim.close()
  })
})
