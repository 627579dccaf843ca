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
 * counts as one. It errs high: a piece timed in a check phase counts with the next turn's, and
 * a piece inside a reply chain counts in both. A piece started inside another (an
 * auto-pipeline flushed from within an issue) counts only as part of the outer one.
 *
 * Pieces are timed by the wall clock, which includes the time the OS ran other processes in
 * the middle of a piece (on a loaded 2-core machine often several milliseconds). So each turn
 * also reads the main thread's own CPU clock (util/thread-cpu.ts) at its first piece and at
 * its end, and `cpuMs` bounds the turn's remote work by the CPU the thread used meanwhile:
 * the time the loop was really kept from other work, which is what "blocked by remote
 * traffic" means (it errs high: the thread's other work in that span counts too). Two reads a
 * turn, not two a piece: a read is a system call (0.25-0.5 µs here); around every piece that
 * is two or more per op, about 2 % of the daemon's CPU at bench rates, while at two a turn a
 * whole bench case makes fewer than 20,000 reads. (V8's CPU profile over-counts the call: in
 * an in-process check, reads costing 0.09 % of the CPU drew 3.2 % of the samples.) Without the
 * native addon, TMEM_LOOP_CPU=1
 * bounds it by the process's CPU time (which also counts the runtime's helper threads), else
 * `cpuMs` equals `totalMs`.
 * The largest turn of each second, split by kind, is in STATS as `host.remote.turns`.
 */

import { PerformanceObserver } from 'node:perf_hooks'
import { threadCpuClock } from '../util/thread-cpu.js'

export type WorkKind = 'ops' | 'issue' | 'replies'

/** One turn's remote work, in milliseconds. */
export interface TurnWork {
  totalMs: number
  opsMs: number
  issueMs: number
  repliesMs: number
  /**
   * `totalMs` or, when smaller, the CPU time the main thread used from the turn's first remote
   * piece to its end (without the native addon and with TMEM_LOOP_CPU=1, the process's).
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
  /**
   * With TMEM_LOOP_CPU=1, the garbage collection pauses that fell in the span of the last full
   * second's largest `cpuMs` turn (the part of it that was the collector, not remote work).
   */
  lastSecondCpuGcMs: number
  /** That turn's wall-clock work by kind (what its CPU went to). */
  lastSecondCpuTurn: TurnWork
  cpuMaxMs: number
  turns: number
  /**
   * Work left for a later turn because the turn's remote work reached TURN_BUDGET_MS: the
   * change queue's issue stopped early (`deferredIssue`), a Redis connection's further replies
   * were left unread (`deferredReplies`).
   */
  deferredIssue: number
  deferredReplies: number
}

const WINDOW_MS = 1000

/**
 * The remote work a turn may do before the work that can wait does (docs/remote.md
 * "Observing"; `--remote-turn-budget` sets it): past it, the change queue issues its next
 * commands in a later turn, a Redis connection's replies are read in a later turn, and a client
 * connection's next frames wait too. A quarter of the issue's 5 ms bound leaves room for what
 * cannot wait (a guest op's own part, the chunk of replies being parsed).
 */
export const TURN_BUDGET_MS = 1.25

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000
}

function rounded(work: TurnWork): TurnWork {
  return {
    totalMs: round(work.totalMs),
    opsMs: round(work.opsMs),
    issueMs: round(work.issueMs),
    repliesMs: round(work.repliesMs),
    cpuMs: round(work.cpuMs),
    gcMs: round(work.gcMs),
  }
}

function noWork(): TurnWork {
  return { totalMs: 0, opsMs: 0, issueMs: 0, repliesMs: 0, cpuMs: 0, gcMs: 0 }
}

function cpuNowMs(): number {
  const used = process.cpuUsage()
  return (used.user + used.system) / 1000
}

export class TurnMeter {
  /** Whether GC pauses are recorded (TMEM_LOOP_CPU=1, as for server/event-loop.ts). */
  readonly #cpu = process.env['TMEM_LOOP_CPU'] === '1'
  /** The CPU clock that bounds a turn: the main thread's, else (TMEM_LOOP_CPU=1) the process's. */
  readonly #clock = threadCpuClock() ?? (this.#cpu ? cpuNowMs : null)
  readonly #turn = noWork()
  #armed = false
  /** Start of the reply chain now running (a Redis connection's data), or -1. */
  #mark = -1
  /** Pieces open now (they nest), and when the outermost began. */
  #depth = 0
  #outerStart = 0
  #window = noWork()
  #windowStart = performance.now()
  #last = noWork()
  #maxMs = 0
  #turnCpuStart = 0
  /** The window's largest `cpuMs` turn, and the last full second's (its `gcMs` filled in). */
  #windowCpuTurn = noWork()
  #lastCpuTurn = noWork()
  #cpuMaxMs = 0
  #turns = 0
  #deferredIssue = 0
  #deferredReplies = 0
  readonly #budgetMs: number
  #turnStart = 0
  /** The spans of the window's largest turns (wall, CPU), and the recent GC pauses (start, end pairs). */
  #windowSpan = [0, 0]
  #windowCpuSpan = [0, 0]
  readonly #pauses: number[] = []
  readonly #gc: PerformanceObserver | null = null
  readonly #close = (): void => this.#closeTurn()

