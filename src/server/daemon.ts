/**
 * The tmem daemon: listens for clients (Unix socket, optional loopback TCP) and for the
 * control plane (a Unix socket only its owner can open, mode 0600, and optional loopback TCP
 * guarded by a token in a file created mode 0600), and serves them from one engine `Host`.
 *
 * Owns: the listening servers, the set of live connections (bounded per listener: the Unix and
 * TCP listeners of one kind have separate slot budgets, so a TCP peer that fills its slots
 * cannot lock the owner out of the 0600 control socket), the session
 * table, the optional metrics endpoint, and the files it creates (sockets, token), which it
 * removes again at close. Every connection is a `Connection` driven by one `Dispatcher`.
 */
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, unlinkSync, writeFileSync } from 'node:fs'
import { type Server as HttpServer } from 'node:http'
import { type Server, type Socket, createServer } from 'node:net'
import { dirname } from 'node:path'
import { setImmediate as setImmediatePromise } from 'node:timers/promises'
import type { Logger } from 'pino'
import { type TcpAddress, formatAddress } from './config.js'
import { Connection, type Endpoint } from './connection.js'
import { Dispatcher } from './dispatch.js'
import { REJECT_NAMES, REJECT_NONE } from '../protocol/frame.js'
import type { DaemonSection, DaemonStats } from '../protocol/stats.js'
import { sessionStats, statsBody } from './stats-pages.js'
import type { HostLike } from './host-like.js'
import {
  METRICS_CLIENTS_PER_TURN,
  METRICS_LABELLED_CLIENTS_MAX,
  Metrics,
  type Sample,
  flattenSamples,
  hostSamples,
  serveMetrics,
} from './metrics.js'
import { formatClientAddress } from '../protocol/session-frame.js'
import { SessionTable } from './sessions.js'
import { FRAME_IDLE_TIMEOUT_MS } from './client-limits.js'
import { CLIENT_SIZES, CONTROL_SIZES } from './endpoint-sizes.js'
import { isListening, listen } from './listen.js'
import { EventLoopDelay } from './event-loop.js'
import { busyPollStats } from '../util/busy-poll.js'

export interface DaemonConfig {
  /** Unix socket for clients, or null for none. */
  socketPath: string | null
  /** Unix socket for the control plane (mode 0600), or null for none. */
  controlSocketPath: string | null
  /** Loopback TCP for clients. */
  listen: TcpAddress | null
  /** Loopback TCP for the control plane; needs `tokenFile`. */
  controlListen: TcpAddress | null
  /** Where the control token is written (mode 0600) when `controlListen` is set. */
  tokenFile: string | null
  /** Prometheus endpoint. */
  metrics: TcpAddress | null
  graceMs: number
  acceptV0: boolean
  /** Offer shared-memory regions to clients on the Unix socket (default true). */
  sharedMemory?: boolean
  /** Client connections at once, per client listener (Unix socket, TCP). */
  connectionCountMax: number
  /** Control connections at once, per control listener (Unix socket, TCP). */
  controlConnectionCountMax: number
  /** How long a TCP connection may take to say hello. Default `TCP_HELLO_TIMEOUT_MS`. */
  tcpHelloTimeoutMs?: number
  /** Client limits (client-limits.ts); defaults there. */
  clientsPerEndpointMax?: number
  detachedClientsMax?: number
  /** A frame left half sent for this long (up to twice) closes its connection. */
  frameIdleTimeoutMs?: number
}

/** Where the daemon ended up listening (TCP ports resolved). */
export interface DaemonAddresses {
  socketPath: string | null
  controlSocketPath: string | null
  listen: TcpAddress | null
  controlListen: TcpAddress | null
  tokenFile: string | null
  metrics: TcpAddress | null
}

/** A Unix-socket connection that has not said hello by then is closed (it holds a slot). */
export const HELLO_TIMEOUT_MS = 10_000
/**
 * The same for loopback TCP, where any local user (and anything that can reach loopback) may
 * connect without a login: shorter, so an idle peer holds a TCP slot for less long.
 */
export const TCP_HELLO_TIMEOUT_MS = 2_000

