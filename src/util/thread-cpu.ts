/**
 * The CPU time of the calling thread, from the native addon `native/loop`
 * (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`, util/loop-native.ts). A piece of work timed with
 * it costs what the thread itself spent on it: unlike the wall clock it leaves out the time the
 * OS ran other processes (on a loaded 2-core machine, often several milliseconds), and unlike
 * `process.cpuUsage()` it leaves out the runtime's helper threads (parallel GC, compiler).
 * Node 20 has no thread clock of its own (`process.threadCpuUsage` came in Node 23.9).
 */
import { loopNative } from './loop-native.js'

/**
 * A function returning this thread's CPU time in milliseconds, or null (and why, in
 * `threadClockReason()`) where the addon is not available.
 */
export function threadCpuClock(): (() => number) | null {
  const status = loopNative()
  if (!status.available) return null
  const native = status.native
  if (native.threadCpuNs() < 0) return null
  return () => native.threadCpuNs() / 1e6
}

/** '' when `threadCpuClock()` works, else why not. */
export function threadClockReason(): string {
  return loopNative().reason
}
