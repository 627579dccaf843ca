/**
 * Where a save stream goes. A sink is a function that takes the next chunk of the stream;
 * it may return a promise, which the saver awaits before writing more (back-pressure). The
 * chunk is handed over: the saver never writes into it again, so a sink may keep it.
 *
 * Helpers: `memorySink()` collects the stream in memory, `writableSink(stream)` writes to a
 * Node writable (file, socket) honouring its back-pressure, `openFileSink(path)` writes to
 * whatever is at a path without changing its kind (a regular file atomically, a FIFO or a
 * character device by streaming into it, a symlink by writing its target), and
 * `writableFileSink(stream)` gives a Node writable (stdout) the same commit/abort shape.
 */
import { type Stats, constants as fsConstants } from 'node:fs'
import {
  lstat,
  open,
  readlink,
  realpath,
  rename,
  stat,
  unlink,
  type FileHandle,
} from 'node:fs/promises'
import { once } from 'node:events'
import { basename, dirname, join, resolve as resolvePath } from 'node:path'
import type { Writable } from 'node:stream'
import { copyBytes } from '../util/bytes.js'

export type StreamSink = (chunk: Uint8Array) => void | Promise<void>

/** Default chunk size handed to a sink: 1 MiB. */
export const DEFAULT_CHUNK_BYTES = 1 << 20
/** Smallest chunk size: one page record and a pool record fit. */
export const MIN_CHUNK_BYTES = 8192

/** @internal Buffers little-endian records into chunks and passes full chunks to the sink. */
export class ChunkWriter {
  readonly #sink: StreamSink
  readonly #chunkBytes: number
  #chunk: Uint8Array
  #at = 0
  /** Bytes written so far, flushed or not. */
  written = 0

  constructor(sink: StreamSink, chunkBytes = DEFAULT_CHUNK_BYTES) {
    if (!Number.isInteger(chunkBytes) || chunkBytes < MIN_CHUNK_BYTES) {
      throw new RangeError(
        `Chunk size must be an integer of at least ${MIN_CHUNK_BYTES} bytes, got ${chunkBytes}`,
      )
    }
    this.#sink = sink
    this.#chunkBytes = chunkBytes
    this.#chunk = new Uint8Array(chunkBytes)
  }

