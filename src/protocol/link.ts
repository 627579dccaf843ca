/**
 * One connection to a daemon, from the dialing side: dial, hello, pipelined requests matched
 * to replies by request id. Both ends use it: the client library (whose `Transport` adds
 * reconnection and following a migration, src/client/transport.ts) and the daemon itself when
 * it pushes pages to another daemon (src/server/push.ts).
 *
 * Requests are encoded into their own frame buffers when issued and written in batches: every
 * request issued in the same tick leaves in one corked write. Any number may be in flight; the
 * socket's own buffering and the daemon's backpressure pace them.
 *
 * A `Link` alone does not reconnect: when the socket drops, every request still waiting fails
 * and the link is closed. A subclass decides otherwise through `onDrop` and `onMovedNotice`,
 * and re-sends what is waiting with `prepareReplay` and `markReady`.
 *
 * Errors are made by `LinkOptions.errors`, so that the client library raises its own typed
 * errors while this layer imports nothing but the wire format.
 */
import { EventEmitter } from 'node:events'
import type { Socket } from 'node:net'
import { type ConnectTarget, type LinkErrors, PLAIN_ERRORS, dial } from './dial.js'
import {
  FrameReader,
  type FrameRules,
  KIND_ERROR,
  KIND_GOODBYE,
  KIND_HELLO_REPLY,
  FRAME_HEADER_BYTES,
  readU32LE,
  writeFrameHeader,
} from './frame.js'
import {
  HELLO_ERROR_CODES,
  HELLO_OK,
  type HelloReply,
  decodeHelloReply,
  encodeHello,
} from './hello.js'
import { KIND_MOVED, type MovedNotice, decodeMoved } from './session-frame.js'

/** A reply frame, valid only during the callback (copy what you keep). */
export interface ReplyView {
  kind: number
  bytes: Uint8Array
  payloadOffset: number
  payloadBytes: number
}

export interface LinkOptions {
  abiVersion: 0 | 1
  name: string
  secret: Uint8Array | null
  token: string
  /** Largest reply payloads this link accepts, by kind. */
  rules: FrameRules
  /**
   * Read replies straight into the frame reader's buffer (Node's `onread`): no chunk per
   * read and no copy to put a large reply together. Control connections use it for the
   * 1 MiB page batches of save and migration; the client library reads its replies so too.
   */
  readInPlace?: boolean
  /** The size of one in-place read (default READ_IN_PLACE_BYTES, 256 KiB). */
  readBytes?: number
  errors?: LinkErrors
}

export type LinkState = 'connecting' | 'ready' | 'reconnecting' | 'closed'

interface Pending {
  frame: Uint8Array
  replayable: boolean
  sent: boolean
  onReply: (reply: ReplyView) => void
  onError: (error: Error) => void
}

export class Link extends EventEmitter {
  readonly options: LinkOptions
  hello: HelloReply | null = null
  protected readonly errors: LinkErrors
  #target: ConnectTarget
  #state: LinkState = 'connecting'
  #socket: Socket | null = null
  #reader: FrameReader
  #nextId = 1
  readonly #pending = new Map<number, Pending>()
  #outbox: number[] = []
  #flushScheduled = false
  #secret: Uint8Array | null
  /** Set by an ERROR frame or a protocol breach: why this socket is closing. */
  #closeReason: Error | null = null
  #closedError: Error | null = null
  #helloWaiter: { resolve: (reply: HelloReply) => void; reject: (error: Error) => void } | null =
    null

  constructor(target: ConnectTarget, options: LinkOptions) {
    super()
    this.#target = target
    this.options = options
    this.errors = options.errors ?? PLAIN_ERRORS
    this.#secret = options.secret
    this.#reader = new FrameReader(options.rules)
  }

  get state(): LinkState {
    return this.#state
  }

  /** The daemon this link talks to (a subclass changes it to follow a client's move). */
  get target(): ConnectTarget {
    return this.#target
  }

  get secret(): Uint8Array | null {
    return this.#secret
  }

  /** Dials and says hello; rejects when refused or unreachable. */
  async open(): Promise<HelloReply> {
    const reply = await this.connectOnce()
    this.markReady(false)
    return reply
  }

