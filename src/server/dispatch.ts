/**
 * THE switch: frame kind x endpoint -> engine call. Every frame a connection parses comes
 * here, and its reply is written straight into the connection's send buffer. SESSION frames
 * (live migration) are handed to session-commands.ts, CONTROL frames to control-ops.ts,
 * COMMAND frames to commands.ts and HELLO frames to hello-handler.ts; this file keeps the hot
 * op path and the stats request.
 *
 * Privilege (docs/semantics.md "Decision: who is who"): a client connection only ever passes
 * its own client id (fixed by the hello) to `host.opBytes`, so it cannot touch another
 * client's private pools; control
 * commands sent as guest ops get -EPERM from the engine itself. CONTROL frames are served only
 * on the control endpoint; elsewhere (and OP frames on the control endpoint) they get -EPERM.
 *
 * Hot path: `#op` allocates nothing. The op bytes are handed to the engine where they lie (in
 * the reader's buffer, which the socket reads into); a put's page is read in place; a get's
 * page is written by the engine straight into the reply.
 */
import type { Logger } from 'pino'
import { EINVAL, EPERM, ENOMEM, PAGE_SIZE, TMEM_GET_PAGE, TMEM_READ } from '../abi/constants.js'
import { copyBytes } from '../util/bytes.js'
import type { Connection, ConnectionHandler } from './connection.js'
import {
  FRAME_HEADER_BYTES,
  type FrameReader,
  KIND_CONTROL,
  KIND_CONTROL_REPLY,
  KIND_GOODBYE,
  KIND_GOODBYE_REPLY,
  KIND_HELLO,
  KIND_OP,
  KIND_OP_REPLY,
  KIND_STATS,
  KIND_STATS_REPLY,
  RC_BYTES,
  REJECT_BAD_OP_SIZE,
  REJECT_HELLO_EXPECTED,
  REJECT_HELLO_REPEATED,
  REJECT_NAMES,
  REJECT_UNKNOWN_KIND,
  STATS_REPLY_PAYLOAD_BYTES_MAX,
  readU32LE,
  rejectMessage,
  writeFrameHeader,
  writeU32LE,
} from '../protocol/frame.js'
import { type StatsRequest, decodeStatsRequest } from '../protocol/stats.js'
import type { HostLike } from './host-like.js'
import { KIND_SESSION, KIND_SESSION_REPLY } from '../protocol/session-frame.js'
import { type DaemonCounters, newCounters } from './counters.js'
import { SessionCommands } from './session-commands.js'
import type { SessionTable } from './sessions.js'
import { ShmService } from './shm-service.js'
import { ControlOps } from './control-ops.js'
import { HelloHandler } from './hello-handler.js'
import { DeferredOps } from './deferred-ops.js'
import { OP_DEFERRED } from '../protocol/deferred.js'
import { ControlCommands } from './commands.js'
import { KIND_COMMAND, KIND_COMMAND_REPLY } from '../protocol/command-frame.js'
export { V0_REFUSED_MESSAGE } from './hello-handler.js'

export interface DispatcherOptions {
  acceptV0: boolean
  /** The control token (TCP control endpoint), or null when there is none. */
  token: Buffer | null
  /**
   * The body answering STATS from the control endpoint: the whole host (`request` null), a
   * page of clients or one client; null for -ENOMEM; a promise when it answers later.
   */
  stats: (request: StatsRequest | null) => string | null | Promise<string | null>
  /** A connection is gone. */
  onClosed: (conn: Connection) => void
  /** Offer shared-memory regions to local clients (default true; `--no-shm` says false). */
  sharedMemory?: boolean
}

export class Dispatcher implements ConnectionHandler {
  readonly counters: DaemonCounters = newCounters()
  /** Rejected frames by REJECT_* reason. */
  readonly rejectsByReason: number[] = REJECT_NAMES.map(() => 0)
  shuttingDown = false
  readonly shm: ShmService
  /** Named control commands; the program composing the daemon registers them. */
  readonly commands: ControlCommands

  readonly #host: HostLike
  readonly #sessions: SessionTable
  readonly #log: Logger
  readonly #options: DispatcherOptions
  readonly #controlOps: ControlOps
  readonly #sessionCommands: SessionCommands
  readonly #helloHandler: HelloHandler
  readonly #deferred: DeferredOps

