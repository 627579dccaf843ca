/**
 * Ops a host answers later (protocol/deferred.ts): the remote tier's gets of remote pages and
 * its persistent puts into the cluster (docs/remote.md "Ordering"). The reply is sent when
 * the op's promise settles; meanwhile the connection goes on being served (replies carry
 * their request id, so they need not come back in order). Keeping one client's ops on the
 * same page in order is the host's part: the tier defers a later op that touches what a
 * pending one touches.
 *
 * Late replies are written into the connection's send buffer like any other reply, and the
 * buffer leaves once per event-loop turn (`Connection.sendLate`): replies that settle together
 * (one pipeline's worth from the cluster) share one socket write.
 *
 * Bound: a connection holds at most DEFERRED_PER_CONNECTION_MAX ops waiting on the network.
 * At the bound the connection stops parsing frames and reading its socket (the client's
 * further requests wait in its socket buffer and then in the client), and it starts again
 * once no more than DEFERRED_RESUME_AT remain; replies flow all the while. So a client that
 * floods ops that go remote holds a bounded amount of the daemon's memory, whatever the
 * cluster's speed: the deadline of every remote call makes each of them settle.
 */
import type { Logger } from 'pino'
import { EFAULT, PAGE_SIZE } from '../abi/constants.js'
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

/** Ops of one connection waiting on the network at most; reading stops at this many. */
export const DEFERRED_PER_CONNECTION_MAX = 256
/** Reading starts again once no more than this many are waiting. */
export const DEFERRED_RESUME_AT = 192

export class DeferredOps {
  readonly #host: HostLike
  readonly #log: Logger
  /** Deferred ops not answered yet, over every connection (a gauge for tests and metrics). */
  pending = 0

  constructor(host: HostLike, log: Logger) {
    this.#host = host
    this.#log = log
  }

  /** The host deferred the op just run: answer it when its promise settles. */
  start(conn: Connection, requestId: number): void {
    conn.deferred++
    this.later(conn.serial, (reply) => {
      conn.deferred--
      this.#answer(conn, requestId, reply)
      if (conn.deferred <= DEFERRED_RESUME_AT) conn.releaseHold()
    })
  }

  /**
   * The host deferred the op just run: `answer` gets its reply when the promise settles
   * (-EFAULT if it fails). The shared-memory rings answer this way (shm-attach.ts); their
   * bound is the completion slots they keep for such ops.
   */
  later(conn: number, answer: (reply: DeferredReply) => void): void {
    const host = this.#host
    if (host.takeDeferred === undefined) {
      answer({ rc: -EFAULT, page: null })
      return
    }
    this.pending++
    host.takeDeferred().then(
      (reply) => {
        this.pending--
        answer(reply)
      },
      (error: unknown) => {
        this.#log.error({ err: error, conn }, 'deferred op failed')
        this.pending--
        answer({ rc: -EFAULT, page: null })
      },
    )
  }

  #answer(conn: Connection, requestId: number, reply: DeferredReply): void {
    if (!conn.isOpen) return
    const page = reply.rc === 1 ? reply.page : null
    const payloadBytes = RC_BYTES + (page === null ? 0 : PAGE_SIZE)
    const frameBytes = FRAME_HEADER_BYTES + payloadBytes
    // In the send buffer when it has room; else (both buffers busy) a frame of its own.
    const inBuffer = conn.lateRoom(frameBytes)
    const frame = inBuffer ? conn.send : Buffer.allocUnsafe(frameBytes)
    const at = inBuffer ? conn.sendUsed : 0
    writeFrameHeader(frame, at, KIND_OP_REPLY, requestId, payloadBytes)
    writeU32LE(frame, at + FRAME_HEADER_BYTES, reply.rc)
    if (page !== null) frame.set(page.subarray(0, PAGE_SIZE), at + FRAME_HEADER_BYTES + RC_BYTES)
    if (inBuffer) conn.sendLate(frameBytes)
    else conn.socket.write(frame)
  }
}