/** The connection slots of one listener. */
interface Slots {
  /** `client unix`, `control tcp`, ... for logs. */
  readonly label: string
  readonly max: number
  readonly helloTimeoutMs: number
  count: number
}

export class Daemon {
  readonly host: HostLike
  readonly config: DaemonConfig
  readonly sessions: SessionTable
  readonly dispatcher: Dispatcher
  readonly startedAtMs = Date.now()
  readonly #log: Logger
  readonly #connections = new Map<Connection, Slots>()
  readonly #servers: Server[] = []
  readonly #createdFiles: string[] = []
  #metricsServer: HttpServer | null = null
  #idleSweep: NodeJS.Timeout | null = null
  readonly #loopDelay = new EventLoopDelay()
  #serial = 0
  #clientConnections = 0
  #controlConnections = 0
  #closed = false
  addresses: DaemonAddresses = {
    socketPath: null,
    controlSocketPath: null,
    listen: null,
    controlListen: null,
    tokenFile: null,
    metrics: null,
  }

  private constructor(host: HostLike, config: DaemonConfig, log: Logger, token: Buffer | null) {
    this.host = host
    this.config = config
    this.#log = log
    const limits = {
      ...(config.clientsPerEndpointMax === undefined
        ? {}
        : { clientsPerEndpointMax: config.clientsPerEndpointMax }),
      ...(config.detachedClientsMax === undefined
        ? {}
        : { detachedClientsMax: config.detachedClientsMax }),
    }
    this.sessions = new SessionTable(host, config.graceMs, log, limits)
    this.dispatcher = new Dispatcher(host, this.sessions, log, {
      acceptV0: config.acceptV0,
      token,
      stats: (request) =>
        statsBody(
          { host, sessions: this.sessions, daemonSection: () => this.daemonSection() },
          request,
          () => this.snapshot(),
          METRICS_CLIENTS_PER_TURN,
        ),
      onClosed: (conn) => this.#forget(conn),
      sharedMemory: config.sharedMemory ?? true,
    })
  }

  /** Opens every configured endpoint; on failure, closes what was opened and throws. */
  static async start(host: HostLike, config: DaemonConfig, log: Logger): Promise<Daemon> {
    if (config.controlListen !== null && config.tokenFile === null) {
      throw new RangeError('A TCP control endpoint needs a token file')
    }
    const token =
      config.controlListen === null ? null : Buffer.from(randomBytes(32).toString('hex'))
    const daemon = new Daemon(host, config, log, token)
    try {
      await daemon.#open(token)
    } catch (error) {
      await daemon.close()
      throw error
    }
    return daemon
  }

