/**
 * A client channel and the daemon's region attachment over a real shared mapping, in one
 * process and without sockets: the daemon side maps the memfd it made, the client side maps
 * it again through /proc/self/fd (a second, distinct mapping, as another process would), and
 * the doorbells call each other. Ops are checked against a Map model of a persistent pool;
 * rings are small, so ops queue behind full rings and frames. Then the region's limits.
 *
 * Skipped where the native addon is not built (the loader's reason is printed), except under
 * CI, whose `npm ci` builds it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { openSync, closeSync } from 'node:fs'
import { encodeOp, poolFlags } from '../../src/abi/codec.js'
import {
  EINVAL,
  ENOSPC,
  TMEM_FLUSH_PAGE,
  TMEM_GET_PAGE,
  TMEM_NEW_POOL,
  TMEM_PUT_PAGE,
} from '../../src/abi/constants.js'
import type { TmemOp } from '../../src/abi/types.js'
import { Host } from '../../src/engine/host.js'
import { ShmChannel, type ShmPump, type ShmWaiter } from '../../src/client/shm-channel.js'
import { checkShmHeader, shmGeometry } from '../../src/protocol/shm-region.js'
import { shmViews } from '../../src/protocol/shm-ring.js'
import { SHM_ATTACH } from '../../src/protocol/shm-frame.js'
import { ShmAttachment, ShmBudget, type ShmOwner } from '../../src/server/shm-attach.js'
import type { HostLike } from '../../src/server/host-like.js'
import { type DeferredReply, OP_DEFERRED } from '../../src/protocol/deferred.js'
import { shmNative } from '../../src/util/shm-native.js'

const status = shmNative()
const skip = !status.available && process.env['CI'] === undefined ? status.reason : false

function genOp(cmd: number, poolId: number, oid: bigint, index: number): TmemOp {
  return {
    cmd,
    poolId,
    gen: { oid: [oid, 0n, 0n], index, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
  }
}

function page(seed: number): Uint8Array {
  const bytes = new Uint8Array(4096)
  for (let i = 0; i < 4096; i++) bytes[i] = (seed * 31 + i * 7 + (i >> 8)) & 0xff
  return bytes
}

interface Pair {
  host: Host
  channel: ShmChannel
  attachment: ShmAttachment
  budget: ShmBudget
  run: (op: TmemOp, put: Uint8Array | null) => Promise<{ rc: number; page: Uint8Array | null }>
}

/** What a test may put around the engine: a host that defers ops, and how replies come. */
interface Around {
  wrap: (host: Host) => HostLike
  defer: NonNullable<ShmOwner['defer']>
}

function pair(sizes: { sq: number; cq: number; frames: number }, around?: Around): Pair {
  const native = status.native!
  const host = new Host({ pages: 256 })
  const clientId = 1
  let channel: ShmChannel | null = null
  let broken = ''
  const owner: ShmOwner = {
    clientId: () => clientId,
    abiVersion: 1,
    kickClient: () => setImmediate(() => channel?.kicked()),
    broken: (why) => {
      broken = why
    },
    ...(around === undefined ? {} : { defer: around.defer }),
  }
  const budget = new ShmBudget()
  const served = around === undefined ? host : around.wrap(host)
  const made = ShmAttachment.create(native, budget, served, owner, {
    cmd: SHM_ATTACH,
    sqEntries: sizes.sq,
    cqEntries: sizes.cq,
    frameCount: sizes.frames,
  })
  assert.ok(
    made instanceof ShmAttachment,
    `attach failed: rc ${typeof made === 'number' ? made : 0}`,
  )
  const attachment = made
  const geometry = shmGeometry(1, sizes.sq, sizes.cq, sizes.frames)
  const fd = openSync(`/proc/self/fd/${attachment.fd}`, 'r+')
  const buffer = native.map(fd, geometry.regionBytes)
  closeSync(fd)
  attachment.mapped()
  const views = shmViews(buffer, geometry.regionBytes)
  assert.equal(checkShmHeader(views.bytes, geometry), null)
  const made2 = new ShmChannel(
    views,
    geometry,
    () => setImmediate(() => attachment.kicked()),
    (why) => {
      broken = why
    },
  )
  channel = made2
  const scratch = new Uint8Array(64)
  const run = (
    op: TmemOp,
    put: Uint8Array | null,
  ): Promise<{ rc: number; page: Uint8Array | null }> =>
    new Promise((resolve) => {
      assert.equal(broken, '')
      const waiter: ShmWaiter = {
        shmDone: (_tag, rc, bytes, pageAt) =>
          resolve({
            rc,
            page:
              pageAt >= 0 && rc === 1 && op.cmd === TMEM_GET_PAGE
                ? bytes.slice(pageAt, pageAt + 4096)
                : null,
          }),
        shmFailed: (_tag, error) => {
          throw error
        },
      }
      const needsFrame = op.cmd === TMEM_PUT_PAGE || op.cmd === TMEM_GET_PAGE
      scratch.set(encodeOp(op, 1))
      if (made2.trySubmit(scratch, 0, put, 0, needsFrame, waiter, 0)) return
      const copy = scratch.slice()
      const pump: ShmPump = {
        pump: (ch) => ch.submitNow(copy, 0, put, 0, needsFrame, waiter, 0),
        drain: () => {},
      }
      made2.enqueue(pump)
    })
  return { host, channel: made2, attachment, budget, run }
}

