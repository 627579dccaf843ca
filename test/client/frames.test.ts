/**
 * The pool API writes ops straight into request frames at the layout offsets; this checks
 * those bytes against `abi.encodeOp` (itself checked against a naive builder in test/abi),
 * for v1 and v0, without a daemon: a stand-in transport records the frames.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { encodeOp } from '../../src/abi/codec.js'
import {
  TMEM_DESTROY_POOL,
  TMEM_FLUSH_OBJECT,
  TMEM_FLUSH_PAGE,
  TMEM_GET_PAGE,
  TMEM_PUT_PAGE,
} from '../../src/abi/constants.js'
import type { Oid } from '../../src/abi/types.js'
import { TmemClient } from '../../src/client/client.js'
import type { Transport } from '../../src/client/transport.js'

class RecordingTransport extends EventEmitter {
  readonly frames: Uint8Array[] = []
  hello = null
  secret = null
  request(frame: Uint8Array): void {
    this.frames.push(frame)
  }

  /** The client's promise form of `request`: records the frame; no reply ever comes. */
  ask(frame: Uint8Array): Promise<never> {
    this.frames.push(frame)
    return new Promise<never>(() => undefined)
  }
}

function genOp(cmd: number, poolId: number, oid: Oid, index: number) {
  return { cmd, poolId, gen: { oid, index, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n } }
}

for (const abi of [1, 0] as const) {
  void test(`pool API frames carry the bytes encodeOp makes (v${abi})`, () => {
    const transport = new RecordingTransport()
    const client = new TmemClient(transport as unknown as Transport, abi)
    const page = new Uint8Array(4096).fill(9)
    const big = abi === 1 ? (3n << 128n) | (2n << 64n) | 0xfedcba9876543210n : 0xfedcba9876543210n
    const bigOid: Oid = abi === 1 ? [0xfedcba9876543210n, 2n, 3n] : [0xfedcba9876543210n, 0n, 0n]
    void client.put(5, big, 77, page)
    void client.get(3, 123456789012, 0xffffffff)
    void client.flushPage(-1, [1n, 0n, 0n], 2)
    void client.flushObject(15, 0)
    void client.destroyPool(4)
    const want = [
      genOp(TMEM_PUT_PAGE, 5, bigOid, 77),
      genOp(TMEM_GET_PAGE, 3, [123456789012n, 0n, 0n], 0xffffffff),
      genOp(TMEM_FLUSH_PAGE, -1, [1n, 0n, 0n], 2),
      genOp(TMEM_FLUSH_OBJECT, 15, [0n, 0n, 0n], 0),
      genOp(TMEM_DESTROY_POOL, 4, [0n, 0n, 0n], 0),
    ]
    const size = abi === 1 ? 56 : 40
    assert.equal(transport.frames.length, want.length)
    transport.frames.forEach((frame, i) => {
      assert.deepEqual(
        Uint8Array.from(frame.subarray(16, 16 + size)),
        encodeOp(want[i]!, abi),
        `op ${i}`,
      )
    })
    assert.equal(transport.frames[0]?.length, 16 + size + 4096)
    assert.deepEqual(Uint8Array.from(transport.frames[0]?.subarray(16 + size) ?? []), page)
  })
}

void test('oid and index range checks throw before anything is sent', () => {
  const transport = new RecordingTransport()
  const client = new TmemClient(transport as unknown as Transport, 0)
  assert.throws(() => client.get(0, [1n, 1n, 0n], 0), RangeError)
  assert.throws(() => client.get(0, -1, 0), RangeError)
  assert.throws(() => client.get(0, 1n << 192n, 0), RangeError)
  assert.throws(() => client.get(0, 1, -1), RangeError)
  assert.throws(() => client.put(0, 1, 0, new Uint8Array(100)), RangeError)
  assert.equal(transport.frames.length, 0)
})
