/**
 * The cells of the ABI version matrix (docs/abi-versions.md) that no other test covered:
 * an ABI version the host does not speak, a v0 image restored on a host that accepts v0, the
 * live save of a v0 client, a HELLO naming ABI 2, and a v1 client moved from a host that
 * accepts v0 to one that does not. The oracles are the rules of docs/semantics.md ("ABI
 * versions", "Decision: v0 clients", "Decision: save stream fixes"), numbers typed from the
 * spec tables, and byte counts of the stream computed from its record sizes.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from '../../src/client/mod.js'
import type { Host, TmemOp } from '../../src/index.js'
import {
  hostChannel,
  inspectSaveStream,
  memorySink,
  migrateClient,
  restoreClient,
  saveClient,
  saveInvalidations,
} from '../../src/migrate/mod.js'
import { runTmem } from '../helpers/cli.js'
import { startDaemon } from '../helpers/daemon.js'
import { NaiveBytes } from '../helpers/naive-bytes.js'
import { CMD, ctrl, F, Guest, gen, newHost, page } from './helpers.js'
import { HANG_GUARD_MS, daemonPair, page as livePage } from './live-helpers.js'

const EPERM = -1
const EINVAL = -22
const SAVE_GET_CLIENT_WEIGHT = 13
const END = 0xffffffff

/** A v0 op of client `id` (40-byte layout, chosen by the version argument). */
function v0op(host: Host, id: number, op: TmemOp, data: Uint8Array | null = null): number {
  return host.op(id, op, data, 0)
}

/** A v0 stream (8-byte OIDs): one private persistent pool in slot 1 with one page. */
function v0Stream(): Uint8Array {
  const b = new NaiveBytes()
  b.at(0).s32le(-5).at(4).u32le(0).at(8).u32le(16).at(12).u32le(END)
  b.at(16).u32le(0).at(20).u32le(0).at(24).u32le(0).at(28).u32le(END)
  b.at(32).u32le(1).at(36).u32le(0x00000001).at(40).u32le(1).at(44).u64le(0n).at(52).u64le(0n)
  b.at(60)
    .u64le(0x42n)
    .at(68)
    .u32le(3)
    .at(72)
    .raw(...page(9))
  b.at(4168).u32le(END)
  return b.done(4172)
}

