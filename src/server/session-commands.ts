/**
 * SESSION frames (docs/protocol.md, "Session control"): the daemon-level requests of live
 * migration, served on the control endpoint only. Names, secrets and connections are the
 * daemon's (sessions.ts), so these commands act on the session table and on the engine's
 * clients; PUSH, the one that takes time, runs in push.ts. Control plane: allocates.
 */
import type { Logger } from 'pino'
import { TMEMC_RESTORE_BEGIN, TMEM_FLUSH_PAGE } from '../abi/constants.js'
import { controlOp, encodeOp } from '../abi/codec.js'
import {
  FRAME_HEADER_BYTES,
  type FrameReader,
  RC_BYTES,
  writeFrameHeader,
  writeU32LE,
} from '../protocol/frame.js'
import {
  BIND_HOLD,
  BIND_PENDING,
  KIND_SESSION_REPLY,
  SESSION_ACTIVATE,
  SESSION_BIND,
  SESSION_COMMAND_NAMES,
  SESSION_CREATE,
  SESSION_DESTROY,
  SESSION_EEXIST,
  SESSION_EINVAL,
  SESSION_ENOENT,
  SESSION_ENOSPC,
  SESSION_EPERM,
  SESSION_FREE_ID,
  SESSION_LOOKUP,
  SESSION_MOVED,
  SESSION_PUSH,
  SESSION_UNFENCE,
  STATE_CONNECTED,
  STATE_ENGINE,
  STATE_MOVED,
  STATE_PENDING,
  STATE_SESSION,
  STATE_TCP,
  type SessionMessage,
  decodeSession,
  emptySession,
  encodeSessionInto,
} from '../protocol/session-frame.js'
import type { Connection } from './connection.js'
import type { DaemonCounters } from './counters.js'
import type { HostLike } from './host-like.js'
import { Pushes } from './push.js'
import type { Session } from './session.js'
import type { SessionTable } from './sessions.js'

export class SessionCommands {
  readonly #host: HostLike
  readonly #sessions: SessionTable
  readonly #log: Logger
  readonly #counters: DaemonCounters
  readonly #acceptV0: boolean
  readonly #pushes: Pushes

  constructor(
    host: HostLike,
    sessions: SessionTable,
    log: Logger,
    counters: DaemonCounters,
    acceptV0: boolean,
  ) {
    this.#host = host
    this.#sessions = sessions
    this.#log = log
    this.#counters = counters
    this.#acceptV0 = acceptV0
    this.#pushes = new Pushes(host, log, counters)
  }

