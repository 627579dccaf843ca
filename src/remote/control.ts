/**
 * The tier's part of the control subops (docs/remote.md): its own two (remote policy and
 * quota), forgetting remote pages after a control flush or destroy, and the save subops,
 * which also cover the remote persistent pages (save.ts). A save subop that needs the network
 * answers OP_DEFERRED, and `deferred` is its reply.
 */
import {
  EINVAL,
  EPERM,
  TMEM_SAVE_PRECOPY,
  TMEMC_DESTROY,
  TMEMC_FLUSH,
  TMEMC_SAVE_BEGIN,
  TMEMC_SAVE_END,
  TMEMC_SAVE_GET_NEXT_INV,
  TMEMC_SAVE_GET_NEXT_PAGE,
  TMEMC_SAVE_GET_PAGES,
  TMEMC_SAVE_GET_POOL_NPAGES,
} from '../abi/constants.js'
import type { Host } from '../engine/host.js'
import type { OpScratch } from '../engine/op-scratch.js'
import { type DeferredReply, OP_DEFERRED } from '../protocol/deferred.js'
import type { RemoteCopies } from './copies.js'
import type { RemoteHandover } from './handover.js'
import {
  ALL_CLIENTS,
  type ClientPolicies,
  POLICY_OFF,
  TMEMC_REMOTE_ADOPT,
  TMEMC_REMOTE_EXPORT,
  TMEMC_REMOTE_PAGES,
  TMEMC_REMOTE_RELEASE,
  TMEMC_SET_REMOTE,
  TMEMC_SET_REMOTE_QUOTA,
} from './policy.js'
import type { RemoteSaves } from './save.js'

export class TierControl {
  readonly #host: Host
  readonly #policies: ClientPolicies
  readonly #copies: RemoteCopies
  readonly saves: RemoteSaves
  readonly #handovers: RemoteHandover
  /** The reply of the subop that just answered OP_DEFERRED. */
  deferred: Promise<DeferredReply> | null = null

  constructor(
    host: Host,
    policies: ClientPolicies,
    copies: RemoteCopies,
    saves: RemoteSaves,
    handovers: RemoteHandover,
  ) {
    this.#handovers = handovers
    this.#host = host
    this.#policies = policies
    this.#copies = copies
    this.saves = saves
  }

  /** TMEM_CONTROL in `s`; `engine` runs it on the engine. */
  run(
    s: OpScratch,
    version: 0 | 1,
    engine: () => number,
    data: Uint8Array | null,
    dataOffset: number,
    dataLength: number,
  ): number {
    const host = this.#host
    const { subop, cliId, arg1 } = s
    const ids = (): number[] => (cliId === ALL_CLIENTS ? host.clientIds() : [cliId])
    if (subop === TMEMC_SET_REMOTE || subop === TMEMC_SET_REMOTE_QUOTA) {
      const off = (id: number): void => this.#copies.forgetClient(id, true)
      return host.hasClient(cliId) || cliId === ALL_CLIENTS
        ? this.#policies.apply(ids(), subop, arg1, off)
        : -EPERM
    }
    if (subop >= TMEMC_REMOTE_EXPORT && subop <= TMEMC_REMOTE_PAGES) {
      if (!host.hasClient(cliId)) return -EPERM
      return this.#handover(s, data, dataOffset, dataLength)
    }
    if (subop === TMEMC_SAVE_GET_NEXT_INV && data !== null) {
      // The remote pages' invalidations first: the engine starts its list over after its end.
      const room = Math.min(arg1, dataLength)
      if (this.saves.nextInvalidation(cliId, data, dataOffset, room, version) === 1) return 1
    }
    const rc = engine()
    const saves = this.saves
    const poolId = s.poolId
    switch (subop) {
      case TMEMC_FLUSH:
      case TMEMC_DESTROY:
        if (rc >= 0) for (const id of ids()) this.#copies.forgetClient(id, false)
        return rc
      case TMEMC_SAVE_BEGIN:
        // A pre-copy save (live migration) moves remote pages its own way (docs/remote.md).
        if (rc === 1 && arg1 !== TMEM_SAVE_PRECOPY) saves.begin(cliId, arg1 !== 0)
        return rc
      case TMEMC_SAVE_END:
        saves.end(cliId)
        return rc
      case TMEMC_SAVE_GET_POOL_NPAGES:
        return rc >= 0 ? rc + saves.count(cliId, poolId) : rc
      case TMEMC_SAVE_GET_NEXT_PAGE:
        if (rc !== -1 || !saves.hasMore(cliId, poolId)) return rc
        this.deferred = saves.nextPage(cliId, poolId, version)
        return OP_DEFERRED
      case TMEMC_SAVE_GET_PAGES:
        if (rc !== 0 || !saves.hasMore(cliId, poolId)) return rc
        this.deferred = saves.pages(cliId, poolId, Math.min(arg1, dataLength))
        return OP_DEFERRED
      default:
        return rc
    }
  }

  /** The handover subops (handover.ts) and REMOTE_PAGES (save.ts) for client `s.cliId`. */
  #handover(s: OpScratch, data: Uint8Array | null, at: number, length: number): number {
    const { subop, cliId, arg1, arg2, poolId } = s
    const room = Math.min(arg1, data === null ? 0 : length)
    switch (subop) {
      case TMEMC_REMOTE_EXPORT:
        this.deferred = this.#handovers.export(cliId, arg2, room)
        return OP_DEFERRED
      case TMEMC_REMOTE_ADOPT: {
        if (arg1 === 1) return this.#handovers.commit(cliId)
        if (data === null || length <= 0) return -EINVAL
        // A client kept local here: its pages come in the stream instead.
        if (this.#policies.policy(cliId) === POLICY_OFF) return -EPERM
        // The input lies in a buffer the daemon reuses: copied before the reply waits.
        const input = data.slice(at, at + length)
        this.deferred = this.#handovers.adopt(cliId, input)
        return OP_DEFERRED
      }
      case TMEMC_REMOTE_RELEASE:
        this.saves.end(cliId)
        return this.#handovers.release(cliId)
      default:
        // The first call lists the client's remote persistent pages; SAVE_END ends the list.
        if (!this.saves.active(cliId)) this.saves.begin(cliId)
        if (!this.saves.hasMore(cliId, poolId)) return 0
        this.deferred = this.saves.pages(cliId, poolId, room)
        return OP_DEFERRED
    }
  }
}
