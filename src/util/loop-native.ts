/**
 * The loader of `native/loop` (binding.gyp's `tmem_loop`): the event-loop poller that
 * util/busy-poll.ts drives, and the thread CPU clock that util/thread-cpu.ts reads. Loaded
 * once; where it cannot be, both features say why and turn themselves off.
 */
import { type AddonStatus, addonUnavailable, hasFunctions, loadAddon } from './native-addon.js'

export interface LoopNative {
  /** Installs the poller on the calling thread's loop; the memory shared with it. */
  install(): Int32Array
  /** The calling thread's CPU time in nanoseconds (CLOCK_THREAD_CPUTIME_ID), or -1. */
  threadCpuNs(): number
}

function isLoopNative(value: unknown): value is LoopNative {
  return hasFunctions(value, ['install', 'threadCpuNs'])
}

let status: AddonStatus<LoopNative> | null = null

export function loopNative(): AddonStatus<LoopNative> {
  status ??=
    process.platform === 'linux'
      ? loadAddon('tmem_loop', isLoopNative, 'install/threadCpuNs')
      : addonUnavailable(`needs Linux, not ${process.platform}`)
  return status
}
