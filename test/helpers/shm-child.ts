/**
 * A second process for test/util/shm-native.test.ts: maps the file the parent names (a path,
 * such as /proc/<pid>/fd/<n> or a /dev/shm file) and answers the parent's messages over IPC.
 *
 *   { do: 'read', at, bytes }         -> { bytes: number[] }   what this mapping holds there
 *   { do: 'write', at, seed, bytes }  -> { done: true }        writes pattern(seed) there
 *   { do: 'add', word, times }        -> { done: true }        Atomics.add(word, 1) `times` times
 *   { do: 'truncate' }                -> { code }              tries to shrink the file
 */
import { closeSync, ftruncateSync, openSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { shmNative } from '../../src/util/shm-native.js'

export function pattern(seed: number, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes)
  let x = seed >>> 0 || 1
  for (let i = 0; i < bytes; i++) {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    out[i] = x & 0xff
  }
  return out
}

interface Request {
  do: 'read' | 'write' | 'add' | 'truncate'
  at?: number
  bytes?: number
  seed?: number
  word?: number
  times?: number
}

function main(): void {
  const [path, sizeText] = process.argv.slice(2)
  const status = shmNative()
  if (!status.available || path === undefined) throw new Error(`child: ${status.reason}`)
  const size = Number(sizeText)
  const fd = openSync(path, 'r+')
  const buffer = status.native.map(fd, size)
  const view = new Uint8Array(buffer)
  const words = new Int32Array(buffer)
  process.on('message', (message: Request) => {
    const at = message.at ?? 0
    if (message.do === 'read') {
      process.send?.({ bytes: Array.from(view.subarray(at, at + (message.bytes ?? 0))) })
    } else if (message.do === 'write') {
      view.set(pattern(message.seed ?? 1, message.bytes ?? 0), at)
      process.send?.({ done: true })
    } else if (message.do === 'add') {
      for (let i = 0; i < (message.times ?? 0); i++) Atomics.add(words, message.word ?? 0, 1)
      process.send?.({ done: true })
    } else {
      let code = 'none'
      try {
        ftruncateSync(fd, 4096)
      } catch (error) {
        code = (error as { code?: string }).code ?? 'unknown'
      }
      process.send?.({ code })
    }
  })
  process.on('disconnect', () => {
    closeSync(fd)
    process.exit(0)
  })
  process.send?.({ ready: true })
}

// Run only as the child process, not when a test imports `pattern`.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) main()
