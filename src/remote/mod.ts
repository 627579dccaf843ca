/**
 * The remote tier on Redis Cluster (docs/remote.md): `RemoteTier` wraps an engine `Host` for
 * the daemon, `RemoteStore` is its cluster connection. `src/cli/daemon.ts` wires them.
 */
export { RemoteStore, type RemoteHealth, keySlot } from './cluster.js'
export { parseRemoteUrl, objectKey, poolIndexKey, oidHex, type SeedNode } from './keys.js'
export {
  POLICY_ALL,
  POLICY_EPHEMERAL,
  POLICY_NAMES,
  POLICY_OFF,
  TMEMC_SET_REMOTE,
  TMEMC_SET_REMOTE_QUOTA,
  parsePolicy,
} from './policy.js'
export type { RemoteSection } from './report.js'
export { TURN_BUDGET_MS } from './turns.js'
export { RemoteTier, type RemoteTierOptions } from './tier.js'
