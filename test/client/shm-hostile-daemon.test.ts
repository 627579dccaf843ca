/**
 * The client's end of a region (`ShmChannel`, `attachSharedMemory`) against a hostile or
 * broken daemon: the test plays the daemon, writing the completion ring of a plain buffer
 * (and, for the attach, handing out a file of its choosing). The client must never hang,
 * never trust a ring after the daemon broke it, and never map a file whose size the daemon
 * could still change (a truncated mapping is a SIGBUS, fatal to the client's process).
 *
 * "Concurrently" is made deterministic: the daemon's writes happen inside the client's own
 * callbacks (the breach report, a waiter), which run between its reads of the ring, exactly
 * where another process could write.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { closeSync, ftruncateSync, openSync, rmSync } from 'node:fs'
import { encodeOp } from '../../src/abi/codec.js'
import { TMEM_FLUSH_PAGE } from '../../src/abi/constants.js'
import { ShmChannel, type ShmWaiter } from '../../src/client/shm-channel.js'
import { attachSharedMemory } from '../../src/client/shm-attach.js'
import { FRAME_HEADER_BYTES } from '../../src/protocol/frame.js'
import { HELLO_FLAG_SHM, SHM_ATTACH, SHM_DETACH, SHM_MAPPED } from '../../src/protocol/shm-frame.js'
import { shmGeometry, writeShmHeader } from '../../src/protocol/shm-region.js'
import { shmViews } from '../../src/protocol/shm-ring.js'
import { shmNative } from '../../src/util/shm-native.js'

// Offsets typed from docs/protocol.md ("Region layout"), not imported.
const CQ_TAIL = 192

function setU32(bytes: Uint8Array, at: number, value: number): void {
  for (let i = 0; i < 4; i++) bytes[at + i] = (value >>> (8 * i)) & 0xff
}

function u32(bytes: Uint8Array, at: number): number {
  return (
    (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0
  )
}

interface Setup {
  bytes: Uint8Array
  channel: ShmChannel
  cqOffset: number
  cqEntries: number
  breaches: string[]
  /** The daemon's next completion slot (its private tail). */
  tail: number
  onBreach: (() => void) | null
}

function setup(): Setup {
  const geometry = shmGeometry(1, 8, 8, 2)
  const bytes = new Uint8Array(geometry.regionBytes)
  writeShmHeader(bytes, geometry)
  const s: Setup = {
    bytes,
    channel: null as unknown as ShmChannel,
    cqOffset: geometry.cqOffset,
    cqEntries: geometry.cqEntries,
    breaches: [],
    tail: 0,
    onBreach: null,
  }
  s.channel = new ShmChannel(
    shmViews(bytes.buffer, geometry.regionBytes),
    geometry,
    () => {},
    (why) => {
      s.breaches.push(why)
      s.onBreach?.()
    },
  )
  return s
}

/** The daemon posts one completion and publishes its tail. */
function post(s: Setup, requestId: number, rc: number): void {
  const at = s.cqOffset + (s.tail % s.cqEntries) * 8
  setU32(s.bytes, at, requestId)
  setU32(s.bytes, at + 4, rc >>> 0)
  s.tail = (s.tail + 1) >>> 0
  setU32(s.bytes, CQ_TAIL, s.tail)
}

