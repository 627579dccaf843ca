/**
 * The `tmem/engine` package entry: the in-process host and the ABI, without the daemon,
 * the client library or the CLI. Re-exports only.
 */
export * as abi from '../abi/mod.js'
export * from '../abi/types.js'
export { Host, CLIENT_ID_MAX } from './host.js'
export type { HostOptions, FrameResolver } from './options.js'
export type { HostStats, ClientStats, PoolStats } from './stats.js'
export { GuestClient, GuestPool, type OidLike, type NewPoolOptions } from './friendly.js'
export { TmemError } from '../errors/mod.js'
