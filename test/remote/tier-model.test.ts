/**
 * The remote tier against a model (docs/remote.md), in process: seeded random ops of three
 * clients on persistent and private ephemeral pools, through `opBytes` and `takeDeferred` as
 * the daemon calls them (several ops in flight, answers taken as they settle), over a tiny
 * local memory, so that persistent puts overflow and ephemeral pages are demoted. The store
 * keeps the cluster in Maps and holds every call until the test settles it: calls on one key
 * complete in the order issued (one Redis node), calls on different keys in any order; a call
 * may succeed, fail before it ran, or time out (fail now, and still run in its turn).
 *
 * The oracle, per pool, applies the ops in the order they were issued (ops of one pool on
 * different pages commute; the tier keeps the others in order): a persistent page answered
 * 1 reads back exactly until flushed or replaced, and a put answered otherwise leaves it
 * absent (docs/semantics.md "Duplicate put"); an ephemeral get misses or returns the bytes of
 * the latest successful put, and a hit removes the page. At the end, with every call settled,
 * the presence index lists no page the model says is absent and nothing of a destroyed pool.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { encodeOpInto, poolFlags } from '../../src/abi/codec.js'
import {
  EEMPTY,
  ENOMEM,
  EFAULT,
  TMEM_CONTROL,
  TMEM_DESTROY_POOL,
  TMEM_FLUSH_OBJECT,
  TMEM_FLUSH_PAGE,
  TMEM_GET_PAGE,
  TMEM_NEW_PAGE,
  TMEM_NEW_POOL,
  TMEM_PUT_PAGE,
  TMEM_READ,
  TMEM_WRITE,
  TMEMC_FLUSH,
  TMEMC_SET_COMPRESS,
} from '../../src/abi/constants.js'
import { Host } from '../../src/engine/host.js'
import { type DeferredReply, OP_DEFERRED } from '../../src/protocol/deferred.js'
import { RemoteStore } from '../../src/remote/cluster.js'
import { valueVersion } from '../../src/remote/keys.js'
import { entryBytes, entryVersion } from '../../src/remote/presence.js'
import {
  POLICY_ALL,
  POLICY_EPHEMERAL,
  POLICY_OFF,
  TMEMC_SET_REMOTE,
  TMEMC_SET_REMOTE_QUOTA,
} from '../../src/remote/policy.js'
import { RemoteTier } from '../../src/remote/tier.js'
import { lcgPage } from '../helpers/remote-pages.js'

const log = pino({ level: 'silent' })
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

type Random = (n: number) => number

function seeded(seed: number): Random {
  let x = seed >>> 0 || 1
  return (n) => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    return (x >>> 8) % n
  }
}

// -----------------------------------------------------------------------------------------
// The cluster, held by the test.

interface Call {
  key: string
  run: () => unknown
  resolve: (value: unknown) => void
  reject: (error: Error) => void
  read: boolean
  /** Rejected already (a deadline passed): it still runs when its turn comes. */
  timedOut: boolean
}

/** A RemoteStore whose calls wait in per-key queues until the test settles them. */
class HeldCluster {
  readonly store: RemoteStore
  readonly hashes = new Map<string, Map<string, Buffer>>()
  readonly sets = new Map<string, Set<string>>()
  readonly #queues = new Map<string, Call[]>()
  /** Reads failed per key (a persistent get may answer -EFAULT after one). */
  readonly readFailures = new Map<string, number>()

  /** False: every call succeeds (then the cluster holds nothing the tier does not list). */
  failing = true

