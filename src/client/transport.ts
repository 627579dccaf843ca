/**
 * The client library's daemon connection: a `Link` (src/protocol/link.ts: dial, hello,
 * pipelined requests) that reconnects transparently within the daemon's grace period and
 * follows the client when it is migrated to another daemon.
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
import {
  HELLO_BAD_SECRET,
  HELLO_ERROR_CODES,
  HELLO_FLAG_RESUMED,
  HELLO_MOVED,
  HELLO_SESSION_EXPIRED,
  type HelloReply,
} from '../protocol/hello.js'
import type { ConnectTarget } from '../protocol/dial.js'
import { Link, type LinkOptions } from '../protocol/link.js'
import {
  type MovedNotice,
  formatClientAddress,
  parseClientAddress,
} from '../protocol/session-frame.js'
import { KIND_SHM_KICK_NOTICE } from '../protocol/shm-frame.js'
import { CLIENT_LINK_ERRORS, TmemConnectionError, TmemError, TmemProtocolError } from './errors.js'

export interface TransportOptions extends Omit<LinkOptions, 'errors'> {
  /** Reconnect within the grace period when the socket drops (a move is followed regardless). */
  reconnect: boolean
}

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

export class Transport extends Link {
  readonly #reconnect: boolean
  /** Set by a MOVED notice: the connection that is closing was fenced by the old daemon. */
  #movedGraceMs: number | null = null
  /** While following a move: the daemon the client came from, tried if the new one fails. */
  #fallback: Place | null = null

  constructor(target: ConnectTarget, options: TransportOptions) {
    super(target, { ...options, errors: CLIENT_LINK_ERRORS })
    this.#reconnect = options.reconnect
  }

  /**
   * Dials and says hello; rejects with a TmemConnectionError when refused or unreachable. A
   * hello answered HELLO_MOVED (the client was migrated while away) is followed.
   */
  override async open(): Promise<HelloReply> {
    for (let redirects = 0; ; redirects++) {
      try {
        const reply = await this.connectOnce()
        this.markReady(false)
        return reply
      } catch (error) {
        if (!(error instanceof MovedRedirect) || redirects >= REDIRECTS_IN_A_ROW_MAX) throw error
        this.moveTo(error.place.target, error.place.secret)
        this.emit('moved', formatClientAddress(this.target))
      }
    }
  }

  protected override refusal(reply: HelloReply): Error {
    if (reply.status === HELLO_MOVED) {
      const target = parseClientAddress(reply.message)
      if (target !== null && reply.secret !== null) {
        return new MovedRedirect(
          { target, secret: reply.secret },
          reply.graceMs,
          `The client moved to ${reply.message}`,
        )
      }
    }
    return super.refusal(reply)
  }

  /**
   * MOVED: the client now lives on another daemon. The old one closes next; the close starts
   * the reconnect, to the new place, with the old one as the fallback.
   */
  protected override onMovedNotice(notice: MovedNotice): boolean {
    const target = parseClientAddress(notice.address)
    if (target === null) return false
    this.#fallback = { target: this.target, secret: this.secret }
    this.moveTo(target, notice.secret)
    this.#movedGraceMs = notice.graceMs
    this.emit('moved', notice.address)
    return true
  }

  /** The daemon rang the client's shared-memory doorbell. */
  protected override onNotice(kind: number): boolean {
    if (kind !== KIND_SHM_KICK_NOTICE) return false
    this.emit('shm-kick')
    return true
  }

  protected override onDrop(reason: Error, clean: boolean): void {
    if (this.#movedGraceMs !== null && clean) {
      this.#startReconnect(true)
      return
    }
    const canResume =
      this.#reconnect && this.secret !== null && (this.hello?.graceMs ?? 0) > 0 && clean
    if (!canResume) {
      this.fail(reason)
      return
    }
    this.#startReconnect(false)
  }

  /** `moved`: the old daemon ran none of the waiting requests, so every one is re-sent. */
  #startReconnect(moved: boolean): void {
    this.setReconnecting()
    this.prepareReplay(
      moved,
      new TmemConnectionError('ECONNRESET', 'The connection dropped before the reply came'),
    )
    this.emit('drop', moved)
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
    while (this.state === 'reconnecting') {
      if (pause) await sleep(delay)
      pause = true
      if (this.state !== 'reconnecting') return
      try {
        const reply = await this.connectOnce()
        if ((reply.flags & HELLO_FLAG_RESUMED) === 0) {
          this.fail(new TmemConnectionError('ESESSION', 'The daemon did not resume the session'))
          return
        }
        this.#fallback = null
        this.markReady(true)
        this.emit('reconnect')
        return
      } catch (error) {
        if (error instanceof MovedRedirect) {
          deadline = this.#followRedirect(error, deadline)
          redirects++
          if (redirects <= REDIRECTS_IN_A_ROW_MAX) pause = false
          continue
        }
        redirects = 0
        const code = error instanceof TmemError ? error.code : ''
        const final =
          code === HELLO_ERROR_CODES[HELLO_SESSION_EXPIRED] ||
          code === HELLO_ERROR_CODES[HELLO_BAD_SECRET] ||
          error instanceof TmemProtocolError
        const fallback = this.#fallback
        if (fallback !== null && Date.now() + delay <= deadline) {
          // Following a move: try the other daemon (a failed migration leaves the client on
          // the old one). A refusal that is final here drops this place for good.
          this.#fallback = final ? null : { target: this.target, secret: this.secret }
          this.moveTo(fallback.target, fallback.secret)
          delay = Math.min(delay * 2, RECONNECT_DELAY_MAX_MS)
          continue
        }
        if (final || Date.now() + delay > deadline) {
          this.fail(
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

  /** Moved (again): go there, keeping where we were as the fallback. Returns the new deadline. */
  #followRedirect(redirect: MovedRedirect, deadline: number): number {
    this.#fallback = { target: this.target, secret: this.secret }
    this.moveTo(redirect.place.target, redirect.place.secret)
    this.emit('moved', formatClientAddress(this.target))
    return Math.max(deadline, Date.now() + Math.max(redirect.graceMs, FOLLOW_TIME_MIN_MS))
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
