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
 */
import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks'
import type { EventLoopSection } from '../protocol/stats.js'

export const LOOP_RESOLUTION_MS_DEFAULT = 10
const WINDOW_MS = 1000

export class EventLoopDelay {
  readonly resolutionMs: number
  readonly #histogram: IntervalHistogram
  #timer: NodeJS.Timeout | null = null
  #maxMs = 0
  #lastMaxMs = 0
  #lastP99Ms = 0

  constructor(resolutionMs = resolutionFromEnv()) {
    this.resolutionMs = resolutionMs
    this.#histogram = monitorEventLoopDelay({ resolution: resolutionMs })
  }

  start(): void {
    this.#histogram.enable()
    this.#timer = setInterval(() => this.#window(), WINDOW_MS)
    this.#timer.unref()
  }

  stop(): void {
    this.#histogram.disable()
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
  }

  section(): EventLoopSection {
    return {
      resolutionMs: this.resolutionMs,
      maxMs: Math.max(this.#maxMs, this.#delayMs(this.#histogram.max)),
      lastSecondMaxMs: this.#lastMaxMs,
      lastSecondP99Ms: this.#lastP99Ms,
    }
  }

  #window(): void {
    const h = this.#histogram
    this.#lastMaxMs = this.#delayMs(h.max)
    this.#lastP99Ms = this.#delayMs(h.percentile(99))
    this.#maxMs = Math.max(this.#maxMs, this.#lastMaxMs)
    h.reset()
  }

  /** A histogram value (ns between turns) as the delay past the resolution, in ms. */
  #delayMs(ns: number): number {
    if (this.#histogram.count === 0 || !Number.isFinite(ns)) return 0
    return Math.round(Math.max(0, ns - this.resolutionMs * 1e6) / 1e3) / 1e3
  }
}

function resolutionFromEnv(): number {
  const value = Number(process.env['TMEM_LOOP_RESOLUTION_MS'] ?? LOOP_RESOLUTION_MS_DEFAULT)
  return Number.isInteger(value) && value >= 1 && value <= 1000
    ? value
    : LOOP_RESOLUTION_MS_DEFAULT
}
