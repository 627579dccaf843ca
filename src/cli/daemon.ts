/**
 * `tmem daemon` (and `npm start`): options and environment -> engine Host + Daemon, the
 * startup summary on stdout, structured logs (pino, JSON) on stderr, and graceful shutdown on
 * SIGINT/SIGTERM. Everything has an embedded default, so `tmem daemon` alone serves clients.
 */
import { type Command, Option } from 'commander'
import { pino, type Logger } from 'pino'
import { Host } from '../engine/host.js'
import {
  defaultControlSocketPath,
  defaultMemoryBytes,
  defaultSocketPath,
  defaultTokenFile,
  formatAddress,
  parseDuration,
  parseLoopbackAddress,
  parseSize,
} from '../server/config.js'
import { Daemon, type DaemonConfig } from '../server/daemon.js'
import { formatBytes } from '../util/units.js'
import { startBusyPoll } from '../util/busy-poll.js'
import { heapFlagsHint } from './node-flags.js'
import { packageVersion } from './version.js'
import { busyPollBudget, busyPollOption } from './busy-poll.js'
import {
  CLIENTS_PER_ENDPOINT_MAX,
  DETACHED_CLIENTS_MAX,
  FRAME_IDLE_TIMEOUT_MS,
} from '../server/client-limits.js'
import type { NbdConfig, NbdServer } from '../frontends/nbd/mod.js'
import { type ExportSpec, parseExportSpec } from '../frontends/nbd/spec.js'
import { EXIT_FAILED, UsageError } from './exit.js'
import {
  type RemoteCliOptions,
  remoteOptions,
  resolveRemoteOptions,
  startRemoteTier,
} from './remote.js'

type FlagOption = 'acceptV0' | 'compress' | 'dedup' | 'tze' | 'globalSharedAuth'

/** Boolean options read from the environment as 1/true/yes or 0/false/no. */
const FLAG_ENV: Readonly<Record<FlagOption, string>> = {
  acceptV0: 'TMEM_ACCEPT_V0',
  compress: 'TMEM_COMPRESS',
  dedup: 'TMEM_DEDUP',
  tze: 'TMEM_TZE',
  globalSharedAuth: 'TMEM_GLOBAL_SHARED_AUTH',
}

interface DaemonCliOptions extends RemoteCliOptions {
  memory?: string
  socket?: string
  controlSocket?: string
  listen?: string
  controlListen?: string
  tokenFile?: string
  grace: string
  metrics?: string
  maxConnections: string
  maxControlConnections: string
  tcpHelloTimeout: string
  maxClientsPerEndpoint: string
  maxDetachedClients: string
  frameIdleTimeout: string
  logLevel: string
  acceptV0?: boolean
  /** False with --no-shm. */
  shm?: boolean
  compress?: boolean
  dedup?: boolean
  tze?: boolean
  globalSharedAuth?: boolean
  nbdSocket?: string
  nbdListen?: string
  export?: string[]
  busyPoll?: string
}

/** Adds the `daemon` command to the `tmem` program. */
export function registerDaemonCommand(program: Command): void {
  const command = program
    .command('daemon')
    .description('Run the tmem host: serve clients and the control plane until SIGINT/SIGTERM')
    .addHelpText('after', DAEMON_HELP_FOOTER)
    .action(async (options: DaemonCliOptions) => {
      await runDaemon(options)
    })
  for (const option of [...serviceOptions(), ...limitOptions(), ...remoteOptions()])
    command.addOption(option)
}

