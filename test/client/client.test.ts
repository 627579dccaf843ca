/**
 * Integration: a real daemon process (test/helpers/daemon.ts) driven by the client library.
 * Asserts results, typed errors and the counters the daemon and the engine report (STATS and
 * LIST through the control client, Prometheus text), identity and privilege rules, v0
 * refusal, the TCP control token, and that a client killed and reconnecting within the grace
 * period finds its persistent pages.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { statSync } from 'node:fs'
import { type Server, type Socket, connect as netConnect, createServer } from 'node:net'
import { encodeOp, poolFlags } from '../../src/abi/codec.js'
import {
  EPERM,
  TMEM_AUTH,
  TMEM_CONTROL,
  TMEM_GET_PAGE,
  TMEM_NEW_POOL,
  TMEM_RESTORE_NEW,
  TMEMC_FREEZE,
  TMEMC_THAW,
} from '../../src/abi/constants.js'
import type { TmemOp } from '../../src/abi/types.js'
import { connect, type TmemClient } from '../../src/client/client.js'
import { connectControl, type TmemControlClient } from '../../src/client/control.js'
import { TmemConnectionError, TmemError } from '../../src/client/errors.js'
import { type DaemonHandle, startDaemon, TMEM_BIN, waitFor } from '../helpers/daemon.js'

function page(seed: number): Uint8Array {
  const bytes = new Uint8Array(4096)
  for (let i = 0; i < bytes.length; i++) bytes[i] = (seed * 131 + i * 7) & 0xff
  return bytes
}

function ctrl(subop: number, cliId: number): TmemOp {
  return {
    cmd: TMEM_CONTROL,
    poolId: 0,
    ctrl: { subop, cliId, arg1: 0, arg2: 0, oid: [0n, 0n, 0n], buf: 0n },
  }
}

interface ClientStatsLike {
  id: number
  frozen: boolean
  pools: { slot: number; pages: number; puts: number; foundGets: number }[]
}

async function clientStats(control: TmemControlClient, id: number): Promise<ClientStatsLike> {
  const stats = await control.stats()
  const host = stats.host as { clients: ClientStatsLike[] }
  const found = host.clients.find((client) => client.id === id)
  assert.ok(found, `client ${id} is in the engine stats`)
  return found
}

void describe('client library against a daemon', { timeout: 60_000 }, () => {
  let daemon: DaemonHandle
  let control: TmemControlClient

  before(async () => {
    daemon = await startDaemon({ args: ['--grace', '30s', '--metrics', '127.0.0.1:0'] })
    control = await connectControl({ path: daemon.controlPath }, { name: 'tests' })
  })
  after(async () => {
    await control.close()
    assert.equal(await daemon.stop(), 0, 'SIGTERM stops the daemon cleanly')
  })

  void test('pool API: put, get, miss, flush, destroy, typed errors and counters', async () => {
    const client = await connect({ path: daemon.socketPath }, { name: 'pool-api' })
    assert.ok(client.clientId >= 1)
    const pool = await client.newPool({ persistent: true })
    assert.equal(pool, 0)
    assert.equal(await client.get(pool, 1, 0), null, 'get on an empty pool is a miss (EEMPTY)')
    assert.equal(await client.put(pool, 1, 0, page(1)), true)
    assert.equal(await client.put(pool, 1, 1, page(2)), true)
    assert.equal(await client.put(pool, 2n, 0, page(3)), true)
    assert.deepEqual(await client.get(pool, 1, 0), page(1))
    assert.equal(await client.get(pool, 1, 9), null, 'a miss is a value')
    await client.flushPage(pool, 1, 0)
    assert.equal(await client.get(pool, 1, 0), null)
    await client.flushObject(pool, 1)
    assert.equal(await client.get(pool, 1, 1), null)
    assert.deepEqual(await client.get(pool, 2n, 0), page(3))
    await assert.rejects(client.get(9, 1, 0), (error: unknown) => {
      assert.ok(error instanceof TmemError)
      assert.equal(error.code, 'ENODEV')
      assert.equal(error.errno, -19)
      return true
    })
    const stats = await clientStats(control, client.clientId)
    const poolStats = stats.pools.find((p) => p.slot === pool)
    assert.equal(poolStats?.pages, 1)
    assert.equal(poolStats?.puts, 3)
    assert.equal(poolStats?.foundGets, 2)
    const list = await control.list(client.clientId, false)
    assert.match(list, new RegExp(`^C=CI:${client.clientId},`, 'm'))
    assert.match(list, new RegExp(`^P=CI:${client.clientId},PI:0,PT:PP`, 'm'))
    assert.equal(await client.destroyPool(pool), true)
    assert.equal(await client.destroyPool(pool), false)
    await client.close()
  })

  void test('frozen client: put rejects with EFROZEN, get still works', async () => {
    const client = await connect({ path: daemon.socketPath }, { name: 'frozen' })
    const pool = await client.newPool({ persistent: true })
    await client.put(pool, 5, 5, page(5))
    assert.equal((await control.control(ctrl(TMEMC_FREEZE, client.clientId))).rc, 0)
    await assert.rejects(client.put(pool, 5, 6, page(6)), { code: 'EFROZEN', errno: -1000 })
    assert.deepEqual(await client.get(pool, 5, 5), page(5))
    assert.equal((await control.control(ctrl(TMEMC_THAW, client.clientId))).rc, 0)
    assert.equal((await clientStats(control, client.clientId)).frozen, false)
    await client.close()
  })

  void test('pipelining: thousands of requests in flight', async () => {
    const client = await connect({ path: daemon.socketPath }, { name: 'pipeline' })
    const pool = await client.newPool({ persistent: true })
    const count = 3000
    const puts = []
    for (let i = 0; i < count; i++) puts.push(client.put(pool, i >> 4, i & 15, page(i)))
    assert.ok((await Promise.all(puts)).every((stored) => stored))
    const gets = []
    for (let i = 0; i < count; i++) gets.push(client.get(pool, i >> 4, i & 15))
    const pages = await Promise.all(gets)
    pages.forEach((bytes, i) => assert.deepEqual(bytes, page(i), `page ${i}`))
    const stats = await clientStats(control, client.clientId)
    assert.equal(stats.pools[0]?.pages, count)
    await client.close()
  })

  void test('raw op: the hypercall over the wire', async () => {
    const client = await connect({ path: daemon.socketPath }, { name: 'raw' })
    const newPool: TmemOp = {
      cmd: TMEM_NEW_POOL,
      poolId: 0,
      creat: { uuid: [0n, 0n], flags: poolFlags({ persistent: true }), arg1: 0 },
    }
    const created = await client.op(newPool)
    assert.deepEqual(created, { rc: 0, page: null })
    await client.put(0, 7, 7, page(7))
    const got = await client.op({
      cmd: TMEM_GET_PAGE,
      poolId: 0,
      gen: { oid: [7n, 0n, 0n], index: 7, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
    })
    assert.equal(got.rc, 1)
    assert.deepEqual(got.page, page(7))
    assert.equal(
      (
        await client.op({
          cmd: 77,
          poolId: 0,
          gen: { oid: [0n, 0n, 0n], index: 0, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
        })
      ).rc,
      -38,
      'unknown command: -ENOSYS',
    )
    await client.close()
  })

  void test('guest control attempts get -EPERM and change nothing', async () => {
    const victim = await connect({ path: daemon.socketPath }, { name: 'victim-ctl' })
    const client = await connect({ path: daemon.socketPath }, { name: 'attacker-ctl' })
    const freeze = ctrl(TMEMC_FREEZE, victim.clientId)
    assert.equal((await client.op(freeze)).rc, -EPERM)
    const auth: TmemOp = {
      cmd: TMEM_AUTH,
      poolId: 0,
      creat: { uuid: [1n, 2n], flags: 1, arg1: client.clientId },
    }
    assert.equal((await client.op(auth)).rc, -EPERM)
    const restore: TmemOp = {
      cmd: TMEM_RESTORE_NEW,
      poolId: 3,
      creat: { uuid: [0n, 0n], flags: poolFlags({ persistent: true }), arg1: victim.clientId },
    }
    assert.equal((await client.op(restore)).rc, -EPERM)
    const pool = await victim.newPool({ persistent: true })
    await victim.put(pool, 1, 1, page(1))
    assert.equal((await clientStats(control, victim.clientId)).frozen, false)
    // The attacker's pool 0 is its own: it does not exist, whatever the victim has.
    await assert.rejects(client.get(pool, 1, 1), { code: 'ENODEV' })
    await client.close()
    await victim.close()
  })

  void test('names: in use without the secret, wrong secret, resume with it', async () => {
    const first = await connect({ path: daemon.socketPath }, { name: 'named' })
    await assert.rejects(
      connect({ path: daemon.socketPath }, { name: 'named' }),
      (error: unknown) => {
        assert.ok(error instanceof TmemConnectionError)
        assert.equal(error.code, 'ENAMEINUSE')
        return true
      },
    )
    await assert.rejects(
      connect({ path: daemon.socketPath }, { name: 'named', secret: 'ab'.repeat(32) }),
      { code: 'EBADSECRET' },
    )
    await assert.rejects(
      connect({ path: daemon.socketPath }, { name: 'nobody', secret: 'ab'.repeat(32) }),
      { code: 'ESESSION' },
    )
    const pool = await first.newPool({ persistent: true })
    await first.put(pool, 3, 3, page(3))
    const secret = first.secret
    await first.disconnect()
    const again = await connect({ path: daemon.socketPath }, { name: 'named', secret })
    assert.equal(again.resumed, true)
    assert.equal(again.clientId, first.clientId)
    assert.deepEqual(await again.get(pool, 3, 3), page(3))
    await again.close()
  })

  void test('a client killed and reconnecting within grace finds its persistent pages', async () => {
    const script = `
      const { connect } = await import(${JSON.stringify(new URL('../../src/client/client.js', import.meta.url).href)})
      const c = await connect({ path: ${JSON.stringify(daemon.socketPath)} }, { name: 'killed' })
      const pool = await c.newPool({ persistent: true })
      for (let i = 0; i < 16; i++) await c.put(pool, 9, i, new Uint8Array(4096).fill(i + 1))
      process.stdout.write(JSON.stringify({ id: c.clientId, secret: c.secret, pool }) + '\\n')
      setInterval(() => {}, 1000)
    `
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const line = await new Promise<string>((resolve) => {
      let out = ''
      child.stdout.setEncoding('utf8').on('data', (text: string) => {
        out += text
        if (out.includes('\n')) resolve(out.split('\n')[0] ?? '')
      })
    })
    const { id, secret, pool } = JSON.parse(line) as { id: number; secret: string; pool: number }
    child.kill('SIGKILL')
    await new Promise((resolve) => child.once('exit', resolve))
    await waitFor(async () =>
      (await control.stats()).sessions.some((s) => s.id === id && !s.connected),
    )
    const back = await connect({ path: daemon.socketPath }, { name: 'killed', secret })
    assert.equal(back.clientId, id)
    assert.equal(back.resumed, true)
    for (let i = 0; i < 16; i++)
      assert.deepEqual(await back.get(pool, 9, i), new Uint8Array(4096).fill(i + 1))
    await back.close()
    const stats = await control.stats()
    assert.ok(!stats.sessions.some((s) => s.id === id), 'goodbye released the client')
  })

  void test('transparent reconnect: a dropped connection resumes and replays idempotent requests', async () => {
    // A loopback proxy in front of the daemon lets the test cut the connection.
    const live = new Set<Socket>()
    const proxy: Server = createServer((inbound) => {
      const outbound = netConnect({ path: daemon.socketPath })
      live.add(inbound)
      inbound.pipe(outbound).pipe(inbound)
      const drop = (): void => {
        inbound.destroy()
        outbound.destroy()
        live.delete(inbound)
      }
      inbound.on('close', drop).on('error', drop)
      outbound.on('close', drop).on('error', drop)
    })
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
    const address = proxy.address()
    const port = typeof address === 'object' && address !== null ? address.port : 0
    const client: TmemClient = await connect({ host: '127.0.0.1', port }, { name: 'flaky' })
    let reconnects = 0
    client.on('reconnect', () => reconnects++)
    const pool = await client.newPool({ persistent: true })
    await client.put(pool, 1, 1, page(11))
    for (const socket of live) socket.destroy()
    const results = await Promise.all([client.put(pool, 1, 2, page(12)), client.get(pool, 1, 1)])
    assert.equal(results[0], true)
    assert.deepEqual(results[1], page(11))
    assert.equal(reconnects, 1)
    assert.deepEqual(await client.get(pool, 1, 2), page(12))
    await client.close()
    await new Promise<void>((resolve) => proxy.close(() => resolve()))
  })

  void test('metrics: LIST counters per client and pool, daemon counters', async () => {
    const client = await connect({ path: daemon.socketPath }, { name: 'metered' })
    const pool = await client.newPool({ persistent: true })
    await client.put(pool, 1, 1, page(1))
    const response = await fetch(`http://127.0.0.1:${daemon.metricsPort}/metrics`)
    const text = await response.text()
    const labels = `client="${client.clientId}",name="metered",pool="${pool}"`
    assert.match(text, new RegExp(`^tmem_pool_puts\\{${labels}\\} 1$`, 'm'))
    assert.match(text, new RegExp(`^tmem_pool_pages\\{${labels}\\} 1$`, 'm'))
    assert.match(text, /^tmem_daemon_frames_rejected \d+$/m)
    assert.match(text, /^tmem_daemon_frames_rejected_by_reason\{reason="bad_magic"\} \d+$/m)
    assert.match(text, /^tmem_total_ops \d+$/m)
    // The shared-memory section of STATS, flattened like the rest (issue 12).
    assert.match(text, /^tmem_daemon_shm_available [01]$/m)
    for (const name of ['regions', 'ops_served', 'kicks_sent', 'kicks_received', 'ring_full'])
      assert.match(text, new RegExp(`^tmem_daemon_shm_${name} \\d+$`, 'm'))
    await client.close()
  })

  void test('the control socket is mode 0600; the client socket is not world-accessible', () => {
    assert.equal(statSync(daemon.controlPath).mode & 0o777, 0o600)
    assert.equal(statSync(daemon.socketPath).mode & 0o007, 0)
  })
})

void describe('ABI versions', { timeout: 30_000 }, () => {
  void test('v0 without --accept-v0: readable reason, logged, NEW_POOL is -EPERM', async () => {
    const daemon = await startDaemon()
    try {
      const client = await connect({ path: daemon.socketPath }, { name: 'old', abi: 0 })
      assert.equal(client.abiRefused, true)
      assert.match(client.notice, /--accept-v0/)
      await assert.rejects(client.newPool({ persistent: true }), { code: 'EPERM', errno: -1 })
      await client.close()
      assert.ok(
        daemon.logs().some((line) => String(line['msg']).includes('v0')),
        'the log says it',
      )
    } finally {
      await daemon.stop()
    }
  })

  void test('v0 with --accept-v0 is served side by side with v1', async () => {
    const daemon = await startDaemon({ args: ['--accept-v0'] })
    try {
      const old = await connect({ path: daemon.socketPath }, { name: 'old', abi: 0 })
      const current = await connect({ path: daemon.socketPath }, { name: 'new' })
      assert.equal(old.abiRefused, false)
      const oldPool = await old.newPool({ persistent: true })
      const newPool = await current.newPool({ persistent: true })
      await old.put(oldPool, 0x1234567890n, 1, page(1))
      await current.put(newPool, 1n << 100n, 1, page(2))
      assert.deepEqual(await old.get(oldPool, 0x1234567890n, 1), page(1))
      assert.deepEqual(await current.get(newPool, 1n << 100n, 1), page(2))
      // The wire carries the 40-byte v0 struct on that connection.
      assert.equal(
        encodeOp(
          {
            cmd: TMEM_GET_PAGE,
            poolId: 0,
            gen: { oid: [1n, 0n, 0n], index: 0, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
          },
          0,
        ).length,
        40,
      )
      await old.close()
      await current.close()
    } finally {
      await daemon.stop()
    }
  })
})

void describe('TCP endpoints and grace expiry', { timeout: 30_000 }, () => {
  void test('loopback TCP for clients and control; the token file is 0600 and required', async () => {
    const daemon = await startDaemon({
      args: ['--listen', '127.0.0.1:0', '--control-listen', '127.0.0.1:0', '--grace', '100ms'],
    })
    try {
      assert.ok(
        daemon.tcpPort !== null && daemon.controlTcpPort !== null && daemon.tokenFile !== null,
      )
      assert.equal(statSync(daemon.tokenFile).mode & 0o777, 0o600)
      const client = await connect({ host: '127.0.0.1', port: daemon.tcpPort }, { name: 'tcp' })
      const pool = await client.newPool({})
      await client.put(pool, 1, 1, page(1))
      const control = await connectControl({
        host: '127.0.0.1',
        port: daemon.controlTcpPort,
        tokenFile: daemon.tokenFile,
      })
      assert.match(await control.list(), /^G=/)
      await assert.rejects(
        connectControl({ host: '127.0.0.1', port: daemon.controlTcpPort, token: 'wrong' }),
        { code: 'EBADTOKEN' },
      )
      // Grace expiry destroys the client as a dead domain.
      const id = client.clientId
      await client.disconnect()
      await waitFor(async () => (await control.stats()).daemon['sessionsExpired'] === 1)
      const host = (await control.stats()).host as { clients: { id: number }[] }
      assert.ok(!host.clients.some((c) => c.id === id), 'the engine client is gone')
      await control.close()
    } finally {
      await daemon.stop()
    }
  })

  void test('usage errors exit 2: bad size, non-loopback address', async () => {
    for (const args of [
      ['--memory', 'lots'],
      ['--listen', '0.0.0.0:7300'],
    ]) {
      const child = spawn(process.execPath, [TMEM_BIN, 'daemon', '--socket', 'none', ...args], {
        stdio: 'ignore',
      })
      const code = await new Promise((resolve) => child.once('exit', resolve))
      assert.equal(code, 2, args.join(' '))
    }
  })
})
