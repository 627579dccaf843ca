/**
 * The package entry: the public ABI as the `abi` namespace, and its decoded types at top level.
 */
export * as abi from './abi/mod.js'
export * from './abi/types.js'
export { Host, CLIENT_ID_MAX } from './engine/host.js'
export type { HostOptions, FrameResolver } from './engine/options.js'
export type { HostStats, ClientStats, PoolStats } from './engine/stats.js'
export { GuestClient, GuestPool, type OidLike, type NewPoolOptions } from './engine/friendly.js'
export {
  MigrationError,
  MigrationStepError,
  RestoreError,
  SaveError,
  SaveRestoreError,
  SaveStreamError,
  TmemConnectionError,
  TmemError,
  TmemOpError,
  TmemProtocolError,
  type MigrationErrorCode,
} from './errors/mod.js'
export {
  connect,
  connectControl,
  LIST_BUFFER_BYTES,
  TmemClient,
  TmemControlClient,
  type ConnectOptions,
  type ConnectTarget,
  type ControlConnectOptions,
  type ControlResult,
  type ControlTarget,
  type DaemonStats,
  type NewPoolOptions as ClientNewPoolOptions,
  type OidInput,
  type OpResult,
} from './client/mod.js'
export { Daemon, type DaemonAddresses, type DaemonConfig } from './server/daemon.js'
export {
  hostChannel,
  inspectSaveStream,
  memorySink,
  migrateClient,
  networkChannel,
  openFileSink,
  restoreClient,
  saveClient,
  saveClientToFile,
  saveClientToSink,
  saveEnd,
  saveInvalidations,
  writableFileSink,
  writableSink,
  type ControlChannel,
  type InvalidationsOptions,
  type InvalidationsResult,
  type MigrateOptions,
  type MigrateProgress,
  type MigrateResult,
  type Progress,
  type ProgressCallback,
  type RestoreOptions,
  type RestoreResult,
  type RestoreSource,
  type SaveOptions,
  type SaveResult,
  type SaveToFileResult,
  type StreamSink,
  type StreamSummary,
} from './migrate/mod.js'
