/**
 * Who is who (spec D2): the daemon, never the client, decides which tmem client (Xen's
 * domain id) a connection is. A session binds a client name to a client id and a secret; the
 * secret is handed out at the first hello and proves a reconnecting process is the same client.
 *
 * Lifecycle of a session:
 *   hello (new name)  -> session created, id assigned (ids go up from 1 and wrap at 0xFFFE, so
 *                        a just-destroyed id is not handed out again at once; 0 is reserved,
 *                        0xFFFF means "all clients"; ids that the engine already knows, such as
 *                        a client restored by the control plane, are skipped)
 *   connection lost   -> detached; the grace timer starts
 *   hello + secret    -> resumed within grace: same id, the pools are still there
 *   grace ends        -> host.destroyClient(id), as a dead domain; the name and id are free
 *   goodbye           -> released at once, the same way
 *
 * Control plane: allocates freely; not on the per-page path.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import type { Logger } from 'pino'
import { CLI_ID_NULL } from '../abi/constants.js'
import { assert } from '../util/assert.js'
import {
  HELLO_BAD_ABI,
  HELLO_BAD_NAME,
  HELLO_BAD_SECRET,
  HELLO_NAME_IN_USE,
  HELLO_NO_ROOM,
  HELLO_OK,
  HELLO_SESSION_EXPIRED,
  NAME_PATTERN,
} from './hello.js'
import { SECRET_BYTES } from './frame.js'
import type { HostLike } from './host-like.js'

/** What a session needs from the connection that holds it. */
export interface SessionHolder {
  /** Closes the connection because another one took the session over. */
  evict(reason: string): void
}

export interface Session {
  readonly id: number
  readonly name: string
  readonly secret: Buffer
  readonly abiVersion: 0 | 1
  holder: SessionHolder | null
  graceTimer: NodeJS.Timeout | null
  /** Date.now() when the session lost its connection; 0 while connected. */
  detachedAtMs: number
}

export interface OpenResult {
  status: number
  session: Session | null
  resumed: boolean
  message: string
}

export interface SessionCounters {
  sessionsCreated: number
  sessionsResumed: number
  sessionsTakenOver: number
  sessionsExpired: number
  sessionsReleased: number
}

/** The largest client id the daemon hands out (0xFFFF is "all clients"). */
export const CLIENT_ID_MAX = CLI_ID_NULL - 1

export class SessionTable {
  readonly counters: SessionCounters = {
    sessionsCreated: 0,
    sessionsResumed: 0,
    sessionsTakenOver: 0,
    sessionsExpired: 0,
    sessionsReleased: 0,
  }
  readonly #host: HostLike
  readonly #graceMs: number
  readonly #log: Logger
  readonly #byName = new Map<string, Session>()
  readonly #byId = new Map<number, Session>()
  #nextId = 1

  constructor(host: HostLike, graceMs: number, log: Logger) {
    assert(Number.isInteger(graceMs) && graceMs >= 0, 'Grace is a non-negative integer')
    this.#host = host
    this.#graceMs = graceMs
    this.#log = log
  }

  get graceMs(): number {
    return this.#graceMs
  }

  get size(): number {
    return this.#byId.size
  }

