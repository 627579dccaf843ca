/**
 * The hello, the first frame of every connection: the ABI version, the control token on the
 * control endpoint, and on the client endpoint the session it opens, resumes or waits for (a
 * migration's target), or the address it moved to. Its reply says which, with the client id,
 * the grace period and the flags (resumed, shared memory offered, v0 refused). Split from
 * dispatch.ts, which hands it every HELLO frame of a connection that has not said hello yet.
 */
import { timingSafeEqual } from 'node:crypto'
import type { Logger } from 'pino'
import { opBytes } from '../abi/layout.js'
import {
  FRAME_HEADER_BYTES,
  type FrameReader,
  KIND_HELLO_REPLY,
  REJECT_BAD_HELLO,
  writeFrameHeader,
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
import type { Connection } from './connection.js'
import type { DaemonCounters } from './counters.js'
import type { OpenResult } from './session.js'
import type { SessionTable } from './sessions.js'
import type { ShmService } from './shm-service.js'

export const V0_REFUSED_MESSAGE =
  'This daemon serves tmem ABI v1 and the connection asked for v0: TMEM_NEW_POOL will return ' +
  '-EPERM (unsupported spec version). Start the daemon with --accept-v0 to serve v0 clients'

export interface HelloOptions {
  acceptV0: boolean
  /** The control token (TCP control endpoint), or null when there is none. */
  token: Buffer | null
  /** Offers shared-memory regions (the hello reply's flag). */
  shm: ShmService
  /** True once the daemon has begun to close: every hello is refused. */
  shuttingDown: () => boolean
}

export class HelloHandler {
  readonly #sessions: SessionTable
  readonly #log: Logger
  readonly #counters: DaemonCounters
  readonly #options: HelloOptions

  constructor(
    sessions: SessionTable,
    log: Logger,
    counters: DaemonCounters,
    options: HelloOptions,
  ) {
    this.#sessions = sessions
    this.#log = log
    this.#counters = counters
    this.#options = options
  }

  onHello(conn: Connection, reader: FrameReader): void {
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
    if (this.#options.shuttingDown()) {
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
      this.#counters.connectionsRefused++
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
    let flags = (opened.resumed ? HELLO_FLAG_RESUMED : 0) | this.#options.shm.helloFlag(conn)
    let message = ''
    if (version === 0 && !this.#options.acceptV0) {
      flags |= HELLO_FLAG_ABI_REFUSED
      message = V0_REFUSED_MESSAGE
      this.#counters.v0Refused++
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
    this.#counters.connectionsRefused++
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

  #tokenMatches(given: string): boolean {
    const token = this.#options.token
    if (token === null) return false
    const bytes = Buffer.from(given, 'utf8')
    return bytes.length === token.length && timingSafeEqual(bytes, token)
  }
}
