/**
 * The client library over shared memory against a real daemon process (docs/protocol.md,
 * "Shared memory"): ops and batches against a Map model, the socket left idle while they run,
 * the fallback when shared memory is off; then the hostile cases: a client that scribbles
 * random bytes over its live region and rings the doorbell while the daemon serves it, and a
 * client killed with SIGKILL in the middle of a batch. In both a victim client keeps its
 * pages, and the daemon keeps serving.
 *
 * Skipped where the native addon is not built (the loader's reason is printed), except under
 * CI, whose `npm ci` builds it. Random choices are seeded; TMEM_SEED=<n> replays them.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { closeSync, openSync } from 'node:fs'
import { connect as netConnect, type Socket } from 'node:net'
import { connect, type TmemClient } from '../../src/client/client.js'
import { connectControl, type TmemControlClient } from '../../src/client/control.js'
import type { DaemonSection } from '../../src/protocol/stats.js'
import {
  FRAME_HEADER_BYTES,
  FrameReader,
  FrameRules,
  KIND_ERROR,
  KIND_HELLO_REPLY,
  readI32LE,
  readU32LE,
  writeFrameHeader,
} from '../../src/protocol/frame.js'
import { decodeHelloReply, encodeHello } from '../../src/protocol/hello.js'
import {
  HELLO_FLAG_SHM,
  KIND_SHM,
  KIND_SHM_KICK,
  KIND_SHM_KICK_NOTICE,
  KIND_SHM_REPLY,
} from '../../src/protocol/shm-frame.js'
import { shmNative } from '../../src/util/shm-native.js'
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js'
import { killShmClientMidBatch } from '../helpers/doomed-client.js'

const status = shmNative()
const skip = !status.available && process.env['CI'] === undefined ? status.reason : false
const SEED = Number(process.env['TMEM_SEED'] ?? Date.now() % 0x7fffffff)
/** Bits in the second and third oid words. */
const WIDE = (0x5an << 64n) | (0xa5n << 128n)

function prng(seed: number): (n: number) => number {
  let state = seed >>> 0 || 1
  return (n) => {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    return (state >>> 0) % n
  }
}

function page(seed: number): Uint8Array {
  const bytes = new Uint8Array(4096)
  for (let i = 0; i < 4096; i++) bytes[i] = (seed * 131 + i * 7 + (i >> 9)) & 0xff
  bytes[0] = seed & 0xff
  bytes[1] = (seed >> 8) & 0xff
  return bytes
}

/** A client that speaks the setup frames by hand, then does whatever the test likes. */
async function rawShmClient(
  path: string,
): Promise<{ socket: Socket; region: Uint8Array; frames: Uint8Array[]; close(): void }> {
  const socket = netConnect({ path })
  await new Promise((resolve) => socket.once('connect', resolve))
  const rules = new FrameRules()
    .allow(KIND_HELLO_REPLY, 0, 1024)
    .allow(KIND_SHM_REPLY, 12, 12)
    .allow(KIND_SHM_KICK_NOTICE, 0, 0)
    .allow(KIND_ERROR, 4, 1024)
  const reader = new FrameReader(rules)
  const frames: Uint8Array[] = []
  const waiters: (() => void)[] = []
  socket.on('data', (chunk: Buffer) => {
    reader.push(chunk)
    while (reader.next()) {
      frames.push(
        reader.bytes.slice(reader.frameOffset, reader.payloadOffset + reader.payloadBytes),
      )
      waiters.shift()?.()
    }
  })
  socket.on('error', () => {})
  const next = (): Promise<Uint8Array> =>
    new Promise((resolve) => {
      const take = (): void => resolve(frames.shift()!)
      if (frames.length > 0) take()
      else waiters.push(take)
    })
  socket.write(encodeHello(0, { abiVersion: 1, name: 'scribbler', secret: null, token: '' }))
  const hello = await next()
  const reply = decodeHelloReply(hello, FRAME_HEADER_BYTES, hello.length - FRAME_HEADER_BYTES)
  assert.ok(
    reply !== null && (reply.flags & HELLO_FLAG_SHM) !== 0,
    'the daemon offers shared memory',
  )
  const shm = (cmd: number, sq: number, cq: number, count: number): Uint8Array => {
    const frame = new Uint8Array(FRAME_HEADER_BYTES + 16)
    writeFrameHeader(frame, 0, KIND_SHM, 7, 16)
    frame[FRAME_HEADER_BYTES] = cmd
    new DataView(frame.buffer).setUint32(FRAME_HEADER_BYTES + 4, sq, true)
    new DataView(frame.buffer).setUint32(FRAME_HEADER_BYTES + 8, cq, true)
    new DataView(frame.buffer).setUint32(FRAME_HEADER_BYTES + 12, count, true)
    return frame
  }
  socket.write(shm(1, 16, 16, 8))
  const attach = await next()
  assert.equal(readI32LE(attach, FRAME_HEADER_BYTES), 0)
  const pid = readU32LE(attach, FRAME_HEADER_BYTES + 4)
  const fd = readU32LE(attach, FRAME_HEADER_BYTES + 8)
  const file = openSync(`/proc/${pid}/fd/${fd}`, 'r+')
  // 4096 header + 16 x 64 + 16 x 8 rings (one page) + 8 frames.
  const buffer = status.native!.map(file, 4096 * 10)
  closeSync(file)
  socket.write(shm(2, 0, 0, 0))
  assert.equal(readI32LE(await next(), FRAME_HEADER_BYTES), 0)
  return { socket, region: new Uint8Array(buffer), frames, close: () => socket.destroy() }
}

