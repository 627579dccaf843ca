/**
 * One client or control socket: frame reassembly, reply batching and backpressure. What a
 * frame means is the dispatcher's business (`dispatch.ts`); this file moves bytes.
 *
 * Buffers, all allocated when the connection is accepted and never grown:
 * - the reader's buffer, which the socket reads into (below);
 * - two send buffers used in turn. Replies to every frame parsed from one read go into the
 *   current send buffer and leave in one `socket.write`. While a buffer is being written it
 *   is not touched; if the other is also in flight, the connection stops parsing and pauses
 *   the socket until a write completes (backpressure: a client that does not read its replies
 *   stops being read).
 *
 *   socket read -> reader.next() -> dispatcher writes reply into send[current]
 *                                   (room for the largest reply is checked before each frame)
 *               -> read drained -> write send[current], switch to the other buffer
 *
 * Both kinds of connection read in place (`readInPlace`): the socket reads straight into the
 * frame reader's buffer (Node's `onread` option), and frames are handed to the dispatcher
 * where they lie. Nothing on this path allocates per frame or per read (a write makes one
 * small view object). Chunk reads would allocate 64 KiB of external memory per read, and V8
 * answers that with a garbage collection every 64 MiB of traffic: measured on pipelined puts,
 * in-place reading took the daemon from about 6.5 to 4 µs of CPU per op (bench/results.md).
 * A control connection reads up to 256 KiB at once, so a 1 MiB RESTORE_PAGES frame arrives
 * in a few reads without being copied together; a client connection reads 64 KiB at once.
 * `net.Server` cannot give an accepted socket that option, so the connection adopts the
 * accepted socket's handle into a new socket that has it (`adoptInPlace`); where that is not
 * possible it reads chunks, and a frame split across chunks is copied together.
 */
import { Socket } from 'node:net'
import { assert } from '../util/assert.js'
import { armBusyPoll } from '../util/busy-poll.js'
import {
  FRAME_HEADER_BYTES,
  FrameReader,
  READ_IN_PLACE_BYTES,
  type FrameRules,
  KIND_ERROR,
  REJECT_NONE,
  REJECT_TRUNCATED,
  rejectMessage,
  writeFrameHeader,
  writeU32LE,
} from '../protocol/frame.js'
import { encodeMoved } from '../protocol/session-frame.js'
import { DEFERRED_PER_CONNECTION_MAX } from './deferred-ops.js'
import type { MovedTo, Session, SessionHolder } from './session.js'

export type Endpoint = 'client' | 'control'

/** What the connection asks of the dispatcher. */
export interface ConnectionHandler {
  /**
   * Handles the frame the reader describes. It writes its reply at `conn.sendUsed` (room for
   * `conn.replyBytesMax` is guaranteed) and advances `sendUsed`, or calls `conn.reject`.
   */
  onFrame(conn: Connection, reader: FrameReader): void
  /** A malformed frame: count it and log it (the connection then closes itself). */
  onReject(conn: Connection, reason: number): void
  /** The socket is gone (after a reject, a goodbye or the peer leaving). */
  onClose(conn: Connection): void
  /**
   * Whether the frames left should wait for a later turn of the event loop (the host's work in
   * this turn reached its budget). Asked between frames, never before a read's or resume's first.
   */
  shouldYield(): boolean
}

export interface ConnectionSizes {
  rules: FrameRules
  /** Largest reply one frame can produce (header included). */
  replyBytesMax: number
  /** Each of the two send buffers; at least `replyBytesMax`. */
  sendBufferBytes: number
  /** Read into the frame reader's buffer instead of taking the socket's chunks. */
  readInPlace?: boolean
  /** The size of one in-place read (default READ_IN_PLACE_BYTES). */
  readBytes?: number
}

/** How long a closing connection may take to flush before it is destroyed. */
const CLOSE_LINGER_MS = 2000

export class Connection implements SessionHolder {
  readonly serial: number
  readonly endpoint: Endpoint
  readonly socket: Socket
  readonly remote: string
  readonly replyBytesMax: number

