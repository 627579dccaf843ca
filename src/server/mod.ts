/**
 * The daemon's public surface, the `tmem/daemon` package entry: `Daemon` (serve a host over
 * Unix sockets and loopback TCP), its config, and the parsers the `tmem daemon` command uses
 * for its options. The daemon is written against `HostLike`; pass it an engine `Host`
 * (`tmem/engine`).
 */
export { Daemon, HELLO_TIMEOUT_MS, type DaemonAddresses, type DaemonConfig } from './daemon.js'
export {
  DEFAULT_MEMORY_BYTES_MAX,
  defaultControlSocketPath,
  defaultMemoryBytes,
  defaultRuntimeDir,
  defaultSocketPath,
  defaultTokenFile,
  formatAddress,
  parseDuration,
  parseLoopbackAddress,
  parseSize,
  type TcpAddress,
} from './config.js'
export type { HostLike } from './host-like.js'
export type { DaemonStats } from '../protocol/stats.js'