  constructor() {
    this.store = new RemoteStore({ seeds: [{ host: '127.0.0.1', port: 1 }], timeoutMs: 50, log })
    this.store.health = 'up'
    const fake = this.store as unknown as Record<string, unknown>
    const hash = (key: string): Map<string, Buffer> => {
      let fields = this.hashes.get(key)
      if (fields === undefined) this.hashes.set(key, (fields = new Map<string, Buffer>()))
      return fields
    }
    const set = (key: string): Set<string> => {
      let members = this.sets.get(key)
      if (members === undefined) this.sets.set(key, (members = new Set()))
      return members
    }
    fake['writeFields'] = (key: string, args: (string | Buffer)[]) =>
      this.#call(key, () => {
        for (let i = 0; i < args.length; i += 2)
          hash(key).set(String(args[i]), Buffer.from(args[i + 1] as Buffer))
      })
    fake['read'] = (key: string, field: number) =>
      this.#call(
        key,
        () => {
          const value = this.hashes.get(key)?.get(String(field))
          return value === undefined ? null : Buffer.from(value)
        },
        true,
      )
    fake['hdel'] = (key: string, fields: string[]) =>
      this.#call(key, () => fields.filter((field) => this.hashes.get(key)?.delete(field)).length)
    fake['del'] = (key: string) =>
      this.#call(key, () => Number(this.hashes.delete(key) || this.sets.delete(key)))
    fake['sadd'] = (key: string, members: string[]) =>
      this.#call(key, () => members.filter((m) => !set(key).has(m) && set(key).add(m)).length)
    fake['srem'] = (key: string, member: string) =>
      this.#call(key, () => Number(this.sets.get(key)?.delete(member) ?? false))
    fake['smembers'] = (key: string) => this.#call(key, () => [...(this.sets.get(key) ?? [])])
    fake['hgetall'] = (key: string) =>
      this.#call(key, () => Object.fromEntries(this.hashes.get(key) ?? new Map()))
  }

  get held(): number {
    let n = 0
    for (const queue of this.#queues.values()) n += queue.length
    return n
  }

  #call(key: string, run: () => unknown, read = false): Promise<never> {
    return new Promise((resolve, reject) => {
      let queue = this.#queues.get(key)
      if (queue === undefined) this.#queues.set(key, (queue = []))
      queue.push({
        key,
        run,
        read,
        resolve: resolve as (v: unknown) => void,
        reject,
        timedOut: false,
      })
    })
  }

  /** One event on a random key: its oldest call succeeds, fails, or some call times out. */
  event(random: Random): void {
    const keys = [...this.#queues.keys()]
    if (keys.length === 0) return
    const key = keys[random(keys.length)]!
    const queue = this.#queues.get(key)!
    const what = this.failing ? random(10) : 2
    if (what === 0) {
      // A deadline passes: the caller is told now, the command still runs in its turn.
      const call = queue[random(queue.length)]!
      if (!call.timedOut) this.#fail(call)
      call.timedOut = true
      return
    }
    const call = queue.shift()!
    if (queue.length === 0) this.#queues.delete(key)
    if (what === 1 && !call.timedOut) {
      this.#fail(call) // refused before it ran (a connection lost)
      return
    }
    const value = call.run()
    if (!call.timedOut) call.resolve(value)
  }

  #fail(call: Call): void {
    if (call.read) this.readFailures.set(call.key, this.readFailure(call.key) + 1)
    call.reject(new Error('held cluster: call failed'))
  }

  readFailure(key: string): number {
    return this.readFailures.get(key) ?? 0
  }

  /** Every held call succeeds (a timed-out one runs, unanswered). */
  releaseAll(): void {
    const queues = [...this.#queues.values()]
    this.#queues.clear()
    for (const queue of queues) {
      for (const call of queue) {
        const value = call.run()
        if (!call.timedOut) call.resolve(value)
      }
    }
  }
}

// -----------------------------------------------------------------------------------------
// The model.

interface ModelOp {
  step: number
  cmd: number
  /** `oid:index`, or the oid alone for FLUSH_OBJECT, or '' for DESTROY_POOL. */
  page: string
  key: string
  bytes: Uint8Array | null
  readFailuresAtIssue: number
  /** READ and WRITE: tmem offset, frame offset, length. */
  range: [number, number, number]
  rc: number | null
  got: Uint8Array | null
}

/** One pool as its client knows it, from NEW_POOL to its destruction. */
interface ModelPool {
  clientId: number
  poolId: number
  persistent: boolean
  live: boolean
  /** Ops issued and not yet checked, in issue order. */
  ops: ModelOp[]
  pages: Map<string, Uint8Array>
  /** Checked ops, for a failure's message. */
  history: string[]
}

const OIDS = 3
const INDEXES = 4
const CLIENTS = [1, 2, 3]

class Run {
  readonly random: Random
  readonly cluster = new HeldCluster()
  readonly tier: RemoteTier
  readonly trace: string[] = []
  /** Pools by client: [persistent, ephemeral]; null while the client is gone. */
  readonly pools = new Map<number, ModelPool[] | null>()
  /** Deferred replies not settled yet, per client (a destroyed id is reused after them). */
  readonly inFlight = new Map<number, number>()
  readonly destroyed = new Set<number>()
  readonly recv = new Uint8Array(256)
  readonly data = new Uint8Array(4096 + 200)
  readonly send = new Uint8Array(4096 + 200)
  #seedOfPage = 1
  step = 0

