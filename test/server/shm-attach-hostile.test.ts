/**
 * Two clients' regions on one engine (`ShmAttachment`s over real memfd mappings): a hostile
 * client puts its region into crafted states between the daemon's turns, an honest one works
 * beside it. Each case asserts what docs/protocol.md ("Shared memory") promises: the hostile
 * client gets an error rc or its region is reported broken, the daemon neither throws nor
 * spins, and the other client's pages stay what it put.
 *
 * Turns are driven one at a time (`serve.turn()`, or a kick when the case is about kicks), so
 * every crafted state lands exactly between two turns; no timing is involved.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { closeSync, openSync } from 'node:fs'
import { encodeOp, poolFlags } from '../../src/abi/codec.js'
import { TMEM_GET_PAGE, TMEM_NEW_POOL, TMEM_PUT_PAGE } from '../../src/abi/constants.js'
import type { TmemOp } from '../../src/abi/types.js'
import { Host } from '../../src/engine/host.js'
import { SHM_ATTACH } from '../../src/protocol/shm-frame.js'
import { RING_BROKEN } from '../../src/protocol/shm-ring.js'
import { ShmAttachment, ShmBudget } from '../../src/server/shm-attach.js'
import { shmNative } from '../../src/util/shm-native.js'

const status = shmNative()
const skip = !status.available && process.env['CI'] === undefined ? status.reason : false

// Layout typed from docs/protocol.md, not imported: header words, a 4096-byte header page,
// 64-byte submissions, 8-byte completions, frames after the rings on a page boundary.
const SQ_TAIL = 64
const SQ_HEAD = 128
const CQ_TAIL = 192
const CQ_HEAD = 256
const CLIENT_SLEEPING = 384
const EFAULT = 14

function u32(bytes: Uint8Array, at: number): number {
  return (
    (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0
  )
}

function setU32(bytes: Uint8Array, at: number, value: number): void {
  for (let i = 0; i < 4; i++) bytes[at + i] = (value >>> (8 * i)) & 0xff
}

function page(seed: number): Uint8Array {
  const bytes = new Uint8Array(4096)
  for (let i = 0; i < 4096; i++) bytes[i] = (seed * 29 + i * 13 + (i >> 9)) & 0xff
  return bytes
}

/** A client's region as the client maps it, written by hand. 8-entry rings, 4 frames. */
class Region {
  readonly attachment: ShmAttachment
  readonly bytes: Uint8Array
  readonly sqOffset = 4096
  readonly cqOffset = 4096 + 64 * 8
  readonly framesOffset = 8192
  kicks = 0
  broken = ''
  #tail = 0
  #head = 0
  #nextId = 1

  constructor(host: Host, budget: ShmBudget, clientId: number) {
    const made = ShmAttachment.create(
      status.native!,
      budget,
      host,
      {
        clientId: () => clientId,
        abiVersion: 1,
        kickClient: () => this.kicks++,
        broken: (why) => {
          this.broken = why
        },
      },
      { cmd: SHM_ATTACH, sqEntries: 8, cqEntries: 8, frameCount: 4 },
    )
    assert.ok(made instanceof ShmAttachment)
    this.attachment = made
    const fd = openSync(`/proc/self/fd/${made.fd}`, 'r+')
    this.bytes = new Uint8Array(status.native!.map(fd, made.geometry.regionBytes))
    closeSync(fd)
    made.mapped()
    assert.equal(this.framesOffset, made.geometry.framesOffset, 'the layout the docs give')
  }

  frame(n: number): Uint8Array {
    return this.bytes.subarray(this.framesOffset + n * 4096, this.framesOffset + (n + 1) * 4096)
  }

