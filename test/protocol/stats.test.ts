/**
 * The STATS reply's decoder (src/protocol/stats.ts) against a real daemon's reply, fetched raw
 * over a bare protocol Link so that nothing decodes it first: `JSON.parse` is the oracle for
 * what a valid body holds, and each damaged copy must fail naming the field that is wrong.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from '../../src/client/client.js'
import { connectControl } from '../../src/client/control.js'
import {
  FRAME_HEADER_BYTES,
  KIND_STATS,
  RC_BYTES,
  readI32LE,
  writeFrameHeader,
} from '../../src/protocol/frame.js'
import { controlRules } from '../../src/protocol/dial.js'
import { Link } from '../../src/protocol/link.js'
import { decodeStats } from '../../src/protocol/stats.js'
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js'

type Json = Record<string, unknown>

function bytesOf(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value))
}

function decode(value: unknown): unknown {
  const bytes = bytesOf(value)
  return decodeStats(bytes, 0, bytes.length)
}

/** A deep copy of `body` with `change` applied to it. */
function damaged(body: Json, change: (copy: Json) => void): Json {
  const copy = structuredClone(body)
  change(copy)
  return copy
}

function at(value: unknown, ...path: (string | number)[]): Json {
  let here = value
  for (const step of path) here = (here as Record<string | number, unknown>)[step]
  return here as Json
}

void describe('STATS reply', { timeout: 30_000 }, () => {
  let daemon: DaemonHandle
  let raw: string

  before(async () => {
    daemon = await startDaemon()
    const client = await connect({ path: daemon.socketPath }, { name: 'stats-1' })
    const pool = await client.newPool({ persistent: true })
    await client.put(pool, 1n, 0, new Uint8Array(4096).fill(3))
    const link = new Link(
      { path: daemon.controlPath },
      {
        abiVersion: 1,
        name: 'stats-test',
        secret: null,
        token: '',
        rules: controlRules(RC_BYTES + (1 << 20)),
      },
    )
    await link.open()
    const frame = new Uint8Array(FRAME_HEADER_BYTES)
    writeFrameHeader(frame, 0, KIND_STATS, 0, 0)
    raw = await link.ask(frame, false, (reply) => {
      assert.equal(readI32LE(reply.bytes, reply.payloadOffset), 0)
      const start = reply.payloadOffset + RC_BYTES
      return Buffer.from(
        reply.bytes.subarray(start, reply.payloadOffset + reply.payloadBytes),
      ).toString('utf8')
    })
    await link.goodbye()
    await client.disconnect()
  })

  after(async () => {
    await daemon.stop()
  })

  void test('a real reply decodes to exactly what its JSON holds', () => {
    const body = JSON.parse(raw) as Json
    assert.deepEqual(decode(body), body)
    assert.equal(at(body, 'sessions', 0)['name'], 'stats-1', 'the reply is the one asked for')
    assert.equal(at(body, 'host', 'clients', 0, 'pools', 0)['pages'], 1)
  })

  void test('the control client hands back the decoded reply', async () => {
    const control = await connectControl({ path: daemon.controlPath })
    try {
      const stats = await control.stats()
      assert.equal(stats.sessions[0]?.name, 'stats-1')
      assert.equal(stats.host.clients[0]?.pools[0]?.persistent, true)
    } finally {
      await control.close()
    }
  })

  void test('a missing or mistyped field fails, naming its path', () => {
    const body = JSON.parse(raw) as Json
    const cases: [(copy: Json) => void, RegExp][] = [
      [
        (copy) => delete at(copy, 'host', 'clients', 0, 'pools', 0)['pages'],
        /stats\.host\.clients\[0\]\.pools\[0\]\.pages is not a number/,
      ],
      [
        (copy) => (at(copy, 'daemon')['framesRejected'] = '0'),
        /stats\.daemon\.framesRejected is not a number/,
      ],
      [
        (copy) => (at(copy, 'host', 'clients', 0)['abi'] = 2),
        /stats\.host\.clients\[0\]\.abi is not an ABI version/,
      ],
      [
        (copy) => (at(copy, 'host', 'clients', 0, 'pools', 0)['uuid'] = ['0']),
        /stats\.host\.clients\[0\]\.pools\[0\]\.uuid is not two hex strings/,
      ],
      [
        (copy) => (at(copy, 'sessions', 0)['connected'] = 1),
        /stats\.sessions\[0\]\.connected is not a boolean/,
      ],
      [
        (copy) => (at(copy, 'daemon', 'framesRejectedByReason')['bad_magic'] = null),
        /stats\.daemon\.framesRejectedByReason\.bad_magic is not a number/,
      ],
      [(copy) => (copy['host'] = []), /stats\.host is not an object/],
      [(copy) => (copy['sessions'] = {}), /stats\.sessions is not an array/],
    ]
    for (const [change, message] of cases) {
      assert.throws(
        () => decode(damaged(body, change)),
        (error: unknown) => error instanceof TypeError && message.test(error.message),
      )
    }
  })

  void test('fields a newer daemon adds are kept; text that is not JSON fails', () => {
    const body = damaged(JSON.parse(raw) as Json, (copy) => (at(copy, 'host')['newCounter'] = 5))
    assert.equal(at(decode(body), 'host')['newCounter'], 5)
    const text = new TextEncoder().encode('{"daemon":')
    assert.throws(() => decodeStats(text, 0, text.length), SyntaxError)
  })
})
