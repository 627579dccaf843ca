/**
 * The `tmem/engine` package entry: the in-process host and the ABI, without the daemon,
 * the client library or the CLI. (It belongs in src/engine/mod.ts; it lives here while the
 * engine is being rewritten, so that the two changes merge apart.)
 */
export * as abi from '../abi/mod.js'
export * from '../abi/types.js'
export { Host, CLIENT_ID_MAX } from '../engine/host.js'
export type { HostOptions, FrameResolver } from '../engine/options.js'
export type { HostStats, ClientStats, PoolStats } from '../engine/stats.js'
export { GuestClient, GuestPool, type OidLike, type NewPoolOptions } from '../engine/friendly.js'
export { TmemError } from '../errors/mod.js'