/** What the daemon serves, where, and with which savers. */
function serviceOptions(): Option[] {
  return [
    new Option(
      '--memory <size>',
      'memory for pages, e.g. 512M, 2G (binary units; default: a quarter of RAM, at most 1G, ' +
        `here ${formatBytes(defaultMemoryBytes())})`,
    ).env('TMEM_MEMORY'),
    new Option(
      '--socket <path>',
      `Unix socket for clients, "none" for no socket (default: ${defaultSocketPath()})`,
    ).env('TMEM_SOCKET'),
    new Option(
      '--control-socket <path>',
      `control Unix socket, mode 0600, "none" for no socket (default: ${defaultControlSocketPath()})`,
    ).env('TMEM_CONTROL_SOCKET'),
    new Option('--listen <host:port>', 'also serve clients on loopback TCP (port 0: any free)').env(
      'TMEM_LISTEN',
    ),
    new Option('--control-listen <host:port>', 'control on loopback TCP, guarded by a token').env(
      'TMEM_CONTROL_LISTEN',
    ),
    new Option(
      '--token-file <path>',
      `where the control token is written, mode 0600 (default: ${defaultTokenFile()})`,
    ).env('TMEM_TOKEN_FILE'),
    new Option('--grace <duration>', 'how long a dropped client keeps its pools: 30s, 2m, 0')
      .env('TMEM_GRACE')
      .default('30s'),
    new Option('--accept-v0', 'serve tmem ABI v0 clients too (env TMEM_ACCEPT_V0=1)'),
    new Option('--no-shm', 'do not offer shared-memory regions to local clients'),
    new Option('--metrics <host:port>', 'Prometheus endpoint on loopback (GET /metrics)').env(
      'TMEM_METRICS',
    ),
    new Option('--compress', "compress new clients' pages (env TMEM_COMPRESS=1)"),
    new Option('--dedup', 'deduplicate ephemeral pages (env TMEM_DEDUP=1)'),
    new Option('--tze', 'trailing-zero elimination (env TMEM_TZE=1)'),
    new Option(
      '--global-shared-auth',
      'any client may join a shared pool by UUID ' + '(env TMEM_GLOBAL_SHARED_AUTH=1)',
    ),
  ]
}

/** Bounds on connections and clients, logging, and the NBD frontend. */
function limitOptions(): Option[] {
  return [
    new Option(
      '--max-connections <n>',
      'client connections at once, per client listener (socket, TCP)',
    )
      .env('TMEM_MAX_CONNECTIONS')
      .default('1024'),
    new Option(
      '--max-control-connections <n>',
      'control connections at once, per control listener (socket, TCP)',
    )
      .env('TMEM_MAX_CONTROL_CONNECTIONS')
      .default('16'),
    new Option(
      '--tcp-hello-timeout <duration>',
      'a TCP connection that has not said hello by then is closed',
    )
      .env('TMEM_TCP_HELLO_TIMEOUT')
      .default('2s'),
    new Option(
      '--max-clients-per-endpoint <n>',
      'clients made through the Unix socket, and through TCP, each (attached or in grace)',
    )
      .env('TMEM_MAX_CLIENTS_PER_ENDPOINT')
      .default(String(CLIENTS_PER_ENDPOINT_MAX)),
    new Option(
      '--max-detached-clients <n>',
      'clients in their grace period; past this the oldest detached is reaped',
    )
      .env('TMEM_MAX_DETACHED_CLIENTS')
      .default(String(DETACHED_CLIENTS_MAX)),
    new Option(
      '--frame-idle-timeout <duration>',
      'a connection with a frame half sent and nothing more is closed after this (up to twice)',
    )
      .env('TMEM_FRAME_IDLE_TIMEOUT')
      .default(`${FRAME_IDLE_TIMEOUT_MS / 1000}s`),
    busyPollOption(),
    new Option('--log-level <level>', 'log level: fatal, error, warn, info, debug, trace, silent')
      .env('TMEM_LOG_LEVEL')
      .default('info'),
    new Option('--nbd-socket <path>', 'serve the NBD exports on this Unix socket').env(
      'TMEM_NBD_SOCKET',
    ),
    new Option('--nbd-listen <host:port>', 'serve the NBD exports on loopback TCP').env(
      'TMEM_NBD_LISTEN',
    ),
    new Option(
      '--export <spec>',
      'an NBD export (repeatable; in the environment several separated by ";"): ' +
        'name=NAME,size=SIZE[,mode=swap|cache][,backing=FILE][,shared=UUID][,readonly] ' +
        '(docs/nbd.md; tmem export add adds more while it runs)',
    )
      .env('TMEM_NBD_EXPORTS')
      .argParser((value: string, previous: string[] | undefined) => [
        ...(previous ?? []),
        ...value.split(';').filter((spec) => spec.trim() !== ''),
      ]),
  ]
}

const DAEMON_HELP_FOOTER = `
Every option can also come from the environment variable shown (the command line wins).
Logs are JSON lines on stderr; the addresses the daemon listens on are printed on stdout.
Clients connect with the client library (connect({ path })) and the control plane with
connectControl({ path }) or, over TCP, connectControl({ host, port, tokenFile }).`

