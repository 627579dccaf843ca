/**
 * The client side of one daemon connection: dial, hello, pipelined requests matched to replies
 * by request id, and transparent reconnection within the daemon's grace period.
 *
 * Requests are encoded into their own frame buffers when issued and written in batches: every
 * request issued in the same tick leaves in one corked write. Any number may be in flight; the
 * socket's own buffering and the daemon's backpressure pace them.
 *
 * Reconnection (client connections with a secret): when the socket drops without close() or
 * disconnect(), the transport redials with backoff until the grace period the daemon announced
 * has passed, re-hellos with the secret, and on success re-sends every request still waiting
 * for a reply whose command is idempotent (put, get, flush, read, write), in the original order;
 * the others (new pool, destroy pool, control) fail with ECONNRESET, since they may already
 * have run. Requests issued while reconnecting wait and go out after the hello.
 *
 * Following a migration (docs/migration.md): a MOVED notice names the daemon the client now
 * lives on and the secret to use there; the old daemon ran none of the requests still waiting
 * (it sends the notice after the replies of everything it ran, then closes), so ALL of them are
 * re-sent to the new daemon after its hello, idempotent or not. A hello answered HELLO_MOVED
 * (a reconnect after the client moved) is followed the same way. Until the new daemon takes
 * the client, the old one is kept as a fallback: if the migration fails, the client resumes
 * there with its old secret.
 */
import { EventEmitter } from 'node:events'
import { type Socket, connect as netConnect } from 'node:net'
import {
  ERROR_PAYLOAD_BYTES_MAX,
  FrameReader,
  FrameRules,
  HELLO_REPLY_FIXED_BYTES,
  HELLO_REPLY_PAYLOAD_BYTES_MAX,
  KIND_CONTROL_REPLY,
  KIND_ERROR,
  KIND_GOODBYE,
  KIND_GOODBYE_REPLY,
  KIND_HELLO_REPLY,
  KIND_OP_REPLY,
  KIND_STATS_REPLY,
  FRAME_HEADER_BYTES,
  RC_BYTES,
  readU32LE,
  writeFrameHeader,
} from '../server/frame.js'
import {
  HELLO_FLAG_RESUMED,
  HELLO_MOVED,
  HELLO_OK,
  HELLO_SESSION_EXPIRED,
  HELLO_BAD_SECRET,
  type HelloReply,
  decodeHelloReply,
  encodeHello,
} from '../server/hello.js'
import {
  KIND_MOVED,
  KIND_SESSION_REPLY,
  MOVED_FIXED_BYTES,
  MOVED_PAYLOAD_BYTES_MAX,
  SESSION_REPLY_PAYLOAD_BYTES_MAX,
  decodeMoved,
  formatClientAddress,
  parseClientAddress,
} from '../server/session-frame.js'
import { HELLO_ERROR_CODES, TmemConnectionError, TmemError, TmemProtocolError } from './errors.js'

/** Where the daemon is: its Unix socket, or a loopback TCP address. */
export type ConnectTarget = { path: string } | { host: string; port: number }

/** A reply frame, valid only during the callback (copy what you keep). */
export interface ReplyView {
  kind: number
  bytes: Uint8Array
  payloadOffset: number
  payloadBytes: number
}

interface Pending {
  frame: Uint8Array
  replayable: boolean
  sent: boolean
  onReply: (reply: ReplyView) => void
  onError: (error: Error) => void
}

export interface TransportOptions {
  abiVersion: 0 | 1
  name: string
  secret: Uint8Array | null
  token: string
  reconnect: boolean
  /** Largest reply payloads this transport accepts, by kind. */
  rules: FrameRules
  /**
   * Read replies straight into the frame reader's buffer (Node's `onread`): no chunk per
   * read and no copy to put a large reply together. Control connections use it for the
   * 1 MiB page batches of save and migration.
   */
  readInPlace?: boolean
}

type State = 'connecting' | 'ready' | 'reconnecting' | 'closed'

const RECONNECT_DELAY_FIRST_MS = 25
const RECONNECT_DELAY_MAX_MS = 1000
/** Redirects followed in a row without a pause (a loop between two daemons is paced after). */
const REDIRECTS_IN_A_ROW_MAX = 4
/** Least time a client keeps trying to reach the daemon it moved to. */
const FOLLOW_TIME_MIN_MS = 10_000

