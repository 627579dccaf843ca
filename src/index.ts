/**
 * The package entry: the public ABI as the `abi` namespace, and its decoded types at top level.
 */
export * as abi from './abi/mod.js'
export * from './abi/types.js'
export { Host, CLIENT_ID_MAX } from './engine/host.js'
export type { HostOptions, FrameResolver } from './engine/options.js'
export type { HostStats, ClientStats, PoolStats } from './engine/stats.js'
export { GuestClient, GuestPool, type OidLike, type NewPoolOptions } from './engine/friendly.js'
export { TmemError } from './errors.js'
