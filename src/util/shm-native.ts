/**
 * The loader of `native/shm`, the one native addon of tmem: shared memory for Node.js, which
 * has no mmap. It is built by the package's install script (`node-gyp rebuild`, see
 * binding.gyp); when that build failed or was skipped, or the platform has no memfd, the
 * addon is "unavailable" with a reason, and callers use the socket path instead. Nothing here
 * throws on load.
 *
 * The addon maps sealed memfd files only in tmem (a file whose size nobody can change, so a
 * mapping never loses pages under it; a read past the end of a truncated mapping would be a
 * SIGBUS that kills the process). Its four calls:
 *
 *  - `memfd(name, bytes)`: a new anonymous file of `bytes` bytes, size sealed; its fd.
 *  - `map(fd, bytes)`: an ArrayBuffer whose memory is a shared mapping of the file.
 *  - `unmap(buffer)`: detaches the ArrayBuffer (its views become empty); V8 then releases the
 *    memory, which unmaps it.
 *  - `sizeOf(fd)`: the file's size.
 *
 * Set `TMEM_SHM=off` in the environment to make the addon unavailable on purpose (tests of
 * the fallback, or a user who wants sockets only).
 */
import { createRequire } from 'node:module'

export interface ShmNative {
  memfd(name: string, bytes: number): number
  map(fd: number, bytes: number): ArrayBuffer
  unmap(buffer: ArrayBuffer): void
  sizeOf(fd: number): number
}

export type ShmNativeStatus =
  | { readonly available: true; readonly native: ShmNative; readonly reason: '' }
  | { readonly available: false; readonly native: null; readonly reason: string }

/** Where node-gyp puts the addon, from this file (dist/src/util/shm-native.js). */
const ADDON_URL = new URL('../../../build/Release/tmem_shm.node', import.meta.url)

let status: ShmNativeStatus | null = null

/** Loads the addon once; says why when it cannot be used. Never throws. */
export function shmNative(): ShmNativeStatus {
  status ??= load()
  return status
}

function unavailable(reason: string): ShmNativeStatus {
  return { available: false, native: null, reason: `unavailable: ${reason}` }
}

function load(): ShmNativeStatus {
  if (process.env['TMEM_SHM'] === 'off') return unavailable('TMEM_SHM=off in the environment')
  if (process.platform !== 'linux')
    return unavailable(`needs Linux (memfd), not ${process.platform}`)
  let addon: unknown
  try {
    addon = createRequire(import.meta.url)(ADDON_URL.pathname)
  } catch (error) {
    const code = (error as { code?: string }).code ?? ''
    if (code === 'MODULE_NOT_FOUND') {
      return unavailable(
        'the native addon was not built (npm install runs node-gyp; see binding.gyp)',
      )
    }
    return unavailable(`the native addon did not load: ${(error as Error).message}`)
  }
  if (!isShmNative(addon)) return unavailable('the native addon lacks memfd/map/unmap/sizeOf')
  return { available: true, native: addon, reason: '' }
}

function isShmNative(value: unknown): value is ShmNative {
  if (typeof value !== 'object' || value === null) return false
  const record = value as Record<string, unknown>
  return (
    typeof record['memfd'] === 'function' &&
    typeof record['map'] === 'function' &&
    typeof record['unmap'] === 'function' &&
    typeof record['sizeOf'] === 'function'
  )
}
