/**
 * Hostile input against a running daemon process, time-boxed: random bytes, frames split at
 * every byte offset, truncated and oversized frames, bad headers, unknown kinds and commands,
 * bad pool ids, guest attempts at control, and a client killed mid-frame. Throughout, a victim
 * client stays connected with persistent pages. Afterwards the daemon is still up, the victim's
 * pages are unchanged, and every malformed frame was counted under its reason.
 *
 * Random input is seeded; the seed is printed on failure and TMEM_SEED=<n> replays it.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { connect as netConnect } from 'node:net'
import { encodeOp } from '../../src/abi/codec.js'
import {
  EPERM,
  ENODEV,
  ENOSYS,
  TMEM_CONTROL,
  TMEM_GET_PAGE,
  TMEM_PUT_PAGE,
  TMEMC_FREEZE,
} from '../../src/abi/constants.js'
import type { TmemOp } from '../../src/abi/types.js'
import { connect, type TmemClient } from '../../src/client/client.js'
import { connectControl, type TmemControlClient } from '../../src/client/control.js'
import type { DaemonStats } from '../../src/protocol/stats.js'
import {
  FrameReader,
  FrameRules,
  KIND_CONTROL,
  KIND_CONTROL_REPLY,
  KIND_ERROR,
  KIND_HELLO_REPLY,
  KIND_OP,
  KIND_OP_REPLY,
  KIND_STATS,
  KIND_STATS_REPLY,
  readI32LE,
  readU32LE,
  writeFrameHeader,
} from '../../src/protocol/frame.js'
import { encodeHello } from '../../src/protocol/hello.js'
import { type DaemonHandle, startDaemon, waitFor } from '../helpers/daemon.js'
import { xorshift32 } from '../helpers/prng.js'

const SEED = Number(process.env['TMEM_SEED'] ?? Date.now() % 0x7fffffff)

function frame(kind: number, requestId: number, payload: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(16 + payload.length)
  writeFrameHeader(bytes, 0, kind, requestId, payload.length)
  bytes.set(payload, 16)
  return bytes
}

function genOp(cmd: number, poolId: number, index: number): TmemOp {
  return {
    cmd,
    poolId,
    gen: { oid: [1n, 0n, 0n], index, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
  }
}

function opFrame(requestId: number, op: TmemOp, page?: Uint8Array): Uint8Array {
  const bytes = encodeOp(op, 1)
  const payload = new Uint8Array(bytes.length + (page?.length ?? 0))
  payload.set(bytes)
  if (page !== undefined) payload.set(page, bytes.length)
  return frame(KIND_OP, requestId, payload)
}

function hello(): Uint8Array {
  return encodeHello(0, { abiVersion: 1, name: '', secret: null, token: '' })
}

interface Reply {
  kind: number
  requestId: number
  rc: number
  payloadBytes: number
}

/** Parses what the daemon sent: replies, and the ERROR frame's reason if one came. */
function parseReplies(received: Uint8Array): { replies: Reply[]; errorReason: number | null } {
  const rules = new FrameRules()
    .allow(KIND_HELLO_REPLY, 0, 1024)
    .allow(KIND_OP_REPLY, 4, 4100)
    .allow(KIND_CONTROL_REPLY, 4, 4100)
    .allow(KIND_STATS_REPLY, 4, 4100)
    .allow(KIND_ERROR, 4, 1024)
  const reader = new FrameReader(rules)
  reader.push(received)
  const replies: Reply[] = []
  let errorReason: number | null = null
  while (reader.next()) {
    if (reader.kind === KIND_ERROR) errorReason = readU32LE(reader.bytes, reader.payloadOffset)
    else if (reader.kind !== KIND_HELLO_REPLY) {
      replies.push({
        kind: reader.kind,
        requestId: reader.requestId,
        rc: readI32LE(reader.bytes, reader.payloadOffset),
        payloadBytes: reader.payloadBytes,
      })
    }
  }
  assert.equal(reader.error, 0, 'the daemon only sends well-formed frames')
  return { replies, errorReason }
}

/**
 * Opens a raw connection, writes the chunks (yielding to the event loop between them), then
 * either ends it or waits for `replyCount` replies; resolves with everything received once the
 * socket is closed.
 */
function rawSession(path: string, chunks: Uint8Array[], replyCount?: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const socket = netConnect({ path })
    const received: Buffer[] = []
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk)
      if (
        replyCount !== undefined &&
        parseReplies(Buffer.concat(received)).replies.length >= replyCount
      ) {
        socket.end()
      }
    })
    socket.on('error', () => {
      // A reset after the daemon closed: what was received is what counts.
    })
    socket.on('close', () => resolve(Buffer.concat(received)))
    socket.once('connect', () => {
      void (async () => {
        for (const chunk of chunks) {
          socket.write(chunk)
          await new Promise((done) => setImmediate(done))
        }
        if (replyCount === undefined) socket.end()
      })().catch(reject)
    })
  })
}