  constructor(seed: number, pages: number) {
    this.random = seeded(seed)
    this.tier = new RemoteTier(new Host({ pages }), {
      store: this.cluster.store,
      hostId: 'h',
      replicas: 0,
      defaultPolicy: POLICY_ALL,
      queueMax: 6,
      log,
    })
    for (const clientId of CLIENTS) this.#newClient(clientId)
    // Client 2 has a small quota; client 3 never overflows persistent puts.
    this.tier.policies.setQuota(2, 3)
    this.tier.policies.setPolicy(3, POLICY_EPHEMERAL)
  }

  note(text: string): void {
    this.trace.push(`${this.step}: ${text}`)
    if (this.trace.length > 40000) this.trace.splice(0, 20000)
  }

  #newPool(clientId: number, persistent: boolean): ModelPool {
    encodeOpInto(
      {
        cmd: TMEM_NEW_POOL,
        poolId: 0,
        creat: { uuid: [0n, 0n], flags: poolFlags({ persistent }), arg1: 0 },
      },
      1,
      this.recv,
      8,
    )
    const poolId = this.tier.opBytes(clientId, this.recv, 8, 1, null, 0)
    assert.ok(poolId >= 0, `NEW_POOL: ${poolId}`)
    this.note(`client ${clientId} new ${persistent ? 'persistent' : 'ephemeral'} pool ${poolId}`)
    return { clientId, poolId, persistent, live: true, ops: [], pages: new Map(), history: [] }
  }

  #newClient(clientId: number): void {
    this.destroyed.delete(clientId)
    this.pools.set(clientId, [this.#newPool(clientId, true), this.#newPool(clientId, false)])
  }

  /** A random page op (or pool op) of a live client. */
  guestOp(): void {
    const clientId = CLIENTS[this.random(CLIENTS.length)]!
    const pools = this.pools.get(clientId)
    if (pools === null || pools === undefined) {
      if ((this.inFlight.get(clientId) ?? 0) > 0) return
      // Its ops that waited for others were answered without bringing it back.
      assert.equal(this.tier.hasClient(clientId), false, `client ${clientId} came back`)
      this.#newClient(clientId)
      return
    }
    const slot = this.random(2)
    const pool = pools[slot]!
    const oid = this.random(OIDS)
    const index = this.random(INDEXES)
    const what = this.random(100)
    if (what < 40) this.pageOp(pool, TMEM_PUT_PAGE, oid, index)
    else if (what < 80) this.pageOp(pool, TMEM_GET_PAGE, oid, index)
    else if (what < 83) this.pageOp(pool, TMEM_WRITE, oid, index)
    else if (what < 85) this.pageOp(pool, TMEM_NEW_PAGE, oid, index)
    else if (what < 89) this.pageOp(pool, TMEM_READ, oid, index)
    else if (what < 96) this.pageOp(pool, TMEM_FLUSH_PAGE, oid, index)
    else if (what < 99) this.pageOp(pool, TMEM_FLUSH_OBJECT, oid, 0)
    else {
      this.pageOp(pool, TMEM_DESTROY_POOL, 0, 0)
      pool.live = false
      pools[slot] = this.#newPool(clientId, pool.persistent)
    }
  }

  destroyClient(): void {
    const clientId = CLIENTS[this.random(CLIENTS.length)]!
    const pools = this.pools.get(clientId)
    if (pools === null || pools === undefined) return
    this.note(`destroy client ${clientId}`)
    assert.equal(this.tier.destroyClient(clientId), true)
    for (const pool of pools) {
      pool.live = false
      pool.ops = []
    }
    this.pools.set(clientId, null)
    this.destroyed.add(clientId)
    // The tier forgets its policy and quota with it.
    if (clientId === 2) this.tier.policies.setQuota(2, 3)
    if (clientId === 3) this.tier.policies.setPolicy(3, POLICY_EPHEMERAL)
  }

  /** A control subop through the tier, as the daemon's control endpoint runs it. */
  control(subop: number, cliId: number, arg1: number): number {
    const ctrl = { subop, cliId, arg1, arg2: 0, oid: [0n, 0n, 0n] as [bigint, bigint, bigint] }
    encodeOpInto({ cmd: TMEM_CONTROL, poolId: 0, ctrl: { ...ctrl, buf: 0n } }, 1, this.recv, 8)
    return this.tier.controlBytes(this.recv, 8, 1, null, 0, 0)
  }

  /**
   * A control op the model need not follow: TMEMC_FLUSH (of every client, the engine's only
   * form: ephemeral pages may go), or client 1's remote policy between all and ephemeral, or
   * client 2's quota, or client 1's compression.
   */
  controlOp(): void {
    const what = this.random(4)
    const alive = (id: number): boolean => this.pools.get(id) !== null
    if (what === 0) {
      this.note('control flush')
      assert.ok(this.control(TMEMC_FLUSH, 0xffff, 8) >= 0)
    } else if (what === 1 && alive(1)) {
      const policy = this.random(2) === 0 ? POLICY_ALL : POLICY_EPHEMERAL
      this.note(`client 1 remote policy ${policy}`)
      assert.equal(this.control(TMEMC_SET_REMOTE, 1, policy), 0)
    } else if (what === 2 && alive(2)) {
      const pages = this.random(6)
      this.note(`client 2 remote quota ${pages}`)
      assert.equal(this.control(TMEMC_SET_REMOTE_QUOTA, 2, pages), 0)
    } else if (what === 3 && alive(1)) {
      const on = this.random(2)
      this.note(`client 1 compression ${on}`)
      assert.ok(this.control(TMEMC_SET_COMPRESS, 1, on) >= 0)
    }
  }

  /** A READ's or WRITE's offsets and length: often the whole page. */
  #range(): [number, number, number] {
    if (this.random(2) === 0) return [0, 0, 4096]
    const len = 1 + this.random(4096)
    return [this.random(4097 - len), this.random(4097 - len), len]
  }

  #page(): Uint8Array {
    const kind = this.random(12)
    if (kind === 0) return new Uint8Array(4096)
    if (kind === 1) return new Uint8Array(4096).fill(this.#seedOfPage++ & 0xff || 1)
    return lcgPage(this.#seedOfPage++)
  }

  pageOp(pool: ModelPool, cmd: number, oid: number, index: number): void {
    const page =
      cmd === TMEM_FLUSH_OBJECT ? `${oid}` : cmd === TMEM_DESTROY_POOL ? '' : `${oid}:${index}`
    const key = `{tmem:h:${pool.clientId}:${pool.poolId}:${oid.toString(16).padStart(48, '0')}}`
    const partial = cmd === TMEM_WRITE || cmd === TMEM_READ
    const range = partial ? this.#range() : ([0, 0, 0] as [number, number, number])
    const [tmemOffset, pfnOffset, len] = range
    // What the op sends (a put's or WRITE's frame), and what the page is once it succeeded.
    const frame = cmd === TMEM_PUT_PAGE || cmd === TMEM_WRITE ? this.#page() : null
    let bytes: Uint8Array | null = cmd === TMEM_PUT_PAGE ? frame : null
    if (cmd === TMEM_NEW_PAGE) bytes = new Uint8Array(4096)
    if (cmd === TMEM_WRITE) {
      bytes = new Uint8Array(4096)
      bytes.set(frame!.subarray(pfnOffset, pfnOffset + len), tmemOffset)
    }
    const op: ModelOp = {
      step: this.step,
      cmd,
      page,
      key,
      bytes,
      readFailuresAtIssue: this.cluster.readFailure(key),
      range,
      rc: null,
      got: null,
    }
    pool.ops.push(op)
    const name = ['', '', 'destroy pool', 'new page', 'put', 'get', 'flush', 'flush object']
    name.push('read', 'write')
    this.note(
      `client ${pool.clientId} pool ${pool.poolId} ${name[cmd]} ${page}` +
        (bytes === null ? '' : ` (${bytes[0]},${bytes[1]})`) +
        (partial ? ` [${range.join(',')}]` : ''),
    )
    const gen = { oid: [BigInt(oid), 0n, 0n] as [bigint, bigint, bigint], index, cmfn: 0n }
    encodeOpInto(
      { cmd, poolId: pool.poolId, gen: { ...gen, tmemOffset, pfnOffset, len } },
      1,
      this.recv,
      8,
    )
    const get = cmd === TMEM_GET_PAGE || cmd === TMEM_READ
    let rc: number
    if (get) {
      this.send.fill(0, 100, 4196)
      rc = this.tier.opBytes(pool.clientId, this.recv, 8, 1, this.send, 100)
    } else if (frame !== null) {
      this.data.set(frame, 100)
      rc = this.tier.opBytes(pool.clientId, this.recv, 8, 1, this.data, 100)
    } else {
      rc = this.tier.opBytes(pool.clientId, this.recv, 8, 1, null, 0)
    }
    // The daemon reuses its buffers for the next frame at once.
    this.recv.fill(0xee)
    this.data.fill(0xdd)
    if (rc !== OP_DEFERRED) {
      op.rc = rc
      if (get && rc === 1) op.got = this.send.slice(100, 4196)
      this.send.fill(0xcc)
      return
    }
    const clientId = pool.clientId
    this.inFlight.set(clientId, (this.inFlight.get(clientId) ?? 0) + 1)
    const settled = (reply: DeferredReply): void => {
      this.inFlight.set(clientId, this.inFlight.get(clientId)! - 1)
      op.rc = reply.rc
      if (reply.rc === 1 && reply.page !== null) op.got = Uint8Array.from(reply.page)
    }
    this.tier.takeDeferred().then(settled, () => settled({ rc: -EFAULT, page: null }))
  }

  /** Checks every answered op that every earlier op of its pool precedes. */
  check(): void {
    for (const pools of this.pools.values()) {
      for (const pool of pools ?? []) this.#checkPool(pool)
    }
  }

  #checkPool(pool: ModelPool): void {
    while (pool.ops.length > 0 && pool.ops[0]!.rc !== null) {
      const op = pool.ops.shift()!
      const rc = op.rc!
      const got = op.got === null ? '' : ` (${op.got[0]},${op.got[1]})`
      pool.history.push(`${op.step}: ${op.cmd} ${op.page} -> ${rc}${got}`)
      const where =
        `step ${op.step}: client ${pool.clientId} pool ${pool.poolId} page ${op.page}` +
        ` (history: ${pool.history.filter((h) => h.includes(op.page)).join('; ')})`
      const have = pool.pages.get(op.page)
      switch (op.cmd) {
        case TMEM_READ: {
          if (rc !== 1) break // a remote page is not read (docs/remote.md): a miss
          const [tmemOffset, pfnOffset, len] = op.range
          assert.ok(have !== undefined, `${where}: READ found a page the model says is absent`)
          const part = op.got!.subarray(pfnOffset, pfnOffset + len)
          assert.ok(
            Buffer.from(part).equals(have.subarray(tmemOffset, tmemOffset + len)),
            `${where}: READ returned other bytes`,
          )
          if (!pool.persistent) pool.pages.delete(op.page)
          break
        }
        case TMEM_PUT_PAGE:
        case TMEM_WRITE:
        case TMEM_NEW_PAGE:
          if (rc === 1) pool.pages.set(op.page, op.bytes!)
          else pool.pages.delete(op.page)
          assert.ok(rc === 1 || rc < 0, `${where}: put answered ${rc}`)
          break
        case TMEM_GET_PAGE:
          if (rc === 1) {
            assert.ok(have !== undefined, `${where}: get found a page the model says is absent`)
            assert.ok(Buffer.from(op.got!).equals(have), `${where}: get returned other bytes`)
            if (!pool.persistent) pool.pages.delete(op.page)
          } else if (have !== undefined && pool.persistent) {
            const failed = this.cluster.readFailure(op.key) > op.readFailuresAtIssue
            assert.ok(rc === -EFAULT && failed, `${where}: persistent page missing (rc ${rc})`)
          } else {
            assert.ok(rc === 0 || rc === -EEMPTY || rc === -EFAULT, `${where}: get rc ${rc}`)
            if (rc === -EFAULT) assert.ok(have !== undefined, `${where}: -EFAULT for no page`)
          }
          break
        case TMEM_FLUSH_PAGE:
          pool.pages.delete(op.page)
          break
        case TMEM_FLUSH_OBJECT:
          for (const page of [...pool.pages.keys()])
            if (page.startsWith(`${op.page}:`)) pool.pages.delete(page)
          break
        default:
          pool.pages.clear()
      }
    }
  }

  /** Pages the model says a live pool holds; the presence index lists no other. */
  checkPresence(): void {
    for (const listed of this.tier.presence.pools()) {
      const pools = this.pools.get(listed.clientId)
      const pool = pools?.find((p) => p.poolId === listed.poolId)
      assert.ok(
        pool !== undefined,
        `presence lists client ${listed.clientId} pool ${listed.poolId}, which is gone`,
      )
      for (const [oidHex, object] of listed.objects) {
        const key = this.tier.copies.key(listed.clientId, listed.poolId, oidHex)
        for (const [index, entry] of object) {
          // Every call answered: a listed page's value is in the cluster at its version.
          const value = this.cluster.hashes.get(key)?.get(String(index))
          if (entryBytes(entry) > 0)
            assert.equal(value && valueVersion(value), entryVersion(entry), `${key} ${index}`)
          const page = `${parseInt(oidHex, 16)}:${index}`
          assert.ok(
            pool.pages.has(page),
            `presence lists client ${pool.clientId} pool ${pool.poolId} page ${page}, absent`,
          )
        }
      }
    }
    for (const clientId of this.destroyed) {
      assert.equal(this.tier.presence.clientBytes(clientId), 0, `client ${clientId} bytes`)
    }
    if (!this.cluster.failing) this.#checkNoGarbage()
  }

  /** With no call failed, each value in the cluster is a listed page at its version. */
  #checkNoGarbage(): void {
    for (const [key, fields] of this.cluster.hashes) {
      const [clientId, poolId, oidHex] = key.slice(1, -1).split(':').slice(2)
      for (const [index, value] of fields) {
        const entry = this.tier.presence.get(Number(clientId), Number(poolId), oidHex!, +index)
        assert.ok(entry !== 0, `${key} ${index} is in the cluster, not listed`)
        assert.equal(valueVersion(value), entryVersion(entry), `${key} ${index}: version`)
      }
    }
  }
}

