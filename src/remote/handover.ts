/**
 * Handing a client's remote pages over in a live migration between two daemons on the same
 * cluster (docs/remote.md "Live migration"): the keys stay where they are and the target
 * adopts their namespace. Four control subops (policy.ts), driven by the migrator
 * (migrate/live-remote.ts) in the frozen window, after the last drain:
 *
 * - EXPORT on the source (read-only): once its change queue has drained, the cluster's
 *   identity and the client's presence entries with each pool's key namespace, as JSON pages
 *   (arg2 the cursor; the reply names the next one, -1 at the end).
 * - ADOPT on the target: the same JSON, listed in its presence index under the new client id.
 *   -EXDEV when the target is on another cluster. Adopted pools are *borrowed* until ADOPT
 *   with arg1 = 1 (commit, after ACTIVATE): destroying a borrowed pool (a rollback) forgets
 *   its pages without deleting them, so the source keeps them intact.
 * - RELEASE on the source, after the switch: forgets the client's remote pages without
 *   deleting them, so the source's destroy of the moved client leaves the keys to the target.
 *   The target also calls it to undo a partial ADOPT.
 */
import { randomBytes } from 'node:crypto'
import { EFAULT, EINVAL, EPERM } from '../abi/constants.js'
import type { DeferredReply } from '../protocol/deferred.js'
import type { RemoteStore } from './cluster.js'
import { entryBytes, entryVersion, type Presence } from './presence.js'
import type { ChangeQueue } from './queue.js'

/** errno EXDEV: the target's cluster is not the source's. */
export const EXDEV = 18

/** One pool of the export: its slot, kind, key namespace and pages [oid, index, version, bytes]. */
interface ExportPool {
  pool: number
  persistent: boolean
  space: string
  pages: [string, number, number, number][]
}

interface ExportPage {
  cluster: string
  next: number
  pools: ExportPool[]
}

/** Room kept in an export page for the JSON around the entries. */
const SLACK_BYTES = 1024
/** A generous bound of one entry's JSON: 48 hex digits, index, version, bytes. */
const ENTRY_BYTES = 96

export class RemoteHandover {
  readonly #presence: Presence
  readonly #queue: ChangeQueue
  readonly #store: RemoteStore
  readonly #hostId: string
  readonly #seen: (version: number) => void
  #cluster: string | null = null

  constructor(
    presence: Presence,
    queue: ChangeQueue,
    store: RemoteStore,
    hostId: string,
    seen: (version: number) => void,
  ) {
    this.#presence = presence
    this.#queue = queue
    this.#store = store
    this.#hostId = hostId
    this.#seen = seen
  }

  /** EXPORT: the client's entries from `cursor` on, as many as `room` bytes of JSON hold. */
  async export(clientId: number, cursor: number, room: number): Promise<DeferredReply> {
    if (room < SLACK_BYTES + ENTRY_BYTES) return { rc: -EINVAL, page: null }
    let cluster: string
    try {
      await this.#queue.drain()
      cluster = await this.#identity()
    } catch {
      return { rc: -EFAULT, page: null }
    }
    const most = Math.floor((room - SLACK_BYTES) / (ENTRY_BYTES + 64))
    const pools: ExportPool[] = []
    let n = 0
    let next = -1
    const own = [...this.#presence.pools()].filter((pool) => pool.clientId === clientId)
    own.sort((a, b) => a.poolId - b.poolId)
    outer: for (const pool of own) {
      const entry: ExportPool = {
        pool: pool.poolId,
        persistent: pool.persistent,
        space: pool.namespace ?? `${this.#hostId}:${clientId}`,
        pages: [],
      }
      for (const [oid, object] of pool.objects) {
        for (const [index, value] of object) {
          if (n >= cursor + most) {
            next = n
            break outer
          }
          if (n++ < cursor) continue
          if (entry.pages.length === 0) pools.push(entry)
          entry.pages.push([oid, index, entryVersion(value), entryBytes(value)])
        }
      }
    }
    const page: ExportPage = { cluster, next, pools }
    const bytes = Buffer.from(JSON.stringify(page))
    return { rc: bytes.length, page: bytes }
  }

  /** ADOPT: lists an export page's entries for `clientId` (borrowed until committed). */
  async adopt(clientId: number, input: Uint8Array): Promise<DeferredReply> {
    let page: ExportPage
    try {
      page = checkPage(JSON.parse(Buffer.from(input).toString('utf8')))
    } catch {
      return { rc: -EINVAL, page: null }
    }
    let cluster: string
    try {
      cluster = await this.#identity()
    } catch {
      return { rc: -EFAULT, page: null }
    }
    if (cluster !== page.cluster) return { rc: -EXDEV, page: null }
    const presence = this.#presence
    for (const pool of page.pools) {
      const there = presence.pool(clientId, pool.pool)
      if (there !== undefined && !there.borrowed) return { rc: -EPERM, page: null }
    }
    for (const pool of page.pools) {
      for (const [oid, index, version, bytes] of pool.pages) {
        presence.set(clientId, pool.pool, pool.persistent, oid, index, version, bytes)
        this.#seen(version)
      }
      const adopted = presence.pool(clientId, pool.pool)
      if (adopted === undefined) continue
      adopted.namespace = pool.space
      adopted.borrowed = true
    }
    return { rc: 0, page: null }
  }

  /** ADOPT commit: the client's borrowed pools are its own from now on. */
  commit(clientId: number): number {
    for (const pool of this.#presence.pools()) if (pool.clientId === clientId) pool.borrowed = false
    return 0
  }

  /** RELEASE: forgets the client's remote pages, deleting nothing; the pages forgotten. */
  release(clientId: number): number {
    let pages = 0
    const own = [...this.#presence.pools()].filter((pool) => pool.clientId === clientId)
    for (const pool of own) {
      pages += pool.pages
      this.#presence.deletePool(clientId, pool.poolId)
    }
    return pages
  }

  /** The cluster's identity: a key the first daemon to ask sets (SET NX), the same for all. */
  async #identity(): Promise<string> {
    if (this.#cluster !== null) return this.#cluster
    this.#cluster = await this.#store.identity(randomBytes(8).toString('hex'))
    return this.#cluster
  }
}

/** An export page from JSON, checked field by field; throws when malformed. */
function checkPage(value: unknown): ExportPage {
  const page = value as ExportPage
  if (typeof page?.cluster !== 'string' || !Array.isArray(page.pools)) throw new Error('page')
  for (const pool of page.pools) {
    const ok =
      Number.isInteger(pool.pool) &&
      pool.pool >= 0 &&
      pool.pool < 64 &&
      typeof pool.persistent === 'boolean' &&
      typeof pool.space === 'string' &&
      /^[A-Za-z0-9_.-]{1,64}:\d{1,5}$/.test(pool.space) &&
      Array.isArray(pool.pages)
    if (!ok) throw new Error('pool')
    for (const entry of pool.pages) {
      const [oid, index, version, bytes] = entry
      if (
        !Array.isArray(entry) ||
        typeof oid !== 'string' ||
        !/^[0-9a-f]{48}$/.test(oid) ||
        !Number.isInteger(index) ||
        index < 0 ||
        index > 0xffffffff ||
        !Number.isSafeInteger(version) ||
        version < 1 ||
        !Number.isInteger(bytes) ||
        bytes < 0 ||
        bytes >= 8192
      )
        throw new Error('entry')
    }
  }
  return page
}