  /** A SESSION frame (control endpoint only): run it and write the reply. */
  onFrame(conn: Connection, reader: FrameReader): void {
    this.#counters.sessionCommands++
    const request = decodeSession(reader.bytes, reader.payloadOffset, reader.payloadBytes)
    let rc: number
    let session: Session | null = null
    let reply: SessionMessage | null = null
    if (request !== null && request.cmd === SESSION_PUSH) {
      this.#pushes.start(conn, reader.requestId, request)
      return
    }
    if (request === null) {
      rc = SESSION_EINVAL
    } else {
      const result = this.#run(request)
      rc = result.rc
      session = result.session
      reply = result.reply ?? null
      this.#log.info(
        {
          conn: conn.serial,
          cmd: SESSION_COMMAND_NAMES[request.cmd] ?? request.cmd,
          client: request.clientId,
          clientName: request.name,
          rc,
        },
        'session command',
      )
    }
    const out =
      reply ??
      (session === null
        ? emptySession(request?.cmd ?? 0)
        : this.#describe(session, request?.cmd ?? 0))
    if (reply === null && session === null && request !== null) {
      out.clientId = request.clientId
      out.name = request.name
      if (request.clientId !== 0 && this.#host.hasClient(request.clientId)) out.flags = STATE_ENGINE
    }
    const send = conn.send
    const at = conn.sendUsed
    writeU32LE(send, at + FRAME_HEADER_BYTES, rc)
    const bodyBytes = encodeSessionInto(send, at + FRAME_HEADER_BYTES + RC_BYTES, out)
    writeFrameHeader(send, at, KIND_SESSION_REPLY, reader.requestId, RC_BYTES + bodyBytes)
    conn.sendUsed = at + FRAME_HEADER_BYTES + RC_BYTES + bodyBytes
  }

  #run(request: SessionMessage): { rc: number; session: Session | null; reply?: SessionMessage } {
    const sessions = this.#sessions
    const find = (): Session | undefined =>
      request.name !== '' ? sessions.byName(request.name) : sessions.byId(request.clientId)
    switch (request.cmd) {
      case SESSION_LOOKUP: {
        const session = find()
        if (session !== undefined) return { rc: session.id, session }
        if (
          request.name === '' &&
          request.clientId !== 0 &&
          this.#host.hasClient(request.clientId)
        ) {
          return { rc: request.clientId, session: null }
        }
        return { rc: SESSION_ENOENT, session: null }
      }
      case SESSION_FREE_ID: {
        const id = sessions.freeId()
        return {
          rc: id === 0 ? SESSION_ENOSPC : id,
          session: null,
          reply: { ...emptySession(request.cmd), clientId: id },
        }
      }
      case SESSION_CREATE:
        return { rc: this.#createClient(request.clientId, request.abi), session: null }
      case SESSION_BIND: {
        if (request.abi !== 0 && request.abi !== 1) return { rc: SESSION_EINVAL, session: null }
        const result = sessions.bind(request.name, request.clientId, request.abi, request.secret, {
          pending: (request.flags & BIND_PENDING) !== 0,
          hold: (request.flags & BIND_HOLD) !== 0,
        })
        if (result.session === null) return result
        return {
          ...result,
          reply: { ...this.#describe(result.session, request.cmd), secret: result.session.secret },
        }
      }
      case SESSION_ACTIVATE: {
        const session = find()
        return session === undefined
          ? { rc: SESSION_ENOENT, session: null }
          : { rc: sessions.activate(session), session }
      }
      case SESSION_DESTROY: {
        const id = request.name !== '' ? (sessions.byName(request.name)?.id ?? 0) : request.clientId
        if (id === 0) return { rc: 0, session: null }
        return { rc: sessions.destroy(id), session: null }
      }
      case SESSION_MOVED: {
        const session = find()
        if (session === undefined) return { rc: SESSION_ENOENT, session: null }
        if (request.secret === null || request.address === '')
          return { rc: SESSION_EINVAL, session }
        const rc = sessions.moved(session, {
          address: request.address,
          secret: request.secret,
          graceMs: request.graceMs,
        })
        return { rc, session }
      }
      case SESSION_UNFENCE: {
        const session = find()
        return session === undefined
          ? { rc: SESSION_ENOENT, session: null }
          : { rc: sessions.unfence(session), session }
      }
      default:
        return { rc: SESSION_EINVAL, session: null }
    }
  }

  /**
   * SESSION CREATE: an engine client with this id and ABI. v1 is RESTORE_BEGIN; a v0 client
   * (only with --accept-v0) is created by a harmless v0 guest op, since a client keeps the
   * ABI of its first call and RESTORE_BEGIN makes v1 clients.
   */
  #createClient(id: number, abi: number): number {
    if (id <= 0 || id >= 0xffff || (abi !== 0 && abi !== 1)) return SESSION_EINVAL
    if (this.#host.hasClient(id) || this.#sessions.byId(id) !== undefined) return SESSION_EEXIST
    if (abi === 0 && !this.#acceptV0) return SESSION_EPERM
    if (abi === 1) {
      const op = encodeOp(controlOp(TMEMC_RESTORE_BEGIN, id))
      const rc = this.#host.controlBytes(op, 0, 1, null, 0, 0)
      return rc === 1 ? id : SESSION_EEXIST
    }
    const op = encodeOp(
      {
        cmd: TMEM_FLUSH_PAGE,
        poolId: 0,
        gen: { oid: [0n, 0n, 0n], index: 0, cmfn: 0n, tmemOffset: 0, pfnOffset: 0, len: 0 },
      },
      0,
    )
    this.#host.opBytes(id, op, 0, 0, null, 0)
    return this.#host.hasClient(id) ? id : SESSION_EPERM
  }

  #describe(session: Session, cmd: number): SessionMessage {
    const holder = session.holder
    let flags = STATE_SESSION
    if (this.#host.hasClient(session.id)) flags |= STATE_ENGINE
    if (holder !== null) flags |= STATE_CONNECTED
    if (holder !== null && holder.remote !== 'unix') flags |= STATE_TCP
    if (session.pending) flags |= STATE_PENDING
    if (session.movedTo !== null) flags |= STATE_MOVED
    return {
      cmd,
      abi: session.abiVersion,
      clientId: session.id,
      flags,
      graceMs: this.#sessions.graceMs,
      name: session.name,
      address: session.movedTo?.address ?? '',
      secret: null,
    }
  }

  /** The connection is gone: the pushes it asked for stop. */
  onClose(conn: Connection): void {
    this.#pushes.stop(conn)
  }
}
