/**
 * CONTROL frames on the control endpoint: the control op is run by the engine with a shared,
 * aligned tool buffer, and the reply carries its output. Also owns the saves begun on control
 * connections (SAVE_BEGIN without SAVE_END yet), which are ended when such a connection goes
 * away so a client is not left frozen or in pre-copy for ever.
 */
import type { Logger } from 'pino'
import {
  EFAULT,
  PAGE_SIZE,
  TMEM_CONTROL,
  TMEMC_SAVE_BEGIN,
  TMEMC_SAVE_END,
} from '../abi/constants.js'
import { controlOp, encodeOp } from '../abi/codec.js'
import { OP_CTRL_CLI_ID, OP_CTRL_SUBOP } from '../abi/layout.js'
import { nativeCopy } from '../util/bytes.js'
import {
  CONTROL_DATA_BYTES_MAX,
  CONTROL_OUTPUT_FIELD_BYTES,
  FRAME_HEADER_BYTES,
  type FrameReader,
  KIND_CONTROL_REPLY,
  RC_BYTES,
  REJECT_BAD_CONTROL_SIZE,
  readU32LE,
  writeFrameHeader,
  writeU32LE,
} from '../protocol/frame.js'
import { type DeferredReply, OP_DEFERRED } from '../protocol/deferred.js'
import type { Connection } from './connection.js'
import type { DaemonCounters } from './counters.js'
import type { HostLike } from './host-like.js'

export class ControlOps {
  readonly #host: HostLike
  readonly #log: Logger
  readonly #counters: DaemonCounters
  /** Client ids whose save a control connection began and has not ended (SAVE_BEGIN). */
  readonly #savesBegun = new WeakMap<Connection, Set<number>>()
  #tool: Buffer | null = null

  constructor(host: HostLike, log: Logger, counters: DaemonCounters) {
    this.#host = host
    this.#log = log
    this.#counters = counters
  }

  /**
   * A control op: the struct, a u32 output size, then input data (RESTORE_PUT_PAGE's page).
   * The engine gets one zeroed tool buffer of max(output, input) bytes, which lies in the reply;
   * the reply carries the rc and the first `output` bytes of that buffer.
   */
  serve(conn: Connection, reader: FrameReader): void {
    const bytes = reader.bytes
    const opAt = reader.payloadOffset
    const fixedBytes = conn.opBytes + CONTROL_OUTPUT_FIELD_BYTES
    const inputBytes = reader.payloadBytes - fixedBytes
    const outputBytes = readU32LE(bytes, opAt + conn.opBytes)
    if (inputBytes < 0 || inputBytes > CONTROL_DATA_BYTES_MAX) {
      conn.reject(REJECT_BAD_CONTROL_SIZE)
      return
    }
    if (outputBytes > CONTROL_DATA_BYTES_MAX) {
      conn.reject(REJECT_BAD_CONTROL_SIZE)
      return
    }
    const send = conn.send
    const at = conn.sendUsed
    const dataAt = at + FRAME_HEADER_BYTES + RC_BYTES
    const dataLength = Math.max(outputBytes, inputBytes)
    let data: Uint8Array | null = null
    let dataOffset = 0
    if (outputBytes === 0) {
      // Nothing comes back (RESTORE_PAGES, RESTORE_PUT_PAGE): the engine reads the input where
      // it arrived, and whatever it might write there is dropped with the frame.
      if (inputBytes > 0) {
        data = bytes
        dataOffset = opAt + fixedBytes
      }
    } else {
      // Output is made in an 8-byte-aligned tool buffer, not in the reply (whose data starts
      // at 4 mod 8): page records there lie aligned, so the engine copies their pages on
      // copyBytes' allocation-free wide path instead of with a view per page.
      data = this.#toolBuffer(dataLength)
      if (inputBytes > 0) nativeCopy(bytes, opAt + fixedBytes, data, 0, inputBytes)
      data.fill(0, inputBytes, dataLength)
    }
    const rc = this.#host.controlBytes(bytes, opAt, conn.abiVersion, data, dataOffset, dataLength)
    if (rc === OP_DEFERRED) {
      this.#counters.controlsExecuted++
      this.#answerLater(conn, reader.requestId, outputBytes)
      return
    }
    if (data !== null && outputBytes > 0) nativeCopy(data, 0, send, dataAt, outputBytes)
    this.#counters.controlsExecuted++
    if (readU32LE(bytes, opAt) === TMEM_CONTROL) this.#track(conn, bytes, opAt, rc)
    writeFrameHeader(send, at, KIND_CONTROL_REPLY, reader.requestId, RC_BYTES + outputBytes)
    writeU32LE(send, at + FRAME_HEADER_BYTES, rc)
    conn.sendUsed = dataAt + outputBytes
  }

