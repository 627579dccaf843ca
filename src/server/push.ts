/**
 * SESSION PUSH (docs/migration.md, "Push"): the source daemon sends pre-copy pages of one
 * pool straight to the target daemon's control endpoint. It fills its own RESTORE_PAGES
 * frames from the engine's SAVE_GET_PAGES (the records land in the frame, after the op) and
 * writes them to the target, `PUSH_DEPTH` frames in flight, each reused once the target has
 * answered it. Compared with the migrating tool relaying every batch, each page crosses one
 * socket instead of two and is copied twice fewer.
 *
 *   frame = header (16) | tmem_op RESTORE_PAGES (56) | u32 output 0 | page records ...
 *                                                                    ^ SAVE_GET_PAGES writes here
 *
 * The daemon connects to the target as any control tool does (hello, token for TCP), over a
 * protocol `Link`. `Pushes` serves the SESSION PUSH requests that start them.
 */
import type { Logger } from 'pino'
import {
  MAX_POOLS_PER_DOMAIN,
  PAGE_RECORD_HEADER_BYTES,
  PAGE_SIZE,
  TMEMC_RESTORE_PAGES,
  TMEMC_SAVE_GET_PAGES,
} from '../abi/constants.js'
import { controlOp, encodeOpInto } from '../abi/codec.js'
import { TMEM_OP_BYTES_V1 } from '../abi/layout.js'
import { type ConnectTarget, controlRules } from '../protocol/dial.js'
import { Link } from '../protocol/link.js'
import type { CtrlOp } from '../abi/types.js'
import {
  CONTROL_DATA_BYTES_MAX,
  CONTROL_OUTPUT_FIELD_BYTES,
  FRAME_HEADER_BYTES,
  KIND_CONTROL,
  KIND_CONTROL_REPLY,
  RC_BYTES,
  readI32LE,
  writeFrameHeader,
  writeU32LE,
} from '../protocol/frame.js'
import type { HostLike } from './host-like.js'
import {
  KIND_SESSION_REPLY,
  SESSION_ECONNREFUSED,
  SESSION_EINVAL,
  SESSION_EIO,
  SESSION_ENOENT,
  SESSION_PUSH,
  type SessionMessage,
  emptySession,
  encodeSessionInto,
  parseClientAddress,
  sessionBytes,
} from '../protocol/session-frame.js'
import type { Connection } from './connection.js'
import type { DaemonCounters } from './counters.js'

/** Frames in flight to the target. */
export const PUSH_DEPTH = 4
const RECORD_BYTES = PAGE_RECORD_HEADER_BYTES + PAGE_SIZE
const OP_BYTES = TMEM_OP_BYTES_V1
const DATA_AT = FRAME_HEADER_BYTES + OP_BYTES + CONTROL_OUTPUT_FIELD_BYTES
const PAGES_PER_FRAME = Math.floor(CONTROL_DATA_BYTES_MAX / RECORD_BYTES)

export interface PushRequest {
  sourceId: number
  poolId: number
  /** The client's id on the target. */
  targetId: number
  pagesMax: number
  target: ConnectTarget
  /** The target's control token (TCP), else ''. */
  token: string
}

export interface PushOutcome {
  /** Pages sent and applied, or a negative errno (SESSION_ECONNREFUSED, SESSION_EIO, an engine rc). */
  rc: number
  /** What went wrong, for the log and the reply (empty on success). */
  detail: string
  /** The target's negative rc when it refused a batch (ENOMEM on a full target), else 0. */
  peerRc?: number
}

/** Set `aborted` to stop a push at the next batch (the requesting connection went away). */
export interface PushSignal {
  aborted: boolean
}

/**
 * Pushes up to `pagesMax` pages of the pool, from its save cursor on, to the target. Resolves
 * once every frame sent has been answered (or with the first failure); never rejects.
 */
export async function pushPool(
  host: HostLike,
  request: PushRequest,
  signal: PushSignal,
): Promise<PushOutcome> {
  const link = new Link(request.target, {
    abiVersion: 1,
    name: 'tmem-push',
    secret: null,
    token: request.token,
    rules: controlRules(RC_BYTES),
  })
  try {
    await link.open()
  } catch (error) {
    return { rc: SESSION_ECONNREFUSED, detail: `cannot reach the target: ${errorText(error)}` }
  }
  try {
    return await new Push(host, request, signal, link).run()
  } finally {
    await link.goodbye().catch(() => undefined)
  }
}

