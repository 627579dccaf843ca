/**
 * Who is who (docs/semantics.md "Decision: who is who"): the daemon, never the client, decides which tmem client (Xen's
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
 * Live migration (docs/migration.md) adds, driven by the SESSION control frame:
 *   bind (target)     -> a name and secret for an engine client the control plane restored;
 *                        `pending`: hellos with the secret wait unanswered until activate()
 *   moved (source)    -> the connection gets a MOVED notice and is closed; ops stop running;
 *                        hellos with the old secret are redirected (HELLO_MOVED) to the target
 *   unfence (source)  -> a failed migration: the client may resume here again
 *   destroy           -> engine client and session gone; a moved client's name is kept for
 *                        the grace period so that a late reconnect is still redirected
 * A pending or moved session that the control plane forgets ends by itself after
 * `moveTimeoutMs` (a pending one is destroyed, a moved one unfenced).
 *
 * Limits (client-limits.ts): clients per endpoint, and detached clients, the oldest of which
 * is reaped first when there are too many or a hello finds no room.
 *
 * Control plane: allocates freely; not on the per-page path.
 */
import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
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
} from '../protocol/hello.js'
import { SECRET_BYTES } from '../protocol/frame.js'
import type { HostLike } from './host-like.js'
import { ClientQuota, type ClientLimits, endpointOf } from './client-limits.js'
import { Tombstones } from './tombstones.js'
import { CLIENT_ID_MAX, ClientIds, newSession } from './session-records.js'
import {
  type MovedTo,
  type OpenResult,
  type Session,
  type SessionCounters,
  type SessionHolder,
  type SessionResult,
  type SessionWaiter,
  newSessionCounters,
  redirect,
  refuse,
  sameSecret,
} from './session.js'

/** Least time a pending or moved session waits for the control plane to finish a migration. */
export const MOVE_TIMEOUT_MS_MIN = 30_000

export class SessionTable {
  readonly counters: SessionCounters = newSessionCounters()
  readonly #host: HostLike
  readonly #graceMs: number
  readonly #log: Logger
  readonly #byName = new Map<string, Session>()
  readonly #byId = new Map<number, Session>()
  /** Names of clients that moved away, for redirecting late reconnects. */
  readonly #tombstones = new Tombstones()
  readonly #quota: ClientQuota<Session>
  readonly #ids = new ClientIds()

  constructor(host: HostLike, graceMs: number, log: Logger, limits: Partial<ClientLimits> = {}) {
    assert(Number.isInteger(graceMs) && graceMs >= 0, 'Grace is a non-negative integer')
    this.#host = host
    this.#graceMs = graceMs
    this.#log = log
    this.#quota = new ClientQuota(limits)
  }

