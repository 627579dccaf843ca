/**
 * What a session is (sessions.ts keeps the table of them): the record the daemon holds for
 * one named client, what it needs from the connection holding it, and what opening one gives.
 */
import { timingSafeEqual } from 'node:crypto'
import { HELLO_MOVED } from '../protocol/hello.js'

/** What a session needs from the connection that holds it. */
export interface SessionHolder {
  /** Closes the connection because another one took the session over. */
  evict(reason: string): void
  /** Sends the MOVED notice after the replies already made, then closes; no more ops run. */
  notifyMoved(notice: MovedTo): void
  /** False once the connection is gone (a hello waiting for activate() is then dropped). */
  readonly isOpen: boolean
  /** `unix`, or the TCP peer address. */
  readonly remote: string
}

/** Where a moved client went. */
export interface MovedTo {
  address: string
  /** The client's secret on the new daemon. */
  secret: Uint8Array
  /** The new daemon's grace period. */
  graceMs: number
}

/** A hello waiting for a pending session to be activated. */
export interface SessionWaiter {
  holder: SessionHolder
  /** Called once with the outcome (resumed, or refused because the session went away). */
  answer(result: OpenResult): void
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
  /** Bound for a migration and not yet activated: hellos wait in `waiters`. */
  pending: boolean
  waiters: SessionWaiter[]
  /** Set while the client is being moved away: hellos are redirected there. */
  movedTo: MovedTo | null
  /** Ends a pending or moved session the control plane forgot. */
  moveTimer: NodeJS.Timeout | null
  /** Restored from a file: no grace timer until the first connection. */
  hold: boolean
}

export interface OpenResult {
  status: number
  session: Session | null
  resumed: boolean
  message: string
  /** HELLO_MOVED: where the client went and its secret there. */
  redirect?: MovedTo
  /** The session is pending: the hello waits for activate() (see SessionTable.wait). */
  held?: boolean
}

export interface SessionCounters {
  sessionsCreated: number
  sessionsResumed: number
  sessionsTakenOver: number
  sessionsExpired: number
  sessionsReleased: number
  sessionsBound: number
  sessionsMovedAway: number
  sessionsDestroyed: number
  /** Detached clients ended before their grace ran out, to stay within the limits. */
  sessionsReaped: number
}

/** Result of a session control command: an rc (>= 0 ok, else -errno) and the session. */
export interface SessionResult {
  rc: number
  session: Session | null
}

/** Every session counter at zero. */
export function newSessionCounters(): SessionCounters {
  return {
    sessionsCreated: 0,
    sessionsResumed: 0,
    sessionsTakenOver: 0,
    sessionsExpired: 0,
    sessionsReleased: 0,
    sessionsBound: 0,
    sessionsMovedAway: 0,
    sessionsDestroyed: 0,
    sessionsReaped: 0,
  }
}

/** A hello refused with `status`. */
export function refuse(status: number, message: string): OpenResult {
  return { status, session: null, resumed: false, message }
}

/** A hello told where its client went. */
export function redirect(name: string, movedTo: MovedTo): OpenResult {
  return { ...refuse(HELLO_MOVED, `Client ${name} moved to ${movedTo.address}`), redirect: movedTo }
}

/** Compares secrets in constant time. */
export function sameSecret(expected: Buffer, given: Uint8Array): boolean {
  return given.length === expected.length && timingSafeEqual(expected, given)
}
