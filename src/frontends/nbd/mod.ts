/** The NBD frontend's public surface (docs/nbd.md). */
export { NbdServer, type NbdConfig, type NbdAddresses } from './server.js'
export {
  type ExportSpec,
  type ExportMode,
  EXPORT_BYTES_MAX,
  parseExportSpec,
  clientNameOf,
} from './spec.js'
export { NBD_PAYLOAD_BYTES_MAX } from './constants.js'
export { registerExportCommands, EXPORT_COMMANDS } from './commands.js'
