/**
 * Ops a host answers later (protocol/deferred.ts): the remote tier's gets of remote pages and
 * its persistent puts into the cluster (docs/remote.md "Ordering"). When an op is deferred,
 * the connection's later ops are copied aside, in order, and run once its reply is sent; the
 * next deferred op among them holds the rest again. Other connections never wait: they do not
 * share the queue, and the host does its remote work on promises.
 *
 * Only this path allocates per op (a copy of each held frame, the late reply): it runs only
 * when a page is remote.
 */
import type { Logger } from 'pino'
import { PAGE_SIZE } from '../abi/constants.js'
import type { DeferredReply } from '../protocol/deferred.js'
import {
  FRAME_HEADER_BYTES,
  KIND_OP_REPLY,
  RC_BYTES,
  writeFrameHeader,
  writeU32LE,
} from '../protocol/frame.js'
import type { Connection } from './connection.js'
import type { HostLike } from './host-like.js'

/** A frame held behind a deferred op: its request id and a copy of its payload. */
export interface HeldOp {
  requestId: number
  payload: Uint8Array
}

/** More held frames than this on one connection close it (a client ignoring its window). */
export const HELD_OPS_MAX = 1 << 16

/** What runs an op: the dispatcher's `execute`. */
export interface OpRunner {
  execute(
    conn: Connection,
    requestId: number,
    bytes: Uint8Array,
    opAt: number,
    data: Uint8Array | null,
    dataAt: number,
    send: Buffer,
    at: number,
  ): number
}

export class DeferredOps {
  readonly #host: HostLike
  readonly #log: Logger
  readonly #runner: OpRunner

  constructor(host: HostLike, log: Logger, runner: OpRunner) {
    this.#host = host
    this.#log = log
    this.#runner = runner
  }

  /** Copies a frame that arrived while an earlier op of its connection is deferred. */
  hold(conn: Connection, requestId: number, bytes: Uint8Array, at: number, length: number): void {
    const held = conn.held
    if (held === null) return
    if (held.length >= HELD_OPS_MAX) {
      conn.closeWithError(0, 'Too many ops sent while a remote op was pending')
      return
    }
    held.push({ requestId, payload: Uint8Array.from(bytes.subarray(at, at + length)) })
  }

  /** The host deferred the op just run: hold what follows and answer when it settles. */
  start(conn: Connection, requestId: number): void {
    const host = this.#host
    conn.held ??= []
    if (host.takeDeferred === undefined) {
      this.#answer(conn, requestId, { rc: -1, page: null })
      return
    }
    host.takeDeferred().then(
      (reply) => this.#settle(conn, requestId, reply),
      (error: unknown) => {
        this.#log.error({ err: error, conn: conn.serial }, 'deferred op failed')
        this.#settle(conn, requestId, { rc: -14, page: null })
      },
    )
  }

  #settle(conn: Connection, requestId: number, reply: DeferredReply): void {
    this.#answer(conn, requestId, reply)
    const held = conn.held ?? []
    conn.held = null
    let next = 0
    while (next < held.length && conn.held === null && conn.isOpen) {
      this.#replay(conn, held[next++]!)
    }
    // Deferred again: the rest waits behind that op, ahead of anything newer.
    const again = conn.held as HeldOp[] | null
    if (again !== null) again.unshift(...held.slice(next))
  }

  #replay(conn: Connection, op: HeldOp): void {
    const payload = op.payload
    const size = conn.opBytes
    const data = payload.length === size + PAGE_SIZE ? payload : null
    const reply = Buffer.allocUnsafe(FRAME_HEADER_BYTES + RC_BYTES + PAGE_SIZE)
    const end = this.#runner.execute(conn, op.requestId, payload, 0, data, size, reply, 0)
    if (end >= 0) this.#send(conn, reply.subarray(0, end))
  }

  #answer(conn: Connection, requestId: number, reply: DeferredReply): void {
    const page = reply.rc === 1 ? reply.page : null
    const payloadBytes = RC_BYTES + (page === null ? 0 : PAGE_SIZE)
    const frame = Buffer.alloc(FRAME_HEADER_BYTES + payloadBytes)
    writeFrameHeader(frame, 0, KIND_OP_REPLY, requestId, payloadBytes)
    writeU32LE(frame, FRAME_HEADER_BYTES, reply.rc)
    if (page !== null) frame.set(page.subarray(0, PAGE_SIZE), FRAME_HEADER_BYTES + RC_BYTES)
    this.#send(conn, frame)
  }

  /** A whole frame, after the replies already made (a direct write when the buffers are full). */
  #send(conn: Connection, frame: Uint8Array): void {
    if (!conn.isOpen) return
    if (!conn.sendFrame(frame)) conn.socket.write(frame)
  }
}
