/**
 * One NBD client connection: the byte stream cut into the handshake's pieces and then into
 * requests, fed to `handleOption` and `Transmission`. The input states:
 *
 *   flags (4) -> option header (16) -> option data (bounded; larger is skipped) -> ...
 *             -> request header (28) -> [WRITE payload, streamed] -> request header ...
 *
 * Anything malformed (a wrong magic, unknown client flags, too many options, no export chosen
 * in time) closes this connection and no other.
 *
 * The socket is read in place (Node's `onread`): every read lands in one receive buffer, at
 * the place that puts the next WRITE page 8-byte aligned (#land), and is consumed before the
 * callback returns, so nothing is allocated per read. Replies of one read go out in one socket
 * write (and every FLUSH_BYTES during a long one). Requests are answered only as fast as the
 * kernel takes the replies: while more than `SEND_BYTES_HIGH` of them wait for the socket,
 * the connection stops reading and keeps the rest of the read where it is (the receive buffer
 * is not read into again until that rest is done), then goes on when the writes catch up. So
 * a client that never reads its replies cannot grow our memory, and a deep queue of READs
 * does not run far ahead of the socket.
 */
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import { adoptInPlace } from '../../server/connection.js'
import { registerCopyBuffer } from '../../util/bytes.js'
import { armBusyPoll } from '../../util/busy-poll.js'
import {
  NBD_CMD_WRITE,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_IHAVEOPT_HI,
  NBD_IHAVEOPT_LO,
  NBD_OPTION_BYTES_MAX,
  NBD_OPTION_COUNT_MAX,
  NBD_REQUEST_BYTES,
  NBD_REQUEST_MAGIC,
} from './constants.js'
import type { Export } from './export.js'
import {
  type ExportLookup,
  type OptionState,
  handleOption,
  refuseTooBig,
  writeGreeting,
} from './handshake.js'
import { type Request, Transmission } from './transmission.js'
import { ReplyWriter } from './writer.js'

/**
 * Reply bytes waiting for the socket above which requests wait: the 4 MiB of reply chunks the
 * writer keeps for reuse (writer.ts), so that a deep queue of READs cycles through those and
 * never makes new ones. fio's deepest case here (16 x 64 KiB) stays below it; 256 KiB, about
 * a socket buffer, made its 64 KiB reads cost more CPU (bench/results.md, 2026-12-07 11:40).
 */
export const SEND_BYTES_HIGH = 4 * 1024 * 1024

/**
 * Unsent reply bytes that make a flush before the input batch ends: one reply chunk, so that
 * the first READ replies of a batch travel while the rest are made.
 */
const FLUSH_BYTES = 256 * 1024

/** The receive buffer socket reads land in (read in place: no buffer per read). */
export const RECEIVE_BYTES = 1024 * 1024

/** A connection that has not chosen an export by then is closed. */
export const HANDSHAKE_TIMEOUT_MS = 10_000

const enum State {
  ClientFlags,
  OptionHeader,
  OptionData,
  RequestHeader,
  WritePayload,
  Closed,
}

/** The exports by name, as the server holds them. */
export interface ExportTable extends ExportLookup {
  exportOf(name: string): Export | undefined
}

export class NbdConnection {
  readonly serial: number
  readonly socket: Socket
  readonly #log: Logger
  readonly #exports: ExportTable
  readonly #w: ReplyWriter
  readonly #head = Buffer.alloc(NBD_REQUEST_BYTES)
  /** Where reads land when the socket is read in place; reused by every read. */
  readonly #receive = Buffer.allocUnsafeSlow(RECEIVE_BYTES)
  /** #receive from byte k on, k = 0..7: where the next read lands (see #land). */
  readonly #landings: Buffer[] = []
  #landing: Buffer
  #headUsed = 0
  #state = State.ClientFlags
  readonly #options: OptionState = { noZeroes: false, structured: false, metaExport: null }
  #optionCount = 0
  #option = 0
  #optionData: Buffer | null = null
  #optionUsed = 0
  #optionLength = 0
  #transmission: Transmission | null = null
  readonly #request: Request = { flags: 0, type: 0, cookieHi: 0, cookieLo: 0, offset: 0, length: 0 }
  /** Input not yet processed while the send side drains: #held[#heldPos..#heldEnd). */
  #held: Buffer | null = null
  #heldPos = 0
  #heldEnd = 0
  #timer: NodeJS.Timeout | null
  exportName: string | null = null
  /** Shutting down: reads are discarded, not stopped (see shutdown). */
  #draining = false

