/**
 * The paged STATS request (docs/protocol.md "STATS"): its body is built here byte by byte from
 * the table in the docs (the naive builder is the oracle), and the encoder must produce the
 * same bytes and the decoder read them back; every malformed body decodes to null. Against a
 * real daemon: a malformed body is answered -EINVAL and the connection keeps working, a page
 * from id 0 carries the host-wide totals and later pages do not, one client by id and by
 * name, and a client connection asking for a page gets -EPERM.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, type TmemClient } from '../../src/client/client.js'
import { connectControl, type TmemControlClient } from '../../src/client/control.js'
import {
  FRAME_HEADER_BYTES,
  KIND_STATS,
  RC_BYTES,
  readI32LE,
  writeFrameHeader,
} from '../../src/protocol/frame.js'
import { controlRules } from '../../src/protocol/dial.js'
import { Link } from '../../src/protocol/link.js'
import {
  type StatsRequest,
  decodeStatsRequest,
  encodeStatsRequest,
} from '../../src/protocol/stats.js'
import { naive } from '../helpers/naive-bytes.js'
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js'

const EINVAL = -22
const EPERM = -1

/** The body from the docs' table: form, client id, max bytes, name bytes, name. */
function body(
  form: number,
  id: number,
  maxBytes: number,
  name = '',
  nameBytes?: number,
): Uint8Array {
  const text = [...Buffer.from(name, 'utf8')]
  return naive()
    .at(0)
    .u32le(form)
    .at(4)
    .u32le(id)
    .at(8)
    .u32le(maxBytes)
    .at(12)
    .u32le(nameBytes ?? text.length)
    .at(16)
    .raw(...text)
    .done(16 + text.length)
}

function decoded(bytes: Uint8Array): StatsRequest | null {
  return decodeStatsRequest(bytes, 0, bytes.length)
}

void describe('STATS request body', () => {
  void test('each form encodes to the documented bytes and decodes back', () => {
    const cases: [StatsRequest, Uint8Array][] = [
      [{ form: 'page', first: 0, maxBytes: 0 }, body(1, 0, 0)],
      [{ form: 'page', first: 513, maxBytes: 40_000 }, body(1, 513, 40_000)],
      [{ form: 'id', id: 65534 }, body(2, 65534, 0)],
      [{ form: 'name', name: 'wéb-1' }, body(3, 0, 0, 'wéb-1')],
    ]
    for (const [request, bytes] of cases) {
      assert.deepEqual(encodeStatsRequest(request), bytes, request.form)
      assert.deepEqual(decoded(bytes), request)
    }
  })

  void test('malformed bodies decode to null', () => {
    const bad: [string, Uint8Array][] = [
      ['too short', body(1, 0, 0).subarray(0, 12)],
      ['unknown form', body(4, 0, 0)],
      ['form 0', body(0, 0, 0)],
      ['id 0xFFFF', body(2, 0xffff, 0)],
      ['page from 0xFFFF', body(1, 0xffff, 0)],
      ['max bytes on one client', body(2, 1, 100)],
      ['a name on a page', body(1, 0, 0, 'x')],
      ['an empty name', body(3, 0, 0)],
      ['a name with an id', body(3, 5, 0, 'x')],
      ['name length past the body', body(3, 0, 0, 'ab', 3)],
      ['name length short of the body', body(3, 0, 0, 'ab', 1)],
      ['a name over 64 bytes', body(3, 0, 0, 'n'.repeat(65))],
      ['not UTF-8', Uint8Array.from([...body(3, 0, 0, 'ab').subarray(0, 16), 0xc3, 0x28])],
    ]
    for (const [what, bytes] of bad) assert.equal(decoded(bytes), null, what)
  })
})

void describe('paged STATS against a daemon', { timeout: 60_000 }, () => {
  let daemon: DaemonHandle
  let control: TmemControlClient
  let guests: TmemClient[]

  before(async () => {
    daemon = await startDaemon()
    control = await connectControl({ path: daemon.controlPath })
    guests = []
    for (const name of ['a-1', 'b-1', 'c-1']) {
      const guest = await connect({ path: daemon.socketPath }, { name })
      await guest.newPool()
      guests.push(guest)
    }
  })
  after(async () => {
    for (const guest of guests) await guest.close()
    await control.close()
    await daemon.stop()
  })

  /** Sends a STATS frame with `payload` on a bare link of `path`; resolves with the rc. */
  async function rawRc(link: Link, payload: Uint8Array): Promise<number> {
    const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.length)
    writeFrameHeader(frame, 0, KIND_STATS, 0, payload.length)
    frame.set(payload, FRAME_HEADER_BYTES)
    return link.ask(frame, false, (reply) => readI32LE(reply.bytes, reply.payloadOffset))
  }

  void test('a malformed body is -EINVAL and the connection keeps working', async () => {
    const link = new Link(
      { path: daemon.controlPath },
      {
        abiVersion: 1,
        name: 'raw',
        secret: null,
        token: '',
        rules: controlRules(RC_BYTES + (1 << 20)),
      },
    )
    await link.open()
    try {
      assert.equal(await rawRc(link, body(9, 0, 0)), EINVAL)
      assert.equal(await rawRc(link, body(3, 0, 0, 'ab', 1)), EINVAL)
      assert.equal(await rawRc(link, body(2, guests[0]!.clientId, 0)), 0)
    } finally {
      await link.goodbye()
    }
  })

  void test('pages: totals on the first only; every client once; one client by id and name', async () => {
    const ids = guests.map((guest) => guest.clientId).sort((a, b) => a - b)
    const seen: number[] = []
    let first = 0
    let pages = 0
    for (;;) {
      const page = await control.statsPage({ form: 'page', first, maxBytes: 1 })
      assert.equal(page.page.totals === null, first !== 0)
      if (first === 0)
        assert.deepEqual(
          [page.page.totals?.clients, page.page.totals?.pools],
          [ids.length, ids.length],
        )
      assert.equal(page.host.clients.length, 1, 'a tiny page still holds one client')
      assert.deepEqual(
        page.sessions.map((s) => s.id),
        page.host.clients.map((c) => c.id),
      )
      seen.push(...page.host.clients.map((client) => client.id))
      pages++
      if (page.page.next < 0) break
      first = page.page.next
    }
    assert.deepEqual(seen, ids)
    assert.equal(pages, ids.length)
    const byName = await control.statsPage({ form: 'name', name: 'b-1' })
    assert.deepEqual(
      byName.host.clients.map((client) => client.id),
      [guests[1]!.clientId],
    )
    assert.deepEqual(
      byName.sessions.map((session) => session.name),
      ['b-1'],
    )
    const none = await control.statsPage({ form: 'name', name: 'nobody' })
    assert.deepEqual([none.host.clients.length, none.sessions.length], [0, 0])
    const byId = await control.statsPage({ form: 'id', id: guests[2]!.clientId })
    assert.deepEqual(
      byId.sessions.map((session) => session.name),
      ['c-1'],
    )
  })

  void test('a client connection asking for a page gets -EPERM', async () => {
    const link = new Link(
      { path: daemon.socketPath },
      {
        abiVersion: 1,
        name: 'guest-raw',
        secret: null,
        token: '',
        rules: controlRules(RC_BYTES + 4096),
      },
    )
    await link.open()
    try {
      assert.equal(await rawRc(link, body(1, 0, 0)), EPERM)
    } finally {
      await link.goodbye()
    }
  })
})
