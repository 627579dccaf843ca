/**
 * Daemon shutdown with replies still queued (proto.md: a server that shuts down SHOULD let the
 * requests it already handled finish): READ replies bigger than the socket's buffers are made,
 * the server is closed while most of their bytes still wait in the daemon, and the client must
 * receive every one of them whole, then the end of the connection. The expected bytes come
 * from the pattern the test wrote; the request count from the engine's counters.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { Host } from '../../../src/engine/host.js'
import { SessionTable } from '../../../src/server/sessions.js'
import { NbdServer, parseExportSpec } from '../../../src/frontends/nbd/mod.js'
import { expectBytes, openExport, request, simpleReply } from './naive.js'

const MiB = 1024 * 1024
const READ = 0
const WRITE = 1
const READS = 3

void test('shutdown sends the replies already made before it closes the connection', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nbd-shutdown-'))
  const socketPath = join(dir, 'nbd.sock')
  const log = pino({ level: 'silent' })
  const host = new Host({ bytes: 16 * MiB })
  const server = await NbdServer.start(host, new SessionTable(host, 0, log), log, {
    socketPath,
    listen: null,
    exports: [parseExportSpec('name=disk,size=8M')],
    connectionCountMax: 4,
  })
  try {
    const client = await openExport(socketPath, 'disk', false)
    const pattern = Buffer.alloc(MiB)
    for (let i = 0; i < MiB; i++) pattern[i] = (i * 13 + 5) & 255
    client.write(request(WRITE, 0, 1, 0, MiB, pattern))
    await expectBytes(client, simpleReply(0, 1), 'write 1 MiB')
    const gets = (): number =>
      host.stats().clients.reduce((n, c) => n + c.pools.reduce((m, p) => m + p.gets, 0), 0)
    const before = gets()
    // 3 MiB of replies: under the send limit (all made at once), over what the socket holds.
    for (let i = 0; i < READS; i++) client.write(request(READ, 0, 100 + i, 0, MiB))
    while (gets() < before + (READS * MiB) / 4096) await new Promise((r) => setImmediate(r))
    const closing = server.close()
    for (let i = 0; i < READS; i++) {
      const head = await client.read(16)
      assert.equal(head.readUInt32BE(0), 0x67446698, 'simple reply magic')
      assert.equal(head.readUInt32BE(4), 0, 'no error')
      assert.equal(Number(head.readBigUInt64BE(8)), 100 + i)
      assert.ok((await client.read(MiB)).equals(pattern), `read ${i} whole`)
    }
    await client.closed
    await closing
  } finally {
    await server.close()
    rmSync(dir, { recursive: true, force: true })
  }
})