  constructor(serial: number, accepted: Socket, exports: ExportTable, log: Logger) {
    this.serial = serial
    this.#exports = exports
    this.#log = log
    // WRITE pages go to the engine straight from the receive buffer: a registered buffer, so
    // its aligned pages take the engine's allocation-free copy.
    registerCopyBuffer(this.#receive.buffer)
    for (let k = 0; k < 8; k++) this.#landings.push(this.#receive.subarray(k))
    this.#landing = this.#receive
    const adopted = adoptInPlace(
      accepted,
      () => this.#landing,
      (count) => this.#onRead(count),
    )
    const socket = adopted ?? accepted
    this.socket = socket
    this.#w = new ReplyWriter(socket)
    this.#timer = setTimeout(() => this.#fail('no export chosen within 10 s'), HANDSHAKE_TIMEOUT_MS)
    this.#timer.unref()
    if (adopted === null) socket.on('data', (data: Buffer) => this.#input(data))
    this.#w.drainBytes = SEND_BYTES_HIGH
    this.#w.onDrain = () => this.#resume()
    socket.on('error', () => socket.destroy())
    socket.on('close', () => this.#closed())
    writeGreeting(this.#w)
    this.#w.flush()
    socket.resume()
  }

  get closed(): boolean {
    return this.#state === State.Closed
  }

  close(): void {
    this.#state = State.Closed
    this.socket.destroy()
  }

  /**
   * Daemon shutdown (NBD's proto.md: a server that shuts down SHOULD finish what it already
   * answered): no further request is read, the replies already made go out, then the
   * connection ends; after `graceMs` (a client that stopped reading) it is destroyed.
   * Requests read and not yet run (held while replies backed up) get no reply.
   */
  shutdown(graceMs: number): Promise<void> {
    if (this.socket.destroyed) return Promise.resolve()
    this.#state = State.Closed
    this.#held = null
    // Reading goes on, discarding, so the client's end of the stream is seen and the socket
    // closes as soon as both sides are done.
    this.#draining = true
    this.socket.resume()
    this.#w.flush()
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.socket.destroy(), graceMs)
      this.socket.once('close', () => {
        clearTimeout(timer)
        resolve()
      })
      this.socket.end()
    })
  }

  #closed(): void {
    this.#state = State.Closed
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.#held = null
  }

  #fail(reason: string): void {
    if (this.#state === State.Closed) return
    this.#log.warn({ conn: this.serial, export: this.exportName, reason }, 'nbd connection closed')
    this.close()
  }

  /** Read in place: `count` bytes are at the start of #landing. False pauses reading. */
  #onRead(count: number): boolean {
    if (this.#state === State.Closed) return this.#draining
    this.#process(this.#landing, 0, count)
    armBusyPoll()
    this.#land()
    return this.#held === null
  }

  /**
   * Picks where the next read lands so that the next WRITE page in the stream starts 8-byte
   * aligned in #receive, where the engine copies it without a view object: a request header
   * is 28 bytes, so the header goes 4 bytes past a boundary; a payload part way through a page
   * goes as far past one as it is into its page. Later requests in the same read land where
   * the stream puts them.
   */
  #land(): void {
    let k = 0
    if (this.#state === State.RequestHeader) k = 4 + this.#headUsed
    else if (this.#state === State.WritePayload) k = this.#transmission?.writePageOffset ?? 0
    this.#landing = this.#landings[k & 7]!
  }

  #input(data: Buffer): void {
    const held = this.#held
    if (held !== null) {
      // Only reachable if a data event slips in after pause(): keep order.
      this.#held = Buffer.concat([held.subarray(this.#heldPos, this.#heldEnd), data])
      this.#heldPos = 0
      this.#heldEnd = this.#held.length
      return
    }
    this.#process(data, 0, data.length)
  }