  /**
   * A control op the host answers later (the remote tier reading a save's remote pages,
   * docs/remote.md): the reply goes out when it settles, with its output; replies carry
   * request ids, so it may come after later ones.
   */
  #answerLater(conn: Connection, requestId: number, outputBytes: number): void {
    const host = this.#host
    const settled =
      host.takeDeferred?.() ?? Promise.resolve<DeferredReply>({ rc: -EFAULT, page: null })
    const answer = (reply: DeferredReply): void => {
      if (!conn.isOpen) return
      const frame = Buffer.alloc(FRAME_HEADER_BYTES + RC_BYTES + outputBytes)
      writeFrameHeader(frame, 0, KIND_CONTROL_REPLY, requestId, RC_BYTES + outputBytes)
      writeU32LE(frame, FRAME_HEADER_BYTES, reply.rc)
      const output = reply.page
      if (output !== null)
        frame.set(
          output.subarray(0, Math.min(outputBytes, output.length)),
          FRAME_HEADER_BYTES + RC_BYTES,
        )
      if (!conn.sendFrame(frame)) conn.socket.write(frame)
    }
    settled.then(answer, (error: unknown) => {
      this.#log.error({ err: error, conn: conn.serial }, 'deferred control op failed')
      answer({ rc: -EFAULT, page: null })
    })
  }

  /** The shared tool buffer (one engine call at a time), at least `bytes` long, offset 0. */
  #toolBuffer(bytes: number): Buffer {
    if (this.#tool === null || this.#tool.length < bytes) {
      this.#tool = Buffer.allocUnsafeSlow(Math.max(bytes, PAGE_SIZE + 64))
    }
    return this.#tool
  }

  /** Remembers which saves this control connection has open (see onClose). */
  #track(conn: Connection, bytes: Uint8Array, opAt: number, rc: number): void {
    const subop = readU32LE(bytes, opAt + OP_CTRL_SUBOP)
    if (subop !== TMEMC_SAVE_BEGIN && subop !== TMEMC_SAVE_END) return
    const cliId = readU32LE(bytes, opAt + OP_CTRL_CLI_ID) & 0xffff
    let begun = this.#savesBegun.get(conn)
    if (subop === TMEMC_SAVE_BEGIN && rc === 1) {
      if (begun === undefined) this.#savesBegun.set(conn, (begun = new Set()))
      begun.add(cliId)
    } else if (subop === TMEMC_SAVE_END) {
      begun?.delete(cliId)
    }
  }

  /**
   * A control connection that began a save (a migration, `tmem save`) and went away without
   * SAVE_END: end it, so the client is not left frozen or in pre-copy for ever.
   */
  onClose(conn: Connection): void {
    const begun = this.#savesBegun.get(conn)
    if (begun === undefined) return
    this.#savesBegun.delete(conn)
    for (const cliId of begun) {
      if (!this.#host.hasClient(cliId)) continue
      const op = encodeOp(controlOp(TMEMC_SAVE_END, cliId))
      this.#host.controlBytes(op, 0, 1, null, 0, 0)
      this.#counters.savesAbandoned++
      this.#log.warn(
        { client: cliId, conn: conn.serial },
        'control connection closed during a save: SAVE_END',
      )
    }
  }
}
