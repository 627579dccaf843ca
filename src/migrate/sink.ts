/**
 * Where a save stream goes. A sink is a function that takes the next chunk of the stream;
 * it may return a promise, which the saver awaits before writing more (back-pressure). The
 * chunk is handed over: the saver never writes into it again, so a sink may keep it.
 *
 * Helpers: `memorySink()` collects the stream in memory, `writableSink(stream)` writes to a
 * Node writable (file, socket) honouring its back-pressure, and `openFileSink(path)` writes
 * a file atomically (a temporary file renamed into place by `commit()`).
 */
import { open, rename, unlink, type FileHandle } from 'node:fs/promises'
import { once } from 'node:events'
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
      throw new RangeError(`Chunk size must be an integer of at least ${MIN_CHUNK_BYTES} bytes, got ${chunkBytes}`)
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

/** A file being written; it appears at its path only on `commit()`. */
export interface FileSink {
  sink: StreamSink
  /** The temporary path the bytes go to until `commit()`. */
  readonly tempPath: string
  /** Flushes to disk, closes and renames the file into place. */
  commit(): Promise<void>
  /** Closes and removes the temporary file; the target path is not touched. */
  abort(): Promise<void>
}

/**
 * Opens `path` for an atomic write: bytes go to `path.<pid>.<n>.partial`, which `commit()`
 * renames to `path` (replacing a file there) and `abort()` removes.
 */
export async function openFileSink(path: string): Promise<FileSink> {
  const tempPath = `${path}.${process.pid}.${++tempCounter}.partial`
  const handle: FileHandle = await open(tempPath, 'wx', 0o600)
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await handle.close()
  }
  return {
    tempPath,
    sink: async (chunk) => {
      let at = 0
      while (at < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, at, chunk.length - at)
        at += bytesWritten
      }
    },
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

let tempCounter = 0