/** A daemon to dial and the secret to show it. */
interface Place {
  target: ConnectTarget
  secret: Uint8Array | null
}

/** The hello was answered HELLO_MOVED: where to go instead. */
class MovedRedirect extends TmemConnectionError {
  readonly place: Place
  readonly graceMs: number

  constructor(place: Place, graceMs: number, message: string) {
    super('EMOVED', message)
    this.place = place
    this.graceMs = graceMs
  }
}

/** Reply rules of a client (guest) connection. */
export function clientRules(): FrameRules {
  return baseRules()
}

/** Reply rules of a control connection: tool buffers up to the daemon's limit. */
export function controlRules(replyPayloadBytesMax: number): FrameRules {
  return baseRules()
    .allow(KIND_CONTROL_REPLY, RC_BYTES, replyPayloadBytesMax)
    .allow(KIND_STATS_REPLY, RC_BYTES, replyPayloadBytesMax)
    .allow(KIND_SESSION_REPLY, RC_BYTES, SESSION_REPLY_PAYLOAD_BYTES_MAX)
}

function baseRules(): FrameRules {
  return new FrameRules()
    .allow(KIND_HELLO_REPLY, HELLO_REPLY_FIXED_BYTES, HELLO_REPLY_PAYLOAD_BYTES_MAX)
    .allow(KIND_OP_REPLY, RC_BYTES, RC_BYTES + 4096)
    .allow(KIND_GOODBYE_REPLY, 0, 0)
    .allow(KIND_ERROR, 4, ERROR_PAYLOAD_BYTES_MAX)
    .allow(KIND_MOVED, MOVED_FIXED_BYTES, MOVED_PAYLOAD_BYTES_MAX)
}

export class Transport extends EventEmitter {
  readonly options: TransportOptions
  #target: ConnectTarget
  hello: HelloReply | null = null
  #state: State = 'connecting'
  #socket: Socket | null = null
  #reader: FrameReader
  #nextId = 1
  readonly #pending = new Map<number, Pending>()
  #outbox: number[] = []
  #flushScheduled = false
  #secret: Uint8Array | null
  /** Set by an ERROR frame: why the daemon is closing this connection. */
  #closeReason: Error | null = null
  #closedError: Error | null = null
  #helloWaiter: { resolve: (reply: HelloReply) => void; reject: (error: Error) => void } | null =
    null
  /** Set by a MOVED notice: the connection that is closing was fenced by the old daemon. */
  #movedGraceMs: number | null = null
  /** While following a move: the daemon the client came from, tried if the new one fails. */
  #fallback: Place | null = null

  constructor(target: ConnectTarget, options: TransportOptions) {
    super()
    this.#target = target
    this.options = options
    this.#secret = options.secret
    this.#reader = new FrameReader(options.rules)
  }

  get state(): State {
    return this.#state
  }

  /** The daemon this transport talks to (it changes when the client is migrated). */
  get target(): ConnectTarget {
    return this.#target
  }

  get secret(): Uint8Array | null {
    return this.#secret
  }

