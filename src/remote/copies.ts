/**
 * Forgetting remote copies: a flushed page, a page replaced locally, an object, a pool, a
 * client. The presence index forgets at once (so no later get can reach the copy) and the
 * deletes go through the ordered change queue (docs/remote.md "Presence and versions").
 */
import { objectKey, poolIndexKey } from './keys.js'
import { entryBytes, poolNumber, type PoolPresence, type Presence } from './presence.js'
import type { ChangeQueue } from './queue.js'

export class RemoteCopies {
  readonly presence: Presence
  readonly queue: ChangeQueue
  readonly #hostId: string
  /**
   * Writes that may have to be taken back: an overflow write lands after it was queued, and
   * if its pool or its client was forgotten meanwhile its page must not be listed (and its
   * field is deleted). Each forget takes a stamp from `#forgets`; a write notes the stamp
   * when it starts (`beginWrite`) and compares at the end (`endWrite`) with the stamps of its
   * own pool and client only (another client's pool going is no reason to drop a page). The
   * maps are emptied whenever no such write is on its way; under writes that never stop they
   * hold at most one entry per client id and per client pool forgotten meanwhile, a bound set
   * by the ids (a forget stamps the entry it finds again).
   */
  #forgets = 0
  #writes = 0
  readonly #poolForgotAt = new Map<number, number>()
  readonly #clientForgotAt = new Map<number, number>()

  constructor(presence: Presence, queue: ChangeQueue, hostId: string) {
    this.presence = presence
    this.queue = queue
    this.#hostId = hostId
  }

  forgetPage(clientId: number, poolId: number, index: number, oid: string): void {
    if (this.presence.pool(clientId, poolId) === undefined) return
    const entry = this.presence.get(clientId, poolId, oid, index)
    if (entry === 0) return
    this.presence.delete(clientId, poolId, oid, index)
    if (entryBytes(entry) > 0) this.deleteField(clientId, poolId, oid, index)
  }

  deleteField(clientId: number, poolId: number, oid: string, index: number): void {
    this.queue.push({ kind: 'hdel', key: this.key(clientId, poolId, oid), index })
  }

  forgetObject(clientId: number, poolId: number, oid: string): void {
    if (this.presence.pool(clientId, poolId) === undefined) return
    if (this.presence.deleteObject(clientId, poolId, oid) === 0) return
    this.queue.push({ kind: 'del', key: this.key(clientId, poolId, oid) })
    this.index(clientId, poolId, oid, 'srem')
  }

  /** An overflow write starts: the stamp to hand to `endWrite`. */
  beginWrite(): number {
    this.#writes++
    return this.#forgets
  }

  /** The write that began at `stamp` ended: true when its pool or client went meanwhile. */
  endWrite(clientId: number, poolId: number, stamp: number): boolean {
    const forgotten =
      (this.#poolForgotAt.get(poolNumber(clientId, poolId)) ?? -1) > stamp ||
      (this.#clientForgotAt.get(clientId) ?? -1) > stamp
    if (--this.#writes === 0) {
      this.#poolForgotAt.clear()
      this.#clientForgotAt.clear()
    }
    return forgotten
  }

  forgetPool(clientId: number, poolId: number): void {
    if (this.#writes > 0) this.#poolForgotAt.set(poolNumber(clientId, poolId), ++this.#forgets)
    const pool = this.presence.deletePool(clientId, poolId)
    if (pool === undefined || pool.borrowed) return
    for (const oid of pool.objects.keys()) {
      this.queue.push({ kind: 'del', key: objectKey(this.#space(pool), clientId, poolId, oid) })
    }
    this.queue.push({ kind: 'del', key: poolIndexKey(this.#space(pool), clientId, poolId) })
  }

  /** Drops a client's remote pages: all of them, or (a control flush) the ephemeral ones. */
  forgetClient(clientId: number, persistentToo: boolean): void {
    // Its pools not listed yet (their first writes on their way) are gone too.
    if (persistentToo && this.#writes > 0) this.#clientForgotAt.set(clientId, ++this.#forgets)
    const pools = [...this.presence.pools()].filter((pool) => pool.clientId === clientId)
    for (const pool of pools) {
      if (persistentToo || !pool.persistent) this.forgetPool(clientId, pool.poolId)
    }
  }

  index(clientId: number, poolId: number, oid: string, kind: 'sadd' | 'srem'): void {
    const key = poolIndexKey(this.#space(this.presence.pool(clientId, poolId)), clientId, poolId)
    this.queue.push({ kind, key, member: oid })
  }

  key(clientId: number, poolId: number, oid: string): string {
    return objectKey(this.#space(this.presence.pool(clientId, poolId)), clientId, poolId, oid)
  }

  /** The namespace of a pool's keys: its own, or this daemon's (see objectKey). */
  #space(pool: PoolPresence | undefined): string {
    return pool?.namespace ?? this.#hostId
  }
}