/** Resolves options and environment into the engine's and the daemon's configuration. */
export function resolveDaemonOptions(
  options: DaemonCliOptions,
  env: NodeJS.ProcessEnv = process.env,
) {
  const flags = (key: FlagOption): boolean => options[key] === true || envFlag(env, FLAG_ENV[key])
  const memoryBytes =
    options.memory === undefined
      ? defaultMemoryBytes()
      : usage(() => parseSize(options.memory ?? ''))
  const controlListen = optionalAddress(options.controlListen)
  const config: DaemonConfig = {
    socketPath: pathOrNone(options.socket, defaultSocketPath(env)),
    controlSocketPath: pathOrNone(options.controlSocket, defaultControlSocketPath(env)),
    listen: optionalAddress(options.listen),
    controlListen,
    tokenFile: controlListen === null ? null : (options.tokenFile ?? defaultTokenFile(env)),
    metrics: optionalAddress(options.metrics),
    graceMs: usage(() => parseDuration(options.grace)),
    acceptV0: flags('acceptV0'),
    sharedMemory: options.shm !== false,
    connectionCountMax: positiveInteger(options.maxConnections, '--max-connections'),
    controlConnectionCountMax: positiveInteger(
      options.maxControlConnections,
      '--max-control-connections',
    ),
    tcpHelloTimeoutMs: positiveDuration(options.tcpHelloTimeout, '--tcp-hello-timeout'),
    clientsPerEndpointMax: positiveInteger(
      options.maxClientsPerEndpoint,
      '--max-clients-per-endpoint',
    ),
    detachedClientsMax: positiveInteger(options.maxDetachedClients, '--max-detached-clients'),
    frameIdleTimeoutMs: positiveDuration(options.frameIdleTimeout, '--frame-idle-timeout'),
  }
  if (config.socketPath === null && config.listen === null) {
    throw new UsageError('The daemon needs a client endpoint: --socket or --listen')
  }
  const remote = resolveRemoteOptions(options)
  return {
    config,
    remote,
    nbd: resolveNbdOptions(options, config.connectionCountMax),
    memoryBytes,
    busyPollMicroseconds: busyPollBudget(options.busyPoll),
    host: {
      bytes: memoryBytes,
      acceptV0: config.acceptV0,
      compress: flags('compress'),
      dedup: flags('dedup'),
      tze: flags('tze'),
      sharedAuth: !flags('globalSharedAuth'),
    },
  }
}

/** The NBD frontend's configuration, or null when no NBD listener is asked for. */
function resolveNbdOptions(
  options: DaemonCliOptions,
  connectionCountMax: number,
): NbdConfig | null {
  const socketPath =
    options.nbdSocket === undefined || options.nbdSocket === 'none' || options.nbdSocket === ''
      ? null
      : options.nbdSocket
  const listen = optionalAddress(options.nbdListen)
  const exports: ExportSpec[] = (options.export ?? []).map((text) =>
    usage(() => parseExportSpec(text)),
  )
  const names = new Set(exports.map((spec) => spec.name))
  if (names.size !== exports.length) throw new UsageError('Two --export options have the same name')
  if (socketPath === null && listen === null) {
    if (exports.length > 0) throw new UsageError('--export needs --nbd-socket or --nbd-listen')
    return null
  }
  // No --export is fine: `tmem export add` adds them to the running daemon.
  return { socketPath, listen, exports, connectionCountMax }
}

/** Starts the daemon and keeps the process alive until a signal stops it. */
export async function runDaemon(options: DaemonCliOptions): Promise<void> {
  const resolved = resolveDaemonOptions(options)
  const log = pino(
    { name: 'tmem', level: options.logLevel },
    pino.destination({ dest: 2, sync: true }),
  )
  const host = new Host(resolved.host)
  host.onDiagnostic = (clientId, message) => log.warn({ client: clientId }, message)
  let daemon: Daemon
  let nbd: NbdServer | null = null
  const tier = resolved.remote === null ? null : await startRemoteTier(host, resolved.remote, log)
  const hint = tier === null ? '' : heapFlagsHint()
  if (hint !== '') log.warn(hint)
  try {
    daemon = await Daemon.start(tier ?? host, resolved.config, log)
    try {
      // Loaded only here: the other verbs of the CLI never pay for the NBD server's modules.
      if (resolved.nbd !== null) {
        const { NbdServer: Server, registerExportCommands } =
          await import('../frontends/nbd/mod.js')
        nbd = await Server.start(host, daemon.sessions, log, resolved.nbd)
        // `tmem export add|remove|list` reach the NBD server through the control endpoint.
        registerExportCommands(daemon.dispatcher.commands, nbd)
      }
    } catch (error) {
      await daemon.close()
      throw error
    }
  } catch (error) {
    log.fatal({ err: error }, 'daemon failed to start')
    process.stderr.write(`tmem daemon: ${(error as Error).message}\n`)
    process.exitCode = EXIT_FAILED
    await tier?.close()
    return
  }
  const busyPollOff = startBusyPoll(resolved.busyPollMicroseconds)
  // Signals are handled before "ready" is printed: a supervisor may stop us right after it.
  installShutdown(daemon, log, nbd, async () => await tier?.close())
  printSummary(daemon, resolved.memoryBytes, nbd, resolved.busyPollMicroseconds, busyPollOff)
  log.info({ addresses: daemon.addresses, pages: host.options.pages }, 'ready')
}

