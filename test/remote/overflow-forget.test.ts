/**
 * A persistent page acknowledged by the cluster stays readable whatever other clients do
 * while its write is on its way (docs/remote.md "Persistent overflow"). The tier takes back a
 * write that lands after its own pool went (destroyed, its client destroyed); it must not take
 * back a write because some other pool went.
 *
 * In process, with a store that keeps pages in a Map and holds every HSET until the test
 * releases it, so the order of events is the test's, not the network's. The oracle is the
 * page the test put: after the put answered 1, a get answers 1 with its bytes.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { encodeOp, poolFlags } from '../../src/abi/codec.js'
import {
  TMEM_DESTROY_POOL,
  TMEM_GET_PAGE,
  TMEM_NEW_POOL,
  TMEM_PUT_PAGE,
} from '../../src/abi/constants.js'
import { Host } from '../../src/engine/host.js'
import { OP_DEFERRED } from '../../src/protocol/deferred.js'
import { RemoteStore } from '../../src/remote/cluster.js'
import { POLICY_ALL } from '../../src/remote/policy.js'
import { RemoteTier } from '../../src/remote/tier.js'
import { lcgPage } from '../helpers/remote-pages.js'

const log = pino({ level: 'silent' })

/** A RemoteStore that never reaches a network: fields in a Map, HSETs held until released. */
function heldStore(): { store: RemoteStore; release: () => void; held: () => number } {
  const store = new RemoteStore({ seeds: [{ host: '127.0.0.1', port: 1 }], timeoutMs: 50, log })
  const fields = new Map<string, Buffer>()
  let waiting: (() => void)[] = []
  store.health = 'up'
  const fake = store as unknown as Record<string, unknown>
  fake['writeFields'] = (key: string, args: (string | Buffer)[]): Promise<void> =>
    new Promise<void>((resolve) => {
      waiting.push(() => {
        for (let i = 0; i < args.length; i += 2)
          fields.set(`${key}/${String(args[i])}`, args[i + 1] as Buffer)
        resolve()
      })
    })
  fake['read'] = (key: string, field: number): Promise<Buffer | null> =>
    Promise.resolve(fields.get(`${key}/${field}`) ?? null)
  for (const name of ['sadd', 'srem', 'hdel', 'del'])
    fake[name] = (): Promise<number> => Promise.resolve(1)
  const release = (): void => {
    const now = waiting
    waiting = []
    for (const go of now) go()
  }
  return { store, release, held: () => waiting.length }
}

/** A tier over a held store and four pages of local memory: a fifth persistent page overflows. */
function smallTier(): ReturnType<typeof heldStore> & { tier: RemoteTier } {
  const held = heldStore()
  const tier = new RemoteTier(new Host({ pages: 4 }), {
    store: held.store,
    hostId: 'h',
    replicas: 0,
    defaultPolicy: POLICY_ALL,
    queueMax: 64,
    log,
  })
  return { ...held, tier }
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

function pageOp(cmd: number, poolId: number, index: number): Uint8Array {
  return encodeOp(
    {
      cmd,
      poolId,
      gen: { oid: [7n, 0n, 0n], index, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
    },
    1,
  )
}

function newPool(tier: RemoteTier, clientId: number, persistent: boolean): number {
  const op = encodeOp({
    cmd: TMEM_NEW_POOL,
    poolId: 0,
    creat: { uuid: [0n, 0n], flags: poolFlags({ persistent }), arg1: 0 },
  })
  const poolId = tier.opBytes(clientId, op, 0, 1, null, 0)
  assert.ok(poolId >= 0, `NEW_POOL: ${poolId}`)
  return poolId
}

void test('an overflow write acknowledged while another client destroys a pool stays readable', async () => {
  const { tier, store, release, held } = smallTier()
  try {
    const a = newPool(tier, 1, true)
    const b = newPool(tier, 2, false)
    const pages = Array.from({ length: 6 }, (_, i) => lcgPage(100 + i))
    const replies: Promise<{ rc: number }>[] = []
    for (let i = 0; i < pages.length; i++) {
      const rc = tier.opBytes(1, pageOp(TMEM_PUT_PAGE, a, i), 0, 1, pages[i]!, 0)
      if (rc === OP_DEFERRED) replies.push(tier.takeDeferred())
      else assert.equal(rc, 1, `local put ${i}`)
    }
    assert.ok(replies.length > 0, 'some puts went to the cluster')
    await turn()
    assert.ok(held() > 0, 'their writes are on their way')
    // Meanwhile client 2 destroys its own pool (it never had a remote page), and client 3
    // goes away.
    assert.equal(tier.opBytes(2, pageOp(TMEM_DESTROY_POOL, b, 0), 0, 1, null, 0), 1)
    newPool(tier, 3, true)
    assert.equal(tier.destroyClient(3), true)
    release()
    for (const reply of replies) assert.equal((await reply).rc, 1)
    // Every page client 1 was told is stored reads back, local or remote.
    for (let i = 0; i < pages.length; i++) {
      const got = new Uint8Array(4096)
      let rc = tier.opBytes(1, pageOp(TMEM_GET_PAGE, a, i), 0, 1, got, 0)
      if (rc === OP_DEFERRED) {
        const reply = await tier.takeDeferred()
        rc = reply.rc
        if (reply.page !== null) got.set(reply.page)
      }
      assert.equal(rc, 1, `get ${i}`)
      assert.deepEqual(got, pages[i], `page ${i}`)
    }
  } finally {
    await store.close()
  }
})

void test('an overflow write that lands after its client went is taken back', async () => {
  const { tier, store, release } = smallTier()
  try {
    const a = newPool(tier, 1, true)
    const replies: Promise<{ rc: number }>[] = []
    for (let i = 0; i < 6; i++) {
      const rc = tier.opBytes(1, pageOp(TMEM_PUT_PAGE, a, i), 0, 1, lcgPage(i), 0)
      if (rc === OP_DEFERRED) replies.push(tier.takeDeferred())
    }
    assert.ok(replies.length > 0)
    await turn()
    // A client's destruction (its guest died) does not wait for its pending ops.
    assert.equal(tier.destroyClient(1), true)
    const deletes: string[] = []
    const fake = store as unknown as Record<string, unknown>
    fake['hdel'] = (key: string, fields: string[]): Promise<number> => {
      for (const field of fields) deletes.push(`${key}/${field}`)
      return Promise.resolve(fields.length)
    }
    release()
    await Promise.all(replies)
    for (let i = 0; i < 5 && deletes.length < replies.length; i++) await turn()
    // The pool is gone, and so is every trace of its pages: none listed, each field deleted.
    assert.equal(tier.presence.pool(1, a), undefined)
    assert.equal(deletes.length, replies.length)
  } finally {
    await store.close()
  }
})
