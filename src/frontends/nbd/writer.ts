/**
 * The send side of one NBD connection: replies are written straight into reusable 256 KiB
 * chunks (a READ's pages land there from the engine's GET, no copy in between) and handed to
 * the socket in one write per chunk and input batch. A chunk goes back to the free list when
 * every write of it is done; at most `FREE_CHUNKS_MAX` (4 MiB) are kept.
 *
 *   pending: [chunk A (full, unsent)] [chunk B (full, unsent)]   current: chunk C
 *                                                                 |sent..|start......used|
 *
 * A reply that fails half-way is taken back with mark()/rollback(): nothing is sent before
 * flush(), so a simple reply's header never goes out ahead of an error it did not foresee.
 * Integers are big-endian (NBD's byte order).
 *
 * alignData() puts a READ's pages at 8-byte aligned places of the chunk, where the engine
 * copies them on its allocation-free wide path: when the data would start misaligned, the
 * unsent bytes so far become a range of their own and the next range starts a few bytes
 * further on. The socket gets the ranges of one flush() as one corked write (a writev).
 *
 * Where the socket's handle allows it (handle-write.ts), a range goes to the handle directly,
 * without `Socket#write`: a reply the kernel takes whole then costs one call and no object;
 * a range it takes in part stays pinned until the handle reports it written. `onDrain` runs
 * when a write finishes and no more than `drainBytes` are still out, whichever way the
 * writes were made.
 */
import type { Socket } from 'node:net'
import { assert } from '../../util/assert.js'
import { registerCopyBuffer } from '../../util/bytes.js'
import { type HandleWriter, WRITE_DONE, WRITE_PENDING, directWriter } from './handle-write.js'

export const CHUNK_BYTES = 256 * 1024
const FREE_CHUNKS_MAX = 16
const SMALL_COPY_BYTES = 4096

/** Unsent bytes [start, end) of a chunk; reused, never reallocated. */
interface Range {
  chunk: Chunk
  start: number
  end: number
}

interface Chunk {
  buf: Buffer
  /** The same bytes as 32-bit words, for page copies at 4-byte aligned offsets. */
  words: Int32Array
  /** Writes of this chunk the socket has not finished. */
  inflight: number
  /** No longer the current chunk: free once inflight is 0. */
  retired: boolean
}

export class ReplyWriter {
  readonly #socket: Socket
  readonly #free: Chunk[] = []
  /** Ranges waiting for flush() before the current one: the first #pendingCount entries. */
  readonly #pending: Range[] = []
  #pendingCount = 0
  #current: Chunk
  /** Unsent bytes of the current chunk begin here. */
  #start = 0
  used = 0
  /** Bytes handed to the socket and not yet written out. */
  inflightBytes = 0
  #markPending = 0
  #markChunk: Chunk | null = null
  #markStart = 0
  #markUsed = 0
  /** The socket's handle, written directly; null: through Socket#write. */
  readonly #direct: HandleWriter | null
  /** Chunks of pending direct writes and their sizes, oldest at #waitHead (libuv's order). */
  readonly #waitChunks: Chunk[] = []
  readonly #waitBytes: number[] = []
  #waitHead = 0
  /** Runs when inflightBytes comes down to drainBytes or less as a write finishes. */
  onDrain: (() => void) | null = null
  drainBytes = 0

  constructor(socket: Socket) {
    this.#socket = socket
    this.#current = this.#take()
    this.#direct = directWriter(socket, (status) => this.#directDone(status))
  }

  /** True when writes go to the socket's handle directly (false: through Socket#write). */
  get direct(): boolean {
    return this.#direct !== null
  }

  /** The current chunk's buffer; valid at [used, used + n) after ensure(n). */
  get buf(): Buffer {
    return this.#current.buf
  }

  /** Makes room for `n` contiguous bytes at `used` (n ≤ CHUNK_BYTES). */
  ensure(n: number): void {
    assert(n <= CHUNK_BYTES, 'A reply piece fits one chunk')
    if (this.used + n <= CHUNK_BYTES) return
    const old = this.#current
    this.#queue(old, this.#start, this.used)
    old.retired = true
    this.#current = this.#take()
    this.#start = 0
    this.used = 0
  }