void describe('ABI version matrix: engine and streams', () => {
  void test('an ABI version the host does not speak (2) is -EINVAL and creates no client, with or without acceptV0', () => {
    for (const acceptV0 of [false, true]) {
      const host = newHost({ acceptV0 })
      const op = {
        cmd: CMD.NEW_POOL,
        poolId: 0,
        creat: { uuid: [0n, 0n] as [bigint, bigint], flags: F.PRIVATE_PERS, arg1: 0 },
      }
      assert.equal(host.op(5, op, null, 2 as 0 | 1), EINVAL)
      assert.equal(host.control(ctrl(SAVE_GET_CLIENT_WEIGHT, 5)), -1, 'no client 5')
      assert.equal(host.stats().clients.length, 0)
    }
  })

  void test('a v0 image restored on an acceptV0 host is upgraded: the client speaks v1', async () => {
    const host = newHost({ acceptV0: true })
    const result = await restoreClient(hostChannel(host), 4, v0Stream())
    assert.equal(result.streamVersion, 0)
    assert.equal(host.stats().clients.find((c) => c.id === 4)?.abi, 1)
    const guest = new Guest(host, 4)
    assert.deepEqual(guest.get(1, [0x42n, 0n, 0n], 3), page(9))
    // The client keeps the version it has: a v0 op on it is -EINVAL, not served.
    assert.equal(v0op(host, 4, gen(CMD.GET, 1, [0x42n, 0n, 0n], 3), new Uint8Array(4096)), EINVAL)
    // Its pool flags carry version 1 now, as a v1 stream would write them.
    assert.equal(host.control(ctrl(16, 4, 1)), F.PRIVATE_PERS)
  })

  void test('a v1 image restored on an acceptV0 host gives a v1 client', async () => {
    const source = newHost()
    const guest = new Guest(source, 6)
    assert.equal(guest.newPool(F.PRIVATE_PERS), 0)
    assert.equal(guest.put(0, [1n, 2n, 3n], 4, page(4)), 1)
    const memory = memorySink()
    await saveClient(hostChannel(source), 6, memory.sink)
    const target = newHost({ acceptV0: true })
    const result = await restoreClient(hostChannel(target), 6, memory.bytes())
    assert.equal(result.streamVersion, 1)
    assert.equal(target.stats().clients.find((c) => c.id === 6)?.abi, 1)
    assert.deepEqual(new Guest(target, 6).get(0, [1n, 2n, 3n], 4), page(4))
  })

  void test('a v0 client saved live from an acceptV0 host: a v1 stream with 32-byte invalidations, restored on a default host', async () => {
    const source = newHost({ acceptV0: true })
    assert.equal(
      v0op(source, 3, {
        cmd: CMD.NEW_POOL,
        poolId: 0,
        creat: { uuid: [0n, 0n], flags: 0x00000001, arg1: 0 },
      }),
      0,
    )
    for (let i = 0; i < 4; i++)
      assert.equal(v0op(source, 3, gen(CMD.PUT, 0, [0x77n, 0n, 0n], i), page(i)), 1)
    // A v0 client still sends v0 flags: version 1 is refused for it (a v0 hypervisor did so).
    assert.equal(
      v0op(source, 3, {
        cmd: CMD.NEW_POOL,
        poolId: 0,
        creat: { uuid: [0n, 0n], flags: F.PRIVATE_PERS, arg1: 0 },
      }),
      EPERM,
    )
    const memory = memorySink()
    const saved = await saveClient(hostChannel(source), 3, memory.sink, { live: true })
    assert.equal(saved.live, true)
    // The guest flushes a page that was already sent: it must stay gone on the target.
    assert.equal(v0op(source, 3, gen(CMD.FLUSH_PAGE, 0, [0x77n, 0n, 0n], 2)), -1000)
    const extra = await saveInvalidations(hostChannel(source), 3, memory.sink)
    assert.equal(extra.invalidations, 1)
    const bytes = memory.bytes()
    // The -6 section: marker (4), one v1 invalidation record (4 + 24 + 4), end (4).
    assert.equal(bytes.length - saved.bytes, 4 + 32 + 4)
    const summary = await inspectSaveStream(bytes, { requireInvalidations: true })
    assert.equal(summary.header.version, 1)
    assert.equal(summary.pools[0]!.flags, F.PRIVATE_PERS)

    const target = newHost()
    await restoreClient(hostChannel(target), 3, bytes, { requireInvalidations: true })
    const guest = new Guest(target, 3)
    for (const i of [0, 1, 3]) assert.deepEqual(guest.get(0, [0x77n, 0n, 0n], i), page(i))
    assert.equal(guest.get(0, [0x77n, 0n, 0n], 2), null)
    assert.equal(target.stats().clients.find((c) => c.id === 3)?.abi, 1)
  })
})

/** Sends a HELLO naming `abi` (built by hand from docs/protocol.md) and returns the reply status. */
async function helloStatus(path: string, abi: number): Promise<{ kind: number; status: number }> {
  const payload = new NaiveBytes()
    .at(0)
    .raw(abi, 0, 0, 0)
    .at(4)
    .u32le(0)
    .at(8)
    .raw(...new Uint8Array(32))
    .done(40)
  const frame = new NaiveBytes()
    .at(0)
    .raw(0x54, 0x4d, 0x45, 0x4d)
    .at(4)
    .raw(1, 0x01, 0, 0)
    .at(8)
    .u32le(7)
    .at(12)
    .u32le(40)
    .at(16)
    .raw(...payload)
    .done(56)
  const socket = createConnection(path)
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  socket.write(frame)
  // The daemon answers and then closes: the close is the event that the reply is complete.
  await new Promise<void>((resolve, reject) =>
    socket.once('close', () => resolve()).once('error', reject),
  )
  const reply = Buffer.concat(chunks)
  return { kind: reply[5]!, status: reply[16]! }
}

