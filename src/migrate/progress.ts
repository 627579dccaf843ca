/**
 * Progress reports for long saves and restores: pages and bytes so far, the expected totals
 * when known, and the rate. Reports are throttled by time (every `intervalMs`, default
 * 200 ms) with one final report (`done: true`) at the end of each phase.
 */

export type ProgressPhase =
  /** Writing the pages of the tmem section. */
  | 'save'
  /** Writing the invalidation section of a live save. */
  | 'invalidations'
  /** Restore's first pass: reading and checking the whole stream. */
  | 'validate'
  /** Restore's second pass: creating the client, its pools and pages. */
  | 'restore'

export interface Progress {
  phase: ProgressPhase
  /** Page records written or read so far in this phase. */
  pages: number
  /** Expected page records of the phase, when known (save: n_pages at the start). */
  pagesTotal: number | null
  /** Stream bytes written or read so far in this phase. */
  bytes: number
  /** Expected stream bytes, when known (restore: the stream's length). */
  bytesTotal: number | null
  elapsedMs: number
  /** Stream bytes per second since the phase began. */
  bytesPerSecond: number
  pagesPerSecond: number
  /** True on the last report of the phase. */
  done: boolean
}

export type ProgressCallback = (progress: Progress) => void

export interface ProgressOptions {
  onProgress?: ProgressCallback
  /** Least time between two reports of a phase, in ms (0: after every page). Default 200. */
  progressIntervalMs?: number
}

/** @internal Counts pages and bytes of one phase and reports through the callback. */
export class ProgressMeter {
  readonly #phase: ProgressPhase
  readonly #callback: ProgressCallback | undefined
  readonly #intervalMs: number
  readonly #start = performance.now()
  #last: number
  pages = 0
  bytes = 0
  pagesTotal: number | null = null
  bytesTotal: number | null = null

  constructor(phase: ProgressPhase, options: ProgressOptions) {
    this.#phase = phase
    this.#callback = options.onProgress
    this.#intervalMs = options.progressIntervalMs ?? 200
    this.#last = this.#start
  }

  /** Reports if the interval has passed since the last report. */
  tick(): void {
    if (this.#callback === undefined) return
    const now = performance.now()
    if (now - this.#last < this.#intervalMs) return
    this.#last = now
    this.#report(now, false)
  }

  /** The final report of the phase. */
  done(): void {
    if (this.#callback === undefined) return
    this.#report(performance.now(), true)
  }

  elapsedMs(): number {
    return performance.now() - this.#start
  }

  #report(now: number, done: boolean): void {
    const elapsedMs = now - this.#start
    const seconds = elapsedMs / 1000
    this.#callback!({
      phase: this.#phase,
      pages: this.pages,
      pagesTotal: this.pagesTotal,
      bytes: this.bytes,
      bytesTotal: this.bytesTotal,
      elapsedMs,
      bytesPerSecond: seconds > 0 ? this.bytes / seconds : 0,
      pagesPerSecond: seconds > 0 ? this.pages / seconds : 0,
      done,
    })
  }
}
