/**
 * Making session records: the client ids the daemon hands out (from 1, rotating and wrapping
 * at CLIENT_ID_MAX, skipping ids in use) and a fresh `Session` with no timers, no waiters and
 * not moved. The session table decides when and for whom.
 */
import { CLI_ID_NULL } from '../abi/constants.js'
import type { Session, SessionHolder } from './session.js'

/** The largest client id the daemon hands out (0xFFFF is "all clients"). */
export const CLIENT_ID_MAX = CLI_ID_NULL - 1

export class ClientIds {
  #next = 1

  /** First id at or after the rotating cursor that is not `inUse`, or 0 when none is free. */
  next(inUse: (id: number) => boolean): number {
    for (let tries = 0; tries < CLIENT_ID_MAX; tries++) {
      const id = this.#next
      this.#next = id >= CLIENT_ID_MAX ? 1 : id + 1
      if (!inUse(id)) return id
    }
    return 0
  }
}

/** The fields a new session starts with that differ between a hello and a bind. */
export interface SessionStart {
  holder: SessionHolder | null
  detachedAtMs: number
  pending: boolean
  hold: boolean
}

export function newSession(
  id: number,
  name: string,
  secret: Buffer,
  abiVersion: 0 | 1,
  start: SessionStart,
): Session {
  return {
    id,
    name,
    secret,
    abiVersion,
    holder: start.holder,
    graceTimer: null,
    detachedAtMs: start.detachedAtMs,
    pending: start.pending,
    waiters: [],
    movedTo: null,
    moveTimer: null,
    hold: start.hold,
  }
}