  /**
   * Sends a request frame (header at 0, request id filled in here) and calls back with its
   * reply. `replayable` requests may be re-sent by a subclass after a reconnect.
   */
  request(
    frame: Uint8Array,
    replayable: boolean,
    onReply: (reply: ReplyView) => void,
    onError: (error: Error) => void,
  ): void {
    if (this.#state === 'closed') {
      onError(this.#closedError ?? this.errors.connection('ECLOSED', 'The connection is closed'))
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
   * is valid), rejects with the link's error or with what `decode` throws.
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
      this.request(
        frame,
        false,
        () => resolve(),
        () => resolve(),
      )
    })
    this.destroy()
  }

  /** Closes the socket at once; requests still waiting fail with ECLOSED. No reconnect. */
  destroy(): void {
    this.fail(this.errors.connection('ECLOSED', 'The connection was closed by the client'))
  }

  /**
   * One dial and hello to the current target. A refusal rejects with `refusal(reply)`; on
   * success the reply is kept in `hello` and its secret replaces the link's.
   */
  protected async connectOnce(): Promise<HelloReply> {
    const reply = await this.#dialAndHello()
    if (reply.status !== HELLO_OK) {
      this.#socket?.destroy()
      throw this.refusal(reply)
    }
    this.hello = reply
    if (reply.secret !== null) this.#secret = reply.secret
    return reply
  }

  /** The error for a hello the daemon refused. */
  protected refusal(reply: HelloReply): Error {
    const code = HELLO_ERROR_CODES[reply.status] ?? 'EREFUSED'
    return this.errors.connection(code, `The daemon refused the connection: ${reply.message}`)
  }

  /** Where the next `connectOnce` goes, and the secret it shows there. */
  protected moveTo(target: ConnectTarget, secret: Uint8Array | null): void {
    this.#target = target
    this.#secret = secret
  }

  protected setReconnecting(): void {
    this.#state = 'reconnecting'
  }

  /** Ready after a hello: requests go out; `replayAll` re-sends every one still waiting. */
  protected markReady(replayAll: boolean): void {
    this.#state = 'ready'
    if (replayAll) this.#outbox = [...this.#pending.keys()]
    this.#scheduleFlush()
  }

  /**
   * The socket dropped and a reconnect follows: requests already sent fail with `error`
   * unless they are replayable or `all` is true; the others are sent again by `markReady`.
   */
  protected prepareReplay(all: boolean, error: Error): void {
    for (const [id, pending] of this.#pending) {
      if (!pending.sent) continue
      if (pending.replayable || all) {
        pending.sent = false
        continue
      }
      this.#pending.delete(id)
      pending.onError(error)
    }
  }

  /**
   * The socket of a ready link closed. `clean`: the daemon closed it without an ERROR frame or
   * a protocol breach. A plain link fails every waiting request and closes.
   */
  protected onDrop(reason: Error, _clean: boolean): void {
    this.fail(reason)
  }

  /** A notice frame (request id 0) of `kind`; true when the subclass took it. */
  protected onNotice(_kind: number): boolean {
    return false
  }

  /**
   * Writes a frame that gets no reply (a doorbell) now, after the requests already written;
   * false when the link is not ready.
   */
  notice(frame: Uint8Array): boolean {
    if (this.#state !== 'ready' || this.#socket === null) return false
    this.#socket.write(frame)
    return true
  }

  /** The peer broke the protocol outside the frames (a shared ring): close, and say so. */
  breach(message: string): void {
    this.#breach(message)
  }

  /** A MOVED notice, for a link that follows clients; a plain link treats it as a breach. */
  protected onMovedNotice(_notice: MovedNotice): boolean {
    return false
  }

  /** Closes for good: the socket, the hello still waiting and every request fail with `error`. */
  protected fail(error: Error): void {
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

  /** Dials the target and sends the hello; resolves with whatever the daemon answers. */
  async #dialAndHello(): Promise<HelloReply> {
    const rules = this.options.rules
    const inPlace = this.options.readInPlace === true
    const reader = inPlace
      ? FrameReader.inPlace(rules, this.options.readBytes)
      : new FrameReader(rules)
    let dialed: Socket | null = null
    const socket = await dial(
      this.#target,
      this.errors,
      inPlace
        ? {
            buffer: () => reader.readTarget(),
            callback: (count) => {
              reader.commit(count)
              if (dialed !== null) this.#parse(dialed)
              return true
            },
          }
        : null,
    )
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
    return new Promise<HelloReply>((resolve, reject) => {
      this.#helloWaiter = { resolve, reject }
      socket.write(helloFrame)
    })
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
      this.#closeReason = this.errors.protocol(`Malformed frame from the daemon (${reader.error})`)
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
        this.#breach('Unexpected or malformed hello reply')
        return
      }
      waiter.resolve(reply)
      return
    }
    if (kind === KIND_MOVED) {
      const notice = decodeMoved(reader.bytes, reader.payloadOffset, reader.payloadBytes)
      if (notice === null || !this.onMovedNotice(notice)) this.#breach('Malformed MOVED notice')
      return
    }
    if (kind === KIND_ERROR) {
      const reason = readU32LE(reader.bytes, reader.payloadOffset)
      const text = Buffer.from(
        reader.bytes.subarray(reader.payloadOffset + 4, reader.payloadOffset + reader.payloadBytes),
      ).toString('utf8')
      this.#closeReason =
        reason === 0
          ? this.errors.connection('ECLOSED', `The daemon closed the connection: ${text}`)
          : this.errors.protocol(`The daemon rejected a frame: ${text}`)
      return
    }
    if (reader.requestId === 0 && this.onNotice(kind)) return
    const pending = this.#pending.get(reader.requestId)
    if (pending === undefined) {
      this.#breach(`Reply to unknown request ${reader.requestId}`)
      return
    }
    this.#pending.delete(reader.requestId)
    pending.onReply(reader)
  }

  /** The daemon broke the protocol: close, and say so. */
  #breach(message: string): void {
    this.#closeReason = this.errors.protocol(message)
    this.#socket?.destroy()
  }

  #onClose(socket: Socket): void {
    if (socket !== this.#socket) return
    this.#socket = null
    const waiter = this.#helloWaiter
    this.#helloWaiter = null
    const reason =
      this.#closeReason ?? this.errors.connection('ECONNRESET', 'The daemon closed the connection')
    if (waiter !== null) {
      waiter.reject(reason)
      return
    }
    if (this.#state !== 'ready') return
    this.onDrop(reason, this.#closeReason === null)
  }
}