function printSummary(
  daemon: Daemon,
  memoryBytes: number,
  nbd: NbdServer | null,
  busyPollUs: number,
  busyPollOff: string,
): void {
  const a = daemon.addresses
  const config = daemon.config
  const lines = [
    `tmem daemon ${packageVersion()}: memory ${formatBytes(memoryBytes)} ` +
      `(${memoryBytes / 4096} pages), grace ${config.graceMs / 1000}s, ABI v1` +
      (config.acceptV0 ? ' and v0' : ' (v0 refused)') +
      (busyPollOff === '' ? `, busy poll ${busyPollUs} us` : `, busy poll off (${busyPollOff})`),
  ]
  if (a.socketPath !== null) lines.push(`  clients  unix:${a.socketPath}`)
  if (a.listen !== null) lines.push(`  clients  tcp:${formatAddress(a.listen)}`)
  if (a.controlSocketPath !== null) lines.push(`  control  unix:${a.controlSocketPath} (mode 0600)`)
  if (a.controlListen !== null) {
    lines.push(`  control  tcp:${formatAddress(a.controlListen)} (token in ${a.tokenFile ?? '?'})`)
  }
  if (a.metrics !== null) lines.push(`  metrics  http://${formatAddress(a.metrics)}/metrics`)
  if (nbd !== null) {
    const names = nbd
      .list()
      .map(
        (entry) =>
          `${String(entry['name'])} (${String(entry['mode'])} ${formatBytes(Number(entry['size']))})`,
      )
      .join(', ')
    if (nbd.addresses.socketPath !== null) lines.push(`  nbd      unix:${nbd.addresses.socketPath}`)
    if (nbd.addresses.listen !== null)
      lines.push(`  nbd      tcp:${formatAddress(nbd.addresses.listen)}`)
    lines.push(`  exports  ${names === '' ? '(none yet: tmem export add)' : names}`)
  }
  lines.push(`tmem daemon ready (pid ${process.pid})`)
  process.stdout.write(`${lines.join('\n')}\n`)
}

function installShutdown(
  daemon: Daemon,
  log: Logger,
  nbd: NbdServer | null,
  closeRemote: () => Promise<void>,
): void {
  let stopping = false
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now')
      process.exit(EXIT_FAILED)
    }
    stopping = true
    log.info({ signal }, 'shutting down')
    const closing = nbd === null ? Promise.resolve() : nbd.close()
    closing
      .then(() => daemon.close())
      .then(closeRemote)
      .then(
        () => {
          log.info('stopped')
          process.exit(0)
        },
        (error: unknown) => {
          log.error({ err: error }, 'shutdown failed')
          process.exit(EXIT_FAILED)
        },
      )
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}

function envFlag(env: NodeJS.ProcessEnv, name: string): boolean {
  const value = (env[name] ?? '').trim().toLowerCase()
  if (value === '' || value === '0' || value === 'false' || value === 'no' || value === 'off')
    return false
  if (value === '1' || value === 'true' || value === 'yes' || value === 'on') return true
  throw new UsageError(`${name} must be 1/true/yes or 0/false/no, got ${JSON.stringify(env[name])}`)
}

function pathOrNone(value: string | undefined, fallback: string): string | null {
  if (value === undefined) return fallback
  if (value === 'none' || value === '') return null
  return value
}

function optionalAddress(value: string | undefined) {
  return value === undefined || value === '' ? null : usage(() => parseLoopbackAddress(value))
}

function positiveInteger(value: string, name: string): number {
  const number = Number(value)
  if (!Number.isInteger(number) || number < 1)
    throw new UsageError(`${name} must be a positive integer`)
  return number
}

function positiveDuration(value: string, name: string): number {
  const ms = usage(() => parseDuration(value))
  if (ms < 1) throw new UsageError(`${name} must be longer than 0`)
  return ms
}

/** Runs a parser, turning its RangeError into a usage error (exit 2). */
function usage<T>(parse: () => T): T {
  try {
    return parse()
  } catch (error) {
    if (error instanceof RangeError) throw new UsageError(error.message)
    throw error
  }
}
