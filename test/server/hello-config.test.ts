/**
 * Unit tests of the hello exchange encoding (src/protocol/hello.ts), checked against bytes laid
 * out by hand from docs/protocol.md, and of the daemon's option parsers (src/server/config.ts).
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import {
  decodeHello,
  decodeHelloReply,
  encodeHello,
  encodeHelloReplyInto,
  HELLO_FLAG_RESUMED,
  HELLO_OK,
  helloReplyPayloadBytes,
} from '../../src/protocol/hello.js'
import {
  defaultMemoryBytes,
  defaultRuntimeDir,
  parseDuration,
  parseLoopbackAddress,
  parseSize,
} from '../../src/server/config.js'

void describe('hello', () => {
  void test('the HELLO frame has the documented layout', () => {
    const secret = new Uint8Array(32).fill(0xab)
    const frame = encodeHello(5, { abiVersion: 1, name: 'web-1', secret, token: 'tk' })
    const payload = [
      1,
      0,
      5,
      2,
      0,
      0,
      0,
      0,
      ...secret,
      ...Buffer.from('web-1'),
      ...Buffer.from('tk'),
    ]
    const header = [0x54, 0x4d, 0x45, 0x4d, 1, 1, 0, 0, 5, 0, 0, 0, payload.length, 0, 0, 0]
    assert.deepEqual([...frame], [...header, ...payload])
    assert.deepEqual(decodeHello(frame, 16, payload.length), {
      abiVersion: 1,
      name: 'web-1',
      secret: Buffer.from(secret),
      token: 'tk',
    })
  })

  void test('an all-zero secret means none', () => {
    const frame = encodeHello(0, { abiVersion: 0, name: '', secret: null, token: '' })
    assert.equal(decodeHello(frame, 16, frame.length - 16)?.secret, null)
  })

  void test('malformed hellos decode to null', () => {
    const frame = encodeHello(0, { abiVersion: 1, name: 'a', secret: null, token: '' })
    const length = frame.length - 16
    assert.equal(decodeHello(frame, 16, length - 1), null, 'length disagrees')
    assert.equal(decodeHello(frame, 16, 39), null, 'shorter than the fixed part')
    const reserved = Uint8Array.from(frame)
    reserved[16 + 1] = 1
    assert.equal(decodeHello(reserved, 16, length), null, 'reserved byte set')
    assert.throws(() =>
      encodeHello(0, { abiVersion: 1, name: 'x'.repeat(65), secret: null, token: '' }),
    )
  })

  void test('HELLO_REPLY round-trips and has the documented fixed part', () => {
    const reply = {
      status: HELLO_OK,
      abiVersion: 1,
      clientId: 0x1234,
      graceMs: 30000,
      secret: Buffer.alloc(32, 7),
      flags: HELLO_FLAG_RESUMED,
      name: 'web-1',
      message: 'hi',
    }
    const bytes = new Uint8Array(200)
    const length = encodeHelloReplyInto(bytes, 3, reply)
    assert.equal(length, helloReplyPayloadBytes(reply))
    assert.equal(length, 48 + 5 + 2)
    assert.deepEqual([...bytes.subarray(3, 11)], [0, 1, 0x34, 0x12, 0x30, 0x75, 0, 0])
    assert.deepEqual([...bytes.subarray(43, 51)], [1, 0, 5, 0, 2, 0, 0, 0])
    assert.deepEqual(decodeHelloReply(bytes, 3, length), reply)
    assert.equal(decodeHelloReply(bytes, 3, length + 1), null)
  })
})

void describe('config parsers', () => {
  void test('sizes are binary and rounded down to pages', () => {
    assert.equal(parseSize('2G'), 2 * 1024 ** 3)
    assert.equal(parseSize('64M'), 64 * 1024 ** 2)
    assert.equal(parseSize('64MiB'), 64 * 1024 ** 2)
    assert.equal(parseSize('1.5g'), 1.5 * 1024 ** 3)
    assert.equal(parseSize('10000'), 8192)
    assert.throws(() => parseSize('100'), RangeError)
    assert.throws(() => parseSize('lots'), RangeError)
    assert.throws(() => parseSize('-1G'), RangeError)
  })

  void test('durations: ms, s, m, h; a bare number is seconds', () => {
    assert.equal(parseDuration('30s'), 30_000)
    assert.equal(parseDuration('500ms'), 500)
    assert.equal(parseDuration('2m'), 120_000)
    assert.equal(parseDuration('1h'), 3_600_000)
    assert.equal(parseDuration('0'), 0)
    assert.equal(parseDuration('5'), 5000)
    assert.throws(() => parseDuration('soon'), RangeError)
  })

  void test('only loopback addresses are accepted', () => {
    assert.deepEqual(parseLoopbackAddress('127.0.0.1:7300'), { host: '127.0.0.1', port: 7300 })
    assert.deepEqual(parseLoopbackAddress('[::1]:0'), { host: '::1', port: 0 })
    assert.deepEqual(parseLoopbackAddress('localhost:9'), { host: 'localhost', port: 9 })
    assert.deepEqual(parseLoopbackAddress('127.1.2.3:1'), { host: '127.1.2.3', port: 1 })
    for (const bad of [
      '0.0.0.0:1',
      '10.0.0.1:1',
      'example.com:80',
      '127.0.0.1',
      '127.0.0.1:70000',
    ]) {
      assert.throws(() => parseLoopbackAddress(bad), RangeError, bad)
    }
  })

  void test('defaults: a quarter of RAM up to 1 GiB; runtime dir from XDG_RUNTIME_DIR', () => {
    assert.equal(defaultMemoryBytes(1024 ** 3), 256 * 1024 ** 2)
    assert.equal(defaultMemoryBytes(64 * 1024 ** 3), 1024 ** 3)
    assert.equal(defaultRuntimeDir({ XDG_RUNTIME_DIR: '/run/user/7' }), '/run/user/7/tmem')
    assert.match(defaultRuntimeDir({}), /^\/tmp\/tmem-\d+$/)
  })
})
