/**
 * The client library's public surface (re-exported by src/index.ts): the guest client, the
 * control client and their errors.
 */
export {
  TmemClient,
  connect,
  type ConnectOptions,
  type ConnectTarget,
  type NewPoolOptions,
  type OidInput,
  type OpResult,
} from './client.js'
export {
  TmemControlClient,
  connectControl,
  LIST_BUFFER_BYTES,
  type ControlConnectOptions,
  type ControlResult,
  type ControlTarget,
  type ExportInfo,
} from './control.js'
export type {
  ClientStats,
  DaemonStats,
  HostStats,
  PoolStats,
  SessionStats,
} from '../protocol/stats.js'
export { TmemConnectionError, TmemError, TmemOpError, TmemProtocolError } from './errors.js'
