/**
 * The tmem error family (docs/errors.md): one root class, `TmemError`, with a stable string
 * `code` and an optional `errno`. Imports only src/abi, so every layer may import it.
 */
export { TmemError, type TmemErrorOptions, TmemOpError } from './base.js'
export { TmemConnectionError, TmemProtocolError } from './transport.js'
export {
  RestoreError,
  type RestoreErrorCode,
  type RestoreErrorDetail,
  SaveError,
  type SaveErrorCode,
  type SaveErrorDetail,
  SaveRestoreError,
  SaveStreamError,
  type SaveStreamErrorCode,
  type StreamPlace,
} from './stream.js'
export {
  errnoName,
  type MigratePhase,
  MigrationError,
  type MigrationErrorCode,
  type MigrationErrorDetail,
  type MigrationSide,
  MigrationStepError,
  type TargetCleanup,
} from './migration.js'
