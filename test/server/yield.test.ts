/**
 * A connection leaves its next frames for a later turn of the event loop when its handler says
 * the turn's budget is spent (`shouldYield`, the daemon's answer to the remote tier's turn
 * budget): every frame is still served once, in order; a second connection's frames are
 * served in the turns between; and no turn serves more than the budget plus one frame for
 * each other connection (a connection serves at least one frame each time it reads or
 * resumes, so none can be held back for ever).
 *
 * The oracle is the handler here: it counts the frames of each turn itself (a turn ends at the
 * loop's check phase, where a `setImmediate` armed at the turn's first frame runs) and says
 * "yield" once a turn has served BUDGET frames. Both read modes of a connection are covered
 * (in place, and chunks).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as netConnect, createServer, type Socket } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  FRAME_HEADER_BYTES,
  FrameReader,
  FrameRules,
  KIND_OP,
  KIND_OP_REPLY,
  readI32LE,
  writeFrameHeader,
} from '../../src/protocol/frame.js'
import { Connection, type ConnectionHandler } from '../../src/server/connection.js'

const BUDGET = 4
const FRAMES = 200

class CountingHandler implements ConnectionHandler {
  /** Frames served in each turn, and by which connection (serial), in order. */
  readonly turns: number[][] = []
  #turn: number[] | null = null

  onFrame(conn: Connection, reader: FrameReader): void {
    if (this.#turn === null) {
      const turn: number[] = []
      this.#turn = turn
      this.turns.push(turn)
      setImmediate(() => {
        this.#turn = null
      })
    }
    this.#turn.push(conn.serial)
    const at = conn.sendUsed
    writeFrameHeader(conn.send, at, KIND_OP_REPLY, reader.requestId, 4)
    conn.send.writeInt32LE(
      readI32LE(reader.bytes, reader.payloadOffset) * 2,
      at + FRAME_HEADER_BYTES,
    )
    conn.sendUsed += FRAME_HEADER_BYTES + 4
  }

  onReject(): void {}
  onClose(): void {}

  shouldYield(): boolean {
    return this.#turn !== null && this.#turn.length >= BUDGET
  }
}

function frames(count: number, first: number): Buffer {
  const all = Buffer.alloc(count * (FRAME_HEADER_BYTES + 4))
  for (let i = 0; i < count; i++) {
    const at = i * (FRAME_HEADER_BYTES + 4)
    writeFrameHeader(all, at, KIND_OP, first + i, 4)
    all.writeInt32LE(first + i, at + FRAME_HEADER_BYTES)
  }
  return all
}

/** Reads `count` replies from `socket`: their request ids and values. */
function replies(socket: Socket, count: number): Promise<[number, number][]> {
  const reader = new FrameReader(new FrameRules().allow(KIND_OP_REPLY, 4, 4))
  const seen: [number, number][] = []
  return new Promise((resolve, reject) => {
    socket.on('error', reject)
    socket.on('data', (chunk: Buffer) => {
      reader.push(chunk)
      while (reader.next()) {
        seen.push([reader.requestId, readI32LE(reader.bytes, reader.payloadOffset)])
        if (seen.length === count) resolve(seen)
      }
    })
  })
}

for (const readInPlace of [true, false]) {
  void test(`frames past the turn's budget wait for a later turn (read in place: ${readInPlace})`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tmem-yield-'))
    const path = join(dir, 's.sock')
    const handler = new CountingHandler()
    const rules = new FrameRules().allow(KIND_OP, 4, 4)
    const connections: Connection[] = []
    const server = createServer({ pauseOnConnect: true }, (socket) => {
      const sizes = { rules, replyBytesMax: 64, sendBufferBytes: 4096, readInPlace }
      connections.push(new Connection(connections.length + 1, 'client', socket, sizes, handler))
    })
    await new Promise<void>((resolve) => server.listen(path, resolve))
    try {
      const a = netConnect({ path })
      const b = netConnect({ path })
      await Promise.all([a, b].map((s) => new Promise((resolve) => s.once('connect', resolve))))
      const gotA = replies(a, FRAMES)
      const gotB = replies(b, FRAMES)
      a.write(frames(FRAMES, 1000))
      b.write(frames(FRAMES, 5000))
      const [fromA, fromB] = await Promise.all([gotA, gotB])
      for (const [got, first] of [
        [fromA, 1000],
        [fromB, 5000],
      ] as const) {
        assert.deepEqual(
          got,
          Array.from({ length: FRAMES }, (_, i) => [first + i, (first + i) * 2]),
        )
      }
      const served = handler.turns.flat()
      assert.equal(served.length, 2 * FRAMES)
      for (const turn of handler.turns)
        assert.ok(turn.length <= BUDGET + 1, `a turn served ${turn.length}`)
      assert.ok(handler.turns.length >= (2 * FRAMES) / (BUDGET + 1))
      // The two connections took turns: neither had all its frames served before the other's first.
      const lastOfFirst = served.lastIndexOf(served[0]!)
      const firstOfOther = served.findIndex((serial) => serial !== served[0])
      assert.ok(firstOfOther >= 0 && firstOfOther < lastOfFirst)
      a.destroy()
      b.destroy()
    } finally {
      for (const conn of connections) conn.destroy()
      server.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
}