  /** `budgetMs`: see TURN_BUDGET_MS; 0 leaves everything that can wait for a later turn. */
  constructor(budgetMs = TURN_BUDGET_MS) {
    this.#budgetMs = budgetMs
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

  /** Opens a piece; pass the token to `stop` (pieces nest: close the inner one first). */
  start(): number {
    this.#arm()
    const token = this.#depth++
    if (token === 0) this.#outerStart = performance.now()
    return token
  }

  /** Counts the piece opened with `token` as `kind` work of this turn. */
  stop(token: number, kind: WorkKind): void {
    this.#depth = token
    this.#arm()
    if (token !== 0) return // inside another piece, which counts it
    const ms = performance.now() - this.#outerStart
    const turn = this.#turn
    if (kind === 'ops') turn.opsMs += ms
    else if (kind === 'issue') turn.issueMs += ms
    else turn.repliesMs += ms
  }

  /**
   * Whether this turn's remote work so far (by the wall clock: it errs on the side of waiting)
   * reached the budget: work that can wait should wait for a later turn. With a budget of 0,
   * true once any remote work was done in the turn.
   */
  overBudget(): boolean {
    const turn = this.#turn
    const spent = turn.opsMs + turn.issueMs + turn.repliesMs
    return this.#budgetMs === 0 ? this.#armed : spent >= this.#budgetMs
  }

  /** Counts work left for a later turn (overBudget said so). */
  deferred(kind: 'issue' | 'replies'): void {
    if (kind === 'issue') this.#deferredIssue++
    else this.#deferredReplies++
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
   * The end of one of the tier's reply callbacks, opened with `token`: part of the reply chain
   * now running, or (settled by a deadline, not a reply) timed on its own.
   */
  replyEnd(token: number): void {
    if (this.#mark < 0) {
      this.stop(token, 'replies')
      return
    }
    this.#depth = token
    this.replyMark()
  }

  section(): TurnsSection {
    this.#rotate(performance.now())
    const last = this.#last
    return {
      maxMs: round(Math.max(this.#maxMs, this.#window.totalMs)),
      lastSecond: rounded(last),
      lastSecondCpuMs: round(this.#lastCpuTurn.cpuMs),
      lastSecondCpuGcMs: round(this.#lastCpuTurn.gcMs),
      lastSecondCpuTurn: rounded(this.#lastCpuTurn),
      cpuMaxMs: round(Math.max(this.#cpuMaxMs, this.#windowCpuTurn.cpuMs)),
      turns: this.#turns,
      deferredIssue: this.#deferredIssue,
      deferredReplies: this.#deferredReplies,
    }
  }

  #arm(): void {
    if (this.#armed) return
    this.#armed = true
    this.#turnStart = performance.now()
    if (this.#clock !== null) this.#turnCpuStart = this.#clock()
    setImmediate(this.#close)
  }

  #closeTurn(): void {
    this.#armed = false
    this.#mark = -1
    this.#depth = 0 // pieces are synchronous: none is open across turns (one that threw stays)
    const turn = this.#turn
    turn.totalMs = turn.opsMs + turn.issueMs + turn.repliesMs
    const clock = this.#clock
    turn.cpuMs =
      clock === null ? turn.totalMs : Math.min(turn.totalMs, clock() - this.#turnCpuStart)
    this.#turns++
    if (turn.totalMs > this.#window.totalMs) {
      this.#window = { ...turn }
      this.#windowSpan = [this.#turnStart, performance.now()]
    }
    if (turn.cpuMs > this.#windowCpuTurn.cpuMs) {
      this.#windowCpuTurn = { ...turn }
      this.#windowCpuSpan = [this.#turnStart, performance.now()]
    }
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
    this.#lastCpuTurn = this.#windowCpuTurn
    this.#lastCpuTurn.gcMs = this.#pausedIn(this.#windowCpuSpan[0]!, this.#windowCpuSpan[1]!)
    this.#cpuMaxMs = Math.max(this.#cpuMaxMs, this.#windowCpuTurn.cpuMs)
    this.#windowCpuTurn = noWork()
    this.#windowStart = now
  }
}