void describe(`client over shared memory (seed ${SEED})`, { skip, timeout: 120_000 }, () => {
  let daemon: DaemonHandle
  let control: TmemControlClient
  let victim: TmemClient
  let victimPool = 0

  before(async () => {
    daemon = await startDaemon({ args: ['--log-level', 'error'] })
    control = await connectControl({ path: daemon.controlPath })
    victim = await connect({ path: daemon.socketPath }, { name: 'victim' })
    assert.deepEqual(
      { ...victim.sharedMemory, counters: null },
      { active: true, reason: '', counters: null },
    )
    victimPool = await victim.newPool({ persistent: true })
    await victim.putMany(
      victimPool,
      Array.from({ length: 64 }, (_, i) => ({ oid: 9n, index: i, page: page(5000 + i) })),
    )
  })

  after(async () => {
    await victim.close()
    await control.close()
    await daemon.stop()
  })

  const victimIntact = async (): Promise<void> => {
    const pages = await victim.getMany(
      victimPool,
      Array.from({ length: 64 }, (_, i) => ({ oid: 9n, index: i })),
    )
    pages.forEach((bytes, i) => assert.deepEqual(bytes, page(5000 + i), `victim page ${i}`))
  }

  void test('single ops and batches match a Map model, and the socket carries none of them', async () => {
    const random = prng(SEED)
    const client = await connect(
      { path: daemon.socketPath },
      { name: 'model', sharedMemory: { entries: 32, frames: 16 } },
    )
    assert.equal(client.sharedMemory.active, true)
    const pool = await client.newPool({ persistent: true })
    const before = (await control.stats()).daemon.opsExecuted
    const model = new Map<string, number>()
    let ops = 0
    for (let round = 0; round < 30; round++) {
      const waits: Promise<void>[] = []
      for (let i = 0; i < 40; i++, ops++) {
        // Some oids fill all three words, some (numbers) only the first: an op must not keep
        // the words of the op written before it (the client reuses one scratch).
        const oid = random(3) === 0 ? BigInt(random(4)) | WIDE : random(4)
        const index = random(40)
        const key = `${oid}:${index}`
        const choice = random(4)
        if (choice === 0) {
          const value = random(60000)
          model.set(key, value)
          waits.push(
            client.put(pool, oid, index, page(value)).then((stored) => assert.equal(stored, true)),
          )
        } else if (choice === 1) {
          const expected = model.get(key)
          waits.push(
            client.get(pool, oid, index).then((bytes) => {
              assert.deepEqual(bytes, expected === undefined ? null : page(expected), `get ${key}`)
            }),
          )
        } else if (choice === 2) {
          model.delete(key)
          waits.push(client.flushPage(pool, oid, index))
        } else {
          const keys = Array.from({ length: 1 + random(50) }, () => ({
            oid: random(3) === 0 ? BigInt(random(4)) | WIDE : random(4),
            index: random(40),
          }))
          const expected = keys.map((k) => model.get(`${k.oid}:${k.index}`))
          waits.push(
            client.getMany(pool, keys).then((pages) => {
              pages.forEach((bytes, j) =>
                assert.deepEqual(
                  bytes,
                  expected[j] === undefined ? null : page(expected[j]),
                  `getMany ${j}`,
                ),
              )
            }),
          )
        }
      }
      if (round % 5 === 4) {
        const entries = Array.from({ length: 100 }, (_, j) => ({
          oid: 3n,
          index: j,
          page: page(round * 1000 + j),
        }))
        for (const e of entries) model.set(`3:${e.index}`, round * 1000 + e.index)
        waits.push(client.putMany(pool, entries).then((stored) => assert.ok(stored.every(Boolean))))
      }
      await Promise.all(waits)
    }
    await assert.rejects(client.put(pool + 5, 1n, 1, page(1)), { code: 'ENODEV' })
    const after = (await control.stats()).daemon.opsExecuted
    assert.ok(after - before < 5, `${after - before} ops went over the socket, of ${ops}`)
    await client.close()
  })

  void test('STATS counts regions and ring ops, past regions too; the client counts its own', async () => {
    const shmStats = async (): Promise<NonNullable<DaemonSection['shm']>> => {
      const section = (await control.stats()).daemon.shm
      assert.ok(section !== undefined, 'STATS has daemon.shm')
      return section
    }
    const before = await shmStats()
    assert.equal(before.available, true)
    const client = await connect({ path: daemon.socketPath }, { name: 'counted' })
    const pool = await client.newPool({ persistent: true })
    const entries = Array.from({ length: 20 }, (_, i) => ({ oid: 4n, index: i, page: page(i) }))
    await client.putMany(pool, entries)
    const kicksBefore = client.sharedMemory.counters.kicksSent
    for (let i = 0; i < 10; i++) assert.deepEqual(await client.get(pool, 4n, i), page(i))
    // One op at a time: at most one kick per op (the publish that found the daemon asleep),
    // never one more for reading its completion.
    assert.ok(client.sharedMemory.counters.kicksSent - kicksBefore <= 10)
    // 1 new pool + 20 puts + 10 gets, every one through the ring.
    // (Regions of clients closed by the tests before may still be going away: `regions` is
    // not compared with `before`, the cumulative counters are.)
    const during = await shmStats()
    assert.ok(during.regions >= 2 && during.bytesMapped > 0, 'the victim and this client')
    assert.equal(during.regionsAttached, before.regionsAttached + 1)
    assert.equal(during.opsServed - before.opsServed, 31)
    assert.equal(during.opsRefused, before.opsRefused)
    assert.equal(client.sharedMemory.counters.ops, 31)
    // A kick notice may still be on its way to the client when STATS is read.
    assert.ok(client.sharedMemory.counters.kicksReceived <= during.kicksSent - before.kicksSent)
    await client.close()
    const closed = await shmStats()
    assert.equal(closed.opsServed - before.opsServed, 31, 'a closed region still counts')
  })

  void test('sharedMemory: false keeps the client on the socket', async () => {
    const client = await connect(
      { path: daemon.socketPath },
      { name: 'plain', sharedMemory: false },
    )
    assert.equal(client.sharedMemory.active, false)
    const pool = await client.newPool()
    assert.equal(await client.put(pool, 1n, 1, page(1)), true)
    assert.deepEqual(await client.putMany(pool, [{ oid: 1n, index: 2, page: page(2) }]), [true])
    assert.deepEqual(
      await client.getMany(pool, [
        { oid: 1n, index: 1 },
        { oid: 1n, index: 2 },
      ]),
      [page(1), page(2)],
    )
    await client.close()
  })

  void test('a client scribbling over its live region harms nobody else', async () => {
    const random = prng(SEED ^ 0x5a5a)
    const raw = await rawShmClient(daemon.socketPath)
    const kick = new Uint8Array(FRAME_HEADER_BYTES)
    writeFrameHeader(kick, 0, KIND_SHM_KICK, 0, 0)
    let alive = true
    raw.socket.on('close', () => {
      alive = false
    })
    for (let round = 0; round < 300 && alive; round++) {
      // Random bytes anywhere in the header, the rings or the frames, often the cursors.
      const at = random(2) === 0 ? 64 * (1 + random(6)) : random(raw.region.length - 64)
      for (let i = 0; i < 1 + random(64); i++) raw.region[at + i] = random(256)
      raw.socket.write(kick)
      if (round % 20 === 0) await victimIntact()
      await new Promise((resolve) => setImmediate(resolve))
    }
    raw.close()
    await victimIntact()
    assert.equal(await victim.put(victimPool, 9n, 100, page(100)), true)
    assert.equal(daemon.process.exitCode, null, 'the daemon is still running')
  })

  void test('a client killed with SIGKILL mid-batch harms only itself', async () => {
    const out = await killShmClientMidBatch(daemon.socketPath)
    assert.match(out, /^ready \d+ true\n/)
    await victimIntact()
    // The region's budget came back: a new client attaches and works.
    const next = await connect({ path: daemon.socketPath }, { name: 'after-kill' })
    assert.equal(next.sharedMemory.active, true)
    const pool = await next.newPool()
    assert.equal(await next.put(pool, 1n, 1, page(7)), true)
    assert.deepEqual(await next.get(pool, 1n, 1), page(7))
    await next.close()
    assert.equal(daemon.process.exitCode, null, 'the daemon is still running')
  })
})

void test(
  'a v0 client uses a region too: 40-byte ops, the cmfn at offset 32',
  { skip, timeout: 60_000 },
  async () => {
    const daemon = await startDaemon({ args: ['--log-level', 'error', '--accept-v0'] })
    try {
      const client = await connect({ path: daemon.socketPath }, { name: 'old-guest', abi: 0 })
      assert.deepEqual(
        { ...client.sharedMemory, counters: null },
        { active: true, reason: '', counters: null },
      )
      const pool = await client.newPool({ persistent: true })
      assert.deepEqual(
        await client.putMany(
          pool,
          [1, 2, 3].map((i) => ({ oid: 7n, index: i, page: page(i) })),
        ),
        [true, true, true],
      )
      assert.deepEqual(await client.get(pool, 7n, 2), page(2))
      assert.deepEqual(
        await client.getMany(pool, [
          { oid: 7n, index: 3 },
          { oid: 7n, index: 4 },
        ]),
        [page(3), null],
      )
      await client.close()
    } finally {
      await daemon.stop()
    }
  },
)