  /** The limits in force, and how many clients wait in their grace period. */
  get limits(): ClientLimits & { detached: number } {
    return { ...this.#quota.limits, detached: this.#quota.detachedCount }
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

  byName(name: string): Session | undefined {
    return this.#byName.get(name)
  }

  get moveTimeoutMs(): number {
    return Math.max(this.#graceMs, MOVE_TIMEOUT_MS_MIN)
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
        const movedTo = this.#tombstones.movedTo(requestedName, secret)
        if (movedTo !== undefined) return redirect(requestedName, movedTo)
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
    if (existing.movedTo !== null) return redirect(existing.name, existing.movedTo)
    if (existing.pending)
      return { status: HELLO_OK, session: existing, resumed: true, message: '', held: true }
    return this.#resume(existing, holder)
  }

  /** Queues a hello that open() reported as held until the session is activated. */
  wait(session: Session, waiter: SessionWaiter): void {
    session.waiters.push(waiter)
  }

  /** A client id no session and no engine client uses, or 0 when none is free. */
  freeId(): number {
    return this.#freeId()
  }

  /**
   * Names engine client `id` (restored by the control plane) `name`, with `secret` (or a new
   * one). `pending`: hellos wait until activate(); `hold`: no grace timer until the first
   * connection; neither: detached at once, the grace period runs.
   */
  bind(
    name: string,
    id: number,
    abiVersion: 0 | 1,
    secret: Uint8Array | null,
    options: { pending: boolean; hold: boolean },
  ): SessionResult {
    if (!NAME_PATTERN.test(name) || id <= 0 || id > CLIENT_ID_MAX) return { rc: -22, session: null }
    if (this.#byName.has(name) || this.#byId.has(id)) return { rc: -17, session: null }
    if (!this.#host.hasClient(id)) return { rc: -2, session: null }
    if (secret !== null && secret.length !== SECRET_BYTES) return { rc: -22, session: null }
    this.#tombstones.drop(name)
    const key = secret === null ? randomBytes(SECRET_BYTES) : Buffer.from(secret)
    const session = newSession(id, name, key, abiVersion, {
      holder: null,
      detachedAtMs: Date.now(),
      pending: options.pending,
      hold: options.hold && !options.pending,
    })
    this.#byId.set(id, session)
    this.#byName.set(name, session)
    this.counters.sessionsBound++
    if (session.pending) this.#startMoveTimer(session)
    else if (!session.hold) this.#startGrace(session)
    this.#log.info(
      { client: id, clientName: name, pending: session.pending, hold: session.hold },
      'client bound',
    )
    return { rc: id, session }
  }

  /** Ends a pending session's wait: the waiting hellos resume it (the last one keeps it). */
  activate(session: Session): number {
    if (!session.pending) return -16
    session.pending = false
    this.#stopMoveTimer(session)
    const waiters = session.waiters.splice(0)
    for (const waiter of waiters) {
      if (!waiter.holder.isOpen) continue
      waiter.answer(this.#resume(session, waiter.holder))
    }
    if (session.holder === null) this.#startGrace(session)
    this.#log.info(
      { client: session.id, clientName: session.name, resumed: session.holder !== null },
      'client activated',
    )
    return 0
  }

  /**
   * The client moved to `to`: its connection (if any) gets the MOVED notice and closes, and
   * until destroy() or unfence() its hellos are redirected there.
   */
  moved(session: Session, to: MovedTo): number {
    if (session.pending) return -16
    session.movedTo = {
      address: to.address,
      secret: Uint8Array.from(to.secret),
      graceMs: to.graceMs,
    }
    if (session.graceTimer !== null) clearTimeout(session.graceTimer)
    session.graceTimer = null
    this.#quota.attached(session)
    const holder = session.holder
    session.holder = null
    if (session.detachedAtMs === 0) session.detachedAtMs = Date.now()
    this.#startMoveTimer(session)
    this.counters.sessionsMovedAway++
    holder?.notifyMoved(session.movedTo)
    this.#log.info(
      { client: session.id, clientName: session.name, to: to.address, notified: holder !== null },
      'client moved',
    )
    return holder === null ? 0 : 1
  }

  /** A migration failed after moved(): the client may resume here with its old secret. */
  unfence(session: Session): number {
    if (session.movedTo === null) return 0
    session.movedTo = null
    this.#stopMoveTimer(session)
    if (session.holder === null) this.#startGrace(session)
    this.#log.info({ client: session.id, clientName: session.name }, 'client unfenced')
    return 1
  }

  /**
   * Destroys client `id`: its session (connection closed, waiting hellos refused) and its
   * engine client. A moved client's name is remembered for the grace period so a late
   * reconnect is redirected. Returns 1, or 0 when there was nothing to destroy.
   */
  destroy(id: number): number {
    const session = this.#byId.get(id)
    if (session === undefined) {
      if (!this.#host.hasClient(id)) return 0
      this.#host.destroyClient(id)
      this.counters.sessionsDestroyed++
      this.#log.info({ client: id }, 'client destroyed by the control plane')
      return 1
    }
    if (session.movedTo !== null) this.#tombstones.add(session, this.#graceMs)
    const holder = session.holder
    session.holder = null
    holder?.evict(`Client ${session.name} was destroyed by the control plane`)
    this.#end(session, 'destroyed')
    return 1
  }

  /** The connection holding `session` is gone: start the grace period. */
  detach(session: Session, holder: SessionHolder): void {
    if (session.holder !== holder) return
    session.holder = null
    session.detachedAtMs = Date.now()
    this.#startGrace(session)
    this.#log.info(
      { client: session.id, clientName: session.name, graceMs: this.#graceMs },
      'detached',
    )
  }

  #startGrace(session: Session): void {
    if (this.#graceMs === 0) {
      this.#end(session, 'expired')
      return
    }
    if (session.graceTimer !== null) clearTimeout(session.graceTimer)
    session.graceTimer = setTimeout(() => this.#end(session, 'expired'), this.#graceMs)
    session.graceTimer.unref()
    this.#quota.detached(session)
    this.#reap(this.#quota.overflow())
  }

  /** Ends a detached client early to make room; false when there is none to end. */
  #reap(session: Session | null): boolean {
    if (session === null) return false
    this.counters.sessionsReaped++
    this.#log.warn(
      { client: session.id, clientName: session.name },
      'detached client reaped to make room',
    )
    this.#end(session, 'expired')
    return true
  }

  #startMoveTimer(session: Session): void {
    this.#stopMoveTimer(session)
    session.moveTimer = setTimeout(() => {
      session.moveTimer = null
      if (session.pending) {
        this.#log.warn(
          { client: session.id, clientName: session.name },
          'migration never activated the client: destroyed',
        )
        this.#end(session, 'destroyed')
      } else if (session.movedTo !== null) {
        this.#log.warn(
          { client: session.id, clientName: session.name },
          'migration never finished: client unfenced',
        )
        this.unfence(session)
      }
    }, this.moveTimeoutMs)
    session.moveTimer.unref()
  }

  #stopMoveTimer(session: Session): void {
    if (session.moveTimer !== null) clearTimeout(session.moveTimer)
    session.moveTimer = null
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
      this.#stopMoveTimer(session)
    }
    this.#tombstones.clear()
    this.#quota.clear()
  }

  #create(requestedName: string, abiVersion: 0 | 1, holder: SessionHolder): OpenResult {
    const endpoint = endpointOf(holder.remote)
    if (!this.#quota.hasRoom(endpoint) && !this.#reap(this.#quota.oldestDetached(endpoint))) {
      const max = this.#quota.limits.clientsPerEndpointMax
      return refuse(
        HELLO_NO_ROOM,
        `Too many clients through the ${endpoint} endpoint (at most ${max}, none detached)`,
      )
    }
    let id = this.#freeId()
    if (id === 0 && this.#reap(this.#quota.oldestDetached(null))) id = this.#freeId()
    if (id === 0) return refuse(HELLO_NO_ROOM, 'Every client id is in use')
    const name = requestedName === '' ? `client-${id}` : requestedName
    if (this.#byName.has(name)) {
      return refuse(HELLO_NAME_IN_USE, `Client name ${name} is in use`)
    }
    const session = newSession(id, name, randomBytes(SECRET_BYTES), abiVersion, {
      holder,
      detachedAtMs: 0,
      pending: false,
      hold: false,
    })
    this.#byId.set(id, session)
    this.#byName.set(name, session)
    this.#quota.made(session, endpoint)
    this.counters.sessionsCreated++
    this.#log.info({ client: id, clientName: name, abi: abiVersion }, 'client created')
    return { status: HELLO_OK, session, resumed: false, message: '' }
  }

  #resume(session: Session, holder: SessionHolder): OpenResult {
    if (session.graceTimer !== null) clearTimeout(session.graceTimer)
    session.graceTimer = null
    this.#quota.attached(session)
    session.detachedAtMs = 0
    session.hold = false
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

  #end(session: Session, why: 'expired' | 'released' | 'destroyed'): void {
    if (session.graceTimer !== null) clearTimeout(session.graceTimer)
    session.graceTimer = null
    this.#stopMoveTimer(session)
    if (this.#byId.get(session.id) !== session) return
    this.#byId.delete(session.id)
    this.#byName.delete(session.name)
    this.#quota.ended(session)
    const destroyed = this.#host.hasClient(session.id) && this.#host.destroyClient(session.id)
    if (why === 'expired') this.counters.sessionsExpired++
    else if (why === 'released') this.counters.sessionsReleased++
    else this.counters.sessionsDestroyed++
    const waiters = session.waiters.splice(0)
    for (const waiter of waiters) {
      if (waiter.holder.isOpen)
        waiter.answer(
          refuse(HELLO_SESSION_EXPIRED, `Client ${session.name} was not moved here after all`),
        )
    }
    this.#log.info({ client: session.id, clientName: session.name, destroyed }, `client ${why}`)
  }

  /** First free id at or after the rotating cursor, or 0 when none is free. */
  #freeId(): number {
    return this.#ids.next((id) => this.#byId.has(id) || this.#host.hasClient(id))
  }
}
