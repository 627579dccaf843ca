/**
 * Connection slots are counted per listener: an unauthenticated TCP peer that fills the TCP
 * control (or client) slots with idle connections does not lock anyone out of the Unix
 * sockets, and a TCP connection that never says hello is closed after --tcp-hello-timeout.
 * Every wait is on an event (connect, close); nothing is timed.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as netConnect, type Socket } from 'node:net'
import { connect } from '../../src/client/client.js'
import { connectControl } from '../../src/client/control.js'
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js'

const SLOTS = 2

/** An idle TCP connection, resolved once connected. */
function idle(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ host: '127.0.0.1', port })
    socket.once('connect', () => resolve(socket))
    socket.once('error', reject)
  })
}

function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) resolve()
    else socket.once('close', () => resolve())
  })
}

/** Fills a TCP listener's slots; resolves once a connection past them was closed by the daemon. */
async function fill(port: number): Promise<Socket[]> {
  const sockets: Socket[] = []
  for (let i = 0; i < SLOTS; i++) sockets.push(await idle(port))
  const extra = await idle(port)
  extra.on('error', () => undefined)
  await closed(extra)
  return sockets
}

void describe('slots per listener', { timeout: 60_000 }, () => {
  let daemon: DaemonHandle
  before(async () => {
    daemon = await startDaemon({
      args: [
        '--listen',
        '127.0.0.1:0',
        '--control-listen',
        '127.0.0.1:0',
        '--max-connections',
        String(SLOTS),
        '--max-control-connections',
        String(SLOTS),
        // Long enough that the idle connections stay for the whole test.
        '--tcp-hello-timeout',
        '5m',
      ],
    })
  })
  after(async () => {
    await daemon.stop()
  })

  void test('full TCP control slots leave the Unix control socket usable', async () => {
    const held = await fill(daemon.controlTcpPort!)
    try {
      const control = await connectControl({ path: daemon.controlPath })
      assert.match(await control.list(0xffff, false), /^G=/)
      await control.close()
    } finally {
      for (const socket of held) socket.destroy()
    }
  })

  void test('full TCP client slots leave the Unix client socket usable', async () => {
    const held = await fill(daemon.tcpPort!)
    try {
      const client = await connect({ path: daemon.socketPath }, { name: 'unix-after-tcp-full' })
      assert.ok((await client.newPool({ persistent: false })) >= 0)
      await client.close()
    } finally {
      for (const socket of held) socket.destroy()
    }
  })
})

void describe('TCP hello timeout', { timeout: 60_000 }, () => {
  void test('a TCP connection that never says hello is closed', async () => {
    const daemon = await startDaemon({
      args: ['--listen', '127.0.0.1:0', '--tcp-hello-timeout', '100ms'],
    })
    try {
      const socket = await idle(daemon.tcpPort!)
      socket.on('error', () => undefined)
      socket.resume()
      await closed(socket)
    } finally {
      await daemon.stop()
    }
  })
})