void describe('ABI version matrix: daemons', { timeout: HANG_GUARD_MS }, () => {
  void test('a HELLO naming ABI 2 is refused with BAD_ABI, also by a daemon that accepts v0', async () => {
    const daemon = await startDaemon({ args: ['--accept-v0'] })
    try {
      assert.deepEqual(await helloStatus(daemon.socketPath, 2), { kind: 0x81, status: 1 })
      assert.deepEqual(await helloStatus(daemon.socketPath, 0xff), { kind: 0x81, status: 1 })
    } finally {
      await daemon.stop()
    }
  })

  void test('a v1 client moves from a daemon that accepts v0 to one that does not, and back', async () => {
    const [plain, both] = await daemonPair({}, { args: ['--accept-v0'] })
    try {
      const client = await connect({ path: both.socketPath }, { name: 'modern' })
      const pool = await client.newPool({ persistent: true })
      for (let i = 0; i < 10; i++) await client.put(pool, 1n << 80n, i, livePage(i))
      const result = await migrateClient({
        source: { path: both.controlPath },
        target: { path: plain.controlPath },
        client: 'modern',
      })
      assert.equal(result.abi, 1)
      assert.equal(client.address, `unix:${plain.socketPath}`)
      for (let i = 0; i < 10; i++)
        assert.deepEqual(await client.get(pool, 1n << 80n, i), livePage(i))
      // And back, to the daemon that accepts v0: still a v1 client.
      const back = await migrateClient({
        source: { path: plain.controlPath },
        target: { path: both.controlPath },
        client: 'modern',
      })
      assert.equal(back.abi, 1)
      assert.equal(client.address, `unix:${both.socketPath}`)
      for (let i = 0; i < 10; i++)
        assert.deepEqual(await client.get(pool, 1n << 80n, i), livePage(i))
      await client.close()
    } finally {
      await Promise.all([both.stop(), plain.stop()])
    }
  })

  void test('a v0 client saved to a file comes back as a v1 client: its v0 hello is refused, a v1 one resumes it', async () => {
    const [source, target] = await daemonPair({ args: ['--accept-v0'] })
    const dir = mkdtempSync(join(tmpdir(), 'tmem-abi-'))
    try {
      const old = await connect({ path: source.socketPath }, { name: 'old-guest', abi: 0 })
      const pool = await old.newPool({ persistent: true })
      for (let i = 0; i < 5; i++) await old.put(pool, 0x5150n, i, livePage(i))
      const file = join(dir, 'old.tmem')
      const saved = await runTmem(['save', 'old-guest', file], {
        controlPath: source.controlPath,
        killAfterMs: HANG_GUARD_MS,
      })
      assert.equal(saved.code, 0, saved.stderr)
      const restored = await runTmem(['restore', 'old-copy', file], {
        controlPath: target.controlPath,
        killAfterMs: HANG_GUARD_MS,
      })
      assert.equal(restored.code, 0, restored.stderr)
      assert.match(restored.stdout, /from a v1 stream/)
      const secret = /^secret: ([0-9a-f]{64})$/m.exec(restored.stdout)?.[1]
      assert.ok(secret, restored.stdout)
      // The image is v1 (docs/semantics.md "Decision: save stream fixes"), so is the client.
      await assert.rejects(
        connect({ path: target.socketPath }, { name: 'old-copy', secret, abi: 0 }),
        { code: 'EABI' },
      )
      const copy = await connect({ path: target.socketPath }, { name: 'old-copy', secret })
      assert.equal(copy.resumed, true)
      for (let i = 0; i < 5; i++) assert.deepEqual(await copy.get(pool, 0x5150n, i), livePage(i))
      await copy.close()
      await old.close()
    } finally {
      rmSync(dir, { recursive: true, force: true })
      await Promise.all([source.stop(), target.stop()])
    }
  })
})