/** A new persistent pool through the region; its id (a failure fails the test). */
async function persistentPool(run: Pair['run']): Promise<number> {
  const flags = poolFlags({ persistent: true, version: 1 })
  const created = await run(
    { cmd: TMEM_NEW_POOL, poolId: 0, creat: { uuid: [0n, 0n], flags, arg1: 0 } },
    null,
  )
  assert.ok(created.rc >= 0, `new pool rc ${created.rc}`)
  return created.rc
}

void test(
  'ops through a shared region match a Map model of a persistent pool',
  { skip },
  async () => {
    const { channel, attachment, budget, run } = pair({ sq: 8, cq: 8, frames: 4 })
    const pool = await persistentPool(run)
    const model = new Map<string, number>()
    let seed = 12345
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0
      return (seed >>> 8) % n
    }
    for (let round = 0; round < 20; round++) {
      // Many ops at once: more than the rings and frames hold, so they queue and keep order.
      const waits: Promise<void>[] = []
      for (let i = 0; i < 30; i++) {
        const oid = BigInt(random(5))
        const index = random(6)
        const key = `${oid}:${index}`
        const kind = random(3)
        if (kind === 0) {
          const value = random(1000)
          model.set(key, value)
          waits.push(
            run(genOp(TMEM_PUT_PAGE, pool, oid, index), page(value)).then(({ rc }) =>
              assert.equal(rc, 1),
            ),
          )
        } else if (kind === 1) {
          const expected = model.get(key)
          waits.push(
            run(genOp(TMEM_GET_PAGE, pool, oid, index), null).then(({ rc, page: got }) => {
              if (expected === undefined) assert.equal(rc, 0, `get ${key} should miss`)
              else {
                assert.equal(rc, 1, `get ${key} should hit`)
                assert.deepEqual(got, page(expected))
              }
            }),
          )
        } else {
          model.delete(key)
          waits.push(run(genOp(TMEM_FLUSH_PAGE, pool, oid, index), null).then(() => {}))
        }
      }
      await Promise.all(waits)
      assert.equal(channel.inFlight, 0)
    }
    assert.equal(attachment.serve.counters.badFrame, 0)
    assert.ok(attachment.serve.counters.ops > 500)
    attachment.close()
    assert.equal(budget.used, 0)
  },
)

void test("an attach outside the protocol's or the daemon's limits is refused", { skip }, () => {
  const native = status.native!
  const host = new Host({ pages: 16 })
  const owner: ShmOwner = {
    clientId: () => 1,
    abiVersion: 1,
    kickClient: () => {},
    broken: () => {},
  }
  const budget = new ShmBudget(64, 1024 * 1024)
  const attach = (sq: number, cq: number, frames: number): ShmAttachment | number =>
    ShmAttachment.create(native, budget, host, owner, {
      cmd: SHM_ATTACH,
      sqEntries: sq,
      cqEntries: cq,
      frameCount: frames,
    })
  assert.equal(attach(12, 16, 4), -EINVAL)
  assert.equal(attach(16, 16, 0), -EINVAL)
  assert.equal(attach(16, 16, 65), -ENOSPC, 'more frames than the daemon allows')
  const first = attach(16, 16, 64)
  assert.ok(first instanceof ShmAttachment)
  // A region of 64 frames takes 4096 (header) + 4096 (rings) + 64 x 4096 = 270336 bytes:
  // three fit in the 1 MiB budget, a fourth does not.
  const more = [attach(16, 16, 64), attach(16, 16, 64)]
  assert.ok(more.every((m) => m instanceof ShmAttachment))
  assert.equal(attach(16, 16, 64), -ENOSPC, 'over the daemon-wide budget')
  first.close()
  assert.ok(attach(16, 16, 64) instanceof ShmAttachment, 'room again after a close')
})

