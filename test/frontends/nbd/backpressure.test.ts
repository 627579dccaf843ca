/**
 * A client that stops reading its replies: the connection stops reading requests once more
 * than SEND_BYTES_HIGH of replies wait, keeps the requests it had read but not run (the
 * socket's receive buffer is reused by the next read, so they are copied aside), and runs
 * them when the client reads again. The oracle is a byte model of the export: every reply
 * comes back in order with the bytes the model says, and the writes made while the daemon was
 * not reading land where the model says.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { Host } from '../../../src/engine/host.js'
import { SessionTable } from '../../../src/server/sessions.js'
import { NbdServer, parseExportSpec } from '../../../src/frontends/nbd/mod.js'
import { SEND_BYTES_HIGH } from '../../../src/frontends/nbd/connection.js'
import { expectBytes, openExport, request, simpleReply } from './naive.js'

const MiB = 1024 * 1024
const SLOT = 64 * 1024

let dir: string
let server: NbdServer
let socketPath: string

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nbd-bp-'))
  socketPath = join(dir, 'nbd.sock')
  const log = pino({ level: 'silent' })
  const host = new Host({ bytes: 16 * MiB })
  server = await NbdServer.start(host, new SessionTable(host, 0, log), log, {
    socketPath,
    listen: null,
    exports: [parseExportSpec('name=bp,size=1M')],
    connectionCountMax: 4,
  })
})

after(async () => {
  await server.close()
  rmSync(dir, { recursive: true, force: true })
})

void test(
  'a client that does not read stops the daemon reading, and loses nothing',
  { timeout: 120_000 },
  async () => {
    const model = Buffer.alloc(MiB)
    for (let i = 0; i < MiB; i++) model[i] = (i * 7) & 0xff
    const client = await openExport(socketPath, 'bp', false)
    client.write(Buffer.concat([request(1, 0, 1, 0, MiB), model]))
    await expectBytes(client, simpleReply(0, 1), 'the first write')

    // Replies pile up unread: more READ replies than the daemon queues before it stops reading.
    client.socket.pause()
    const reads = Math.ceil(SEND_BYTES_HIGH / MiB) + 20
    for (let i = 0; i < reads; i++) client.write(request(0, 0, 100 + i, 0, MiB))
    // Then writes, until our side cannot hand the kernel more: the daemon has stopped reading.
    const writes: { cookie: number; slot: number; fill: number }[] = []
    let accepted = true
    while (accepted) {
      assert.ok(writes.length < 4096, 'the daemon never stopped reading requests')
      const n = writes.length
      const entry = { cookie: 10_000 + n, slot: (n * 5) % 16, fill: (n % 250) + 1 }
      writes.push(entry)
      const head = request(1, 0, entry.cookie, entry.slot * SLOT, SLOT)
      accepted = client.socket.write(Buffer.concat([head, Buffer.alloc(SLOT, entry.fill)]))
    }
    const before = Buffer.from(model)
    for (const entry of writes) model.fill(entry.fill, entry.slot * SLOT, (entry.slot + 1) * SLOT)

    client.socket.resume()
    for (let i = 0; i < reads; i++) {
      await expectBytes(client, simpleReply(0, 100 + i), `READ ${i} of ${reads}`)
      assert.ok((await client.read(MiB)).equals(before), `READ ${i}'s data`)
    }
    for (const entry of writes) await expectBytes(client, simpleReply(0, entry.cookie), 'a WRITE')
    client.write(request(0, 0, 2, 0, MiB))
    await expectBytes(client, simpleReply(0, 2), 'the read-back')
    assert.ok((await client.read(MiB)).equals(model), 'the export after the writes')
    client.socket.destroy()
  },
)