async function settleAll(run: Run): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    run.cluster.releaseAll()
    await turn()
    const inFlight = [...run.inFlight.values()].reduce((a, b) => a + b, 0)
    if (run.cluster.held === 0 && inFlight === 0 && run.tier.queue.length === 0) {
      await run.tier.queue.drain()
      if (run.cluster.held === 0) return
    }
  }
  assert.fail('the tier did not settle')
}

/** Reads every page of every live pool back and checks it against the model. */
function readBack(run: Run): void {
  for (const [clientId, pools] of run.pools) {
    for (const pool of pools ?? []) {
      for (let oid = 0; oid < OIDS; oid++) {
        for (let index = 0; index < INDEXES; index++) {
          run.pageOp(pool, TMEM_GET_PAGE, oid, index)
        }
      }
      void clientId
    }
  }
}

async function runSeed(seed: number, steps: number, pages: number): Promise<void> {
  const run = new Run(seed, pages)
  run.cluster.failing = seed % 4 !== 0
  try {
    for (run.step = 0; run.step < steps; run.step++) {
      const what = run.random(1000)
      if (what < 550) run.guestOp()
      else if (what < 850) run.cluster.event(run.random)
      else if (what < 852) run.destroyClient()
      else if (what < 860) run.controlOp()
      else if (what < 863) {
        run.cluster.store.health = run.cluster.store.health === 'up' ? 'down' : 'up'
        run.note(`cluster ${run.cluster.store.health}`)
      } else await turn()
      run.check()
    }
    run.cluster.store.health = 'up'
    await settleAll(run)
    run.check()
    run.checkPresence()
    readBack(run)
    await settleAll(run)
    run.check()
    run.checkPresence()
    for (const pools of run.pools.values())
      for (const pool of pools ?? []) assert.equal(pool.ops.length, 0, 'every op answered')
  } catch (error) {
    const last = run.trace.slice(-80).join('\n')
    console.log(`seed ${seed}, step ${run.step}; the last ops:\n${last}`)
    throw error
  } finally {
    await run.cluster.store.close()
  }
}