  // Protocol state, owned by the dispatcher.
  helloDone = false
  abiVersion: 0 | 1 = 1
  opBytes = 56
  name = ''
  session: Session | null = null
  /** Control over TCP: the hello must carry the daemon's token. */
  tokenRequired = false

  /** The send buffer being filled, and how much of it is used. */
  send: Buffer
  sendUsed = 0
  /** Ops answered late (deferred-ops.ts) not answered yet; at the bound, reading stops. */
  deferred = 0

  readonly #handler: ConnectionHandler
  readonly #reader: FrameReader
  readonly #buffers: [Buffer, Buffer]
  readonly #inFlight: [boolean, boolean] = [false, false]
  readonly #onWritten: [(error?: Error | null) => void, (error?: Error | null) => void]
  /** Chunks that arrived while an earlier one was still being parsed (rare; see #onData). */
  readonly #backlog: Buffer[] = []
  #current: 0 | 1 = 0
  /** Frames handled so far, and its value when the last sweep found a frame half read. */
  #frames = 0
  #stallMark = -1
  #paused = false
  #yielding = false // frames left for the loop's check phase (shouldYield), resumed there
  readonly #afterYield = (): void => {
    this.#yielding = false
    if (!this.#closing && this.#paused && !this.#held) this.#pump()
  }
  /** Parsing stopped because `deferred` reached its bound (see releaseHold). */
  #held = false
  /** A flush of late replies is scheduled for the end of this turn. */
  #lateFlush = false
  readonly #flushLate = (): void => {
    this.#lateFlush = false
    // Also while held: only the parser stops then, never replies.
    if (!this.#closing && this.sendUsed > 0) this.#flush()
  }
  #closing = false
  #closed = false

