/**
 * Ops a host answers later (protocol/deferred.ts): the remote tier's gets of remote pages and
 * its persistent puts into the cluster (docs/remote.md "Ordering"). The reply is sent when
 * the op's promise settles; meanwhile the connection goes on being served (replies carry
 * their request id, so they need not come back in order). Keeping one client's ops on the
 * same page in order is the host's part: the tier defers a later op that touches what a
 * pending one touches.
 *
 * Only this path allocates per op (the late reply frame): it runs only when a page is remote.
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

export class DeferredOps {
  readonly #host: HostLike
  readonly #log: Logger
  /** Deferred ops not answered yet (a gauge for tests and metrics). */
  pending = 0

  constructor(host: HostLike, log: Logger) {
    this.#host = host
    this.#log = log
  }

  /** The host deferred the op just run: answer it when its promise settles. */
  start(conn: Connection, requestId: number): void {
    const host = this.#host
    if (host.takeDeferred === undefined) {
      this.#answer(conn, requestId, { rc: -EFAULT, page: null })
      return
    }
    this.pending++
    host.takeDeferred().then(
      (reply) => {
        this.pending--
        this.#answer(conn, requestId, reply)
      },
      (error: unknown) => {
        this.pending--
        this.#log.error({ err: error, conn: conn.serial }, 'deferred op failed')
        this.#answer(conn, requestId, { rc: -EFAULT, page: null })
      },
    )
  }

  #answer(conn: Connection, requestId: number, reply: DeferredReply): void {
    if (!conn.isOpen) return
    const page = reply.rc === 1 ? reply.page : null
    const payloadBytes = RC_BYTES + (page === null ? 0 : PAGE_SIZE)
    const frame = Buffer.alloc(FRAME_HEADER_BYTES + payloadBytes)
    writeFrameHeader(frame, 0, KIND_OP_REPLY, requestId, payloadBytes)
    writeU32LE(frame, FRAME_HEADER_BYTES, reply.rc)
    if (page !== null) frame.set(page.subarray(0, PAGE_SIZE), FRAME_HEADER_BYTES + RC_BYTES)
    // After the replies already made; straight to the socket when both buffers are busy.
    if (!conn.sendFrame(frame)) conn.socket.write(frame)
  }
}