void test('the remote tier agrees with the model (seeded random ops, held cluster calls)', async () => {
  // Local memory of 4, 6 or 10 pages: mostly remote, or about half of it.
  // Seeds 4 and 8 fail no call: then the cluster holds nothing the tier does not list.
  for (let seed = 1; seed <= 9; seed++) await runSeed(seed, 3000, [4, 6, 10][seed % 3]!)
})

// -----------------------------------------------------------------------------------------
// What the model found, each shrunk to a few ops.

/** A tier over a held cluster with `pages` of local memory; ops as the daemon runs them. */
function smallTier(pages: number): {
  cluster: HeldCluster
  tier: RemoteTier
  op: (
    clientId: number,
    cmd: number,
    poolId: number,
    index: number,
    page?: Uint8Array,
    oid?: number,
  ) => Promise<DeferredReply>
} {
  const cluster = new HeldCluster()
  const tier = new RemoteTier(new Host({ pages }), {
    store: cluster.store,
    hostId: 'h',
    replicas: 0,
    defaultPolicy: POLICY_ALL,
    queueMax: 64,
    log,
  })
  const op = async (
    clientId: number,
    cmd: number,
    poolId: number,
    index: number,
    page?: Uint8Array,
    oid = 7,
  ): Promise<DeferredReply> => {
    const bytes = new Uint8Array(64)
    encodeOpInto(
      {
        cmd,
        poolId,
        gen: {
          oid: [BigInt(oid), 0n, 0n],
          index,
          tmemOffset: 0,
          pfnOffset: 0,
          len: 4096,
          cmfn: 0n,
        },
      },
      1,
      bytes,
      0,
    )
    const get = cmd === TMEM_GET_PAGE || cmd === TMEM_READ
    const data = get ? new Uint8Array(4096) : (page ?? null)
    const rc = tier.opBytes(clientId, bytes, 0, 1, data, 0)
    if (rc === OP_DEFERRED) return tier.takeDeferred()
    return { rc, page: rc === 1 && get ? data : null }
  }
  return { cluster, tier, op }
}