/**
 * A host that answers every GET_PAGE later, as the remote tier answers a get of a remote page:
 * the engine's answer is taken at once (into a page of its own) and handed over when the test
 * releases it, in whatever order the test picks.
 */
function deferringGets(held: (() => void)[]): Around {
  let next: Promise<DeferredReply> | null = null
  return {
    wrap: (host) =>
      new Proxy(host, {
        get(target, name, receiver) {
          if (name === 'takeDeferred') return () => next!
          if (name !== 'opBytes') return Reflect.get(target, name, receiver) as unknown
          return (
            id: number,
            bytes: Uint8Array,
            at: number,
            abi: 0 | 1,
            data: Uint8Array | null,
            dataAt: number,
          ): number => {
            if (new DataView(bytes.buffer, bytes.byteOffset).getUint32(at, true) !== TMEM_GET_PAGE)
              return target.opBytes(id, bytes, at, abi, data, dataAt)
            const own = new Uint8Array(4096)
            const rc = target.opBytes(id, bytes, at, abi, own, 0)
            next = new Promise((resolve) => held.push(() => resolve({ rc, page: own })))
            return OP_DEFERRED
          }
        },
      }),
    defer: (answer) => {
      void next!.then(answer)
    },
  }
}

void test(
  'gets answered later complete out of order with their pages in their frames',
  { skip },
  async () => {
    const held: (() => void)[] = []
    const { channel, attachment, run } = pair({ sq: 8, cq: 8, frames: 8 }, deferringGets(held))
    const pool = await persistentPool(run)
    for (let i = 0; i < 12; i++)
      assert.equal((await run(genOp(TMEM_PUT_PAGE, pool, 1n, i), page(i))).rc, 1)
    let seed = 99
    for (let round = 0; round < 10; round++) {
      // More gets than the completion ring has slots: the ones past it wait in the client.
      const gets = Array.from({ length: 12 }, (_, i) =>
        run(genOp(TMEM_GET_PAGE, pool, 1n, i), null),
      )
      let answered = 0
      while (answered < 12) {
        await new Promise((resolve) => setImmediate(resolve))
        // The ring never owes more answers than it has completion slots.
        assert.ok(attachment.serve.owed <= 8, `${attachment.serve.owed} owed`)
        if (held.length === 0) continue
        seed = (seed * 1103515245 + 12345) >>> 0
        held.splice((seed >>> 8) % held.length, 1)[0]!()
        answered++
      }
      const replies = await Promise.all(gets)
      replies.forEach((reply, i) => {
        assert.equal(reply.rc, 1)
        assert.deepEqual(reply.page, page(i), `page ${i}, round ${round}`)
      })
    }
    assert.equal(channel.inFlight, 0)
    assert.equal(attachment.serve.owed, 0)
    attachment.close()
  },
)

void test('an answer that comes after its region closed is dropped', { skip }, async () => {
  const held: (() => void)[] = []
  const { attachment, budget, run } = pair({ sq: 8, cq: 8, frames: 4 }, deferringGets(held))
  const pool = await persistentPool(run)
  assert.equal((await run(genOp(TMEM_PUT_PAGE, pool, 2n, 0), page(7))).rc, 1)
  void run(genOp(TMEM_GET_PAGE, pool, 2n, 0), null)
  while (held.length === 0) await new Promise((resolve) => setImmediate(resolve))
  assert.equal(attachment.serve.owed, 1)
  // The region goes (its client closed): the mapping is gone, and the late answer must not
  // touch it (a write there would fault the daemon).
  attachment.close()
  assert.equal(budget.used, 0)
  held[0]!()
  await new Promise((resolve) => setImmediate(resolve))
  assert.equal(attachment.serve.owed, 1, 'nothing was posted')
})