  /** Writes an op with `cmfn` into the next submission slot and publishes the tail. */
  submit(op: TmemOp, cmfn: number): number {
    const at = this.sqOffset + (this.#tail % 8) * 64
    this.bytes.fill(0, at, at + 64)
    this.bytes.set(encodeOp(op, 1), at)
    setU32(this.bytes, at + 48, cmfn)
    const id = this.#nextId++
    setU32(this.bytes, at + 56, id)
    this.#tail = (this.#tail + 1) >>> 0
    setU32(this.bytes, SQ_TAIL, this.#tail)
    return id
  }

  /** Reads every completion posted since the last call: [request id, rc] pairs. */
  reap(): [number, number][] {
    const out: [number, number][] = []
    const tail = u32(this.bytes, CQ_TAIL)
    while (this.#head !== tail) {
      const at = this.cqOffset + (this.#head % 8) * 8
      out.push([u32(this.bytes, at), u32(this.bytes, at + 4) | 0])
      this.#head = (this.#head + 1) >>> 0
    }
    setU32(this.bytes, CQ_HEAD, this.#head)
    return out
  }

  /** One op through one daemon turn; its rc. */
  run(op: TmemOp, cmfn: number): number {
    const id = this.submit(op, cmfn)
    assert.equal(this.attachment.serve.turn(), 1)
    const [done] = this.reap()
    assert.equal(done?.[0], id)
    return done[1]
  }
}

function gen(cmd: number, poolId: number, index: number): TmemOp {
  return {
    cmd,
    poolId,
    gen: { oid: [5n, 0n, 0n], index, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
  }
}

function newPool(region: Region): number {
  const flags = poolFlags({ persistent: true, version: 1 })
  const pool = region.run(
    { cmd: TMEM_NEW_POOL, poolId: 0, creat: { uuid: [0n, 0n], flags, arg1: 0 } },
    0,
  )
  assert.ok(pool >= 0)
  return pool
}

/** The honest client puts pages 0..3 and checks them back through its own frames. */
function honest(host: Host, budget: ShmBudget): { region: Region; check: () => void } {
  const region = new Region(host, budget, 2)
  const pool = newPool(region)
  for (let i = 0; i < 4; i++) {
    region.frame(i).set(page(100 + i))
    assert.equal(region.run(gen(TMEM_PUT_PAGE, pool, i), i), 1)
  }
  const check = (): void => {
    for (let i = 0; i < 4; i++) {
      region.frame(0).fill(0)
      assert.equal(region.run(gen(TMEM_GET_PAGE, pool, i), 0), 1)
      assert.deepEqual(region.frame(0), page(100 + i), `honest page ${i} intact`)
    }
  }
  return { region, check }
}

void test(
  "a header rewritten after attach moves nothing: frames are checked against the daemon's geometry",
  { skip },
  () => {
    const host = new Host({ pages: 64 })
    const budget = new ShmBudget()
    const victim = honest(host, budget)
    const hostile = new Region(host, budget, 1)
    const pool = newPool(hostile)
    // The client claims a bigger region: most frames, largest rings, frames at offset 0.
    setU32(hostile.bytes, 12, 4096)
    setU32(hostile.bytes, 16, 4096)
    setU32(hostile.bytes, 20, 16384)
    setU32(hostile.bytes, 32, 0)
    setU32(hostile.bytes, 36, 0xffff_f000)
    hostile.bytes.fill(0xff, 0, 4)
    // Frame 1000 exists in the claim only: -EFAULT. Frame 3 exists: it is the real frame 3.
    assert.equal(hostile.run(gen(TMEM_PUT_PAGE, pool, 1), 1000), -EFAULT)
    hostile.frame(3).set(page(7))
    assert.equal(hostile.run(gen(TMEM_PUT_PAGE, pool, 1), 3), 1)
    hostile.frame(2).fill(0)
    assert.equal(hostile.run(gen(TMEM_GET_PAGE, pool, 1), 2), 1)
    assert.deepEqual(hostile.frame(2), page(7), 'the page came from and went to real frames')
    assert.equal(hostile.broken, '')
    victim.check()
    hostile.attachment.close()
    victim.region.attachment.close()
    assert.equal(budget.used, 0)
  },
)

void test(
  'impossible cursors break only the hostile region; the other keeps being served',
  { skip },
  () => {
    const host = new Host({ pages: 64 })
    const budget = new ShmBudget()
    const victim = honest(host, budget)
    const cases: [word: number, value: number][] = [
      [SQ_TAIL, 0xffff_ffff], // 2^32 - 1 entries queued in an 8-entry ring
      [SQ_TAIL, 9], // one more than the ring holds
      [CQ_HEAD, 1], // the client says it read a completion never posted
      [CQ_HEAD, 0x8000_0000],
    ]
    for (const [word, value] of cases) {
      const hostile = new Region(host, budget, 1)
      setU32(hostile.bytes, word, value)
      assert.equal(hostile.attachment.serve.turn(), RING_BROKEN, `word ${word} = ${value}`)
      // Through the poller, as a kick would run it: the region is reported broken.
      hostile.attachment.kicked()
      assert.match(hostile.broken, /impossible cursors/)
      // The daemon's own words are its private counts, whatever the client wrote over them.
      setU32(hostile.bytes, SQ_HEAD, 5)
      hostile.attachment.close()
      victim.check()
    }
    victim.region.attachment.close()
    assert.equal(budget.used, 0)
  },
)

void test(
  'a client that never reads completions is served no further and costs one turn per kick',
  { skip },
  async () => {
    const host = new Host({ pages: 64 })
    const budget = new ShmBudget()
    const victim = honest(host, budget)
    const hostile = new Region(host, budget, 1)
    const pool = newPool(hostile)
    // Fill the completion ring (8) without reading it, then queue 8 more submissions.
    for (let i = 0; i < 8; i++) hostile.submit(gen(TMEM_GET_PAGE, pool, i), i % 4)
    assert.equal(hostile.attachment.serve.turn(), 8)
    for (let i = 0; i < 8; i++) hostile.submit(gen(TMEM_GET_PAGE, pool, i), i % 4)
    const ops = hostile.attachment.serve.counters.ops
    const full = hostile.attachment.serve.counters.ringFull
    // A storm of kicks: each runs one empty turn and the daemon goes back to sleep.
    for (let i = 0; i < 100; i++) hostile.attachment.kicked()
    for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve))
    assert.equal(hostile.attachment.serve.counters.ops, ops, 'nothing more was run')
    assert.equal(
      hostile.attachment.serve.counters.ringFull - full,
      100,
      'one turn per kick, no spin',
    )
    assert.equal(hostile.broken, '')
    victim.check()
    // Odd doorbell values: the daemon kicks a sleeping client only when its flag is exactly 1,
    // and clears only that; any other value costs the client its kicks, nobody else anything.
    const attachment = hostile.attachment
    for (const flag of [3, 2, 0xffff_ffff, 1]) {
      hostile.reap() // room for the 8 queued submissions
      setU32(hostile.bytes, CLIENT_SLEEPING, flag)
      const kicks = hostile.kicks
      const sleeps = attachment.sleeps
      attachment.kicked() // the daemon sleeps: the kick runs its turn now
      assert.equal(hostile.reap().length, 8)
      assert.equal(u32(hostile.bytes, CLIENT_SLEEPING), flag === 1 ? 0 : flag)
      assert.equal(hostile.kicks - kicks, flag === 1 ? 1 : 0, `flag ${flag}`)
      // Wait (on the event, not a clock) for the daemon to go back to sleep, then queue more.
      while (attachment.sleeps === sleeps) await new Promise((resolve) => setImmediate(resolve))
      for (let i = 0; i < 8; i++) hostile.submit(gen(TMEM_GET_PAGE, pool, i), i % 4)
    }
    victim.check()
    hostile.attachment.close()
    victim.region.attachment.close()
  },
)