  /** Every session, for stats replies and metrics labels. */
  list(): Session[] {
    return [...this.#byId.values()].sort((a, b) => a.id - b.id)
  }

  byId(id: number): Session | undefined {
    return this.#byId.get(id)
  }

  /**
   * Binds a connection to a session: a new one for an unknown name (when no secret is given),
   * or the existing one when the secret matches (taking it over from a connection that is
   * still attached, as happens when a process died and its socket has not noticed yet).
   */
  open(
    requestedName: string,
    secret: Uint8Array | null,
    abiVersion: 0 | 1,
    holder: SessionHolder,
  ): OpenResult {
    if (requestedName !== '' && !NAME_PATTERN.test(requestedName)) {
      return refuse(HELLO_BAD_NAME, 'Client names are 1 to 64 of A-Z a-z 0-9 . _ : @ -')
    }
    const existing = requestedName === '' ? undefined : this.#byName.get(requestedName)
    if (existing === undefined) {
      if (secret !== null) {
        return refuse(HELLO_SESSION_EXPIRED, 'No session of that name: its grace period ended')
      }
      return this.#create(requestedName, abiVersion, holder)
    }
    if (secret === null) {
      return refuse(HELLO_NAME_IN_USE, `Client name ${existing.name} is in use`)
    }
    if (!sameSecret(existing.secret, secret)) {
      return refuse(HELLO_BAD_SECRET, `Wrong secret for client ${existing.name}`)
    }
    if (existing.abiVersion !== abiVersion) {
      return refuse(HELLO_BAD_ABI, `Client ${existing.name} speaks ABI v${existing.abiVersion}`)
    }
    return this.#resume(existing, holder)
  }

  /** The connection holding `session` is gone: start the grace period. */
  detach(session: Session, holder: SessionHolder): void {
    if (session.holder !== holder) return
    session.holder = null
    session.detachedAtMs = Date.now()
    if (this.#graceMs === 0) {
      this.#end(session, 'expired')
      return
    }
    session.graceTimer = setTimeout(() => this.#end(session, 'expired'), this.#graceMs)
    session.graceTimer.unref()
    this.#log.info({ client: session.id, clientName: session.name, graceMs: this.#graceMs }, 'detached')
  }

  /** The client said goodbye: destroy it now. */
  release(session: Session, holder: SessionHolder): void {
    if (session.holder !== holder) return
    session.holder = null
    this.#end(session, 'released')
  }

  /** Shutdown: stop every grace timer (the host goes away with the process). */
  stopTimers(): void {
    for (const session of this.#byId.values()) {
      if (session.graceTimer !== null) clearTimeout(session.graceTimer)
      session.graceTimer = null
    }
  }

  #create(requestedName: string, abiVersion: 0 | 1, holder: SessionHolder): OpenResult {
    const id = this.#freeId()
    if (id === 0) return refuse(HELLO_NO_ROOM, 'Every client id is in use')
    const name = requestedName === '' ? `client-${id}` : requestedName
    if (this.#byName.has(name)) {
      return refuse(HELLO_NAME_IN_USE, `Client name ${name} is in use`)
    }
    const session: Session = {
      id,
      name,
      secret: randomBytes(SECRET_BYTES),
      abiVersion,
      holder,
      graceTimer: null,
      detachedAtMs: 0,
    }
    this.#byId.set(id, session)
    this.#byName.set(name, session)
    this.counters.sessionsCreated++
    this.#log.info({ client: id, clientName: name, abi: abiVersion }, 'client created')
    return { status: HELLO_OK, session, resumed: false, message: '' }
  }

  #resume(session: Session, holder: SessionHolder): OpenResult {
    if (session.graceTimer !== null) clearTimeout(session.graceTimer)
    session.graceTimer = null
    session.detachedAtMs = 0
    const previous = session.holder
    session.holder = holder
    if (previous !== null) {
      this.counters.sessionsTakenOver++
      previous.evict(`Client ${session.name} reconnected on another connection`)
    }
    this.counters.sessionsResumed++
    this.#log.info({ client: session.id, clientName: session.name }, 'client resumed')
    return { status: HELLO_OK, session, resumed: true, message: '' }
  }

  #end(session: Session, why: 'expired' | 'released'): void {
    if (session.graceTimer !== null) clearTimeout(session.graceTimer)
    session.graceTimer = null
    if (this.#byId.get(session.id) !== session) return
    this.#byId.delete(session.id)
    this.#byName.delete(session.name)
    const destroyed = this.#host.hasClient(session.id) && this.#host.destroyClient(session.id)
    if (why === 'expired') this.counters.sessionsExpired++
    else this.counters.sessionsReleased++
    this.#log.info({ client: session.id, clientName: session.name, destroyed }, `client ${why}`)
  }

  /** First free id at or after the rotating cursor, or 0 when none is free. */
  #freeId(): number {
    for (let tries = 0; tries < CLIENT_ID_MAX; tries++) {
      const id = this.#nextId
      this.#nextId = id >= CLIENT_ID_MAX ? 1 : id + 1
      if (!this.#byId.has(id) && !this.#host.hasClient(id)) return id
    }
    return 0
  }
}

function refuse(status: number, message: string): OpenResult {
  return { status, session: null, resumed: false, message }
}

function sameSecret(expected: Buffer, given: Uint8Array): boolean {
  return given.length === expected.length && timingSafeEqual(expected, given)
}