function newPool(tier: RemoteTier, clientId: number, persistent: boolean): number {
  const bytes = new Uint8Array(64)
  const creat = { uuid: [0n, 0n] as [bigint, bigint], flags: poolFlags({ persistent }), arg1: 0 }
  encodeOpInto({ cmd: TMEM_NEW_POOL, poolId: 0, creat }, 1, bytes, 0)
  const poolId = tier.opBytes(clientId, bytes, 0, 1, null, 0)
  assert.ok(poolId >= 0)
  return poolId
}

/** Lets the tier issue its calls, and the cluster answer every one of them. */
async function answerAll(cluster: HeldCluster): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await turn()
    cluster.releaseAll()
  }
}

/**
 * Runs `body` on a tier with four pages of local memory and a persistent pool of client 1
 * whose pages 0-3 fill them (so its next page overflows), then closes the held store.
 */
async function withFullPool(
  body: (t: ReturnType<typeof smallTier> & { pool: number }) => Promise<void>,
): Promise<void> {
  const t = smallTier(4)
  try {
    const pool = newPool(t.tier, 1, true)
    for (let i = 0; i < 4; i++)
      assert.equal((await t.op(1, TMEM_PUT_PAGE, pool, i, lcgPage(i))).rc, 1)
    await body({ ...t, pool })
  } finally {
    await t.cluster.store.close()
  }
}

