/**
 * The tier's part of the control subops (docs/remote.md): its own two (remote policy and
 * quota), forgetting remote pages after a control flush or destroy, and the save subops,
 * which also cover the remote persistent pages (save.ts). A save subop that needs the network
 * answers OP_DEFERRED, and `deferred` is its reply.
 */
import {
  EPERM,
  TMEM_SAVE_PRECOPY,
  TMEMC_DESTROY,
  TMEMC_FLUSH,
  TMEMC_SAVE_BEGIN,
  TMEMC_SAVE_END,
  TMEMC_SAVE_GET_NEXT_PAGE,
  TMEMC_SAVE_GET_PAGES,
  TMEMC_SAVE_GET_POOL_NPAGES,
} from '../abi/constants.js'
import type { Host } from '../engine/host.js'
import type { OpScratch } from '../engine/op-scratch.js'
import { type DeferredReply, OP_DEFERRED } from '../protocol/deferred.js'
import type { RemoteCopies } from './copies.js'
import {
  ALL_CLIENTS,
  type ClientPolicies,
  TMEMC_SET_REMOTE,
  TMEMC_SET_REMOTE_QUOTA,
} from './policy.js'
import type { RemoteSaves } from './save.js'

export class TierControl {
  readonly #host: Host
  readonly #policies: ClientPolicies
  readonly #copies: RemoteCopies
  readonly saves: RemoteSaves
  /** The reply of the subop that just answered OP_DEFERRED. */
  deferred: Promise<DeferredReply> | null = null

  constructor(host: Host, policies: ClientPolicies, copies: RemoteCopies, saves: RemoteSaves) {
    this.#host = host
    this.#policies = policies
    this.#copies = copies
    this.saves = saves
  }

  /** TMEM_CONTROL in `s`; `engine` runs it on the engine. */
  run(s: OpScratch, version: 0 | 1, engine: () => number, dataLength: number): number {
    const host = this.#host
    const { subop, cliId, arg1 } = s
    const ids = (): number[] => (cliId === ALL_CLIENTS ? host.clientIds() : [cliId])
    if (subop === TMEMC_SET_REMOTE || subop === TMEMC_SET_REMOTE_QUOTA) {
      const off = (id: number): void => this.#copies.forgetClient(id, true)
      return host.hasClient(cliId) || cliId === ALL_CLIENTS
        ? this.#policies.apply(ids(), subop, arg1, off)
        : -EPERM
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
        if (rc === 1 && arg1 !== TMEM_SAVE_PRECOPY) saves.begin(cliId)
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
}
