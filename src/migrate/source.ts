/**
 * Where a restore reads its stream from, and the reader the parser pulls records through.
 *
 * A source is the stream in memory (a Uint8Array), a file path (read twice: once to check
 * the whole stream, once to apply it), or an async iterable of chunks (collected in memory
 * first, since it cannot be read twice).
 */
import { open, type FileHandle } from 'node:fs/promises'

export type RestoreSource = Uint8Array | string | AsyncIterable<Uint8Array>

/** @internal Pulls the stream in records. */
export interface ByteReader {
  /** Bytes consumed so far: the offset of the next byte. */
  readonly position: number
  /** Stream length when known. */
  readonly size: number | null
  /**
   * The next `length` bytes as a view valid until the next call, advancing past them; null
   * (and no advance) when fewer remain.
   */
  take(length: number): Uint8Array | null | Promise<Uint8Array | null>
  /** Bytes left, up to `length`, without advancing. */
  available(length: number): number | Promise<number>
  close(): Promise<void>
}

/** @internal A reader over bytes in memory. */
export class MemoryReader implements ByteReader {
  readonly #bytes: Uint8Array
  position = 0

  constructor(bytes: Uint8Array) {
    this.#bytes = bytes
  }

  get size(): number {
    return this.#bytes.length
  }

  take(length: number): Uint8Array | null {
    const at = this.position
    if (at + length > this.#bytes.length) return null
    this.position = at + length
    return this.#bytes.subarray(at, at + length)
  }

  available(length: number): number {
    return Math.min(length, this.#bytes.length - this.position)
  }

  close(): Promise<void> {
    return Promise.resolve()
  }
}

/** Bytes a file reader asks the file for at a time. */
const FILE_READ_BYTES = 1 << 20

/** @internal A buffered reader over a file. */
export class FileReader implements ByteReader {
  readonly #handle: FileHandle
  readonly size: number
  #buffer = new Uint8Array(FILE_READ_BYTES)
  /** Buffered bytes are `#buffer[#start..#end]`, starting at file offset `position`. */
  #start = 0
  #end = 0
  /** File offset of `#buffer[#end]`. */
  #filePosition = 0
  position = 0

  private constructor(handle: FileHandle, size: number) {
    this.#handle = handle
    this.size = size
  }

  static async open(path: string): Promise<FileReader> {
    const handle = await open(path, 'r')
    try {
      const stat = await handle.stat()
      return new FileReader(handle, stat.size)
    } catch (error) {
      await handle.close()
      throw error
    }
  }

  async take(length: number): Promise<Uint8Array | null> {
    if (this.#end - this.#start < length && (await this.#fill(length)) < length) return null
    const at = this.#start
    this.#start += length
    this.position += length
    return this.#buffer.subarray(at, at + length)
  }

  async available(length: number): Promise<number> {
    if (this.#end - this.#start >= length) return length
    return Math.min(length, await this.#fill(length))
  }

  /** Reads until `length` bytes are buffered or the file ends; returns the bytes buffered. */
  async #fill(length: number): Promise<number> {
    // Keep the unread tail at the front; grow only for a request larger than the buffer.
    if (length > this.#buffer.length) {
      const bigger = new Uint8Array(length)
      bigger.set(this.#buffer.subarray(this.#start, this.#end))
      this.#buffer = bigger
    } else {
      this.#buffer.copyWithin(0, this.#start, this.#end)
    }
    this.#end -= this.#start
    this.#start = 0
    while (this.#end < length) {
      const { bytesRead } = await this.#handle.read(
        this.#buffer,
        this.#end,
        this.#buffer.length - this.#end,
        this.#filePosition,
      )
      if (bytesRead === 0) break
      this.#end += bytesRead
      this.#filePosition += bytesRead
    }
    return this.#end
  }

  close(): Promise<void> {
    return this.#handle.close()
  }
}

/**
 * @internal Turns a source into something that opens a fresh reader per pass. Async
 * iterables are collected into memory here.
 */
export async function readerFactory(source: RestoreSource): Promise<() => Promise<ByteReader>> {
  if (source instanceof Uint8Array) return () => Promise.resolve(new MemoryReader(source))
  if (typeof source === 'string') return () => FileReader.open(source)
  if (typeof source === 'object' && source !== null && Symbol.asyncIterator in source) {
    const chunks: Uint8Array[] = []
    let length = 0
    for await (const chunk of source) {
      if (!(chunk instanceof Uint8Array))
        throw new TypeError('A restore source must yield Uint8Array chunks')
      chunks.push(chunk)
      length += chunk.length
    }
    const bytes = new Uint8Array(length)
    let at = 0
    for (const chunk of chunks) {
      bytes.set(chunk, at)
      at += chunk.length
    }
    return () => Promise.resolve(new MemoryReader(bytes))
  }
  throw new TypeError(
    'A restore source is a Uint8Array, a file path, or an async iterable of Uint8Array',
  )
}