  /**
   * Makes the byte `prefix` bytes on from here 8-byte aligned in the chunk (a READ reply's
   * first data byte, after its header), skipping up to 7 bytes that are never sent.
   */
  alignData(prefix: number): void {
    this.ensure(prefix + 8)
    const skip = (8 - ((this.used + prefix) & 7)) & 7
    if (skip === 0) return
    this.#queue(this.#current, this.#start, this.used)
    this.used += skip
    this.#start = this.used
  }

  #queue(chunk: Chunk, start: number, end: number): void {
    if (end <= start) return
    let range = this.#pending[this.#pendingCount]
    if (range === undefined) {
      range = { chunk, start, end }
      this.#pending.push(range)
    } else {
      range.chunk = chunk
      range.start = start
      range.end = end
    }
    this.#pendingCount++
  }

  u8(value: number): void {
    this.ensure(1)
    this.buf[this.used++] = value
  }

  u16(value: number): void {
    this.ensure(2)
    this.buf.writeUInt16BE(value, this.used)
    this.used += 2
  }

  u32(value: number): void {
    this.ensure(4)
    this.buf.writeUInt32BE(value >>> 0, this.used)
    this.used += 4
  }

  /** A u64 that is a safe integer (sizes, offsets). */
  u64(value: number): void {
    this.ensure(8)
    this.buf.writeUInt32BE(Math.floor(value / 2 ** 32), this.used)
    this.buf.writeUInt32BE(value >>> 0, this.used + 4)
    this.used += 8
  }

  /** Copies bytes (up to a chunk's worth at a time). */
  bytes(source: Uint8Array, start = 0, end = source.length): void {
    let at = start
    while (at < end) {
      this.ensure(1)
      const n = Math.min(end - at, CHUNK_BYTES - this.used)
      const buf = this.buf
      if (n <= SMALL_COPY_BYTES) {
        // Byte by byte: a partial page of a READ, without a view object per copy.
        for (let i = 0; i < n; i++) buf[this.used + i] = source[at + i]!
      } else {
        buf.set(source.subarray(at, at + n), this.used)
      }
      this.used += n
      at += n
    }
  }

  /**
   * Appends a 4096-byte page held as 32-bit words (an aligned scratch page): word by word at
   * a 4-byte aligned position, else byte by byte. Never a view object.
   */
  page(words: Int32Array, bytes: Uint8Array): void {
    assert(words.length === 1024 && bytes.length === 4096, 'A page as words and bytes')
    this.ensure(4096)
    const at = this.used
    if ((at & 3) === 0) {
      const target = this.#current.words
      const base = at >>> 2
      for (let i = 0; i < 1024; i++) target[base + i] = words[i]!
    } else {
      const target = this.#current.buf
      for (let i = 0; i < 4096; i++) target[at + i] = bytes[i]!
    }
    this.used = at + 4096
  }

  zeros(count: number): void {
    let left = count
    while (left > 0) {
      this.ensure(1)
      const n = Math.min(left, CHUNK_BYTES - this.used)
      this.buf.fill(0, this.used, this.used + n)
      this.used += n
      left -= n
    }
  }

  /** Bytes written and not yet handed to the socket. */
  get unsentBytes(): number {
    let bytes = this.used - this.#start
    for (let i = 0; i < this.#pendingCount; i++) {
      const range = this.#pending[i]!
      bytes += range.end - range.start
    }
    return bytes
  }

  /** Remembers this point for rollback() (one mark at a time; no allocation). */
  mark(): void {
    this.#markPending = this.#pendingCount
    this.#markChunk = this.#current
    this.#markStart = this.#start
    this.#markUsed = this.used
  }

  /** Takes back everything written since mark() (no flush() in between: nothing was sent). */
  rollback(): void {
    const chunk = this.#markChunk
    assert(chunk !== null, 'rollback() after mark()')
    while (this.#pendingCount > this.#markPending) {
      const range = this.#pending[--this.#pendingCount]!
      if (range.chunk !== chunk) this.#recycle(range.chunk)
    }
    if (this.#current !== chunk) {
      this.#current.retired = true
      this.#recycle(this.#current)
      this.#current = chunk
      chunk.retired = false
    }
    this.#start = this.#markStart
    this.used = this.#markUsed
    this.#markChunk = null
  }

  /** Drops everything written since the last flush() without sending it. */
  discardUnsent(): void {
    for (let i = 0; i < this.#pendingCount; i++) {
      const range = this.#pending[i]!
      if (range.chunk !== this.#current) this.#recycle(range.chunk)
    }
    this.#pendingCount = 0
    this.used = this.#start
    this.#markChunk = null
  }

  /** Sends everything written so far. */
  flush(): void {
    const count = this.#pendingCount
    // Several ranges go out as one writev (direct writes are one call each).
    const cork = count > 0 && this.#direct === null
    if (cork) this.#socket.cork()
    for (let i = 0; i < count; i++) {
      const range = this.#pending[i]!
      this.#send(range.chunk, range.start, range.end)
    }
    this.#pendingCount = 0
    this.#send(this.#current, this.#start, this.used)
    if (cork) this.#socket.uncork()
    this.#markChunk = null
    // When the kernel took everything at once, the next replies start the chunk again, in
    // cache lines still warm from these, instead of walking through all of it.
    if (this.#current.inflight === 0) this.used = 0
    this.#start = this.used
  }

  #send(chunk: Chunk, start: number, end: number): void {
    if (end > start && !this.#socket.destroyed) {
      if (this.#direct !== null) {
        this.#sendDirect(this.#direct, chunk, start, end)
        return
      }
      chunk.inflight++
      const bytes = end - start
      this.inflightBytes += bytes
      this.#socket.write(chunk.buf.subarray(start, end), () => {
        chunk.inflight--
        this.inflightBytes -= bytes
        this.#recycle(chunk)
        if (this.inflightBytes <= this.drainBytes) this.onDrain?.()
      })
    } else {
      this.#recycle(chunk)
    }
  }

  #sendDirect(direct: HandleWriter, chunk: Chunk, start: number, end: number): void {
    const result = direct.write(chunk.buf.subarray(start, end))
    if (result === WRITE_PENDING) {
      chunk.inflight++
      this.inflightBytes += end - start
      this.#waitChunks.push(chunk)
      this.#waitBytes.push(end - start)
      return
    }
    // Written, or failed (a peer gone): either way the chunk is free again.
    if (result !== WRITE_DONE) this.#socket.destroy()
    this.#recycle(chunk)
  }

  /** The handle finished the oldest pending direct write (status < 0: it failed). */
  #directDone(status: number): void {
    const head = this.#waitHead
    const chunk = this.#waitChunks[head]
    if (chunk === undefined) return
    this.#waitHead = head + 1
    chunk.inflight--
    this.inflightBytes -= this.#waitBytes[head]!
    if (this.#waitHead === this.#waitChunks.length) {
      this.#waitChunks.length = 0
      this.#waitBytes.length = 0
      this.#waitHead = 0
    }
    this.#recycle(chunk)
    if (status < 0) this.#socket.destroy()
    else if (this.inflightBytes <= this.drainBytes) this.onDrain?.()
  }

  #take(): Chunk {
    let chunk = this.#free.pop()
    if (chunk === undefined) {
      // Its own ArrayBuffer (above Buffer's pool size), registered so that the engine's page
      // copies into it take the allocation-free path (src/util/bytes.ts).
      const buf = Buffer.allocUnsafeSlow(CHUNK_BYTES)
      registerCopyBuffer(buf.buffer)
      chunk = {
        buf,
        words: new Int32Array(buf.buffer, 0, CHUNK_BYTES / 4),
        inflight: 0,
        retired: false,
      }
    }
    chunk.retired = false
    return chunk
  }

  #recycle(chunk: Chunk): void {
    if (!chunk.retired || chunk.inflight > 0 || chunk === this.#current) return
    chunk.retired = false
    chunk.inflight = 0
    if (this.#free.length < FREE_CHUNKS_MAX) this.#free.push(chunk)
  }
}