void test('a persistent put refused by the quota drops the remote page it replaces', async () => {
  await withFullPool(async ({ cluster, tier, op, pool }) => {
    // Room for two remote pages (a value is 12 bytes more than a page).
    tier.policies.setQuota(1, 3)
    const puts = [
      op(1, TMEM_PUT_PAGE, pool, 4, lcgPage(40)),
      op(1, TMEM_PUT_PAGE, pool, 5, lcgPage(50)),
    ]
    await answerAll(cluster)
    for (const put of puts) assert.equal((await put).rc, 1, 'pages 4 and 5 are in the cluster')
    // The quota goes down to two pages' bytes: rewriting page 4 would leave 8204 in use.
    tier.policies.setQuota(1, 2)
    assert.equal((await op(1, TMEM_PUT_PAGE, pool, 4, lcgPage(41))).rc < 0, true, 'over quota')
    // The failed duplicate put removed the page (docs/semantics.md "Duplicate put").
    const get = op(1, TMEM_GET_PAGE, pool, 4)
    await answerAll(cluster)
    const reply = await get
    assert.ok(reply.rc === 0 || reply.rc === -EEMPTY, `get after the failed put: rc ${reply.rc}`)
    const other = op(1, TMEM_GET_PAGE, pool, 5)
    await answerAll(cluster)
    assert.deepEqual(Uint8Array.from((await other).page!), lcgPage(50), 'page 5 is still there')
  })
})

void test('a client at its quota may rewrite its remote pages (the old copy frees its bytes)', async () => {
  await withFullPool(async ({ cluster, tier, op, pool }) => {
    tier.policies.setQuota(1, 2)
    for (const seed of [40, 41, 42]) {
      const put = op(1, TMEM_PUT_PAGE, pool, 4, lcgPage(seed))
      await answerAll(cluster)
      assert.equal((await put).rc, 1, `rewrite ${seed}`)
    }
    const get = op(1, TMEM_GET_PAGE, pool, 4)
    await answerAll(cluster)
    assert.deepEqual(Uint8Array.from((await get).page!), lcgPage(42))
  })
})

