/**
 * Client limits (src/server/client-limits.ts) against a plain model: detached clients are
 * reaped oldest first once there are more than the limit; each endpoint (Unix, TCP) has its own
 * client budget, and a hello that finds it full reaps that endpoint's oldest detached client
 * or is refused; a flood of hellos that drop never uses up the client ids. And, end to end, a
 * connection that said hello and then leaves a frame half sent is closed by the daemon while
 * an idle one without a half frame stays. Every wait is on an event.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as netConnect, type Socket } from 'node:net'
import { pino } from 'pino'
import { connect } from '../../src/client/client.js'
import type { HostLike } from '../../src/server/host-like.js'
import { SessionTable } from '../../src/server/sessions.js'
import type { SessionHolder } from '../../src/server/session.js'
import { encodeHello } from '../../src/protocol/hello.js'
import type { HostStats } from '../../src/protocol/stats.js'
import { startDaemon } from '../helpers/daemon.js'

/** The hello status codes of docs/protocol.md. */
const OK = 0
const NO_ROOM = 5

/** An engine stand-in with no clients of its own. */
function fakeHost(): HostLike {
  return {
    opBytes: () => 0,
    controlBytes: () => 0,
    hasClient: () => false,
    destroyClient: () => false,
    stats: () => ({}) as HostStats,
    statsOf: () => ({ clients: [] }) as unknown as HostStats,
    statsTotals: () => ({ ...NO_TOTALS }),
    statsPass: () => ({ step: () => true, totals: { ...NO_TOTALS }, topIds: [] }),
  }
}

const NO_TOTALS = { clients: 0, pools: 0, compressedPages: 0, compressedBytes: 0, compressPoor: 0 }

function holder(remote: string): SessionHolder {
  return { evict: () => undefined, notifyMoved: () => undefined, isOpen: true, remote }
}

const log = pino({ level: 'silent' })

void describe('client limits in the session table', () => {
  void test('more detached clients than the limit: the oldest detached are reaped, in order', () => {
    const host = fakeHost()
    const table = new SessionTable(host, 60_000, log, { detachedClientsMax: 3 })
    const made = []
    for (let i = 0; i < 6; i++) {
      const h = holder('unix')
      const result = table.open(`c${i}`, null, 1, h)
      assert.equal(result.status, OK)
      made.push({ session: result.session!, h })
    }
    // Detach in the order 2, 0, 5, 1, 4: the model queue is that order; past 3, the head goes.
    for (const i of [2, 0, 5, 1, 4]) table.detach(made[i]!.session, made[i]!.h)
    const gone = made
      .filter(({ session }) => table.byId(session.id) === undefined)
      .map(({ session }) => session.name)
    assert.deepEqual(gone.sort(), ['c0', 'c2'])
    assert.equal(table.size, 4)
    assert.equal(table.counters.sessionsReaped, 2)
    assert.equal(table.limits.detached, 3)
    table.stopTimers()
  })

  void test('each endpoint has its own budget; a full one reaps its oldest detached client, else refuses', () => {
    const host = fakeHost()
    const table = new SessionTable(host, 60_000, log, { clientsPerEndpointMax: 2 })
    const a = holder('unix')
    const b = holder('unix')
    const first = table.open('', null, 1, a).session!
    table.open('', null, 1, b)
    assert.equal(table.open('', null, 1, holder('unix')).status, NO_ROOM)
    // TCP clients are counted apart.
    assert.equal(table.open('', null, 1, holder('127.0.0.1:5000')).status, OK)
    // A Unix client detaches: the next Unix hello takes its place by reaping it.
    table.detach(first, a)
    const next = table.open('', null, 1, holder('unix'))
    assert.equal(next.status, OK)
    assert.equal(table.byId(first.id), undefined)
    assert.equal(table.size, 3)
    table.stopTimers()
  })

  void test('a flood of anonymous hellos that drop never uses up the client ids', () => {
    const host = fakeHost()
    const table = new SessionTable(host, 60_000, log, { detachedClientsMax: 100 })
    for (let i = 0; i < 5000; i++) {
      const h = holder('unix')
      const result = table.open('', null, 1, h)
      assert.equal(result.status, OK, `hello ${i}`)
      table.detach(result.session!, h)
    }
    assert.equal(table.size, 100)
    assert.ok(table.freeId() > 0)
    table.stopTimers()
  })
})

function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) resolve()
    else socket.once('close', () => resolve())
  })
}

void describe('half frames after hello', { timeout: 60_000 }, () => {
  void test('a connection that leaves a frame half sent is closed; an idle one stays', async () => {
    const daemon = await startDaemon({ args: ['--frame-idle-timeout', '100ms'] })
    try {
      const idleClient = await connect({ path: daemon.socketPath }, { name: 'idle-but-whole' })
      let dropped = 0
      idleClient.on('disconnect', () => dropped++)
      const socket = netConnect({ path: daemon.socketPath })
      socket.on('error', () => undefined)
      const hello = encodeHello(1, { abiVersion: 1, name: 'half', secret: null, token: '' })
      const replied = new Promise<void>((resolve) => socket.once('data', () => resolve()))
      socket.write(hello)
      await replied
      socket.resume()
      // Half of a frame header, then nothing.
      socket.write(Buffer.from(hello.subarray(0, 8)))
      await closed(socket)
      // The daemon's sweep has passed the idle client at least twice by now: still served.
      assert.ok((await idleClient.newPool({ persistent: false })) >= 0)
      assert.equal(dropped, 0)
      await idleClient.close()
    } finally {
      await daemon.stop()
    }
  })
})
