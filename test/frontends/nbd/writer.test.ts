/**
 * ReplyWriter against a naive model of the byte stream: whatever the writer does inside its
 * chunks (aligned places for READ data with skipped bytes between ranges, chunk changes,
 * rollback of a failed reply), the socket receives exactly the bytes written, in order, minus
 * what was rolled back; and after alignData(p) the byte p further on is 8-byte aligned.
 * Then the same over a real socket whose handle the writer writes directly: replies the
 * kernel cannot take yet stay intact in their chunks until written, the client reads exactly
 * the bytes written, and onDrain says when every write is done.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { type Socket, connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CHUNK_BYTES, ReplyWriter } from '../../../src/frontends/nbd/writer.js'

/** A socket that keeps what it is given, honouring cork()/uncork() as Node does. */
function fakeSocket(): { socket: Socket; received: () => Buffer; corks: () => number } {
  const parts: Buffer[] = []
  let corked = 0
  let corks = 0
  const socket = {
    destroyed: false,
    cork: () => {
      corked++
      corks++
    },
    uncork: () => {
      corked--
    },
    write: (data: Uint8Array, done: () => void) => {
      parts.push(Buffer.from(data))
      done()
      return true
    },
  } as unknown as Socket
  return {
    socket,
    received: () => {
      assert.equal(corked, 0, 'every cork() was undone')
      return Buffer.concat(parts)
    },
    corks: () => corks,
  }
}

void test('aligned READ data, chunk changes and rollback leave the stream exactly as written', () => {
  const { socket, received, corks } = fakeSocket()
  const w = new ReplyWriter(socket)
  const model: number[] = []
  let seed = 1
  const next = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff)
  const put = (n: number): void => {
    const bytes = Buffer.alloc(n)
    for (let i = 0; i < n; i++) bytes[i] = next() & 0xff
    w.bytes(bytes)
    model.push(...bytes)
  }
  for (let round = 0; round < 400; round++) {
    const prefix = [16, 28, 20 + (next() % 9)][round % 3]!
    w.mark()
    const before = model.length
    w.alignData(prefix)
    assert.equal((w.used + prefix) % 8, 0, 'the data after the prefix is aligned')
    put(prefix)
    put(1 + (next() % 9000))
    if (round % 7 === 3) {
      // A reply that failed half-way: taken back, and an error reply instead.
      w.rollback()
      model.length = before
      put(32)
    }
    if (round % 5 === 0) w.flush()
  }
  w.flush()
  assert.ok(corks() > 0, 'some flushes carried several ranges')
  assert.ok(model.length > 2 * CHUNK_BYTES, 'the stream crossed chunks')
  assert.deepEqual(received(), Buffer.from(model))
})

/** A connected pair of Unix sockets: the server's accepted end and the client's. */
async function socketPair(): Promise<{ server: Socket; client: Socket; close: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'nbd-writer-'))
  const path = join(dir, 's.sock')
  const listener = createServer()
  await new Promise<void>((resolve) => listener.listen(path, resolve))
  const accepted = once(listener, 'connection') as Promise<[Socket]>
  const client = connect(path)
  const [server] = await accepted
  return {
    server,
    client,
    close: () => {
      client.destroy()
      server.destroy()
      listener.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

void test('direct writes to a real socket: what the kernel cannot take yet stays intact until written', async () => {
  const { server, client, close } = await socketPair()
  try {
    const w = new ReplyWriter(server)
    assert.ok(w.direct, 'Node 20 lets the writer write to the handle directly')
    let drains = 0
    let drained: () => void = () => {}
    w.onDrain = () => {
      drains++
      drained()
    }
    // The client does not read yet: many MiB cannot fit the socket, so writes go pending
    // while later replies are written into other chunks.
    client.pause()
    const model: number[] = []
    let seed = 7
    const next = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff)
    const total = 6 * 1024 * 1024
    while (model.length < total) {
      const n = 1 + (next() % 70_000)
      const bytes = Buffer.alloc(n)
      for (let i = 0; i < n; i++) bytes[i] = next() & 0xff
      w.bytes(bytes)
      for (const byte of bytes) model.push(byte)
      if (next() % 3 === 0) w.flush()
    }
    w.flush()
    assert.ok(w.inflightBytes > 0, 'some writes wait for the client')
    assert.equal(server.writableLength, 0, 'nothing went through Socket#write')
    const allWritten = new Promise<void>((resolve) => {
      drained = () => {
        if (w.inflightBytes === 0) resolve()
      }
    })
    const parts: Buffer[] = []
    let got = 0
    const allRead = new Promise<void>((resolve) => {
      client.on('data', (data: Buffer) => {
        parts.push(data)
        got += data.length
        if (got >= model.length) resolve()
      })
    })
    client.resume()
    await Promise.all([allWritten, allRead])
    assert.ok(drains > 0, 'onDrain ran once the pending writes were done')
    assert.ok(Buffer.concat(parts).equals(Buffer.from(model)), 'the stream is exactly as written')
  } finally {
    close()
  }
})