  /** `accepted` is the socket the server gave; `socket` may be another one over its handle. */
  constructor(
    serial: number,
    endpoint: Endpoint,
    accepted: Socket,
    sizes: ConnectionSizes,
    handler: ConnectionHandler,
  ) {
    assert(sizes.sendBufferBytes >= sizes.replyBytesMax, 'A send buffer holds the largest reply')
    this.serial = serial
    this.endpoint = endpoint
    this.replyBytesMax = sizes.replyBytesMax
    this.#handler = handler
    const inPlace = sizes.readInPlace === true
    const readBytes = sizes.readBytes ?? READ_IN_PLACE_BYTES
    const readerBytes = inPlace
      ? FrameReader.inPlaceBytes(sizes.rules, readBytes)
      : sizes.rules.frameBytesMax
    const reader = new FrameReader(sizes.rules, Buffer.allocUnsafe(readerBytes), readBytes)
    this.#reader = reader
    const adopted = inPlace
      ? adoptInPlace(
          accepted,
          () => reader.readTarget(),
          (count) => this.#onRead(count),
        )
      : null
    this.socket = adopted ?? accepted
    this.remote = describeRemote(this.socket)
    this.#buffers = [
      Buffer.allocUnsafe(sizes.sendBufferBytes),
      Buffer.allocUnsafe(sizes.sendBufferBytes),
    ]
    this.send = this.#buffers[0]
    this.#onWritten = [(error) => this.#written(0, error), (error) => this.#written(1, error)]
    const socket = this.socket
    if (adopted === null) {
      socket.on('data', (chunk: Buffer) => this.#onData(chunk))
      socket.resume() // the server accepts paused (pauseOnConnect)
    }
    socket.on('error', () => {
      // A reset peer: 'close' follows and does the bookkeeping.
    })
    socket.on('close', () => this.#onClose())
  }

  get isClosing(): boolean {
    return this.#closing
  }

  get isOpen(): boolean {
    return !this.#closing
  }

  /**
   * Writes one whole frame made outside a frame handler (a hello answered late), after the
   * replies already made. False when the connection is closing or has no room right now.
   */
  sendFrame(frame: Uint8Array): boolean {
    if (this.#closing) return false
    if (this.sendUsed + frame.length > this.send.length && !this.#flush()) return false
    if (this.sendUsed + frame.length > this.send.length) return false
    this.send.set(frame, this.sendUsed)
    this.sendUsed += frame.length
    if (!this.#paused || this.#held) this.#flush()
    return true
  }

  /**
   * Room for a late reply of `bytes` at `sendUsed` (writing the current buffer out first when
   * it is full); false when there is none now (both buffers busy, or closing).
   */
  lateRoom(bytes: number): boolean {
    if (this.#closing) return false
    if (this.sendUsed + bytes <= this.send.length) return true
    return this.#flush() && this.sendUsed + bytes <= this.send.length
  }

  /**
   * A late reply of `bytes` was written at `sendUsed`: it leaves with the others made in this
   * turn, in one write at the end of the turn (or with the parser's next write, if sooner).
   */
  sendLate(bytes: number): void {
    this.sendUsed += bytes
    if (this.#lateFlush) return
    this.#lateFlush = true
    setImmediate(this.#flushLate)
  }

  /** Fewer ops wait on the network: a connection held at the bound parses and reads again. */
  releaseHold(): void {
    if (!this.#held || this.#closing) return
    this.#held = false
    if (this.#paused && !this.#yielding) this.#pump()
  }

  /** The client moved to another daemon: the MOVED notice after pending replies, then close. */
  notifyMoved(notice: MovedTo): void {
    this.session = null
    if (this.#closing) return
    const frame = encodeMoved(notice)
    this.#finish(Buffer.from(frame.buffer, frame.byteOffset, frame.length))
  }

  /** A malformed frame: flush the replies already made, send an ERROR frame, close. */
  reject(reason: number): void {
    if (this.#closing) return
    assert(reason !== REJECT_NONE, 'A reject has a reason')
    this.#handler.onReject(this, reason)
    this.closeWithError(reason, rejectMessage(reason))
  }

  /** Sends an ERROR frame (reason 0 for a non-protocol cause) after pending replies, closes. */
  closeWithError(reason: number, message: string): void {
    if (this.#closing) return
    const text = Buffer.from(message.slice(0, 256), 'utf8')
    const frame = Buffer.alloc(FRAME_HEADER_BYTES + 4 + text.length)
    writeFrameHeader(frame, 0, KIND_ERROR, 0, 4 + text.length)
    writeU32LE(frame, FRAME_HEADER_BYTES, reason)
    text.copy(frame, FRAME_HEADER_BYTES + 4)
    this.#finish(frame)
  }

  /** Flushes pending replies and ends the connection (goodbye, refused hello). */
  end(): void {
    if (this.#closing) return
    this.#finish(null)
  }

  evict(reason: string): void {
    this.session = null
    this.closeWithError(REJECT_NONE, reason)
  }

  /** Immediate close (daemon shutdown). */
  destroy(): void {
    this.#closing = true
    this.socket.destroy()
  }

  /**
   * The daemon's idle sweep: true when this connection has said hello, is reading (not paused
   * by backpressure), holds a frame half read, and has completed no frame since the previous
   * sweep also found it so: a peer that sends part of a frame and then nothing (or a byte now
   * and then) to hold its slot.
   */
  stalledMidFrame(): boolean {
    if (this.#closing || this.#paused || !this.helloDone || !this.#reader.hasPartialFrame()) {
      this.#stallMark = -1
      return false
    }
    if (this.#stallMark === this.#frames) return true
    this.#stallMark = this.#frames
    return false
  }

  /** In-place mode: `count` bytes were read into the reader. False pauses the socket. */
  #onRead(count: number): boolean {
    this.#reader.commit(count)
    if (this.#closing) return false
    // Paused: the bytes wait in the reader; #written resumes parsing them.
    if (this.#paused) return false
    this.#pump()
    // The client was just served and may well send again at once.
    armBusyPoll()
    return !this.#paused
  }

  #onData(chunk: Buffer): void {
    if (this.#closing) return
    // A paused socket should not emit, but a chunk already on its way may still arrive.
    if (this.#paused || !this.#reader.isDrained()) {
      this.#backlog.push(chunk)
      return
    }
    this.#reader.push(chunk)
    this.#pump()
    armBusyPoll()
  }

  #pump(): void {
    const reader = this.#reader
    const first = this.#frames
    while (!this.#closing) {
      if (this.#frames !== first && this.#handler.shouldYield()) {
        // The host's budget for this turn is spent: what is left waits for the check phase.
        this.#flush()
        this.#pause()
        if (!this.#yielding) setImmediate(this.#afterYield)
        this.#yielding = true
        return
      }
      if (this.deferred >= DEFERRED_PER_CONNECTION_MAX) {
        // Too many ops wait on the network: read no more until some are answered.
        this.#held = true
        this.#flush()
        this.#pause()
        return
      }
      if (this.sendUsed + this.replyBytesMax > this.send.length && !this.#flush()) {
        this.#pause()
        return
      }
      if (!reader.next()) {
        const queued = reader.error === REJECT_NONE ? this.#backlog.shift() : undefined
        if (queued === undefined) break
        reader.push(queued)
        continue
      }
      this.#frames++
      this.#handler.onFrame(this, reader)
    }
    if (this.#closing) return
    if (reader.error !== REJECT_NONE) {
      this.reject(reader.error)
      return
    }
    // The chunk is drained: one write for everything it produced. If the other buffer is
    // still in flight, the write happens when it completes (#written).
    this.#flush()
    this.#resume()
  }

  /** Writes the current buffer and switches to the other; false when the other is busy. */
  #flush(): boolean {
    if (this.sendUsed === 0) return true
    const next: 0 | 1 = this.#current === 0 ? 1 : 0
    if (this.#inFlight[next]) return false
    const index = this.#current
    this.#inFlight[index] = true
    this.socket.write(this.send.subarray(0, this.sendUsed), this.#onWritten[index])
    this.#current = next
    this.send = this.#buffers[next]
    this.sendUsed = 0
    return true
  }

  #written(index: 0 | 1, _error?: Error | null): void {
    this.#inFlight[index] = false
    if (this.#closing) return
    if (this.#paused && !this.#yielding) this.#pump()
    else if (this.sendUsed > 0) this.#flush()
  }

  #pause(): void {
    if (this.#paused) return
    this.#paused = true
    this.socket.pause()
  }

  #resume(): void {
    if (!this.#paused) return
    assert(this.#reader.isDrained(), 'Resume reading only once the chunk is drained')
    this.#paused = false
    this.socket.resume()
  }

  #finish(lastFrame: Buffer | null): void {
    this.#closing = true
    // Writes are queued in order by the socket; buffers are not reused from here on.
    if (this.sendUsed > 0) this.socket.write(this.send.subarray(0, this.sendUsed))
    this.sendUsed = 0
    if (lastFrame === null) this.socket.end()
    else this.socket.end(lastFrame)
    const linger = setTimeout(() => this.socket.destroy(), CLOSE_LINGER_MS)
    linger.unref()
    this.socket.once('close', () => clearTimeout(linger))
  }

  #onClose(): void {
    if (this.#closed) return
    this.#closed = true
    if (!this.#closing && this.#reader.hasPartialFrame()) {
      this.#handler.onReject(this, REJECT_TRUNCATED)
    }
    this.#closing = true
    this.#handler.onClose(this)
  }
}

/**
 * A socket over `accepted`'s handle that reads into `target()` and reports each read to
 * `onRead` (Node's `onread` option, which `net.Server` cannot give an accepted socket). The
 * accepted socket is left without a handle and destroyed when the new one closes, so the
 * server's connection count stays right. Null when the handle cannot be taken (then the
 * caller reads the accepted socket's chunks).
 */
export function adoptInPlace(
  accepted: Socket,
  target: () => Uint8Array,
  onRead: (count: number) => boolean,
): Socket | null {
  const holder = accepted as unknown as { _handle?: object | null }
  const handle = holder._handle
  if (handle === null || handle === undefined || accepted.readableLength > 0) return null
  holder._handle = null
  let socket: Socket
  try {
    socket = new Socket({
      handle,
      readable: true,
      writable: true,
      onread: { buffer: target, callback: onRead },
    } as ConstructorParameters<typeof Socket>[0] & { handle: object })
  } catch {
    holder._handle = handle
    return null
  }
  socket.once('close', () => accepted.destroy())
  socket.resume()
  return socket
}

function describeRemote(socket: Socket): string {
  if (socket.remoteAddress === undefined) return 'unix'
  return `${socket.remoteAddress}:${socket.remotePort ?? 0}`
}
