/**
 * How much of each event-loop turn the remote traffic takes (docs/remote.md "Observing"):
 * the issue's bound "the event loop never blocked more than 5 ms by remote traffic", measured.
 * Three kinds of work are timed with `performance.now()`:
 *
 * - `ops`: the tier's part of a guest op, after the engine answered it (the presence index,
 *   starting a fetch or an overflow write, queuing deletes), and each demotion of a victim;
 * - `issue`: making the cluster commands (the queue's batch issue, the joined reads);
 * - `replies`: a Redis connection's data (ioredis's reply parsing), and everything that runs
 *   from it until the last of the tier's reply callbacks in that task: ioredis's promise
 *   plumbing, the tier's calls settling, the ops waiting on them answered.
 *
 * The time of a turn is summed until a `setImmediate` armed at its first piece runs (the
 * loop's check phase, after its I/O callbacks), so the work of the I/O callbacks of one turn
 * counts as one. It errs high: a piece timed in a check phase counts with the next turn's.
 * Wall-clock pieces include time the OS did not run the daemon; with TMEM_LOOP_CPU=1 (as for
 * the event loop, server/event-loop.ts) each turn also reads the process's CPU time, and
 * `cpuMs` bounds the turn's remote work by it.
 * The largest turn of each second, split by kind, is in STATS as `host.remote.turns`.
 */

import { PerformanceObserver } from 'node:perf_hooks'

export type WorkKind = 'ops' | 'issue' | 'replies'

/** One turn's remote work, in milliseconds. */
export interface TurnWork {
  totalMs: number
  opsMs: number
  issueMs: number
  repliesMs: number
  /**
   * `totalMs` or, when smaller, the CPU time the process used from the turn's first remote
   * piece to its end: wall-clock pieces include time the OS did not run the daemon, and the
   * remote work cannot have used more CPU than the whole process did meanwhile.
   */
  cpuMs: number
  /**
   * With TMEM_LOOP_CPU=1, the garbage collection pauses that fell between the turn's first
   * remote piece and its end (they may have hit the turn's other work too: it errs high).
   */
  gcMs: number
}

/** STATS `host.remote.turns`: the largest turn since start and in the last full second. */
export interface TurnsSection {
  maxMs: number
  /** The turn of the last full second with the most remote work (wall-clock). */
  lastSecond: TurnWork
  /** The largest `cpuMs` of the last full second, and since start. */
  lastSecondCpuMs: number
  cpuMaxMs: number
  turns: number
}

const WINDOW_MS = 1000

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000
}

function noWork(): TurnWork {
  return { totalMs: 0, opsMs: 0, issueMs: 0, repliesMs: 0, cpuMs: 0, gcMs: 0 }
}

function cpuNowMs(): number {
  const used = process.cpuUsage()
  return (used.user + used.system) / 1000
}

export class TurnMeter {
  /** Whether turns read the process's CPU time (TMEM_LOOP_CPU=1: a getrusage per turn). */
  readonly #cpu = process.env['TMEM_LOOP_CPU'] === '1'
  readonly #turn = noWork()
  #armed = false
  /** Start of the reply chain now running (a Redis connection's data), or -1. */
  #mark = -1
  #window = noWork()
  #windowStart = performance.now()
  #last = noWork()
  #maxMs = 0
  #turnCpuStart = 0
  #windowCpuMs = 0
  #lastCpuMs = 0
  #cpuMaxMs = 0
  #turns = 0
  #turnStart = 0
  /** The span of the window's largest turn, and the recent GC pauses (start, end pairs). */
  #windowSpan = [0, 0]
  readonly #pauses: number[] = []
  readonly #gc: PerformanceObserver | null = null
  readonly #close = (): void => this.#closeTurn()

