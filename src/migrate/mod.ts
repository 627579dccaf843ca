/**
 * Save and restore of tmem clients as the Xen v1 stream (docs/semantics.md "Save and restore", "Decision: save stream fixes"), and live migration
 * between daemons. Re-exports only; docs/save-restore.md and docs/migration.md are the guides.
 */
export { type ControlChannel, type ControlHost, CLI_ID_MAX, hostChannel } from './channel.js'
export {
  RestoreError,
  type RestoreErrorCode,
  type RestoreErrorDetail,
  SaveError,
  SaveRestoreError,
  type SaveErrorCode,
  type SaveErrorDetail,
  SaveStreamError,
  type SaveStreamErrorCode,
  type StreamPlace,
} from '../errors/mod.js'
export {
  HEADER_BYTES,
  MARKER_TMEM,
  MARKER_TMEM_EXTRA,
  POOL_RECORD_BYTES,
  invalidationRecordBytes,
  oidBytes,
  pageRecordBytes,
  type StreamHeader,
  type StreamInvalidation,
  type StreamPage,
  type StreamPool,
} from './format.js'
export type { StreamPoolSummary, StreamSummary, StreamVisitor, WalkOptions } from './parse.js'
export type { Progress, ProgressCallback, ProgressOptions, ProgressPhase } from './progress.js'
export {
  type RestoreOptions,
  type RestoreResult,
  inspectSaveStream,
  restoreClient,
} from './restore.js'
export {
  type InvalidationsOptions,
  type InvalidationsResult,
  type SaveOptions,
  type SaveResult,
  type SaveToFileResult,
  saveClient,
  saveClientToFile,
  saveClientToSink,
  saveEnd,
  saveInvalidations,
} from './save.js'
export {
  type FileSink,
  type MemorySink,
  type StreamSink,
  memorySink,
  openFileSink,
  SAVE_SYMLINK_HOPS_MAX,
  writableFileSink,
  writableSink,
} from './sink.js'
export type { RestoreSource } from './source.js'
export {
  DigestMismatchError,
  digestingSink,
  digestPath,
  fileDigest,
  verifyDigest,
  type VerifyResult,
  writeDigest,
} from './digest.js'
export {
  type MigrateOptions,
  type MigratePhase,
  type MigrateProgress,
  type MigrateResult,
  MigrationError,
  type MigrationErrorCode,
  MigrationStepError,
  migrateClient,
} from './live.js'
export { type NetworkChannelOptions, networkChannel } from './net.js'
