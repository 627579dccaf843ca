/**
 * An export's life as a tmem client, in process: its pages outlive connections; the control
 * plane's destroy costs a swap export its data (EIO from then on, never silent zeros) and a
 * cache export nothing (it reopens and reads its file); a frozen swap export spills to its
 * file; removing an export destroys its client.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { TMEMC_FREEZE } from '../../../src/abi/constants.js'
import { controlOp } from '../../../src/abi/codec.js'
import { Host } from '../../../src/engine/host.js'
import { SessionTable } from '../../../src/server/sessions.js'
import { NbdServer, parseExportSpec } from '../../../src/frontends/nbd/mod.js'
import { expectBytes, openExport, request, simpleReply } from './naive.js'

let dir: string
let socketPath: string
let host: Host
let sessions: SessionTable
let server: NbdServer
let fileImage: Buffer
let cookie = 1

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nbd-life-'))
  socketPath = join(dir, 'nbd.sock')
  fileImage = randomBytes(256 * 1024)
  writeFileSync(join(dir, 'cache.img'), fileImage)
  const log = pino({ level: 'silent' })
  host = new Host({ bytes: 8 * 1024 * 1024 })
  sessions = new SessionTable(host, 0, log)
  server = await NbdServer.start(host, sessions, log, {
    socketPath,
    listen: null,
    exports: [
      parseExportSpec('name=sw,size=1M'),
      parseExportSpec(`name=ca,size=256K,mode=cache,backing=${join(dir, 'cache.img')}`),
      parseExportSpec(`name=fz,size=1M,backing=${join(dir, 'spill.img')}`),
    ],
    connectionCountMax: 16,
  })
})

after(async () => {
  await server.close()
  rmSync(dir, { recursive: true, force: true })
})

function idOf(name: string): number {
  const session = sessions.byName(name)
  assert.ok(session !== undefined, `${name} is a session`)
  return session.id
}

void describe('export lifecycle', { timeout: 20_000 }, () => {
  void test('pages outlive the connection that wrote them', async () => {
    const page = Buffer.alloc(4096, 0x61)
    const a = await openExport(socketPath, 'sw', false)
    let c = ++cookie
    a.write(request(1, 0, c, 8192, 4096, page))
    await expectBytes(a, simpleReply(0, c), 'write')
    a.write(request(2, 0, ++cookie, 0, 0))
    await a.closed
    const b = await openExport(socketPath, 'sw', false)
    c = ++cookie
    b.write(request(0, 0, c, 8192, 4096))
    await expectBytes(b, simpleReply(0, c, page), 'read on a new connection')
    b.close()
  })

  void test('multi-conn: a write acknowledged on one connection is read on another at once', async () => {
    const a = await openExport(socketPath, 'sw', false)
    const b = await openExport(socketPath, 'sw', false)
    const page = Buffer.alloc(4096, 0x6b)
    let c = ++cookie
    a.write(request(1, 0, c, 12288, 4096, page))
    await expectBytes(a, simpleReply(0, c), 'write on a')
    c = ++cookie
    b.write(request(0, 0, c, 12288, 4096))
    await expectBytes(b, simpleReply(0, c, page), 'read on b')
    c = ++cookie
    b.write(request(3, 0, c, 0, 0))
    await expectBytes(b, simpleReply(0, c), 'flush')
    a.close()
    b.close()
  })

  void test("CACHE fills a cache export's pool from its file", async () => {
    const client = await openExport(socketPath, 'ca', false)
    const before = host.stats().clients.find((e) => e.id === idOf('nbd:ca'))?.ephemeralPages ?? -1
    const c = ++cookie
    client.write(request(5, 0, c, 128 * 1024, 64 * 1024))
    await expectBytes(client, simpleReply(0, c), 'cache')
    const after = host.stats().clients.find((e) => e.id === idOf('nbd:ca'))?.ephemeralPages ?? -1
    assert.equal(after - before, 16, 'sixteen pages read ahead')
    client.close()
  })

  void test("destroying a swap export's client makes it answer EIO, not zeros", async () => {
    assert.equal(sessions.destroy(idOf('nbd:sw')), 1)
    const b = await openExport(socketPath, 'sw', false)
    const c = ++cookie
    b.write(request(0, 0, c, 8192, 4096))
    await expectBytes(b, simpleReply(5, c), 'read: EIO')
    b.close()
  })

  void test("destroying a cache export's client: it reopens and reads the file", async () => {
    const client = await openExport(socketPath, 'ca', false)
    let c = ++cookie
    client.write(request(0, 0, c, 0, 65536))
    await expectBytes(client, simpleReply(0, c, fileImage.subarray(0, 65536)), 'read, cached')
    const before = idOf('nbd:ca')
    assert.equal(sessions.destroy(before), 1)
    c = ++cookie
    client.write(request(0, 0, c, 4096, 65536))
    await expectBytes(
      client,
      simpleReply(0, c, fileImage.subarray(4096, 69632)),
      'read after destroy',
    )
    assert.notEqual(idOf('nbd:ca'), before, 'a new client')
    client.close()
  })

  void test('a frozen swap export with a file spills new pages there and reads them back', async () => {
    assert.equal(host.control(controlOp(TMEMC_FREEZE, idOf('nbd:fz'))), 0)
    const client = await openExport(socketPath, 'fz', false)
    const page = Buffer.alloc(8192, 0x7e)
    let c = ++cookie
    client.write(request(1, 0, c, 0, 8192, page))
    await expectBytes(client, simpleReply(0, c), 'write while frozen')
    c = ++cookie
    client.write(request(0, 0, c, 0, 8192))
    await expectBytes(client, simpleReply(0, c, page), 'read back from the file')
    const entry = server.list().find((e) => e['name'] === 'fz')
    assert.equal(entry?.['spilledPages'], 2)
    client.close()
  })

  void test('removing an export closes its connections and destroys its client', async () => {
    const client = await openExport(socketPath, 'fz', false)
    const id = idOf('nbd:fz')
    assert.equal(server.remove('fz'), true)
    await client.closed
    assert.equal(sessions.byName('nbd:fz'), undefined)
    assert.equal(host.hasClient(id), false)
  })
})
