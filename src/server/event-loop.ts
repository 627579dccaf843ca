/**
 * How long the daemon's event loop was held up: a `perf_hooks` event-loop-delay histogram
 * (one libuv timer; the histogram is filled in native code), published in the STATS `daemon`
 * section as `eventLoop` and so in the metrics as `tmem_daemon_event_loop_*`. It covers the
 * daemon's life since it started listening. A turn that runs for `d` ms shows as a delay of
 * about `d` minus up to one resolution, so blocks shorter than the resolution may be missed:
 * the default (10 ms) costs about 100 wake-ups a second; `TMEM_LOOP_RESOLUTION_MS` (1-1000)
 * sets it, as the remote benchmark does (1 ms).
 */
import { type IntervalHistogram, monitorEventLoopDelay } from 'node:perf_hooks'
import type { EventLoopSection } from '../protocol/stats.js'

export const LOOP_RESOLUTION_MS_DEFAULT = 10

export class EventLoopDelay {
  readonly resolutionMs: number
  readonly #histogram: IntervalHistogram

  constructor(resolutionMs = resolutionFromEnv()) {
    this.resolutionMs = resolutionMs
    this.#histogram = monitorEventLoopDelay({ resolution: resolutionMs })
  }

  start(): void {
    this.#histogram.enable()
  }

  stop(): void {
    this.#histogram.disable()
  }

  section(): EventLoopSection {
    const h = this.#histogram
    const ms = (ns: number): number => (Number.isFinite(ns) ? Math.round(ns / 1e3) / 1e3 : 0)
    return {
      resolutionMs: this.resolutionMs,
      samples: h.count,
      maxMs: ms(h.count === 0 ? 0 : h.max),
      p99Ms: ms(h.count === 0 ? 0 : h.percentile(99)),
      meanMs: ms(h.count === 0 ? 0 : h.mean),
    }
  }
}

function resolutionFromEnv(): number {
  const value = Number(process.env['TMEM_LOOP_RESOLUTION_MS'] ?? LOOP_RESOLUTION_MS_DEFAULT)
  return Number.isInteger(value) && value >= 1 && value <= 1000
    ? value
    : LOOP_RESOLUTION_MS_DEFAULT
}
