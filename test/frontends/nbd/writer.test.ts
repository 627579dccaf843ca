/**
 * ReplyWriter against a naive model of the byte stream: whatever the writer does inside its
 * chunks (aligned places for READ data with skipped bytes between ranges, chunk changes,
 * rollback of a failed reply), the socket receives exactly the bytes written, in order, minus
 * what was rolled back; and after alignData(p) the byte p further on is 8-byte aligned.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
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