  /**
   * Dials and says hello; rejects with a TmemConnectionError when refused or unreachable. A
   * hello answered HELLO_MOVED (the client was migrated while away) is followed.
   */
  async open(): Promise<HelloReply> {
    for (let redirects = 0; ; redirects++) {
      try {
        const reply = await this.#dialAndHello()
        this.#state = 'ready'
        this.#scheduleFlush()
        return reply
      } catch (error) {
        if (!(error instanceof MovedRedirect) || redirects >= REDIRECTS_IN_A_ROW_MAX) throw error
        this.#target = error.place.target
        this.#secret = error.place.secret
        this.emit('moved', formatClientAddress(this.#target))
      }
    }
  }

  /**
   * Sends a request frame (header at 0, request id filled in here) and calls back with its
   * reply. `replayable` requests are re-sent after a reconnect.
   */
  request(
    frame: Uint8Array,
    replayable: boolean,
    onReply: (reply: ReplyView) => void,
    onError: (error: Error) => void,
  ): void {
    if (this.#state === 'closed') {
      onError(this.#closedError ?? new TmemConnectionError('ECLOSED', 'The connection is closed'))
      return
    }
    const id = this.#takeId()
    frame[8] = id & 0xff
    frame[9] = (id >>> 8) & 0xff
    frame[10] = (id >>> 16) & 0xff
    frame[11] = (id >>> 24) & 0xff
    this.#pending.set(id, { frame, replayable, sent: false, onReply, onError })
    this.#outbox.push(id)
    this.#scheduleFlush()
  }

  /**
   * `request` as a promise: resolves with what `decode` makes of the reply (while the reply
   * is valid), rejects with the transport's error or with what `decode` throws.
   */
  ask<T>(frame: Uint8Array, replayable: boolean, decode: (reply: ReplyView) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.request(
        frame,
        replayable,
        (reply) => {
          try {
            resolve(decode(reply))
          } catch (error) {
            reject(error instanceof Error ? error : new Error(String(error)))
          }
        },
        reject,
      )
    })
  }

  /** Says goodbye (the daemon destroys a client's pools now), then closes. */
  async goodbye(): Promise<void> {
    if (this.#state !== 'ready') {
      this.destroy()
      return
    }
    const frame = new Uint8Array(FRAME_HEADER_BYTES)
    writeFrameHeader(frame, 0, KIND_GOODBYE, 0, 0)
    await new Promise<void>((resolve) => {
      this.request(frame, false, () => resolve(), () => resolve())
    })
    this.destroy()
  }

  /** Closes the socket at once; requests still waiting fail with ECLOSED. No reconnect. */
  destroy(): void {
    this.#fail(new TmemConnectionError('ECLOSED', 'The connection was closed by the client'))
  }

  #takeId(): number {
    const id = this.#nextId
    this.#nextId = id >= 0xffffffff ? 1 : id + 1
    return id
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#state !== 'ready') return
    this.#flushScheduled = true
    queueMicrotask(() => this.#flush())
  }

  #flush(): void {
    this.#flushScheduled = false
    const socket = this.#socket
    if (this.#state !== 'ready' || socket === null || this.#outbox.length === 0) return
    const outbox = this.#outbox
    this.#outbox = []
    socket.cork()
    for (const id of outbox) {
      const pending = this.#pending.get(id)
      if (pending === undefined) continue
      pending.sent = true
      socket.write(pending.frame)
    }
    socket.uncork()
  }

  async #dialAndHello(): Promise<HelloReply> {
    const rules = this.options.rules
    const inPlace = this.options.readInPlace === true
    const reader = inPlace
      ? new FrameReader(rules, new Uint8Array(FrameReader.inPlaceBytes(rules)))
      : new FrameReader(rules)
    let dialed: Socket | null = null
    const socket = await dial(this.#target, inPlace
      ? {
        buffer: () => reader.readTarget(),
        callback: (count) => {
          reader.commit(count)
          if (dialed !== null) this.#parse(dialed)
          return true
        },
      }
      : null)
    dialed = socket
    this.#socket = socket
    this.#reader = reader
    this.#closeReason = null
    socket.setNoDelay?.(true)
    if (!inPlace) socket.on('data', (chunk: Buffer) => this.#onData(socket, chunk))
    socket.on('error', () => {
      // 'close' follows.
    })
    socket.on('close', () => this.#onClose(socket))
    const helloFrame = encodeHello(0, {
      abiVersion: this.options.abiVersion,
      name: this.hello?.name ?? this.options.name,
      secret: this.#secret,
      token: this.options.token,
    })
    const reply = await new Promise<HelloReply>((resolve, reject) => {
      this.#helloWaiter = { resolve, reject }
      socket.write(helloFrame)
    })
    if (reply.status !== HELLO_OK) {
      socket.destroy()
      if (reply.status === HELLO_MOVED) {
        const target = parseClientAddress(reply.message)
        if (target !== null && reply.secret !== null) {
          throw new MovedRedirect({ target, secret: reply.secret }, reply.graceMs, `The client moved to ${reply.message}`)
        }
      }
      const code = HELLO_ERROR_CODES[reply.status] ?? 'EREFUSED'
      throw new TmemConnectionError(code, `The daemon refused the connection: ${reply.message}`)
    }
    this.hello = reply
    if (reply.secret !== null) this.#secret = reply.secret
    return reply
  }

  #onData(socket: Socket, chunk: Buffer): void {
    if (socket !== this.#socket) return
    this.#reader.push(chunk)
    this.#parse(socket)
  }

  /** Hands every whole frame the reader has to #onFrame. */
  #parse(socket: Socket): void {
    if (socket !== this.#socket) return
    const reader = this.#reader
    while (reader.next()) {
      this.#onFrame(reader)
      if (socket !== this.#socket) return
    }
    if (reader.error !== 0) {
      this.#closeReason = new TmemProtocolError(`Malformed frame from the daemon (${reader.error})`)
      socket.destroy()
    }
  }

  #onFrame(reader: FrameReader): void {
    const kind = reader.kind
    if (kind === KIND_HELLO_REPLY) {
      const waiter = this.#helloWaiter
      this.#helloWaiter = null
      const reply = decodeHelloReply(reader.bytes, reader.payloadOffset, reader.payloadBytes)
      if (waiter === null || reply === null) {
        this.#closeReason = new TmemProtocolError('Unexpected or malformed hello reply')
        this.#socket?.destroy()
        return
      }
      waiter.resolve(reply)
      return
    }
    if (kind === KIND_MOVED) {
      this.#onMoved(reader)
      return
    }
    if (kind === KIND_ERROR) {
      const reason = readU32LE(reader.bytes, reader.payloadOffset)
      const text = Buffer.from(
        reader.bytes.subarray(reader.payloadOffset + 4, reader.payloadOffset + reader.payloadBytes),
      ).toString('utf8')
      this.#closeReason =
        reason === 0
          ? new TmemConnectionError('ECLOSED', `The daemon closed the connection: ${text}`)
          : new TmemProtocolError(`The daemon rejected a frame: ${text}`)
      return
    }
    const pending = this.#pending.get(reader.requestId)
    if (pending === undefined) {
      this.#closeReason = new TmemProtocolError(`Reply to unknown request ${reader.requestId}`)
      this.#socket?.destroy()
      return
    }
    this.#pending.delete(reader.requestId)
    pending.onReply(reader)
  }

  /**
   * MOVED: the client now lives on another daemon. The old one closes next; the close starts
   * the reconnect, to the new place, with the old one as the fallback.
   */
  #onMoved(reader: FrameReader): void {
    const notice = decodeMoved(reader.bytes, reader.payloadOffset, reader.payloadBytes)
    const target = notice === null ? null : parseClientAddress(notice.address)
    if (notice === null || target === null) {
      this.#closeReason = new TmemProtocolError('Malformed MOVED notice')
      this.#socket?.destroy()
      return
    }
    this.#fallback = { target: this.#target, secret: this.#secret }
    this.#target = target
    this.#secret = notice.secret
    this.#movedGraceMs = notice.graceMs
    this.emit('moved', notice.address)
  }

  #onClose(socket: Socket): void {
    if (socket !== this.#socket) return
    this.#socket = null
    const waiter = this.#helloWaiter
    this.#helloWaiter = null
    const reason =
      this.#closeReason ?? new TmemConnectionError('ECONNRESET', 'The daemon closed the connection')
    if (waiter !== null) {
      waiter.reject(reason)
      return
    }
    if (this.#state === 'closed' || this.#state === 'connecting') return
    if (this.#state === 'reconnecting') return
    if (this.#movedGraceMs !== null && this.#closeReason === null) {
      this.#startReconnect(true)
      return
    }
    const canResume =
      this.options.reconnect &&
      this.#secret !== null &&
      (this.hello?.graceMs ?? 0) > 0 &&
      !(reason instanceof TmemProtocolError) &&
      this.#closeReason === null
    if (!canResume) {
      this.#fail(reason)
      return
    }
    this.#startReconnect(false)
  }

  /** `moved`: the old daemon ran none of the waiting requests, so every one is re-sent. */
  #startReconnect(moved: boolean): void {
    this.#state = 'reconnecting'
    for (const [id, pending] of this.#pending) {
      if (!pending.sent) continue
      if (pending.replayable || moved) {
        pending.sent = false
        continue
      }
      this.#pending.delete(id)
      pending.onError(
        new TmemConnectionError('ECONNRESET', 'The connection dropped before the reply came'),
      )
    }
    this.emit('disconnect')
    let graceMs = this.hello?.graceMs ?? 0
    if (moved) graceMs = Math.max(graceMs, this.#movedGraceMs ?? 0, FOLLOW_TIME_MIN_MS)
    this.#movedGraceMs = null
    void this.#reconnectLoop(Date.now() + graceMs, moved)
  }

  async #reconnectLoop(deadline: number, moved: boolean): Promise<void> {
    let delay = RECONNECT_DELAY_FIRST_MS
    // A move is followed at once: the new daemon is waiting for the hello.
    let pause = !moved
    let redirects = 0
    while (this.#state === 'reconnecting') {
      if (pause) await sleep(delay)
      pause = true
      if (this.#state !== 'reconnecting') return
      try {
        const reply = await this.#dialAndHello()
        if ((reply.flags & HELLO_FLAG_RESUMED) === 0) {
          this.#fail(new TmemConnectionError('ESESSION', 'The daemon did not resume the session'))
          return
        }
        this.#state = 'ready'
        this.#fallback = null
        this.#outbox = [...this.#pending.keys()]
        this.emit('reconnect')
        this.#scheduleFlush()
        return
      } catch (error) {
        if (error instanceof MovedRedirect) {
          // Moved (again): go there, keeping where we were as the fallback.
          this.#fallback = { target: this.#target, secret: this.#secret }
          this.#target = error.place.target
          this.#secret = error.place.secret
          deadline = Math.max(deadline, Date.now() + Math.max(error.graceMs, FOLLOW_TIME_MIN_MS))
          this.emit('moved', formatClientAddress(this.#target))
          redirects++
          if (redirects <= REDIRECTS_IN_A_ROW_MAX) pause = false
          continue
        }
        redirects = 0
        const code = error instanceof TmemError ? error.code : ''
        const final = code === HELLO_ERROR_CODES[HELLO_SESSION_EXPIRED] ||
          code === HELLO_ERROR_CODES[HELLO_BAD_SECRET] || error instanceof TmemProtocolError
        const fallback = this.#fallback
        if (fallback !== null && Date.now() + delay <= deadline) {
          // Following a move: try the other daemon (a failed migration leaves the client on
          // the old one). A refusal that is final here drops this place for good.
          this.#fallback = final ? null : { target: this.#target, secret: this.#secret }
          this.#target = fallback.target
          this.#secret = fallback.secret
          delay = Math.min(delay * 2, RECONNECT_DELAY_MAX_MS)
          continue
        }
        if (final || Date.now() + delay > deadline) {
          this.#fail(
            final && error instanceof Error
              ? error
              : new TmemConnectionError('ESESSION', 'Could not reconnect within the grace period'),
          )
          return
        }
        delay = Math.min(delay * 2, RECONNECT_DELAY_MAX_MS)
      }
    }
  }

  #fail(error: Error): void {
    if (this.#state === 'closed') return
    this.#state = 'closed'
    this.#closedError = error
    const socket = this.#socket
    this.#socket = null
    socket?.destroy()
    const waiter = this.#helloWaiter
    this.#helloWaiter = null
    waiter?.reject(error)
    const pending = [...this.#pending.values()]
    this.#pending.clear()
    this.#outbox = []
    for (const request of pending) request.onError(error)
    this.emit('close', error)
  }
}

/** Where a client connects, as the daemon writes it in MOVED (`unix:/path`, `tcp:host:port`). */
export function describeConnectTarget(target: ConnectTarget): string {
  return formatClientAddress(target)
}

/** Node's `onread` option: reads go into `buffer()`, `callback` is told how many bytes came. */
interface ReadInPlace {
  buffer: () => Uint8Array
  callback: (count: number, buffer: Uint8Array) => boolean
}

function dial(target: ConnectTarget, onread: ReadInPlace | null): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const reading = onread === null ? {} : { onread }
    const socket =
      'path' in target
        ? netConnect({ path: target.path, ...reading })
        : netConnect({ host: target.host, port: target.port, ...reading })
    const onError = (error: NodeJS.ErrnoException): void => {
      socket.destroy()
      const code = typeof error.code === 'string' ? error.code : 'ECONNREFUSED'
      reject(new TmemConnectionError(code, `Cannot reach the tmem daemon: ${error.message}`))
    }
    socket.once('error', onError)
    socket.once('connect', () => {
      socket.off('error', onError)
      resolve(socket)
    })
  })
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
