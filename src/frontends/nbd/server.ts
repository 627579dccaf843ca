/**
 * The NBD frontend inside the daemon: the exports (each a tmem client `nbd:<name>`), the NBD
 * listeners (a Unix socket and/or loopback TCP, never anything else) and their connections.
 *
 * Owns: the exports' backing files, the listening servers, the socket file it creates. The
 * daemon owns the engine and the session table; an export is one more session in it, so
 * `tmem list`, weight, cap, freeze, flush, destroy and save see it like any other client.
 * Closing the server (daemon shutdown) keeps the exports' tmem clients; `remove()` destroys one.
 */
import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs'
import { type Server, type Socket, createServer } from 'node:net'
import { dirname } from 'node:path'
import type { Logger } from 'pino'
import type { TcpAddress } from '../../server/config.js'
import type { HostLike } from '../../server/host-like.js'
import type { SessionTable } from '../../server/sessions.js'
import { isListening, listen } from '../../server/listen.js'
import { type ExportTable, NbdConnection } from './connection.js'
import { Export } from './export.js'
import type { ExportView } from './handshake.js'
import type { ExportSpec } from './spec.js'

export interface NbdConfig {
  socketPath: string | null
  listen: TcpAddress | null
  exports: ExportSpec[]
  /** Connections at once over both listeners. */
  connectionCountMax: number
}

export interface NbdAddresses {
  socketPath: string | null
  listen: TcpAddress | null
}

/** How long a connection's replies may take to go out at shutdown before it is cut. */
export const SHUTDOWN_GRACE_MS = 2000

export class NbdServer implements ExportTable {
  readonly #host: HostLike
  readonly #sessions: SessionTable
  readonly #log: Logger
  readonly #config: NbdConfig
  readonly #exports = new Map<string, Export>()
  readonly #connections = new Set<NbdConnection>()
  readonly #servers: Server[] = []
  readonly #createdFiles: string[] = []
  #serial = 0
  #closed = false
  addresses: NbdAddresses = { socketPath: null, listen: null }

  private constructor(host: HostLike, sessions: SessionTable, log: Logger, config: NbdConfig) {
    this.#host = host
    this.#sessions = sessions
    this.#log = log
    this.#config = config
  }

  /** Opens every export and listener; on failure closes what was opened and throws. */
  static async start(
    host: HostLike,
    sessions: SessionTable,
    log: Logger,
    config: NbdConfig,
  ): Promise<NbdServer> {
    const server = new NbdServer(host, sessions, log, config)
    try {
      for (const spec of config.exports) server.add(spec)
      if (config.socketPath !== null) {
        await server.#listenUnix(config.socketPath)
        server.addresses.socketPath = config.socketPath
      }
      if (config.listen !== null) server.addresses.listen = await server.#listenTcp(config.listen)
    } catch (error) {
      await server.close()
      throw error
    }
    return server
  }

  /** Adds an export; throws Error with a sentence when the name is taken or it cannot open. */
  add(spec: ExportSpec): Export {
    if (this.#exports.has(spec.name)) throw new Error(`Export ${spec.name} already exists`)
    const exp = Export.open(this.#host, this.#sessions, this.#log, spec)
    this.#exports.set(spec.name, exp)
    return exp
  }

  /** Removes an export: its connections close and its tmem client and pages are destroyed. */
  remove(name: string): boolean {
    const exp = this.#exports.get(name)
    if (exp === undefined) return false
    this.#exports.delete(name)
    for (const conn of this.#connections) if (conn.exportName === name) conn.close()
    exp.close(true)
    return true
  }

  /** Each export's facts, with its open connections and the pages tmem holds for it now. */
  list(): Record<string, unknown>[] {
    const pagesByClient = new Map<number, number>()
    for (const client of this.#host.stats().clients) {
      pagesByClient.set(
        client.id,
        client.pools.reduce((sum, pool) => sum + pool.pages, 0),
      )
    }
    return [...this.#exports.values()].map((exp) => ({
      ...exp.describe(),
      connections: this.connectionsOf(exp.name),
      pages: pagesByClient.get(exp.clientId) ?? 0,
    }))
  }

  /** NBD connections that chose export `name` and are still open. */
  connectionsOf(name: string): number {
    let count = 0
    for (const conn of this.#connections) if (!conn.closed && conn.exportName === name) count++
    return count
  }

  // ExportTable: "" is the default export, the first one.
  find(name: string): ExportView | undefined {
    return this.exportOf(name)
  }

  exportOf(name: string): Export | undefined {
    if (name === '') return this.#exports.values().next().value
    return this.#exports.get(name)
  }

  all(): ExportView[] {
    return [...this.#exports.values()]
  }

  /**
   * Stops listening and closes every connection (its replies already made go out first, for
   * at most SHUTDOWN_GRACE_MS) and backing file; tmem keeps the pages.
   */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const closing = this.#servers.map(
      (server) => new Promise<void>((resolve) => server.close(() => resolve())),
    )
    await Promise.all([...this.#connections].map((conn) => conn.shutdown(SHUTDOWN_GRACE_MS)))
    await Promise.all(closing)
    for (const exp of this.#exports.values()) exp.close(false)
    for (const path of this.#createdFiles) {
      try {
        unlinkSync(path)
      } catch {
        // Already gone.
      }
    }
  }

  #accept(socket: Socket): void {
    if (this.#closed || this.#connections.size >= this.#config.connectionCountMax) {
      this.#log.warn(
        { max: this.#config.connectionCountMax },
        'nbd connection refused: too many connections',
      )
      socket.destroy()
      return
    }
    socket.setNoDelay?.(true)
    const conn = new NbdConnection(++this.#serial, socket, this, this.#log)
    this.#connections.add(conn)
    socket.once('close', () => this.#connections.delete(conn))
  }

  async #listenUnix(path: string): Promise<void> {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    if (existsSync(path)) {
      if (await isListening(path)) throw new Error(`Something is listening on ${path}`)
      unlinkSync(path) // left by a daemon that died
    }
    const server = createServer({ pauseOnConnect: true }, (socket) => this.#accept(socket))
    // Like the client socket: owner and group only, from the instant bind() makes it.
    const umask = process.umask(0o117)
    let listening: Promise<void>
    try {
      listening = listen(server, { path })
    } finally {
      process.umask(umask)
    }
    await listening
    chmodSync(path, 0o660)
    this.#createdFiles.push(path)
    this.#servers.push(server)
  }

  async #listenTcp(address: TcpAddress): Promise<TcpAddress> {
    const server = createServer({ pauseOnConnect: true }, (socket) => this.#accept(socket))
    await listen(server, { host: address.host, port: address.port })
    this.#servers.push(server)
    const bound = server.address()
    const port = typeof bound === 'object' && bound !== null ? bound.port : address.port
    return { host: address.host, port }
  }
}