/**
 * SESSION PUSH requests as they run: the one SESSION command that takes time. Each runs beside
 * its connection's other requests and is answered when done; the connection closing stops it.
 */
export class Pushes {
  readonly #host: HostLike
  readonly #log: Logger
  readonly #counters: DaemonCounters
  /** PUSH requests running for each control connection. */
  readonly #running = new WeakMap<Connection, Set<PushSignal>>()

  constructor(host: HostLike, log: Logger, counters: DaemonCounters) {
    this.#host = host
    this.#log = log
    this.#counters = counters
  }

  /** Checks a PUSH request and starts it; the reply is sent when it ends. */
  start(conn: Connection, requestId: number, request: SessionMessage): void {
    const target = parseClientAddress(request.address)
    const peerId = request.peerId ?? 0
    const invalid =
      target === null ||
      request.flags >= MAX_POOLS_PER_DOMAIN ||
      request.graceMs === 0 ||
      peerId === 0 ||
      peerId >= 0xffff
    // A failure names its cause: `address` = the reason, `grace ms` = the target's errno when
    // it refused a batch (docs/migration.md, "Push").
    const reply = (rc: number, failure?: { detail: string; peerRc?: number }): void =>
      sendLate(
        conn,
        encodeSessionReplyFrame(requestId, rc, {
          ...emptySession(SESSION_PUSH),
          clientId: request.clientId,
          flags: request.flags,
          ...(failure === undefined
            ? {}
            : { address: failure.detail.slice(0, 200), graceMs: -(failure.peerRc ?? 0) }),
        }),
      )
    if (invalid) {
      reply(SESSION_EINVAL)
      return
    }
    if (!this.#host.hasClient(request.clientId)) {
      reply(SESSION_ENOENT)
      return
    }
    const signal: PushSignal = { aborted: false }
    let running = this.#running.get(conn)
    if (running === undefined) this.#running.set(conn, (running = new Set()))
    running.add(signal)
    const started = performance.now()
    void pushPool(
      this.#host,
      {
        sourceId: request.clientId,
        poolId: request.flags,
        targetId: peerId,
        pagesMax: request.graceMs,
        target,
        token: request.secret === null ? '' : Buffer.from(request.secret).toString('hex'),
      },
      signal,
    ).then((outcome) => {
      running.delete(signal)
      this.#counters.pushedPages += Math.max(0, outcome.rc)
      const fields = {
        conn: conn.serial,
        client: request.clientId,
        pool: request.flags,
        to: request.address,
        rc: outcome.rc,
        ms: Math.round(performance.now() - started),
      }
      if (outcome.rc < 0) this.#log.warn({ ...fields, detail: outcome.detail }, 'push failed')
      else this.#log.info(fields, 'push done')
      reply(outcome.rc, outcome.rc < 0 ? outcome : undefined)
    })
  }

  /** The connection is gone: its pushes stop at their next batch. */
  stop(conn: Connection): void {
    for (const push of this.#running.get(conn) ?? []) push.aborted = true
  }
}

/**
 * A reply made outside a frame handler: sent now, or once the connection has room (its
 * send buffers are both in flight while a tool does not read). Retried with backoff up to
 * every 100 ms, for as long as the connection is open.
 */
function sendLate(conn: Connection, frame: Uint8Array, delayMs = 1): void {
  if (!conn.isOpen) return
  if (conn.sendFrame(frame)) return
  setTimeout(() => sendLate(conn, frame, Math.min(delayMs * 2, 100)), delayMs)
}

/** A whole SESSION_REPLY frame. */
function encodeSessionReplyFrame(
  requestId: number,
  rc: number,
  message: SessionMessage,
): Uint8Array {
  const payloadBytes = RC_BYTES + sessionBytes(message)
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payloadBytes)
  writeFrameHeader(frame, 0, KIND_SESSION_REPLY, requestId, payloadBytes)
  writeU32LE(frame, FRAME_HEADER_BYTES, rc)
  encodeSessionInto(frame, FRAME_HEADER_BYTES + RC_BYTES, message)
  return frame
}

class Push {
  readonly #host: HostLike
  readonly #request: PushRequest
  readonly #signal: PushSignal
  readonly #link: Link
  /** SAVE_GET_PAGES, its `arg1` (bytes asked) rewritten per batch. */
  readonly #getOp: Uint8Array
  readonly #getOpValue: CtrlOp
  readonly #restoreOp: CtrlOp
  readonly #free: Uint8Array[] = []
  #wake: (() => void) | null = null
  #inFlight = 0
  #pagesInFlight = 0
  #pushed = 0
  #failure: PushOutcome | null = null