/** Submits one flush (no frame); returns whether it went in and what its waiter heard. */
function submitFlush(s: Setup): { submitted: boolean; done: number[]; failed: number } {
  const heard = { submitted: false, done: [] as number[], failed: 0 }
  const waiter: ShmWaiter = {
    shmDone: (_tag, rc) => heard.done.push(rc),
    shmFailed: () => heard.failed++,
  }
  const op = encodeOp(
    {
      cmd: TMEM_FLUSH_PAGE,
      poolId: 0,
      gen: { oid: [1n, 0n, 0n], index: 0, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
    },
    1,
  )
  heard.submitted = s.channel.trySubmit(op, 0, null, 0, false, waiter, 0)
  return heard
}

/** The request id the client wrote into submission slot `n` (docs: u32 at 56 of the entry). */
function submittedId(s: Setup, n: number): number {
  return u32(s.bytes, 4096 + (n % 8) * 64 + 56)
}

void test('a daemon that keeps posting bad completions cannot hold the detaching client', () => {
  const s = setup()
  assert.ok(submitFlush(s).submitted)
  // The daemon posts a completion for no op in flight, and after each breach it sees, one
  // more: as a process writing the ring while the client drains it on detach would.
  let posted = 0
  const LIMIT = 10_000
  s.onBreach = () => {
    if (posted++ < LIMIT) post(s, 0xdead_beef, 0)
  }
  post(s, 0xdead_beef, 0)
  const { orphans, pumps } = s.channel.detach()
  assert.ok(posted < LIMIT, `the client read ${posted} completions after the ring broke`)
  assert.equal(s.breaches.length, 1, 'one breach reported')
  assert.equal(orphans.length, 1, 'the op in flight goes back to the caller for the socket')
  assert.equal(pumps.length, 0)
})

void test('after a bad completion the client trusts nothing more in the ring', async () => {
  const s = setup()
  const heard = submitFlush(s)
  assert.ok(heard.submitted)
  const id = submittedId(s, 0)
  // A completion for no op in flight, then one that names the op: the ring is broken at the
  // first, so the second is not believed; the op is handed back on detach instead. Both are
  // posted before the client's next turn, which its submit scheduled for the next immediate.
  post(s, (id + 1) >>> 0, 0)
  post(s, id, 1)
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(s.breaches.length, 1)
  assert.deepEqual(heard.done, [], 'no completion read after the breach')
  // Submissions stop too: new ops wait, and go to the socket when the channel is detached.
  assert.equal(submitFlush(s).submitted, false)
  const { orphans } = s.channel.detach()
  assert.equal(orphans.length, 1)
})

void test('a completion naming the slot of an op in flight with another generation is refused', async () => {
  const s = setup()
  const heard = submitFlush(s)
  assert.ok(heard.submitted)
  const id = submittedId(s, 0)
  // Same slot (the low 12 bits, docs: "a slot number and a generation"), next generation.
  post(s, (id + (1 << 12)) >>> 0, 1)
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(s.breaches.length, 1)
  assert.deepEqual(heard.done, [])
  assert.equal(s.channel.detach().orphans.length, 1)
})

void test('waiting for the ops in flight ends on their completion, or on detach', async () => {
  const s = setup()
  const heard = submitFlush(s)
  assert.ok(heard.submitted)
  let idle = false
  void s.channel.whenIdle().then(() => (idle = true))
  // The daemon answers nothing for a while: the wait goes on (and costs no polling).
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
  assert.equal(idle, false)
  post(s, submittedId(s, 0), 0)
  s.channel.kicked()
  await s.channel.whenIdle()
  assert.deepEqual(heard.done, [0])
  await Promise.resolve()
  assert.equal(idle, true)
  // A daemon that never answers: detach ends the wait (the op goes back for the socket).
  assert.ok(submitFlush(s).submitted)
  const stuck = s.channel.whenIdle()
  assert.equal(s.channel.detach().orphans.length, 1)
  await stuck
})

const status = shmNative()
const skip = !status.available && process.env['CI'] === undefined ? status.reason : false

void test(
  'the client refuses a region whose size the daemon could still change (SIGBUS)',
  { skip },
  async () => {
    const native = status.native!
    const geometry = shmGeometry(1, 8, 8, 2)
    // A hostile daemon hands out a plain /dev/shm file, not a sealed memfd: it could truncate
    // it under the client's mapping, and the client's next touch of it would be a SIGBUS.
    const path = `/dev/shm/tmem-test-unsealed-${process.pid}`
    const fd = openSync(path, 'wx+', 0o600)
    const asked: number[] = []
    try {
      ftruncateSync(fd, geometry.regionBytes)
      const buffer = native.map(fd, geometry.regionBytes)
      writeShmHeader(new Uint8Array(buffer), geometry)
      native.unmap(buffer)
      const result = await attachSharedMemory(
        {
          helloFlags: () => HELLO_FLAG_SHM,
          ask: (frame, _replayable, decode) => {
            const cmd = frame[FRAME_HEADER_BYTES]!
            asked.push(cmd)
            const reply = new Uint8Array(12)
            if (cmd === SHM_ATTACH) {
              setU32(reply, 4, process.pid)
              setU32(reply, 8, fd)
            }
            return Promise.resolve(decode({ bytes: reply, payloadOffset: 0, payloadBytes: 12 }))
          },
        },
        1,
        { entries: 8, frames: 2 },
        () => {},
        () => {},
      )
      assert.equal(result.channel, null, 'no channel over an unsealed file')
      assert.match(result.reason, /seal/)
      assert.deepEqual(asked, [SHM_ATTACH, SHM_DETACH], 'the client gave the region back')
      assert.ok(!asked.includes(SHM_MAPPED))
    } finally {
      closeSync(fd)
      rmSync(path, { force: true })
    }
  },
)
