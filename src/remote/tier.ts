/**
 * The remote tier (docs/remote.md): wraps the engine `Host` as the daemon's `HostLike`. The
 * engine hands each evicted ephemeral page (as stored) to `#demote`, which lists it in the
 * presence index and queues its write; a later local miss of a listed page fetches it. A
 * persistent put the engine refuses with -ENOMEM goes to the cluster and is answered 1 once
 * the cluster has it. Both answer through OP_DEFERRED (protocol/deferred.ts); everything else
 * is answered by the engine at once, and a pool with no remote page allocates nothing.
 */
import {
  EEMPTY,
  EFAULT,
  ENODEV,
  ENOMEM,
  PAGE_SIZE,
  TMEM_CONTROL,
  TMEM_DESTROY_POOL,
  TMEM_FLUSH_OBJECT,
  TMEM_GET_PAGE,
  TMEM_PUT_PAGE,
  TMEM_READ,
} from '../abi/constants.js'
import type { Host } from '../engine/host.js'
import { OpScratch, readOpBytes } from '../engine/op-scratch.js'
import { type EvictedPage, STORED_FILLED, STORED_PLAIN } from '../engine/victim.js'
import { type DeferredReply, OP_DEFERRED } from '../protocol/deferred.js'
import type { HostStats, StatsTotals } from '../protocol/stats.js'
import type { StatsPass } from '../engine/stats.js'
import type { RemoteStore } from './cluster.js'
import {
  encodeValue,
  fillWord,
  isPageCommand,
  isZeroPage,
  oidHex,
  replacesPage,
  Slab,
} from './keys.js'
import { ClientPolicies, POLICY_ALL, POLICY_OFF } from './policy.js'
import { TierControl } from './control.js'
import { RemoteSaves } from './save.js'
import { RemoteHandover } from './handover.js'
import { entryBytes, entryVersion, poolNumber, Presence } from './presence.js'
import { ChangeQueue } from './queue.js'
import { RemoteCopies } from './copies.js'
import { copyOp, PendingOps } from './ordering.js'
import { opLayout } from '../abi/layout.js'
import { RemoteCounters, remoteSection } from './report.js'
import type { RemoteTierOptions } from './tier-options.js'
import type { TurnMeter } from './turns.js'
import { RemoteFetches } from './fetch.js'

export type { RemoteTierOptions } from './tier-options.js'

/** Pool kinds as `Host.poolKind` reports them. */
const KIND_PERSISTENT = 1
const KIND_SHARED = 2

export class RemoteTier {
  readonly presence = new Presence()
  readonly policies: ClientPolicies
  readonly counters = new RemoteCounters()
  readonly queue: ChangeQueue
  readonly copies: RemoteCopies
  readonly #host: Host
  readonly #store: RemoteStore
  readonly #options: RemoteTierOptions
  readonly #s = new OpScratch()
  readonly #meter: TurnMeter
  readonly #slab = new Slab()
  readonly #fetches: RemoteFetches
  #version = 0
  #pending: Promise<DeferredReply> | null = null
  readonly #waiting = new PendingOps()
  readonly #control: TierControl
  /** Set while a chained op runs: it already waited its turn. */
  #replaying = false
  /** The oid of the op in the scratch as text, made at most once per op (#oidText). */
  #oid: string | null = null

