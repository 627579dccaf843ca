/**
 * Backpressure against a real daemon: a client pipelines thousands of page-sized gets and does
 * not read its replies. The daemon must stop reading that connection (not buffer without
 * bound), keep serving other clients meanwhile, and deliver every reply, in order, once the
 * slow client reads again.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as netConnect } from 'node:net'
import { encodeOp, poolFlags } from '../../src/abi/codec.js'
import { TMEM_GET_PAGE, TMEM_NEW_POOL, TMEM_PUT_PAGE } from '../../src/abi/constants.js'
import type { TmemOp } from '../../src/abi/types.js'
import { connect } from '../../src/client/client.js'
import {
  FrameReader,
  FrameRules,
  KIND_HELLO_REPLY,
  KIND_OP,
  KIND_OP_REPLY,
  readI32LE,
  writeFrameHeader,
} from '../../src/protocol/frame.js'
import { encodeHello } from '../../src/protocol/hello.js'
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js'

let daemon: DaemonHandle
before(async () => {
  daemon = await startDaemon()
})
after(async () => {
  await daemon.stop()
})

function opFrame(requestId: number, op: TmemOp, page?: Uint8Array): Buffer {
  const bytes = encodeOp(op, 1)
  const frame = Buffer.alloc(16 + bytes.length + (page?.length ?? 0))
  writeFrameHeader(frame, 0, KIND_OP, requestId, bytes.length + (page?.length ?? 0))
  frame.set(bytes, 16)
  if (page !== undefined) frame.set(page, 16 + bytes.length)
  return frame
}

function gen(cmd: number, index: number): TmemOp {
  return {
    cmd,
    poolId: 0,
    gen: { oid: [1n, 0n, 0n], index, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
  }
}

void test(
  'a client that does not read is paused; others are served; nothing is lost',
  { timeout: 60_000 },
  async () => {
    const getCount = 6000 // about 25 MB of replies
    const setup = [
      encodeHello(0, { abiVersion: 1, name: 'slow', secret: null, token: '' }),
      opFrame(1, {
        cmd: TMEM_NEW_POOL,
        poolId: 0,
        creat: { uuid: [0n, 0n], flags: poolFlags({ persistent: true }), arg1: 0 },
      }),
    ]
    for (let i = 0; i < 8; i++)
      setup.push(opFrame(2 + i, gen(TMEM_PUT_PAGE, i), new Uint8Array(4096).fill(i + 1)))

    const slow = netConnect({ path: daemon.socketPath })
    await new Promise((resolve) => slow.once('connect', resolve))
    slow.write(Buffer.concat(setup))
    slow.pause()
    // Writes block once the kernel buffers fill: the daemon stopped reading this connection.
    let blocked = false
    const writer = (async () => {
      for (let i = 0; i < getCount; i++) {
        if (!slow.write(opFrame(100 + i, gen(TMEM_GET_PAGE, i % 8)))) {
          blocked = true
          await new Promise((resolve) => slow.once('drain', resolve))
        }
      }
    })()

    // While the slow client reads nothing, another client is served normally.
    const other = await connect({ path: daemon.socketPath }, { name: 'other' })
    const pool = await other.newPool({ persistent: true })
    for (let i = 0; i < 50; i++)
      assert.equal(await other.put(pool, 2, i, new Uint8Array(4096).fill(9)), true)
    assert.deepEqual(await other.get(pool, 2, 49), new Uint8Array(4096).fill(9))
    await other.close()

    // Now read everything: every reply arrives, in order, with its page.
    const rules = new FrameRules().allow(KIND_HELLO_REPLY, 0, 1024).allow(KIND_OP_REPLY, 4, 4100)
    const reader = new FrameReader(rules)
    let next = 100
    let replies = 0
    const done = new Promise<void>((resolve, reject) => {
      slow.on('data', (chunk: Buffer) => {
        reader.push(chunk)
        while (reader.next()) {
          if (reader.kind !== KIND_OP_REPLY || reader.requestId < 100) continue
          try {
            assert.equal(reader.requestId, next++)
            assert.equal(readI32LE(reader.bytes, reader.payloadOffset), 1)
            const index = (reader.requestId - 100) % 8
            assert.equal(reader.bytes[reader.payloadOffset + 4 + 100], index + 1)
          } catch (error) {
            reject(error instanceof Error ? error : new Error(String(error)))
          }
          if (++replies === getCount) resolve()
        }
      })
    })
    slow.resume()
    await writer
    await done
    assert.equal(replies, getCount)
    assert.ok(blocked, 'the slow client was pushed back')
    slow.destroy()
    assert.equal(daemon.process.exitCode, null)
  },
)
