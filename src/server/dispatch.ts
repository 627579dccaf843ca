/**
 * THE switch: frame kind x endpoint -> engine call. Every frame a connection parses comes
 * here, and its reply is written straight into the connection's send buffer. SESSION frames
 * (live migration) are handed to session-commands.ts and CONTROL frames to control-ops.ts;
 * this file keeps the hot op path, the stats request, and the hello.
 *
 * Privilege (docs/semantics.md "Decision: who is who"): a client connection only ever passes its own client id (fixed by the
 * hello) to `host.opBytes`, so it cannot touch another client's private pools; control
 * commands sent as guest ops get -EPERM from the engine itself. CONTROL frames are served only
 * on the control endpoint; elsewhere (and OP frames on the control endpoint) they get -EPERM.
 *
 * Hot path: `#op` allocates nothing. The op bytes are handed to the engine where they lie (in
 * the socket chunk, or the reader's pending buffer); a put's page is read in place; a get's
 * page is written by the engine straight into the reply.
 */
import { timingSafeEqual } from 'node:crypto'
import type { Logger } from 'pino'
import { EINVAL, EPERM, ENOMEM, PAGE_SIZE, TMEM_GET_PAGE, TMEM_READ } from '../abi/constants.js'
import { copyBytes } from '../util/bytes.js'
import { opBytes } from '../abi/layout.js'
import type { Connection, ConnectionHandler } from './connection.js'
import {
  FRAME_HEADER_BYTES,
  type FrameReader,
  KIND_CONTROL,
  KIND_CONTROL_REPLY,
  KIND_GOODBYE,
  KIND_GOODBYE_REPLY,
  KIND_HELLO,
  KIND_HELLO_REPLY,
  KIND_OP,
  KIND_OP_REPLY,
  KIND_STATS,
  KIND_STATS_REPLY,
  RC_BYTES,
  REJECT_BAD_HELLO,
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
import {
  HELLO_BAD_ABI,
  HELLO_BAD_TOKEN,
  HELLO_FLAG_ABI_REFUSED,
  HELLO_FLAG_CONTROL,
  HELLO_FLAG_RESUMED,
  HELLO_MOVED,
  HELLO_OK,
  HELLO_SHUTTING_DOWN,
  HELLO_STATUS_NAMES,
  type HelloReply,
  decodeHello,
  encodeHelloReplyInto,
} from '../protocol/hello.js'
import {
  type DaemonStats,
  type StatsRequest,
  decodeStatsRequest,
  encodeStats,
} from '../protocol/stats.js'
import type { HostLike } from './host-like.js'
import { KIND_SESSION, KIND_SESSION_REPLY } from '../protocol/session-frame.js'
import { type DaemonCounters, newCounters } from './counters.js'
import { SessionCommands } from './session-commands.js'
import type { OpenResult } from './session.js'
import type { SessionTable } from './sessions.js'
import { ShmService } from './shm-service.js'
import { ControlOps } from './control-ops.js'
export const V0_REFUSED_MESSAGE =
  'This daemon serves tmem ABI v1 and the connection asked for v0: TMEM_NEW_POOL will return ' +
  '-EPERM (unsupported spec version). Start the daemon with --accept-v0 to serve v0 clients'

export interface DispatcherOptions {
  acceptV0: boolean
  /** The control token (TCP control endpoint), or null when there is none. */
  token: Buffer | null
  /** The stats reply body; called on STATS from the control endpoint. */
  snapshot: () => DaemonStats
  /** The body answering a STATS request in the paged form (one client, a page of clients). */
  statsPage: (request: StatsRequest) => string
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

  readonly #host: HostLike
  readonly #sessions: SessionTable
  readonly #log: Logger
  readonly #options: DispatcherOptions
  readonly #controlOps: ControlOps
  readonly #sessionCommands: SessionCommands

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
    this.shm = new ShmService(host, options.sharedMemory ?? true)
    this.#controlOps = new ControlOps(host, log, this.counters)
  }

  onFrame(conn: Connection, reader: FrameReader): void {
    this.counters.framesReceived++
    const kind = reader.kind
    if (!conn.helloDone) {
      if (kind === KIND_HELLO) this.#hello(conn, reader)
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
    const session = conn.session
    if (session === null) return // taken over by another connection; nothing more is served
    const send = conn.send
    const at = conn.sendUsed
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
    writeFrameHeader(send, at, KIND_OP_REPLY, reader.requestId, payloadBytes)
    writeU32LE(send, at + FRAME_HEADER_BYTES, rc)
    conn.sendUsed = at + FRAME_HEADER_BYTES + payloadBytes
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
    let json: string
    if (reader.payloadBytes === 0) {
      json = encodeStats(this.#options.snapshot())
    } else {
      const request = decodeStatsRequest(reader.bytes, reader.payloadOffset, reader.payloadBytes)
      if (request === null) {
        this.#writeRc(conn, KIND_STATS_REPLY, reader.requestId, -EINVAL)
        return
      }
      json = this.#options.statsPage(request)
    }
    const send = conn.send
    const at = conn.sendUsed
    const textAt = at + FRAME_HEADER_BYTES + RC_BYTES
    if (Buffer.byteLength(json, 'utf8') > STATS_REPLY_PAYLOAD_BYTES_MAX - RC_BYTES) {
      this.#writeRc(conn, KIND_STATS_REPLY, reader.requestId, -ENOMEM)
      return
    }
    const textBytes = send.write(json, textAt, 'utf8')
    writeFrameHeader(send, at, KIND_STATS_REPLY, reader.requestId, RC_BYTES + textBytes)
    writeU32LE(send, at + FRAME_HEADER_BYTES, 0)
    conn.sendUsed = textAt + textBytes
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

  #hello(conn: Connection, reader: FrameReader): void {
    const hello = decodeHello(reader.bytes, reader.payloadOffset, reader.payloadBytes)
    if (hello === null) {
      conn.reject(REJECT_BAD_HELLO)
      return
    }
    conn.helloDone = true
    const requestId = reader.requestId
    if (hello.abiVersion !== 0 && hello.abiVersion !== 1) {
      this.#refuse(conn, requestId, HELLO_BAD_ABI, 'The tmem ABI version must be 0 or 1')
      return
    }
    const version: 0 | 1 = hello.abiVersion
    conn.abiVersion = version
    conn.opBytes = opBytes(version)
    if (this.shuttingDown) {
      this.#refuse(conn, requestId, HELLO_SHUTTING_DOWN, 'The daemon is shutting down')
      return
    }
    if (conn.endpoint === 'control') {
      if (conn.tokenRequired && !this.#tokenMatches(hello.token)) {
        this.#refuse(conn, requestId, HELLO_BAD_TOKEN, 'The control token does not match')
        return
      }
      conn.name = hello.name === '' ? 'control' : hello.name
      this.#log.info(
        { conn: conn.serial, remote: conn.remote, clientName: conn.name },
        'control hello',
      )
      this.#writeHello(conn, requestId, {
        status: HELLO_OK,
        abiVersion: version,
        clientId: 0,
        graceMs: 0,
        secret: null,
        flags: HELLO_FLAG_CONTROL,
        name: conn.name,
        message: '',
      })
      return
    }
    const opened = this.#sessions.open(hello.name, hello.secret, version, conn)
    if (opened.held === true && opened.session !== null) {
      // A migration's target: answered when the control plane activates the session.
      this.#sessions.wait(opened.session, {
        holder: conn,
        answer: (result) => this.#answerHeld(conn, requestId, version, result),
      })
      return
    }
    this.#answerOpen(conn, requestId, version, opened)
  }

  #answerHeld(conn: Connection, requestId: number, version: 0 | 1, opened: OpenResult): void {
    const at = conn.sendUsed
    this.#answerOpen(conn, requestId, version, opened)
    // #answerOpen wrote into the send buffer outside a frame handler: send it now.
    const frame = Uint8Array.from(conn.send.subarray(at, conn.sendUsed))
    conn.sendUsed = at
    if (!conn.sendFrame(frame)) conn.closeWithError(0, 'Could not answer the hello')
  }

  #answerOpen(conn: Connection, requestId: number, version: 0 | 1, opened: OpenResult): void {
    const session = opened.session
    if (opened.redirect !== undefined) {
      // HELLO_MOVED: the message is the new address, the secret the one to use there.
      this.counters.connectionsRefused++
      this.#log.info(
        { conn: conn.serial, remote: conn.remote, to: opened.redirect.address },
        'hello redirected: client moved',
      )
      this.#writeHello(conn, requestId, {
        status: HELLO_MOVED,
        abiVersion: version,
        clientId: 0,
        graceMs: opened.redirect.graceMs,
        secret: opened.redirect.secret,
        flags: 0,
        name: '',
        message: opened.redirect.address,
      })
      conn.end()
      return
    }
    if (session === null) {
      this.#refuse(conn, requestId, opened.status, opened.message)
      return
    }
    conn.session = session
    conn.name = session.name
    let flags = (opened.resumed ? HELLO_FLAG_RESUMED : 0) | this.shm.helloFlag(conn)
    let message = ''
    if (version === 0 && !this.#options.acceptV0) {
      flags |= HELLO_FLAG_ABI_REFUSED
      message = V0_REFUSED_MESSAGE
      this.counters.v0Refused++
      this.#log.warn(
        { client: session.id, clientName: session.name, remote: conn.remote },
        'v0 client connected; the daemon does not serve ABI v0 (no --accept-v0)',
      )
    }
    this.#writeHello(conn, requestId, {
      status: HELLO_OK,
      abiVersion: version,
      clientId: session.id,
      graceMs: this.#sessions.graceMs,
      secret: session.secret,
      flags,
      name: session.name,
      message,
    })
  }

  #refuse(conn: Connection, requestId: number, status: number, message: string): void {
    this.counters.connectionsRefused++
    this.#log.warn(
      {
        conn: conn.serial,
        endpoint: conn.endpoint,
        remote: conn.remote,
        status: HELLO_STATUS_NAMES[status] ?? status,
      },
      `hello refused: ${message}`,
    )
    this.#writeHello(conn, requestId, {
      status,
      abiVersion: conn.abiVersion,
      clientId: 0,
      graceMs: 0,
      secret: null,
      flags: 0,
      name: '',
      message,
    })
    conn.end()
  }

  #writeHello(conn: Connection, requestId: number, reply: HelloReply): void {
    const at = conn.sendUsed
    const payloadBytes = encodeHelloReplyInto(conn.send, at + FRAME_HEADER_BYTES, reply)
    writeFrameHeader(conn.send, at, KIND_HELLO_REPLY, requestId, payloadBytes)
    conn.sendUsed = at + FRAME_HEADER_BYTES + payloadBytes
  }

  #writeRc(conn: Connection, kind: number, requestId: number, rc: number): void {
    const at = conn.sendUsed
    writeFrameHeader(conn.send, at, kind, requestId, RC_BYTES)
    writeU32LE(conn.send, at + FRAME_HEADER_BYTES, rc)
    conn.sendUsed = at + FRAME_HEADER_BYTES + RC_BYTES
  }

  #tokenMatches(given: string): boolean {
    const token = this.#options.token
    if (token === null) return false
    const bytes = Buffer.from(given, 'utf8')
    return bytes.length === token.length && timingSafeEqual(bytes, token)
  }
}