  constructor() {
    if (!this.#cpu) return
    this.#gc = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        this.#pauses.push(entry.startTime, entry.startTime + entry.duration)
      }
      if (this.#pauses.length > 256) this.#pauses.splice(0, this.#pauses.length - 256)
    })
    this.#gc.observe({ entryTypes: ['gc'] })
  }

  /** Stops watching collections (shutdown). */
  close(): void {
    this.#gc?.disconnect()
  }

  /** A timestamp for `stop`. */
  start(): number {
    this.#arm()
    return performance.now()
  }

  /** Counts the time since `started` as `kind` work of this turn. */
  stop(started: number, kind: WorkKind): void {
    const ms = performance.now() - started
    if (kind === 'ops') this.#turn.opsMs += ms
    else if (kind === 'issue') this.#turn.issueMs += ms
    else this.#turn.repliesMs += ms
    this.#arm()
  }

  /** A Redis connection's data arrived: a reply chain starts. */
  replyStart(): void {
    this.#arm()
    this.#mark = performance.now()
  }

  /** A reply callback of the tier ended: the chain so far counts as reply work. */
  replyMark(): void {
    if (this.#mark < 0) return
    const now = performance.now()
    this.#turn.repliesMs += now - this.#mark
    this.#mark = now
  }

  /**
   * The end of one of the tier's reply callbacks, begun at `started`: part of the reply chain
   * now running, or (settled by a deadline, not a reply) timed on its own.
   */
  replyEnd(started: number): void {
    if (this.#mark < 0) this.stop(started, 'replies')
    else this.replyMark()
  }

  section(): TurnsSection {
    this.#rotate(performance.now())
    const last = this.#last
    return {
      maxMs: round(Math.max(this.#maxMs, this.#window.totalMs)),
      lastSecond: {
        totalMs: round(last.totalMs),
        opsMs: round(last.opsMs),
        issueMs: round(last.issueMs),
        repliesMs: round(last.repliesMs),
        cpuMs: round(last.cpuMs),
        gcMs: round(last.gcMs),
      },
      lastSecondCpuMs: round(this.#lastCpuMs),
      cpuMaxMs: round(Math.max(this.#cpuMaxMs, this.#windowCpuMs)),
      turns: this.#turns,
    }
  }

  #arm(): void {
    if (this.#armed) return
    this.#armed = true
    this.#turnStart = performance.now()
    if (this.#cpu) this.#turnCpuStart = cpuNowMs()
    setImmediate(this.#close)
  }

  #closeTurn(): void {
    this.#armed = false
    this.#mark = -1
    const turn = this.#turn
    turn.totalMs = turn.opsMs + turn.issueMs + turn.repliesMs
    turn.cpuMs = this.#cpu ? Math.min(turn.totalMs, cpuNowMs() - this.#turnCpuStart) : turn.totalMs
    this.#turns++
    if (turn.totalMs > this.#window.totalMs) {
      this.#window = { ...turn }
      this.#windowSpan = [this.#turnStart, performance.now()]
    }
    if (turn.cpuMs > this.#windowCpuMs) this.#windowCpuMs = turn.cpuMs
    turn.opsMs = turn.issueMs = turn.repliesMs = turn.totalMs = turn.cpuMs = 0
    this.#rotate(performance.now())
  }

  /** Milliseconds of the recorded GC pauses that overlap [from, to]. */
  #pausedIn(from: number, to: number): number {
    let ms = 0
    const pauses = this.#pauses
    for (let i = 0; i < pauses.length; i += 2) {
      ms += Math.max(0, Math.min(to, pauses[i + 1]!) - Math.max(from, pauses[i]!))
    }
    return ms
  }

  #rotate(now: number): void {
    if (now - this.#windowStart < WINDOW_MS) return
    this.#last = this.#window
    this.#last.gcMs = this.#pausedIn(this.#windowSpan[0]!, this.#windowSpan[1]!)
    this.#maxMs = Math.max(this.#maxMs, this.#window.totalMs)
    this.#window = noWork()
    this.#lastCpuMs = this.#windowCpuMs
    this.#cpuMaxMs = Math.max(this.#cpuMaxMs, this.#windowCpuMs)
    this.#windowCpuMs = 0
    this.#windowStart = now
  }
}
