/**
 * The gets of remote pages (docs/remote.md "Presence and versions"): a local miss of a page
 * the presence index lists reads its value, and serves it only at the version listed when
 * the reply arrives; otherwise a miss (ephemeral) or -EFAULT (persistent, never another page).
 */
import type { Logger } from 'pino'
import { EFAULT, PAGE_SIZE } from '../abi/constants.js'
import type { Host } from '../engine/host.js'
import type { DeferredReply } from '../protocol/deferred.js'
import type { RemoteStore } from './cluster.js'
import type { RemoteCopies } from './copies.js'
import { Slab, VALUE_HEADER_BYTES, valueKind, valueVersion } from './keys.js'
import { entryVersion, type Presence } from './presence.js'
import type { RemoteCounters } from './report.js'
import { UnsentValues } from './unsent.js'

export class RemoteFetches {
  readonly #host: Host
  readonly #copies: RemoteCopies
  readonly #presence: Presence
  readonly #store: RemoteStore
  readonly #counters: RemoteCounters
  readonly #log: Logger
  readonly #slab = new Slab()
  /** Demotions on their way to the cluster (unsent.ts), filled by the tier. */
  readonly unsent = new UnsentValues()

  constructor(
    host: Host,
    copies: RemoteCopies,
    counters: RemoteCounters,
    store: RemoteStore,
    log: Logger,
  ) {
    this.#host = host
    this.#copies = copies
    this.#presence = copies.presence
    this.#store = store
    this.#counters = counters
    this.#log = log
  }

  /** A remote page for a get: served only at the version the presence index lists. */
  async fetch(
    clientId: number,
    poolId: number,
    oid: string,
    index: number,
    version: number,
    persistent: boolean,
  ): Promise<DeferredReply> {
    const key = this.#copies.key(clientId, poolId, oid)
    // Demoted a moment ago and not written yet: the queued value is the page (its version is
    // checked like the cluster's), and no read can overtake the write.
    let value = this.unsent.get(key, index)
    try {
      value ??= await this.#store.read(key, index)
    } catch {
      this.#counters.fetchFailed++
      return { rc: persistent ? -EFAULT : 0, page: null }
    }
    const started = this.#store.meter.start()
    try {
      return this.#fetched(clientId, poolId, oid, index, version, persistent, key, value)
    } finally {
      this.#store.meter.replyEnd(started)
    }
  }

  /** The value a fetch read: the page, or a miss when it is not the listed version. */
  #fetched(
    clientId: number,
    poolId: number,
    oid: string,
    index: number,
    version: number,
    persistent: boolean,
    key: string,
    value: Buffer | null,
  ): DeferredReply {
    const entry = this.#presence.get(clientId, poolId, oid, index)
    // Flushed or replaced while the read was on its way: the copy is not the page any more.
    if (entry === 0 || entryVersion(entry) !== version) return this.#miss(persistent)
    const page = this.#slab.take(PAGE_SIZE)
    if (
      value === null ||
      valueVersion(value) !== version ||
      !this.#host.expandStored(valueKind(value), value, VALUE_HEADER_BYTES, value.length, page)
    ) {
      this.#counters.stale++
      if (persistent) {
        this.#log.error({ client: clientId, pool: poolId, key, index }, 'remote page lost')
        return { rc: -EFAULT, page: null }
      }
      // Its write may still be on its way (queued behind a batch; this read did not wait):
      // the delete goes through the queue after it, so the value does not stay behind.
      this.#copies.forgetPage(clientId, poolId, index, oid)
      return this.#miss(false)
    }
    this.#counters.hits++
    if (!persistent) this.#copies.forgetPage(clientId, poolId, index, oid)
    return { rc: 1, page }
  }

  #miss(persistent: boolean): DeferredReply {
    this.#counters.misses++
    return { rc: persistent ? -EFAULT : 0, page: null }
  }
}