  /** The replies caught up: the rest of the held read, then reading again. */
  #resume(): void {
    const held = this.#held
    if (held === null || this.#state === State.Closed) return
    this.#held = null
    this.#process(held, this.#heldPos, this.#heldEnd)
    if (this.#held !== null) return
    // The next read was to land where #land said when reading stopped; the alignment it gave
    // matters to the engine's wide copy only (page-copy.ts), and the bytes are all used now.
    this.#land()
    this.socket.resume()
  }

  /** Consumes `data[start..end)`. */
  #process(data: Buffer, start: number, end: number): void {
    let pos = start
    while (pos < end && this.#state !== State.Closed) {
      if (
        this.#state === State.RequestHeader &&
        this.#headUsed === 0 &&
        this.#w.inflightBytes > SEND_BYTES_HIGH
      ) {
        // Kept in place: no read lands in the receive buffer until these bytes are used.
        this.#held = data
        this.#heldPos = pos
        this.#heldEnd = end
        this.socket.pause()
        break
      }
      pos = this.#step(data, pos, end)
      // Replies of one batch go out together, but never more than a few MiB at a time: the
      // socket's queue is what the pause above looks at.
      if (this.#w.unsentBytes >= FLUSH_BYTES) this.#w.flush()
    }
    if (this.#state !== State.Closed) this.#w.flush()
  }

  /** Consumes input from `pos` for the current state; returns the new position. */
  #step(data: Buffer, pos: number, end: number): number {
    switch (this.#state) {
      case State.ClientFlags:
        return this.#header(data, pos, end, 4)
      case State.OptionHeader:
        return this.#header(data, pos, end, 16)
      case State.OptionData:
        return this.#optionBytes(data, pos, end)
      case State.RequestHeader:
        return this.#header(data, pos, end, NBD_REQUEST_BYTES)
      case State.WritePayload: {
        const transmission = this.#transmission
        if (transmission === null) return end
        const next = transmission.writeData(data, pos, end)
        if (!transmission.writing) this.#state = State.RequestHeader
        return next
      }
      case State.Closed:
        return end
    }
  }

  /** Gathers a fixed-size header into #head, then acts on it by state. */
  #header(data: Buffer, pos: number, end: number, size: number): number {
    const n = Math.min(size - this.#headUsed, end - pos)
    // Byte by byte: a native copy of part of `data` makes a view per call on Node 20.
    const head = this.#head
    const used = this.#headUsed
    for (let i = 0; i < n; i++) head[used + i] = data[pos + i]!
    this.#headUsed += n
    if (this.#headUsed < size) return pos + n
    this.#headUsed = 0
    if (this.#state === State.RequestHeader) this.#requestHeader()
    else if (this.#state === State.OptionHeader) this.#optionHeader()
    else this.#clientFlags()
    return pos + n
  }

  #clientFlags(): void {
    const flags = this.#head.readUInt32BE(0)
    if ((flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) !== 0) {
      this.#fail(`unknown client flags 0x${flags.toString(16)}`)
      return
    }
    this.#options.noZeroes = (flags & NBD_FLAG_C_NO_ZEROES) !== 0
    this.#state = State.OptionHeader
  }

  #optionHeader(): void {
    const head = this.#head
    if (head.readUInt32BE(0) !== NBD_IHAVEOPT_HI || head.readUInt32BE(4) !== NBD_IHAVEOPT_LO) {
      this.#fail('option without the IHAVEOPT magic')
      return
    }
    if (++this.#optionCount > NBD_OPTION_COUNT_MAX) {
      this.#fail(`more than ${NBD_OPTION_COUNT_MAX} options`)
      return
    }
    this.#option = head.readUInt32BE(8)
    this.#optionLength = head.readUInt32BE(12)
    this.#optionUsed = 0
    this.#optionData =
      this.#optionLength <= NBD_OPTION_BYTES_MAX ? Buffer.alloc(this.#optionLength) : null
    this.#state = State.OptionData
    if (this.#optionLength === 0) this.#optionDone()
  }

  #optionBytes(data: Buffer, pos: number, end: number): number {
    const n = Math.min(this.#optionLength - this.#optionUsed, end - pos)
    if (this.#optionData !== null) data.copy(this.#optionData, this.#optionUsed, pos, pos + n)
    this.#optionUsed += n
    if (this.#optionUsed === this.#optionLength) this.#optionDone()
    return pos + n
  }

  #optionDone(): void {
    const payload = this.#optionData
    this.#optionData = null
    this.#state = State.OptionHeader
    const outcome =
      payload === null
        ? refuseTooBig(this.#w, this.#option)
        : handleOption(this.#w, this.#options, this.#exports, this.#option, payload)
    if (outcome.kind === 'close') {
      this.#w.flush()
      this.socket.end()
      this.#state = State.Closed
      return
    }
    if (outcome.kind === 'go') this.#go(outcome.export.name)
  }

  #go(name: string): void {
    const exp = this.#exports.exportOf(name)
    if (exp === undefined) {
      this.#fail(`export ${name} went away`)
      return
    }
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = null
    this.exportName = name
    const meta = this.#options.metaExport === name
    this.#transmission = new Transmission(this.#w, exp, this.#options.structured, meta)
    this.#state = State.RequestHeader
    this.#log.debug(
      { conn: this.serial, export: name, structured: this.#options.structured },
      'nbd transmission',
    )
  }

  #requestHeader(): void {
    const head = this.#head
    const transmission = this.#transmission
    if (head.readUInt32BE(0) !== NBD_REQUEST_MAGIC || transmission === null) {
      this.#fail('request without the request magic')
      return
    }
    const req = this.#request
    req.flags = head.readUInt16BE(4)
    req.type = head.readUInt16BE(6)
    req.cookieHi = head.readUInt32BE(8)
    req.cookieLo = head.readUInt32BE(12)
    req.offset = head.readUInt32BE(16) * 2 ** 32 + head.readUInt32BE(20)
    req.length = head.readUInt32BE(24)
    const outcome = transmission.request(req)
    if (outcome === 'disc') {
      this.#w.flush()
      this.socket.end()
      this.#state = State.Closed
    } else if (outcome === 'payload') {
      this.#state = State.WritePayload
    }
    if (req.type === NBD_CMD_WRITE && outcome === 'done') this.#state = State.RequestHeader
  }
}