  constructor(host: HostLike, sessions: SessionTable, log: Logger, options: DispatcherOptions) {
    this.#host = host
    this.#sessions = sessions
    this.#log = log
    this.#options = options
    this.#sessionCommands = new SessionCommands(
      host,
      sessions,
      log,
      this.counters,
      options.acceptV0,
    )
    this.#deferred = new DeferredOps(host, log)
    this.shm = new ShmService(host, options.sharedMemory ?? true, (conn, answer) =>
      this.#deferred.later(conn, answer),
    )
    this.#controlOps = new ControlOps(host, log, this.counters)
    this.#helloHandler = new HelloHandler(sessions, log, this.counters, {
      acceptV0: options.acceptV0,
      token: options.token,
      shm: this.shm,
      shuttingDown: () => this.shuttingDown,
    })
    this.commands = new ControlCommands(log)
  }

  /** Ops answered late (remote tier) and not answered yet, over every connection. */
  get deferredOps(): number {
    return this.#deferred.pending
  }

  shouldYield(): boolean {
    return this.#host.yieldTurn?.() === true
  }

  onFrame(conn: Connection, reader: FrameReader): void {
    this.counters.framesReceived++
    const kind = reader.kind
    if (!conn.helloDone) {
      if (kind === KIND_HELLO) this.#helloHandler.onHello(conn, reader)
      else conn.reject(REJECT_HELLO_EXPECTED)
      return
    }
    switch (kind) {
      case KIND_OP:
        if (conn.endpoint === 'client') this.#op(conn, reader)
        else this.#deny(conn, reader, KIND_OP_REPLY)
        return
      case KIND_CONTROL:
        if (conn.endpoint === 'control') this.#controlOps.serve(conn, reader)
        else this.#deny(conn, reader, KIND_CONTROL_REPLY)
        return
      case KIND_STATS:
        if (conn.endpoint === 'control') this.#stats(conn, reader)
        else this.#deny(conn, reader, KIND_STATS_REPLY)
        return
      case KIND_SESSION:
        if (conn.endpoint === 'control') this.#sessionCommands.onFrame(conn, reader)
        else this.#deny(conn, reader, KIND_SESSION_REPLY)
        return
      case KIND_COMMAND:
        if (conn.endpoint === 'control') this.commands.serve(conn, reader)
        else this.#deny(conn, reader, KIND_COMMAND_REPLY)
        return
      case KIND_GOODBYE:
        this.#goodbye(conn, reader)
        return
      case KIND_HELLO:
        conn.reject(REJECT_HELLO_REPEATED)
        return
      default:
        if (conn.endpoint !== 'client' || !this.shm.onFrame(conn, reader))
          conn.reject(REJECT_UNKNOWN_KIND)
    }
  }

  onReject(conn: Connection, reason: number): void {
    this.counters.framesRejected++
    this.rejectsByReason[reason] = (this.rejectsByReason[reason] ?? 0) + 1
    this.#log.warn(
      {
        conn: conn.serial,
        endpoint: conn.endpoint,
        remote: conn.remote,
        clientName: conn.name,
        reason: REJECT_NAMES[reason] ?? reason,
      },
      `frame rejected: ${rejectMessage(reason)}`,
    )
  }

  onClose(conn: Connection): void {
    this.counters.connectionsClosed++
    const session = conn.session
    conn.session = null
    if (session !== null) this.#sessions.detach(session, conn)
    this.#sessionCommands.onClose(conn)
    this.shm.onClose(conn)
    this.#controlOps.onClose(conn)
    this.#options.onClosed(conn)
  }

  /** A guest op: the struct, then the page for put/write. Allocates nothing. */
  #op(conn: Connection, reader: FrameReader): void {
    const bytes = reader.bytes
    const opAt = reader.payloadOffset
    const size = conn.opBytes
    let data: Uint8Array | null = null
    let dataAt = 0
    if (reader.payloadBytes === size + PAGE_SIZE) {
      data = bytes
      dataAt = opAt + size
    } else if (reader.payloadBytes !== size) {
      conn.reject(REJECT_BAD_OP_SIZE)
      return
    }
    if (conn.session === null) return // taken over by another connection; nothing more is served
    const end = this.execute(
      conn,
      reader.requestId,
      bytes,
      opAt,
      data,
      dataAt,
      conn.send,
      conn.sendUsed,
    )
    if (end >= 0) conn.sendUsed = end
  }

  /**
   * Runs one op and writes its reply into `send[at..]`; returns where the reply ends, or -1
   * when the host deferred the op (its reply comes later, see deferred-ops.ts).
   */
  execute(
    conn: Connection,
    requestId: number,
    bytes: Uint8Array,
    opAt: number,
    data: Uint8Array | null,
    dataAt: number,
    send: Buffer,
    at: number,
  ): number {
    const session = conn.session
    if (session === null) return -1
    const pageAt = at + FRAME_HEADER_BYTES + RC_BYTES
    const cmd = readU32LE(bytes, opAt)
    let rc: number
    let payloadBytes = RC_BYTES
    if (cmd === TMEM_GET_PAGE || cmd === TMEM_READ) {
      // The reply's page area is the guest frame. A frame sent with the op is its starting
      // content (a partial READ fills only part of it); otherwise it starts zeroed.
      if (data !== null) copyBytes(data, dataAt, send, pageAt, PAGE_SIZE)
      else send.fill(0, pageAt, pageAt + PAGE_SIZE)
      rc = this.#host.opBytes(session.id, bytes, opAt, conn.abiVersion, send, pageAt)
      if (rc === 1) payloadBytes += PAGE_SIZE
    } else {
      rc = this.#host.opBytes(session.id, bytes, opAt, conn.abiVersion, data, dataAt)
    }
    this.counters.opsExecuted++
    if (rc === OP_DEFERRED) {
      this.#deferred.start(conn, requestId)
      return -1
    }
    writeFrameHeader(send, at, KIND_OP_REPLY, requestId, payloadBytes)
    writeU32LE(send, at + FRAME_HEADER_BYTES, rc)
    return at + FRAME_HEADER_BYTES + payloadBytes
  }

  /** A well-formed request on the wrong endpoint: -EPERM, nothing done. */
  #deny(conn: Connection, reader: FrameReader, replyKind: number): void {
    this.counters.controlDenied++
    this.#writeRc(conn, replyKind, reader.requestId, -EPERM)
  }

  /**
   * STATS: an empty request is the whole host in one reply (-ENOMEM past the frame limit); a
   * request with a body asks for a page of clients or one client (-EINVAL when malformed).
   */
  #stats(conn: Connection, reader: FrameReader): void {
    const requestId = reader.requestId
    let request: StatsRequest | null = null
    if (reader.payloadBytes > 0) {
      request = decodeStatsRequest(reader.bytes, reader.payloadOffset, reader.payloadBytes)
      if (request === null) {
        this.#writeRc(conn, KIND_STATS_REPLY, requestId, -EINVAL)
        return
      }
    }
    const body = this.#options.stats(request)
    if (!(body instanceof Promise)) {
      writeStatsReply(conn, requestId, body)
      return
    }
    // Answered later (the host-wide sums are counted a step per turn); replies carry ids.
    const later = (json: string | null): void => {
      if (!conn.isOpen) return
      const at = conn.sendUsed
      writeStatsReply(conn, requestId, json)
      const frame = Uint8Array.from(conn.send.subarray(at, conn.sendUsed))
      conn.sendUsed = at
      if (!conn.sendFrame(frame)) conn.socket.write(frame)
    }
    body.then(later, (error: unknown) => {
      this.#log.error({ err: error, conn: conn.serial }, 'STATS failed')
      later(null)
    })
  }

  #goodbye(conn: Connection, reader: FrameReader): void {
    const send = conn.send
    writeFrameHeader(send, conn.sendUsed, KIND_GOODBYE_REPLY, reader.requestId, 0)
    conn.sendUsed += FRAME_HEADER_BYTES
    const session = conn.session
    conn.session = null
    if (session !== null) this.#sessions.release(session, conn)
    conn.end()
  }

  #writeRc(conn: Connection, kind: number, requestId: number, rc: number): void {
    const at = conn.sendUsed
    writeFrameHeader(conn.send, at, kind, requestId, RC_BYTES)
    writeU32LE(conn.send, at + FRAME_HEADER_BYTES, rc)
    conn.sendUsed = at + FRAME_HEADER_BYTES + RC_BYTES
  }
}

/** A STATS reply with `json` as its text, or -ENOMEM when it is null or too long. */
function writeStatsReply(conn: Connection, requestId: number, json: string | null): void {
  const send = conn.send
  const at = conn.sendUsed
  const textAt = at + FRAME_HEADER_BYTES + RC_BYTES
  const rcOnly = (rc: number): void => {
    writeFrameHeader(send, at, KIND_STATS_REPLY, requestId, RC_BYTES)
    writeU32LE(send, at + FRAME_HEADER_BYTES, rc)
    conn.sendUsed = at + FRAME_HEADER_BYTES + RC_BYTES
  }
  if (json === null || Buffer.byteLength(json, 'utf8') > STATS_REPLY_PAYLOAD_BYTES_MAX - RC_BYTES) {
    rcOnly(-ENOMEM)
    return
  }
  const textBytes = send.write(json, textAt, 'utf8')
  writeFrameHeader(send, at, KIND_STATS_REPLY, requestId, RC_BYTES + textBytes)
  writeU32LE(send, at + FRAME_HEADER_BYTES, 0)
  conn.sendUsed = textAt + textBytes
}