void test('an overflow write taken back by policy off answers the put -ENOMEM', async () => {
  await withFullPool(async ({ cluster, tier, op, pool }) => {
    const put = op(1, TMEM_PUT_PAGE, pool, 4, lcgPage(40))
    await turn()
    // The operator turns the tier off for client 1 while the write is on its way.
    const bytes = new Uint8Array(64)
    const ctrl = { subop: TMEMC_SET_REMOTE, cliId: 1, arg1: POLICY_OFF, arg2: 0, buf: 0n }
    const oid: [bigint, bigint, bigint] = [0n, 0n, 0n]
    encodeOpInto({ cmd: TMEM_CONTROL, poolId: 0, ctrl: { ...ctrl, oid } }, 1, bytes, 0)
    assert.equal(tier.controlBytes(bytes, 0, 1, null, 0, 0), 0)
    await answerAll(cluster)
    assert.equal((await put).rc, -ENOMEM, 'not kept, so not acknowledged')
    const get = op(1, TMEM_GET_PAGE, pool, 4)
    await answerAll(cluster)
    const reply = await get
    assert.ok(reply.rc === 0 || reply.rc === -EEMPTY, `get: rc ${reply.rc}`)
  })
})

void test('a WRITE that fails drops the remote page it replaces', async () => {
  await withFullPool(async ({ cluster, op, pool }) => {
    const put = op(1, TMEM_PUT_PAGE, pool, 4, lcgPage(40))
    await answerAll(cluster)
    assert.equal((await put).rc, 1, 'the fifth page is in the cluster')
    // A WRITE is a put the tier never sends: local memory is full, so it fails.
    assert.ok((await op(1, TMEM_WRITE, pool, 4, lcgPage(41))).rc < 0)
    const get = op(1, TMEM_GET_PAGE, pool, 4)
    await answerAll(cluster)
    const reply = await get
    assert.ok(reply.rc === 0 || reply.rc === -EEMPTY, `get after the failed WRITE: rc ${reply.rc}`)
  })
})

void test('a READ waits for a pending FLUSH_OBJECT of its object', async () => {
  await withFullPool(async ({ cluster, op, pool }) => {
    // An overflow write on its way; the flush waits for it, and the READ after the flush.
    const put = op(1, TMEM_PUT_PAGE, pool, 4, lcgPage(40))
    const flush = op(1, TMEM_FLUSH_OBJECT, pool, 0)
    const read = op(1, TMEM_READ, pool, 0)
    await answerAll(cluster)
    assert.equal((await put).rc, 1)
    assert.equal((await flush).rc, 1)
    const reply = await read
    assert.ok(reply.rc === 0 || reply.rc === -EEMPTY, `READ after the flush: rc ${reply.rc}`)
  })
})

void test('an op waiting when its client is destroyed does not bring the client back', async () => {
  await withFullPool(async ({ cluster, tier, op, pool }) => {
    const put = op(1, TMEM_PUT_PAGE, pool, 4, lcgPage(40))
    const get = op(1, TMEM_GET_PAGE, pool, 4) // waits for the put
    assert.equal(tier.destroyClient(1), true)
    await answerAll(cluster)
    await put
    assert.notEqual((await get).rc, 1)
    assert.equal(tier.hasClient(1), false, 'client 1 stays destroyed')
  })
})

void test('a get of a page demoted a moment ago is answered from the queued write, and leaves nothing behind', async () => {
  const { cluster, tier, op } = smallTier(4)
  try {
    const pool = newPool(tier, 1, false)
    for (let oid = 1; tier.counters.demoted === 0; oid++) {
      assert.ok(oid < 10)
      assert.equal((await op(1, TMEM_PUT_PAGE, pool, 0, lcgPage(oid), oid)).rc, 1)
    }
    // Object 1's page was evicted; its write is queued and the cluster has nothing yet. (A
    // read would go out first and find nothing: before unsent.ts, an ephemeral miss.)
    assert.equal(cluster.hashes.size, 0)
    const get = op(1, TMEM_GET_PAGE, pool, 0, undefined, 1)
    await answerAll(cluster)
    const reply = await get
    assert.equal(reply.rc, 1, 'a hit, not a miss')
    assert.deepEqual(Uint8Array.from(reply.page!), lcgPage(1))
    // A private ephemeral hit leaves the pool: nothing listed, nothing left in the cluster.
    await tier.queue.drain()
    await answerAll(cluster)
    assert.equal(tier.presence.pool(1, pool), undefined)
    for (const [key, fields] of cluster.hashes) assert.equal(fields.size, 0, `${key} keeps a value`)
  } finally {
    await cluster.store.close()
  }
})