  /** Makes room for `bytes` more bytes, handing the current chunk to the sink if needed. */
  async room(bytes: number): Promise<void> {
    if (this.#at + bytes <= this.#chunk.length) return
    await this.flush()
    if (bytes > this.#chunk.length) this.#chunk = new Uint8Array(bytes)
  }

  /** True when `bytes` more bytes fit without a flush (lets callers skip an await). */
  fits(bytes: number): boolean {
    return this.#at + bytes <= this.#chunk.length
  }

  u32(value: number): void {
    const chunk = this.#chunk
    const at = this.#at
    chunk[at] = value & 0xff
    chunk[at + 1] = (value >>> 8) & 0xff
    chunk[at + 2] = (value >>> 16) & 0xff
    chunk[at + 3] = (value >>> 24) & 0xff
    this.#at = at + 4
    this.written += 4
  }

  /** The chunk being filled; bytes from `cursor` on are free. */
  get chunk(): Uint8Array {
    return this.#chunk
  }

  /** Where the next byte goes in `chunk`. */
  get cursor(): number {
    return this.#at
  }

  /** Counts `length` bytes that the caller wrote into `chunk` at `cursor` itself. */
  advance(length: number): void {
    this.#at += length
    this.written += length
  }

  /** Copies `length` bytes of `source` from `offset`. */
  bytes(source: Uint8Array, offset: number, length: number): void {
    copyBytes(source, offset, this.#chunk, this.#at, length)
    this.#at += length
    this.written += length
  }

  /** Writes `length` bytes of value `byte`. */
  fill(byte: number, length: number): void {
    this.#chunk.fill(byte, this.#at, this.#at + length)
    this.#at += length
    this.written += length
  }

  /** Hands what is buffered to the sink. */
  async flush(): Promise<void> {
    if (this.#at === 0) return
    const full = this.#chunk.subarray(0, this.#at)
    // Not zeroed: only the bytes written are ever handed on (every record is written whole).
    this.#chunk = Buffer.allocUnsafeSlow(this.#chunkBytes)
    this.#at = 0
    await this.#sink(full)
  }
}

/** Collects a stream in memory. */
export interface MemorySink {
  /** Never returns a promise. */
  sink: (chunk: Uint8Array) => void
  /** The bytes so far, as one array. */
  bytes(): Uint8Array
}

export function memorySink(): MemorySink {
  const chunks: Uint8Array[] = []
  let length = 0
  return {
    sink: (chunk) => {
      chunks.push(chunk)
      length += chunk.length
    },
    bytes: () => {
      const out = new Uint8Array(length)
      let at = 0
      for (const chunk of chunks) {
        out.set(chunk, at)
        at += chunk.length
      }
      return out
    },
  }
}

/**
 * A sink writing to a Node writable (a file stream, a socket). Waits for 'drain' when the
 * writable's buffer is full; rejects if the writable errors or closes while waiting.
 */
export function writableSink(stream: Writable): StreamSink {
  return async (chunk) => {
    if (stream.write(chunk)) return
    await once(stream, 'drain')
  }
}

/** Where a save goes: a file that appears on `commit()`, or a FIFO/device streamed into. */
export interface FileSink {
  sink: StreamSink
  /**
   * Where the bytes go until `commit()`: a temporary file beside the target for an atomic
   * write, else the node itself (a FIFO or character device is written in place).
   */
  readonly tempPath: string
  /** True when the bytes go straight to the target (nothing is renamed, nothing undone). */
  readonly streaming: boolean
  /** Atomic: flushes to disk, closes and renames the file into place. Streaming: closes. */
  commit(): Promise<void>
  /**
   * Atomic: closes and removes the temporary file; the target path is not touched. Streaming:
   * closes (the reader sees a stream that ends early, which restore reports as ETRUNCATED).
   */
  abort(): Promise<void>
}

/** Symlinks followed at most while resolving a save target (as the kernel's MAXSYMLINKS). */
export const SAVE_SYMLINK_HOPS_MAX = 40

/** What a path names, once symlinks are followed. */
interface SaveTarget {
  /** The final path, no symlink left in its last component. */
  path: string
  /** 'atomic': a regular file or nothing (a new file is renamed into place); 'stream': written in place. */
  how: 'atomic' | 'stream'
}

function pathError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code })
}

function errnoOf(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code
}

/** How to write a node of these stats, or an error saying why it cannot be a save target. */
function targetHow(path: string, stats: Stats): SaveTarget['how'] {
  if (stats.isFile()) return 'atomic'
  if (stats.isFIFO() || stats.isCharacterDevice()) return 'stream'
  if (stats.isDirectory())
    throw pathError('EISDIR', `${path} is a directory, not a file to save to`)
  throw pathError(
    'EINVAL',
    `${path} is neither a regular file, a FIFO nor a character device; not saving to it`,
  )
}

/**
 * Follows symlinks from `path` to the node a save should write. A symlink whose target does
 * not exist yet resolves to that target (the new file is created there, the link kept).
 */
async function resolveSaveTarget(path: string): Promise<SaveTarget> {
  let at = path
  for (let hop = 0; hop <= SAVE_SYMLINK_HOPS_MAX; hop++) {
    let stats: Stats
    try {
      stats = await lstat(at)
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') return { path: at, how: 'atomic' }
      throw error
    }
    if (!stats.isSymbolicLink()) return { path: at, how: targetHow(at, stats) }
    try {
      const real = await realpath(at)
      return { path: real, how: targetHow(real, await stat(real)) }
    } catch (error) {
      if (errnoOf(error) !== 'ENOENT') throw error
    }
    // A dangling link: step to its target, relative to the link's real directory.
    at = resolvePath(await realpath(dirname(at)), await readlink(at))
  }
  throw pathError('ELOOP', `${path}: more than ${SAVE_SYMLINK_HOPS_MAX} symlinks to follow`)
}

/**
 * Opens `path` for a save without changing the kind of what is there. A regular file, or no
 * file, is written atomically: bytes go to `<name>.<pid>.<n>.partial` beside it, which
 * `commit()` renames over it and `abort()` removes. A FIFO or a character device is opened and
 * written in place (no rename: a device stays a device, and its write errors, such as ENOSPC
 * from /dev/full, fail the save). A symlink is followed and its target written as above; the
 * link stays. A directory or any other kind of node is refused (EISDIR, EINVAL).
 */
export async function openFileSink(path: string): Promise<FileSink> {
  const target = await resolveSaveTarget(path)
  return target.how === 'stream' ? openStreamingSink(target.path) : openAtomicSink(target.path)
}

function handleSink(handle: FileHandle): StreamSink {
  return async (chunk) => {
    let at = 0
    while (at < chunk.length) {
      const { bytesWritten } = await handle.write(chunk, at, chunk.length - at)
      at += bytesWritten
    }
  }
}

/** A FIFO or character device, opened without O_CREAT/O_TRUNC and checked again once open. */
async function openStreamingSink(path: string): Promise<FileSink> {
  const handle = await open(path, fsConstants.O_WRONLY)
  const stats = await handle.stat()
  if (!stats.isFIFO() && !stats.isCharacterDevice()) {
    await handle.close()
    throw pathError('EAGAIN', `${path} changed while the save was opening it; not saving to it`)
  }
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await handle.close()
  }
  return { tempPath: path, streaming: true, sink: handleSink(handle), commit: close, abort: close }
}

async function openAtomicSink(path: string): Promise<FileSink> {
  const tempPath = join(dirname(path), `${basename(path)}.${process.pid}.${++tempCounter}.partial`)
  const handle: FileHandle = await open(tempPath, 'wx', 0o600)
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await handle.close()
  }
  return {
    tempPath,
    streaming: false,
    sink: handleSink(handle),
    commit: async () => {
      await handle.sync()
      await close()
      await rename(tempPath, path)
    },
    abort: async () => {
      try {
        await close()
      } finally {
        await unlink(tempPath).catch(() => undefined)
      }
    },
  }
}

/**
 * A Node writable (such as process.stdout for `tmem save CLIENT -`) as a FileSink: streamed,
 * `commit()` resolves once everything written has been handed to the system, and an error on
 * the writable (EPIPE) fails the next write or the commit instead of going unhandled.
 */
export function writableFileSink(stream: Writable): FileSink {
  let failure: Error | null = null
  const onError = (error: Error): void => {
    failure ??= error
  }
  stream.on('error', onError)
  const write = writableSink(stream)
  const done = (): void => {
    stream.off('error', onError)
  }
  return {
    tempPath: '-',
    streaming: true,
    sink: async (chunk) => {
      if (failure !== null) throw failure
      await write(chunk)
    },
    commit: async () => {
      try {
        if (failure !== null) throw failure
        await new Promise<void>((resolve, reject) => {
          stream.write(new Uint8Array(0), (error) => (error ? reject(error) : resolve()))
        })
      } finally {
        done()
      }
    },
    abort: () => {
      done()
      return Promise.resolve()
    },
  }
}

let tempCounter = 0
