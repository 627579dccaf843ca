/**
 * How long the daemon's event loop was held up: a `perf_hooks` event-loop-delay histogram
 * (one libuv timer; the histogram is filled in native code), published in the STATS `daemon`
 * section as `eventLoop` and so in the metrics as `tmem_daemon_event_loop_*`.
 *
 * The histogram is read and reset once a second: `lastSecondMaxMs` and `lastSecondP99Ms`
 * describe the last full second (a reader polling more often than once a second sees every
 * second), `maxMs` the largest delay since the daemon started listening. The histogram
 * records the time between the timer's turns; a delay is that minus the resolution (how late
 * the timer was). A turn that runs for `d` ms shows as a delay between `d` minus one
 * resolution and `d`, so blocks shorter than the resolution may be missed. Being descheduled
 * by the OS counts too: on a loaded machine the figures include time the process did not get
 * a CPU. The resolution defaults to 10 ms (about 100 wake-ups a second);
 * `TMEM_LOOP_RESOLUTION_MS` (1-1000) sets it, as the remote benchmark does (1 ms).
 *
 * To tell the daemon's own work from the OS's scheduling, `TMEM_LOOP_CPU=1` (the benchmark
 * sets it) adds a JavaScript timer at the same resolution that reads the process's CPU time
 * at each turn: a gap between two turns counts as busy only for the CPU time the process used
 * in it (`busyMaxMs`, `lastSecondBusyMaxMs`; all threads count, so it errs high). Off by
 * default: it costs a callback and a getrusage per resolution.
 */
import { type IntervalHistogram, monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks'
import type { EventLoopSection } from '../protocol/stats.js'

export const LOOP_RESOLUTION_MS_DEFAULT = 10

/** With TMEM_LOOP_CPU=1, the delays counted in CPU time and the GC pauses (absent otherwise). */
export interface BusySection {
  busyMaxMs?: number
  lastSecondBusyMaxMs?: number
  /** The longest garbage collection pause since start, and in the last full second. */
  gcMaxMs?: number
  lastSecondGcMaxMs?: number
}
const WINDOW_MS = 1000

export class EventLoopDelay {
  readonly resolutionMs: number
  readonly #histogram: IntervalHistogram
  #timer: NodeJS.Timeout | null = null
  #maxMs = 0
  #lastMaxMs = 0
  #lastP99Ms = 0
  readonly #busy: BusyWatch | null

  constructor(resolutionMs = resolutionFromEnv()) {
    this.resolutionMs = resolutionMs
    this.#histogram = monitorEventLoopDelay({ resolution: resolutionMs })
    this.#busy = process.env['TMEM_LOOP_CPU'] === '1' ? new BusyWatch(resolutionMs) : null
  }

  start(): void {
    this.#histogram.enable()
    this.#timer = setInterval(() => this.#window(), WINDOW_MS)
    this.#timer.unref()
    this.#busy?.start()
  }

  stop(): void {
    this.#histogram.disable()
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    this.#busy?.stop()
  }

  section(): EventLoopSection & BusySection {
    const busy: BusySection =
      this.#busy === null
        ? {}
        : {
            busyMaxMs: this.#busy.maxMs(),
            lastSecondBusyMaxMs: this.#busy.lastMs,
            gcMaxMs: this.#busy.gc.maxMs(),
            lastSecondGcMaxMs: this.#busy.gc.lastMs,
          }
    return {
      resolutionMs: this.resolutionMs,
      maxMs: Math.max(this.#maxMs, this.#delayMs(this.#histogram.max)),
      lastSecondMaxMs: this.#lastMaxMs,
      lastSecondP99Ms: this.#lastP99Ms,
      ...busy,
    }
  }

  #window(): void {
    const h = this.#histogram
    this.#lastMaxMs = this.#delayMs(h.max)
    this.#lastP99Ms = this.#delayMs(h.percentile(99))
    this.#maxMs = Math.max(this.#maxMs, this.#lastMaxMs)
    h.reset()
    this.#busy?.window()
  }

  /** A histogram value (ns between turns) as the delay past the resolution, in ms. */
  #delayMs(ns: number): number {
    if (this.#histogram.count === 0 || !Number.isFinite(ns)) return 0
    return Math.round(Math.max(0, ns - this.resolutionMs * 1e6) / 1e3) / 1e3
  }
}

/** The largest value noted in the current second, in the last full one and since start (ms). */
class WindowMax {
  #windowMs = 0
  #maxMs = 0
  lastMs = 0

  note(ms: number): void {
    if (ms > this.#windowMs) this.#windowMs = Math.round(ms * 1000) / 1000
  }

  maxMs(): number {
    return Math.max(this.#maxMs, this.#windowMs)
  }

  window(): void {
    this.lastMs = this.#windowMs
    this.#maxMs = Math.max(this.#maxMs, this.#windowMs)
    this.#windowMs = 0
  }
}

/** The longest garbage collection pause (a `gc` performance observer), per second. */
class GcWatch extends WindowMax {
  readonly #observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) this.note(entry.duration)
  })

  start(): void {
    this.#observer.observe({ entryTypes: ['gc'] })
  }

  stop(): void {
    this.#observer.disconnect()
  }
}

/** The longest gap between turns of a timer, counted in the process's CPU time. */
class BusyWatch extends WindowMax {
  readonly gc = new GcWatch()
  readonly #resolutionMs: number
  #timer: NodeJS.Timeout | null = null
  #wallMs = 0
  #cpuUs = 0

  constructor(resolutionMs: number) {
    super()
    this.#resolutionMs = resolutionMs
  }

  start(): void {
    this.#wallMs = performance.now()
    this.#cpuUs = cpuNowUs()
    this.#timer = setInterval(() => this.#tick(), this.#resolutionMs)
    this.#timer.unref()
    this.gc.start()
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    this.gc.stop()
  }

  override window(): void {
    super.window()
    this.gc.window()
  }

  #tick(): void {
    const wallMs = performance.now()
    const cpuUs = cpuNowUs()
    const lateMs = wallMs - this.#wallMs - this.#resolutionMs
    const busyMs = Math.min(lateMs, (cpuUs - this.#cpuUs) / 1000)
    this.note(busyMs)
    this.#wallMs = wallMs
    this.#cpuUs = cpuUs
  }
}

function cpuNowUs(): number {
  const used = process.cpuUsage()
  return used.user + used.system
}

function resolutionFromEnv(): number {
  const value = Number(process.env['TMEM_LOOP_RESOLUTION_MS'] ?? LOOP_RESOLUTION_MS_DEFAULT)
  return Number.isInteger(value) && value >= 1 && value <= 1000 ? value : LOOP_RESOLUTION_MS_DEFAULT
}
