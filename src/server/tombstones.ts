/**
 * Tombstones: the names of clients that moved away (live migration) and were destroyed here,
 * kept for the grace period with their old secret and new address, so that a late reconnect
 * with that secret is redirected (HELLO_MOVED) instead of refused.
 */
import { type MovedTo, type Session, sameSecret } from './session.js'

interface Tombstone {
  /** The secret the client had here. */
  secret: Buffer
  movedTo: MovedTo
  timer: NodeJS.Timeout
}

export class Tombstones {
  readonly #byName = new Map<string, Tombstone>()

  /** Where client `name` moved, when `secret` is the one it had here; else undefined. */
  movedTo(name: string, secret: Uint8Array): MovedTo | undefined {
    const tombstone = this.#byName.get(name)
    if (tombstone === undefined || !sameSecret(tombstone.secret, secret)) return undefined
    return tombstone.movedTo
  }

  /** Remembers a moved session's name for max(graceMs, its new grace); none when graceMs is 0. */
  add(session: Session, graceMs: number): void {
    const movedTo = session.movedTo
    if (movedTo === null || graceMs === 0) return
    this.drop(session.name)
    const timer = setTimeout(
      () => this.#byName.delete(session.name),
      Math.max(graceMs, movedTo.graceMs),
    )
    timer.unref()
    this.#byName.set(session.name, { secret: session.secret, movedTo, timer })
  }

  drop(name: string): void {
    const tombstone = this.#byName.get(name)
    if (tombstone === undefined) return
    clearTimeout(tombstone.timer)
    this.#byName.delete(name)
  }

  /** Shutdown: stop every timer and forget every name. */
  clear(): void {
    for (const tombstone of this.#byName.values()) clearTimeout(tombstone.timer)
    this.#byName.clear()
  }
}