  async #open(token: Buffer | null): Promise<void> {
    const config = this.config
    this.#idleSweep = setInterval(
      () => this.#sweepIdle(),
      config.frameIdleTimeoutMs ?? FRAME_IDLE_TIMEOUT_MS,
    )
    this.#idleSweep.unref()
    this.#loopDelay.start()
    if (config.socketPath !== null) {
      await this.#listenUnix('client', config.socketPath, 0o660)
      this.addresses.socketPath = config.socketPath
    }
    if (config.controlSocketPath !== null) {
      await this.#listenUnix('control', config.controlSocketPath, 0o600)
      this.addresses.controlSocketPath = config.controlSocketPath
    }
    if (config.listen !== null)
      this.addresses.listen = await this.#listenTcp('client', config.listen)
    if (config.controlListen !== null && token !== null && config.tokenFile !== null) {
      this.#writeToken(config.tokenFile, token)
      this.addresses.tokenFile = config.tokenFile
      this.addresses.controlListen = await this.#listenTcp('control', config.controlListen)
    }
    if (config.metrics !== null) {
      const metrics = new Metrics(() => this.samples())
      this.#metricsServer = await serveMetrics(metrics, config.metrics, this.#log)
      const bound = this.#metricsServer.address()
      const port = typeof bound === 'object' && bound !== null ? bound.port : config.metrics.port
      this.addresses.metrics = { host: config.metrics.host, port }
    }
  }

  /** The STATS reply: daemon counters, sessions and the engine snapshot. */
  snapshot(): DaemonStats {
    const now = Date.now()
    return {
      daemon: this.daemonSection(now),
      sessions: this.sessions.list().map((session) => sessionStats(session, now)),
      host: this.host.stats(),
    }
  }

  /** The daemon's part of every STATS reply: what it is, and its counters. */
  daemonSection(now = Date.now()): DaemonSection {
    const rejects: Record<string, number> = {}
    REJECT_NAMES.forEach((name, reason) => {
      if (reason !== REJECT_NONE) rejects[name] = this.dispatcher.rejectsByReason[reason] ?? 0
    })
    return {
      pid: process.pid,
      uptimeMs: now - this.startedAtMs,
      graceMs: this.config.graceMs,
      acceptV0: this.config.acceptV0,
      // What live migration needs to know about a target (docs/migration.md).
      abis: this.config.acceptV0 ? [0, 1] : [1],
      migration: 1,
      clientAddresses: this.#clientAddresses(),
      connections: this.#connections.size,
      clientConnections: this.#clientConnections,
      controlConnections: this.#controlConnections,
      sessions: this.sessions.size,
      limits: this.sessions.limits,
      ...this.dispatcher.counters,
      ...this.sessions.counters,
      framesRejectedByReason: rejects,
      shm: this.dispatcher.shm.stats(),
      eventLoop: this.#loopDelay.section(),
      busyPoll: busyPollStats(),
      deferredOps: this.dispatcher.deferredOps,
    }
  }

  /** Where clients connect, as MOVED notices write it (`unix:/path`, `tcp:host:port`). */
  #clientAddresses(): string[] {
    const out: string[] = []
    if (this.addresses.socketPath !== null)
      out.push(formatClientAddress({ path: this.addresses.socketPath }))
    if (this.addresses.listen !== null) out.push(formatClientAddress(this.addresses.listen))
    return out
  }

  /**
   * Metric samples: the engine's counters per client and pool, then the daemon's. Only the
   * labelled clients are snapshotted; the counts and the choice of those clients come from a
   * walk over numbers, METRICS_CLIENTS_PER_TURN client ids per turn of the event loop, so a
   * scrape at 65,535 clients x 16 pools never holds other clients up for more than a few ms.
   */
  async samples(): Promise<Sample[]> {
    const out: Sample[] = []
    const host = this.host
    const pass = host.statsPass(METRICS_LABELLED_CLIENTS_MAX)
    while (!pass.step(METRICS_CLIENTS_PER_TURN)) await setImmediatePromise()
    const labelled = host.statsOf(pass.topIds)
    const name = (id: number): string => this.sessions.byId(id)?.name ?? ''
    hostSamples(labelled, name, out, undefined, pass.totals)
    const daemon = this.daemonSection()
    flattenSamples('tmem_daemon', daemon, {}, out, new Set(['pid', 'framesRejectedByReason']))
    for (const [reason, value] of Object.entries(daemon.framesRejectedByReason)) {
      out.push({
        name: 'tmem_daemon_frames_rejected_by_reason',
        help: 'Malformed frames by reason (each closed its connection)',
        labels: { reason },
        value,
      })
    }
    return out
  }

  /** Closes the connections found stalled mid-frame by this sweep and the one before. */
  #sweepIdle(): void {
    for (const conn of this.#connections.keys()) {
      if (!conn.stalledMidFrame()) continue
      this.#log.warn(
        { conn: conn.serial, clientName: conn.name, remote: conn.remote },
        'closed: a frame half sent and nothing more',
      )
      conn.closeWithError(0, 'A frame was left half sent for too long')
    }
  }

  /** Stops listening, closes every connection, removes the files it created. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#idleSweep !== null) clearInterval(this.#idleSweep)
    this.#loopDelay.stop()
    this.dispatcher.shuttingDown = true
    const closing = this.#servers.map(
      (server) => new Promise<void>((resolve) => server.close(() => resolve())),
    )
    for (const conn of this.#connections.keys()) conn.destroy()
    this.sessions.stopTimers()
    if (this.#metricsServer !== null) {
      const server = this.#metricsServer
      server.closeAllConnections()
      closing.push(new Promise<void>((resolve) => server.close(() => resolve())))
    }
    await Promise.all(closing)
    for (const path of this.#createdFiles) {
      try {
        unlinkSync(path)
      } catch {
        // Already gone.
      }
    }
  }

  #slots(endpoint: Endpoint, transport: 'unix' | 'tcp'): Slots {
    const max =
      endpoint === 'control'
        ? this.config.controlConnectionCountMax
        : this.config.connectionCountMax
    const helloTimeoutMs =
      transport === 'tcp'
        ? (this.config.tcpHelloTimeoutMs ?? TCP_HELLO_TIMEOUT_MS)
        : HELLO_TIMEOUT_MS
    return { label: `${endpoint} ${transport}`, max, helloTimeoutMs, count: 0 }
  }

  #accept(endpoint: Endpoint, socket: Socket, tokenRequired: boolean, slots: Slots): void {
    const isControl = endpoint === 'control'
    if (this.#closed || slots.count >= slots.max) {
      this.dispatcher.counters.connectionsRefused++
      this.#log.warn(
        { endpoint, listener: slots.label, max: slots.max },
        'connection refused: too many connections',
      )
      socket.destroy()
      return
    }
    const sizes = isControl ? CONTROL_SIZES : CLIENT_SIZES
    const conn = new Connection(++this.#serial, endpoint, socket, sizes, this.dispatcher)
    conn.socket.setNoDelay?.(true)
    conn.tokenRequired = tokenRequired
    this.#connections.set(conn, slots)
    slots.count++
    if (isControl) this.#controlConnections++
    else this.#clientConnections++
    this.dispatcher.counters.connectionsAccepted++
    this.#log.debug({ conn: conn.serial, endpoint, remote: conn.remote }, 'connection accepted')
    const helloTimer = setTimeout(() => {
      if (!conn.helloDone) conn.closeWithError(0, `No hello within ${slots.helloTimeoutMs} ms`)
    }, slots.helloTimeoutMs)
    helloTimer.unref()
    conn.socket.once('close', () => clearTimeout(helloTimer))
  }

  #forget(conn: Connection): void {
    const slots = this.#connections.get(conn)
    if (slots === undefined) return
    this.#connections.delete(conn)
    slots.count--
    if (conn.endpoint === 'control') this.#controlConnections--
    else this.#clientConnections--
    this.#log.debug({ conn: conn.serial, clientName: conn.name }, 'connection closed')
  }

  async #listenUnix(endpoint: Endpoint, path: string, mode: number): Promise<void> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    if (existsSync(path)) {
      if (await isListening(path)) {
        throw new Error(`Another daemon is listening on ${path}`)
      }
      unlinkSync(path) // a stale socket left by a daemon that died
    }
    // Paused until the connection takes it: a control connection adopts the handle before any read.
    const slots = this.#slots(endpoint, 'unix')
    const server = createServer({ pauseOnConnect: true }, (socket) =>
      this.#accept(endpoint, socket, false, slots),
    )
    // The socket file is created by bind() inside listen(); the umask keeps it from ever
    // being more open than `mode`, even for the instant before chmod.
    const umask = process.umask(0o777 & ~mode)
    let listening: Promise<void>
    try {
      listening = listen(server, { path })
    } finally {
      process.umask(umask)
    }
    await listening
    chmodSync(path, mode)
    this.#createdFiles.push(path)
    this.#servers.push(server)
  }

  async #listenTcp(endpoint: Endpoint, address: TcpAddress): Promise<TcpAddress> {
    const tokenRequired = endpoint === 'control'
    const slots = this.#slots(endpoint, 'tcp')
    const server = createServer({ pauseOnConnect: true }, (socket) =>
      this.#accept(endpoint, socket, tokenRequired, slots),
    )
    await listen(server, { host: address.host, port: address.port })
    this.#servers.push(server)
    const bound = server.address()
    const port = typeof bound === 'object' && bound !== null ? bound.port : address.port
    this.#log.debug({ endpoint, address: formatAddress({ host: address.host, port }) }, 'tcp')
    return { host: address.host, port }
  }

  #writeToken(path: string, token: Buffer): void {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    if (existsSync(path)) unlinkSync(path)
    writeFileSync(path, token, { mode: 0o600, flag: 'wx' })
    chmodSync(path, 0o600)
    this.#createdFiles.push(path)
  }
}