void describe(`hostile input (seed ${SEED})`, { timeout: 60_000 }, () => {
  let daemon: DaemonHandle
  let control: TmemControlClient
  let victim: TmemClient
  let victimPool = 0
  let baseline: DaemonStats
  const expected: Record<string, number> = {}
  const expectReject = (reason: string): void => {
    expected[reason] = (expected[reason] ?? 0) + 1
  }
  const victimPage = (i: number): Uint8Array => new Uint8Array(4096).fill((i * 37 + 1) & 0xff)

  before(async () => {
    daemon = await startDaemon({ args: ['--log-level', 'error'] })
    control = await connectControl({ path: daemon.controlPath })
    victim = await connect({ path: daemon.socketPath }, { name: 'victim' })
    victimPool = await victim.newPool({ persistent: true })
    for (let i = 0; i < 32; i++) await victim.put(victimPool, 5, i, victimPage(i))
    baseline = await control.stats()
  })

  after(async () => {
    await victim.close()
    await control.close()
    await daemon.stop()
  })

  void test('random bytes: each connection closed, each counted once', async () => {
    const random = xorshift32(SEED)
    for (let round = 0; round < 40; round++) {
      const length = 1 + Math.floor(random() * 300)
      const bytes = new Uint8Array(length)
      for (let i = 0; i < length; i++) bytes[i] = Math.floor(random() * 256)
      bytes[0] = 0x00 // never the magic's first byte
      const afterHello = round % 2 === 1
      const chunks = afterHello ? [hello(), bytes] : [bytes]
      const received = await rawSession(daemon.socketPath, chunks)
      const { errorReason } = parseReplies(received)
      if (length >= 16) {
        assert.equal(errorReason, 1, `round ${round}: bad magic reported in an ERROR frame`)
        expectReject('bad_magic')
      } else {
        expectReject('truncated')
      }
    }
  })

  void test('frames split at every byte offset get correct replies', async () => {
    const get = (id: number): Uint8Array => opFrame(id, genOp(TMEM_GET_PAGE, 0, 0))
    const chunks: Uint8Array[] = [hello()]
    const sample = get(0)
    let count = 0
    for (let split = 0; split <= sample.length; split++) {
      const bytes = get(++count)
      chunks.push(bytes.subarray(0, split), bytes.subarray(split))
    }
    const page = new Uint8Array(4096).fill(0x5a)
    const put = opFrame(0, genOp(TMEM_PUT_PAGE, 0, 1), page)
    for (let split = 0; split <= put.length; split += split < 80 ? 1 : 61) {
      const bytes = put.slice()
      bytes.set([++count & 0xff, (count >> 8) & 0xff], 8)
      chunks.push(bytes.subarray(0, split), bytes.subarray(split))
    }
    const { replies, errorReason } = parseReplies(
      await rawSession(daemon.socketPath, chunks, count),
    )
    assert.equal(errorReason, null)
    assert.equal(replies.length, count)
    replies.forEach((reply, i) => {
      assert.equal(reply.requestId, i + 1, 'replies come in order with their request ids')
      assert.equal(reply.kind, KIND_OP_REPLY)
      assert.equal(reply.rc, -ENODEV, 'this fresh client has no pool 0')
    })
  })

  const malformed: {
    name: string
    reason: string
    reasonCode: number
    bytes: () => Uint8Array[]
  }[] = [
    {
      name: 'oversized length',
      reason: 'bad_length',
      reasonCode: 5,
      bytes: () => {
        const header = frame(KIND_OP, 1, new Uint8Array(0))
        header.set([0xf0, 0xff, 0xff, 0xff], 12)
        return [hello(), header]
      },
    },
    {
      name: 'unknown kind',
      reason: 'unknown_kind',
      reasonCode: 4,
      bytes: () => [hello(), frame(0x42, 1, new Uint8Array(4))],
    },
    {
      name: 'bad version',
      reason: 'bad_version',
      reasonCode: 2,
      bytes: () => {
        const bad = frame(KIND_OP, 1, new Uint8Array(56))
        bad[4] = 9
        return [hello(), bad]
      },
    },
    {
      name: 'reserved flags',
      reason: 'bad_flags',
      reasonCode: 3,
      bytes: () => {
        const bad = frame(KIND_OP, 1, new Uint8Array(56))
        bad[7] = 1
        return [hello(), bad]
      },
    },
    {
      name: 'op before hello',
      reason: 'hello_expected',
      reasonCode: 6,
      bytes: () => [opFrame(1, genOp(TMEM_GET_PAGE, 0, 0))],
    },
    {
      name: 'second hello',
      reason: 'hello_repeated',
      reasonCode: 7,
      bytes: () => [hello(), hello()],
    },
    {
      name: 'malformed hello',
      reason: 'bad_hello',
      reasonCode: 8,
      bytes: () => {
        const bad = hello().slice()
        bad[16 + 1] = 7
        return [bad]
      },
    },
    {
      name: 'op of the wrong size',
      reason: 'bad_op_size',
      reasonCode: 9,
      bytes: () => [hello(), frame(KIND_OP, 1, new Uint8Array(57))],
    },
  ]
  for (const { name, reason, reasonCode, bytes } of malformed) {
    void test(`${name}: closed with an ERROR frame naming it`, async () => {
      const { errorReason } = parseReplies(await rawSession(daemon.socketPath, bytes()))
      assert.equal(errorReason, reasonCode)
      expectReject(reason)
    })
  }

  void test('truncated frame, and a client killed mid-frame', async () => {
    const put = opFrame(1, genOp(TMEM_PUT_PAGE, 0, 0), new Uint8Array(4096))
    await rawSession(daemon.socketPath, [hello(), put.subarray(0, 2000)])
    expectReject('truncated')
    const script = `
      const net = await import('node:net')
      const s = net.connect(${JSON.stringify(daemon.socketPath)})
      s.on('connect', () => s.write(Buffer.from(${JSON.stringify(Buffer.concat([hello(), put.subarray(0, 1000)]).toString('base64'))}, 'base64'), () => process.kill(process.pid, 'SIGKILL')))
    `
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: 'ignore',
    })
    const signal = await new Promise((resolve) => child.once('exit', (_code, sig) => resolve(sig)))
    assert.equal(signal, 'SIGKILL')
    expectReject('truncated')
  })

  void test('well-formed ops with bad arguments get the engine error code; no reject', async () => {
    const ops = [
      opFrame(1, genOp(77, 0, 0)),
      opFrame(2, genOp(TMEM_GET_PAGE, 16, 0)),
      opFrame(3, genOp(TMEM_GET_PAGE, -1, 0)),
      opFrame(4, genOp(TMEM_PUT_PAGE, 1000, 0), new Uint8Array(4096)),
      opFrame(5, {
        cmd: TMEM_CONTROL,
        poolId: 0,
        ctrl: {
          subop: TMEMC_FREEZE,
          cliId: victim.clientId,
          arg1: 0,
          arg2: 0,
          oid: [0n, 0n, 0n],
          buf: 0n,
        },
      }),
      frame(KIND_CONTROL, 6, new Uint8Array(60)),
      frame(KIND_STATS, 7, new Uint8Array(0)),
    ]
    const { replies, errorReason } = parseReplies(
      await rawSession(daemon.socketPath, [hello(), ...ops], ops.length),
    )
    assert.equal(errorReason, null)
    assert.deepEqual(
      replies.map((r) => r.rc),
      [-ENOSYS, -ENODEV, -ENODEV, -ENODEV, -EPERM, -EPERM, -EPERM],
    )
    assert.deepEqual(
      replies.map((r) => r.kind),
      [
        KIND_OP_REPLY,
        KIND_OP_REPLY,
        KIND_OP_REPLY,
        KIND_OP_REPLY,
        KIND_OP_REPLY,
        KIND_CONTROL_REPLY,
        KIND_STATS_REPLY,
      ],
    )
  })

  void test('afterwards: the daemon is up, the victim unchanged, every reject counted', async () => {
    assert.equal(daemon.process.exitCode, null)
    assert.equal(daemon.process.signalCode, null)
    for (let i = 0; i < 32; i++) {
      assert.deepEqual(await victim.get(victimPool, 5, i), victimPage(i), `victim page ${i}`)
    }
    // A reject is counted when the daemon sees the socket close, which may trail the client's.
    const expectedTotal = Object.values(expected).reduce((sum, n) => sum + n, 0)
    await waitFor(
      async () =>
        (await control.stats()).daemon.framesRejected - baseline.daemon.framesRejected >=
        expectedTotal,
    )
    const stats = await control.stats()
    const host = stats.host as { clients: { id: number; frozen: boolean }[] }
    assert.equal(host.clients.find((c) => c.id === victim.clientId)?.frozen, false)
    const before = baseline.daemon.framesRejectedByReason
    const now = stats.daemon.framesRejectedByReason
    let total = 0
    for (const reason of Object.keys(now)) {
      const delta = (now[reason] ?? 0) - (before[reason] ?? 0)
      assert.equal(delta, expected[reason] ?? 0, `rejects for ${reason} (seed ${SEED})`)
      total += delta
    }
    assert.equal(stats.daemon.framesRejected - baseline.daemon.framesRejected, total)
    assert.equal(total, expectedTotal)
    assert.ok(total >= 50)
  })
})