  constructor(host: HostLike, request: PushRequest, signal: PushSignal, link: Link) {
    this.#host = host
    this.#request = request
    this.#signal = signal
    this.#link = link
    const frames = Math.min(PUSH_DEPTH, Math.ceil(request.pagesMax / PAGES_PER_FRAME))
    for (let i = 0; i < frames; i++)
      this.#free.push(new Uint8Array(DATA_AT + PAGES_PER_FRAME * RECORD_BYTES))
    this.#getOpValue = controlOp(TMEMC_SAVE_GET_PAGES, request.sourceId, request.poolId, 0)
    this.#getOp = new Uint8Array(OP_BYTES)
    this.#restoreOp = controlOp(TMEMC_RESTORE_PAGES, request.targetId, 0, 0)
  }

  async run(): Promise<PushOutcome> {
    const request = this.#request
    let ended = false
    while (!ended && this.#failure === null) {
      const wanted = request.pagesMax - this.#pushed - this.#pagesInFlight
      if (wanted <= 0) break
      if (this.#signal.aborted) {
        this.#fail({ rc: SESSION_EIO, detail: 'the connection that asked for the push went away' })
        break
      }
      const frame = this.#free.pop()
      if (frame === undefined) {
        await this.#waitForReply()
        continue
      }
      const asked = Math.min(wanted, PAGES_PER_FRAME)
      const pages = this.#fill(frame, asked)
      if (pages < 0) {
        this.#fail({
          rc: pages,
          detail: `SAVE_GET_PAGES of pool ${request.poolId} returned ${pages}`,
        })
        break
      }
      if (pages < asked) ended = true // the pool's page list ended
      if (pages === 0) {
        this.#free.push(frame)
        break
      }
      this.#send(frame, pages)
    }
    while (this.#inFlight > 0) await this.#waitForReply()
    return this.#failure ?? { rc: this.#pushed, detail: '' }
  }

  /** SAVE_GET_PAGES of at most `asked` pages into the frame's data; returns the page count. */
  #fill(frame: Uint8Array, asked: number): number {
    this.#getOpValue.ctrl.arg1 = asked * RECORD_BYTES
    encodeOpInto(this.#getOpValue, 1, this.#getOp, 0)
    return this.#host.controlBytes(this.#getOp, 0, 1, frame, DATA_AT, asked * RECORD_BYTES)
  }

  /** Makes the frame a RESTORE_PAGES of its `pages` records and sends it. */
  #send(frame: Uint8Array, pages: number): void {
    const dataBytes = pages * RECORD_BYTES
    const payloadBytes = OP_BYTES + CONTROL_OUTPUT_FIELD_BYTES + dataBytes
    writeFrameHeader(frame, 0, KIND_CONTROL, 0, payloadBytes)
    this.#restoreOp.ctrl.arg1 = dataBytes
    encodeOpInto(this.#restoreOp, 1, frame, FRAME_HEADER_BYTES)
    writeU32LE(frame, FRAME_HEADER_BYTES + OP_BYTES, 0)
    this.#inFlight++
    this.#pagesInFlight += pages
    this.#link.request(
      frame.subarray(0, FRAME_HEADER_BYTES + payloadBytes),
      false,
      (reply) => {
        const rc =
          reply.kind === KIND_CONTROL_REPLY
            ? readI32LE(reply.bytes, reply.payloadOffset)
            : SESSION_EIO
        this.#settle(frame, pages)
        if (rc === pages) this.#pushed += pages
        else
          this.#fail({
            rc: SESSION_EIO,
            peerRc: Math.min(rc, 0),
            detail: `RESTORE_PAGES on the target returned ${rc} for ${pages} records`,
          })
      },
      (error) => {
        this.#settle(frame, pages)
        this.#fail({ rc: SESSION_EIO, detail: `the target connection failed: ${errorText(error)}` })
      },
    )
  }

  #settle(frame: Uint8Array, pages: number): void {
    this.#inFlight--
    this.#pagesInFlight -= pages
    this.#free.push(frame)
    const wake = this.#wake
    this.#wake = null
    wake?.()
  }

  #fail(outcome: PushOutcome): void {
    if (this.#failure === null) this.#failure = outcome
  }

  #waitForReply(): Promise<void> {
    return new Promise((resolve) => (this.#wake = resolve))
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