  constructor(host: Host, options: RemoteTierOptions) {
    this.#host = host
    this.#store = options.store
    this.#options = options
    this.#meter = options.store.meter
    this.policies = new ClientPolicies(options.defaultPolicy)
    this.queue = new ChangeQueue(options.store, options.queueMax)
    this.copies = new RemoteCopies(this.presence, this.queue, options.hostId)
    this.#fetches = new RemoteFetches(host, this.copies, this.counters, options.store, options.log)
    const keyOf = (c: number, p: number, oid: string): string => this.copies.key(c, p, oid)
    const saves = new RemoteSaves(this.presence, options.store, host, keyOf)
    const seen = (version: number): void => void (this.#version = Math.max(this.#version, version))
    const { presence, queue } = this
    const handovers = new RemoteHandover(presence, queue, options.store, options.hostId, seen)
    this.#control = new TierControl(host, this.policies, this.copies, saves, handovers)
    host.onEvictEphemeral = (page) => {
      const started = this.#meter.start()
      this.#demote(page)
      this.#meter.stop(started, 'ops')
    }
  }

  get store(): RemoteStore {
    return this.#store
  }

  get hostId(): string {
    return this.#options.hostId
  }

  // ---------------------------------------------------------------------------------------
  // HostLike.

  opBytes(
    clientId: number,
    bytes: Uint8Array,
    offset: number,
    version: 0 | 1,
    data: Uint8Array | null,
    dataOffset: number,
  ): number {
    const host = this.#host
    const s = this.#s
    if (
      !isPageCommand(bytes, offset) ||
      !this.policies.see(clientId) ||
      !readOpBytes(s, bytes, offset, version, false)
    ) {
      return host.opBytes(clientId, bytes, offset, version, data, dataOffset)
    }
    this.#oid = null
    const pending = this.#waiting
    let page: string | null | undefined
    if (!this.#replaying && !pending.idle && pending.busy(poolNumber(clientId, s.poolId))) {
      page = this.#pageName()
      const waits = pending.waitsFor(poolNumber(clientId, s.poolId), page)
      if (waits.length > 0)
        return this.#chain(waits, clientId, bytes, offset, version, data, dataOffset)
    }
    const rc = this.#run(clientId, bytes, offset, version, data, dataOffset)
    if (rc === OP_DEFERRED && !this.#replaying && this.#pending !== null) {
      page ??= this.#pageName()
      pending.track(poolNumber(clientId, s.poolId), page, this.#pending)
    }
    return rc
  }

  /** The op in the scratch: the engine, then the tier's part. */
  #run(
    clientId: number,
    bytes: Uint8Array,
    offset: number,
    version: 0 | 1,
    data: Uint8Array | null,
    dataOffset: number,
  ): number {
    const s = this.#s
    const host = this.#host
    let rc = host.opBytes(clientId, bytes, offset, version, data, dataOffset)
    const remote = this.presence.pool(clientId, s.poolId) !== undefined
    // A pool with no remote page: nothing to do but overflow a refused put, or forget a pool.
    if (!remote && s.cmd !== TMEM_DESTROY_POOL && !(s.cmd === TMEM_PUT_PAGE && rc === -ENOMEM))
      return rc
    const started = this.#meter.start()
    if (s.cmd === TMEM_PUT_PAGE) rc = this.#afterPut(clientId, rc, data, dataOffset)
    else if (s.cmd === TMEM_GET_PAGE) rc = this.#afterGet(clientId, rc, data, dataOffset)
    else if (replacesPage(s.cmd) && remote)
      this.copies.forgetPage(clientId, s.poolId, s.index, this.#oidText())
    else if (s.cmd === TMEM_FLUSH_OBJECT && remote)
      this.copies.forgetObject(clientId, s.poolId, this.#oidText())
    else if (s.cmd === TMEM_DESTROY_POOL && host.poolKind(clientId, s.poolId) < 0)
      this.copies.forgetPool(clientId, s.poolId)
    this.#meter.stop(started, 'ops')
    return rc
  }

  controlBytes(
    bytes: Uint8Array,
    offset: number,
    version: 0 | 1,
    data: Uint8Array | null,
    dataOffset: number,
    dataLength: number,
  ): number {
    const engine = (): number =>
      this.#host.controlBytes(bytes, offset, version, data, dataOffset, dataLength)
    if (!readOpBytes(this.#s, bytes, offset, version, false) || this.#s.cmd !== TMEM_CONTROL)
      return engine()
    const rc = this.#control.run(this.#s, version, engine, data, dataOffset, dataLength)
    if (rc === OP_DEFERRED) this.#pending = this.#control.deferred
    return rc
  }

  hasClient(clientId: number): boolean {
    return this.#host.hasClient(clientId)
  }

  destroyClient(clientId: number): boolean {
    const destroyed = this.#host.destroyClient(clientId)
    this.copies.forgetClient(clientId, true)
    this.policies.forget(clientId)
    this.#control.saves.end(clientId)
    return destroyed
  }

  stats(): HostStats {
    return remoteSection(this.#host.stats(), this)
  }

  statsOf(ids: readonly number[]): HostStats {
    return remoteSection(this.#host.statsOf(ids), this)
  }

  statsTotals(): StatsTotals {
    return this.#host.statsTotals()
  }

  statsPass(max: number): StatsPass {
    return this.#host.statsPass(max)
  }

  /** The turn's remote work reached its budget (turns.ts): further guest ops can wait. */
  yieldTurn(): boolean {
    return this.#meter.overBudget()
  }

  takeDeferred(): Promise<DeferredReply> {
    const pending = this.#pending
    this.#pending = null
    return pending ?? Promise.resolve({ rc: -EFAULT, page: null })
  }

  /** Sends what is queued, then closes the connection to the cluster. */
  async close(): Promise<void> {
    this.#host.onEvictEphemeral = null
    await this.queue.drain()
    await this.#store.close()
  }

  /** The page the op in the scratch names, or null for a pool-wide op. */
  #pageName(): string | null {
    const s = this.#s
    if (s.cmd === TMEM_FLUSH_OBJECT || s.cmd === TMEM_DESTROY_POOL) return null
    return `${this.#oidText()}:${s.index}`
  }

  /** The oid of the op in the scratch as text (the presence index's and the keys' name). */
  #oidText(): string {
    this.#oid ??= oidHex(this.#s.oid)
    return this.#oid
  }

  /** An op that must wait for pending ones: copied, and run when they have settled. */
  #chain(
    waits: Promise<unknown>[],
    clientId: number,
    bytes: Uint8Array,
    offset: number,
    version: 0 | 1,
    data: Uint8Array | null,
    dataOffset: number,
  ): number {
    const s = this.#s
    const get = s.cmd === TMEM_GET_PAGE
    // A get's page starts fresh; a READ fills part of its frame, so it starts from a copy.
    const reads = get || s.cmd === TMEM_READ
    const { op, page } = copyOp(bytes, offset, opLayout(version).bytes, data, dataOffset, get)
    const reply = Promise.all(waits).then((): DeferredReply | Promise<DeferredReply> => {
      // Its client was destroyed meanwhile: run, the op would make the engine create it anew.
      if (!this.#host.hasClient(clientId)) return { rc: -ENODEV, page: null }
      this.#replaying = true
      let rc: number
      try {
        rc = this.opBytes(clientId, op, 0, version, page, 0)
      } finally {
        this.#replaying = false
      }
      if (rc === OP_DEFERRED) return this.takeDeferred()
      return { rc, page: reads && rc === 1 ? page : null }
    })
    this.#waiting.track(poolNumber(clientId, s.poolId), this.#pageName(), reply)
    this.#pending = reply
    return OP_DEFERRED
  }

  // ---------------------------------------------------------------------------------------
  // Puts and gets.

  #afterPut(clientId: number, rc: number, data: Uint8Array | null, at: number): number {
    const s = this.#s
    const presence = this.presence
    const pool = presence.pool(clientId, s.poolId)
    const kind = this.#host.poolKind(clientId, s.poolId)
    const overflow =
      rc === -ENOMEM &&
      kind === KIND_PERSISTENT &&
      data !== null &&
      at >= 0 &&
      at + PAGE_SIZE <= data.length &&
      this.policies.policy(clientId) === POLICY_ALL &&
      this.#store.health !== 'down'
    if (pool === undefined && !overflow) return rc
    const oid = this.#oidText()
    if (!overflow) {
      // The local copy (or none, when the put failed) is now the page: drop the remote one.
      this.copies.forgetPage(clientId, s.poolId, s.index, oid)
      return rc
    }
    // A rewrite frees the bytes of the copy it replaces: a client at its quota may rewrite.
    const replaced = entryBytes(presence.get(clientId, s.poolId, oid, s.index))
    if (!this.policies.hasRoom(clientId, presence.clientBytes(clientId) - replaced, PAGE_SIZE)) {
      // Refused: the page it replaces goes too (docs/semantics.md "Duplicate put").
      this.copies.forgetPage(clientId, s.poolId, s.index, oid)
      this.counters.quotaRefused++
      return rc
    }
    return this.#overflow(clientId, oid, data, at)
  }

  /** A persistent page local memory refused: into the cluster, answered once it is there. */
  #overflow(clientId: number, oid: string, data: Uint8Array, at: number): number {
    const s = this.#s
    const poolId = s.poolId
    const index = s.index
    const presence = this.presence
    const version = ++this.#version
    if (isZeroPage(data, at)) {
      // Listed here only: nothing to send, and no older copy may answer for it.
      const before = presence.get(clientId, poolId, oid, index)
      presence.set(clientId, poolId, true, oid, index, version, 0)
      if (before !== 0 && entryBytes(before) > 0)
        this.copies.deleteField(clientId, poolId, oid, index)
      this.counters.persistentPuts++
      return 1
    }
    const key = this.copies.key(clientId, poolId, oid)
    const fresh = presence.pool(clientId, poolId)?.objects.has(oid) !== true
    if (fresh) this.copies.index(clientId, poolId, oid, 'sadd')
    const value = encodeValue(this.#slab, STORED_PLAIN, version, data, at, at + PAGE_SIZE)
    const stamp = this.copies.beginWrite()
    this.#pending = new Promise<DeferredReply>((resolve) => {
      this.queue.push({
        kind: 'put',
        key,
        index,
        value,
        replicas: this.#options.replicas,
        demotion: false,
        done: (written) => {
          // Its pool or client went (or its policy became off) while the write was on its
          // way: take it back out, and the put failed (the client, if alive, must not count
          // on a page that is not kept).
          const takenBack = this.copies.endWrite(clientId, poolId, stamp) && written
          if (takenBack) this.copies.deleteField(clientId, poolId, oid, index)
          const ok = written && !takenBack
          if (ok) presence.set(clientId, poolId, true, oid, index, version, value.length)
          // A failed put drops the page it replaces (docs/semantics.md "Duplicate put").
          else this.copies.forgetPage(clientId, poolId, index, oid)
          if (ok) this.counters.persistentPuts++
          else this.counters.persistentRefused++
          resolve({ rc: ok ? 1 : -ENOMEM, page: null })
        },
      })
    })
    return OP_DEFERRED
  }

  #afterGet(clientId: number, rc: number, data: Uint8Array | null, at: number): number {
    if (rc !== 0 && rc !== -EEMPTY) return rc
    const s = this.#s
    const poolId = s.poolId
    if (this.presence.pool(clientId, poolId) === undefined) return rc
    const oid = this.#oidText()
    const entry = this.presence.get(clientId, poolId, oid, s.index)
    if (entry === 0) return rc
    const persistent = (this.#host.poolKind(clientId, poolId) & KIND_PERSISTENT) !== 0
    if (entryBytes(entry) === 0) {
      if (data === null || at < 0 || at + PAGE_SIZE > data.length) return -EFAULT
      data.fill(0, at, at + PAGE_SIZE)
      if (!persistent) this.presence.delete(clientId, poolId, oid, s.index)
      this.counters.hits++
      return 1
    }
    this.#pending = this.#fetches.fetch(
      clientId,
      poolId,
      oid,
      s.index,
      entryVersion(entry),
      persistent,
    )
    return OP_DEFERRED
  }

  // ---------------------------------------------------------------------------------------
  // Demotion (the engine's eviction hook).

  #demote(page: EvictedPage): void {
    const clientId = page.clientId
    const poolId = page.poolId
    const policy = this.policies.policyIfSeen(clientId)
    if (policy === POLICY_OFF || this.#store.health === 'down') return
    if (this.#host.poolKind(clientId, poolId) & KIND_SHARED) return
    const length = page.kind === STORED_FILLED ? (page.fill === 0 ? 0 : 4) : page.length
    if (!this.policies.hasRoom(clientId, this.presence.clientBytes(clientId), length)) {
      this.counters.quotaRefused++
      return
    }
    const oid = oidHex(page.oid)
    const version = ++this.#version
    const index = page.index
    const presence = this.presence
    if (length === 0) {
      presence.set(clientId, poolId, false, oid, index, version, 0)
      this.counters.demoted++
      return
    }
    const value =
      page.kind === STORED_FILLED
        ? encodeValue(this.#slab, page.kind, version, fillWord(page.fill), 0, 4)
        : encodeValue(
            this.#slab,
            page.kind,
            version,
            page.bytes,
            page.offset,
            page.offset + page.length,
          )
    const fresh = presence.pool(clientId, poolId)?.objects.has(oid) !== true
    const key = this.copies.key(clientId, poolId, oid)
    const unsent = this.#fetches.unsent
    const queued = this.queue.demote({
      kind: 'put',
      key,
      index,
      value,
      replicas: 0,
      demotion: true,
      done: (ok) => {
        unsent.settled(key, index, value)
        if (!ok) presence.deleteIfVersion(clientId, poolId, oid, index, version)
      },
    })
    if (!queued) return
    unsent.add(key, index, value)
    if (fresh) this.copies.index(clientId, poolId, oid, 'sadd')
    presence.set(clientId, poolId, false, oid, index, version, value.length)
    this.counters.demoted++
  }
}
