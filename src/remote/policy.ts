/**
 * Per-client remote policy (docs/remote.md "Policy"): `off` (the client's pages never leave
 * this machine), `ephemeral` (evicted ephemeral pages get a second chance in the cluster) or
 * `all` (and persistent puts overflow into it), with a quota of remote bytes. Set by
 * `tmem set CLIENT --remote ... --remote-quota ...`, which sends the control subops below;
 * an engine without the tier answers them -EINVAL like any unknown subop.
 */

/** TMEMC subop: arg1 = POLICY_OFF, POLICY_EPHEMERAL or POLICY_ALL. */
export const TMEMC_SET_REMOTE = 60
/** TMEMC subop: arg1 = the remote quota in pages (0: no quota). */
export const TMEMC_SET_REMOTE_QUOTA = 61

/** Live-migration handover of remote pages (handover.ts, docs/remote.md "Live migration"). */
export const TMEMC_REMOTE_EXPORT = 62
export const TMEMC_REMOTE_ADOPT = 63
export const TMEMC_REMOTE_RELEASE = 64
/** The client's remote persistent pages of a pool as page records (save.ts), for a stream. */
export const TMEMC_REMOTE_PAGES = 65

export const POLICY_OFF = 0
export const POLICY_EPHEMERAL = 1
export const POLICY_ALL = 2
export const POLICY_NAMES: readonly string[] = ['off', 'ephemeral', 'all']

/** The control ops' "every client" id. */
export const ALL_CLIENTS = 0xffff

/** The policy named `name`, or -1. */
export function parsePolicy(name: string): number {
  return POLICY_NAMES.indexOf(name)
}

export class ClientPolicies {
  readonly #default: number
  readonly #policy = new Map<number, number>()
  /** Remote bytes allowed per client (absent: no quota). */
  readonly #quota = new Map<number, number>()

  constructor(defaultPolicy: number) {
    this.#default = defaultPolicy
  }

  /** Notes a client the tier serves; false when its policy is off. */
  see(clientId: number): boolean {
    let policy = this.#policy.get(clientId)
    if (policy === undefined) {
      policy = this.#default
      this.#policy.set(clientId, policy)
    }
    return policy !== POLICY_OFF
  }

  policy(clientId: number): number {
    return this.#policy.get(clientId) ?? this.#default
  }

  /** Off for a client never served through the tier (the NBD frontend's, for one). */
  policyIfSeen(clientId: number): number {
    return this.#policy.get(clientId) ?? POLICY_OFF
  }

  quotaBytes(clientId: number): number {
    return this.#quota.get(clientId) ?? 0
  }

  setPolicy(clientId: number, policy: number): boolean {
    if (policy !== POLICY_OFF && policy !== POLICY_EPHEMERAL && policy !== POLICY_ALL) return false
    this.#policy.set(clientId, policy)
    return true
  }

  setQuota(clientId: number, pages: number): boolean {
    if (!Number.isInteger(pages) || pages < 0) return false
    if (pages === 0) this.#quota.delete(clientId)
    else this.#quota.set(clientId, pages * 4096)
    return true
  }

  /** Whether `extra` more remote bytes fit under the client's quota. */
  hasRoom(clientId: number, used: number, extra: number): boolean {
    const quota = this.#quota.get(clientId)
    return quota === undefined || used + extra <= quota
  }

  /** A TMEMC_SET_REMOTE(_QUOTA) subop for `ids`: 0, or -EINVAL; `off` drops a client's copies. */
  apply(ids: number[], subop: number, value: number, off: (id: number) => void): number {
    for (const id of ids) {
      const ok = subop === TMEMC_SET_REMOTE ? this.setPolicy(id, value) : this.setQuota(id, value)
      if (!ok) return -22
      if (subop === TMEMC_SET_REMOTE && value === POLICY_OFF) off(id)
    }
    return 0
  }

  forget(clientId: number): void {
    this.#policy.delete(clientId)
    this.#quota.delete(clientId)
  }
}
