/**
 * The loader of `native/shm`, tmem's shared-memory addon (Node.js has no mmap). It is built
 * by the package's install script (`node-gyp rebuild`, see binding.gyp); when that build
 * failed or was skipped, or the platform has no memfd, the addon is "unavailable" with a
 * reason, and callers use the socket path instead. Nothing here throws on load.
 *
 * The addon maps sealed memfd files only in tmem (a file whose size nobody can change, so a
 * mapping never loses pages under it; a read past the end of a truncated mapping would be a
 * SIGBUS that kills the process). Its five calls:
 *
 *  - `memfd(name, bytes)`: a new anonymous file of `bytes` bytes, size sealed; its fd.
 *  - `map(fd, bytes)`: an ArrayBuffer whose memory is a shared mapping of the file.
 *  - `unmap(buffer)`: detaches the ArrayBuffer (its views become empty); V8 then releases the
 *    memory, which unmaps it.
 *  - `sizeOf(fd)`: the file's size.
 *  - `seals(fd)`: the seals of a plain shared-memory file (`SHM_SEAL_SHRINK` ...); throws
 *    EINVAL for any other file (hugetlbfs included: its faults can SIGBUS). The client checks
 *    the daemon's region with it before mapping.
 *
 * Set `TMEM_SHM=off` in the environment to make the addon unavailable on purpose (tests of
 * the fallback, or a user who wants sockets only).
 */
import { type AddonStatus, addonUnavailable, hasFunctions, loadAddon } from './native-addon.js'

export interface ShmNative {
  memfd(name: string, bytes: number): number
  map(fd: number, bytes: number): ArrayBuffer
  unmap(buffer: ArrayBuffer): void
  sizeOf(fd: number): number
  seals(fd: number): number
}

/** Seal bits of `seals(fd)` (linux/fcntl.h). */
export const SHM_SEAL_SHRINK = 0x2

export type ShmNativeStatus = AddonStatus<ShmNative>

let status: ShmNativeStatus | null = null

/** Loads the addon once; says why when it cannot be used. Never throws. */
export function shmNative(): ShmNativeStatus {
  status ??= load()
  return status
}

function load(): ShmNativeStatus {
  if (process.env['TMEM_SHM'] === 'off') return addonUnavailable('TMEM_SHM=off in the environment')
  if (process.platform !== 'linux')
    return addonUnavailable(`needs Linux (memfd), not ${process.platform}`)
  return loadAddon('tmem_shm', isShmNative, 'memfd/map/unmap/sizeOf/seals')
}

function isShmNative(value: unknown): value is ShmNative {
  return hasFunctions(value, ['memfd', 'map', 'unmap', 'sizeOf', 'seals'])
}
