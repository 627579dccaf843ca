/**
 * One connection to a server, the same shape for all three: `put(key, page)` and
 * `get(key, expect)`, each a promise, any number in flight (pipelining), replies in order.
 * A get resolves true only when the page read back is byte-for-byte the one expected, so a
 * miss or a wrong page can never count as a fast read.
 *
 * Load generators:
 * - tmem: its own client library (`src/client`), as a user would use it: `put(pool, oid,
 *   index, page)` and `get(pool, oid, index, into)` on a persistent pool.
 * - Redis and memcached, default (`--peer-clients raw`): a small raw-protocol driver per
 *   server, RESP `SET`/`GET` and memcached's meta protocol `ms`/`mg`. Why not the npm clients:
 *   measured on this 2-core machine (1 connection, 64 in flight, 4 KiB values), ioredis 6
 *   reached 70k SET/s with the load generator at 100 % CPU and Redis at 49 %, while the raw
 *   driver drove the same Redis to 245k SET/s; the benchmark would have measured ioredis, not
 *   Redis. The raw drivers do per op what the tmem client does: one request buffer carved from
 *   a shared slab (header + page copy), one promise, replies parsed in place from the socket
 *   chunk (a reply split across chunks is copied once), writes of one tick corked into one.
 * - `--peer-clients npm`: ioredis (`set`, `getBuffer`) and memjs (binary protocol), both
 *   pipelining, to rerun the comparison above.
 *
 * Batches (`putMany`, `getMany`, for the `b` cases): tmem's batch API; Redis MSET/MGET and
 * memcached's quiet meta batches (batch.ts); ioredis `mset`/`mgetBuffer`; memjs, which has no
 * multi-get, pipelines single requests.
 */
import { type Socket, connect as netConnect } from 'node:net'
import { type TmemClient, connect as tmemConnect } from '../../src/client/client.js'
import { HOST, type ServerKind } from './servers.js'
import { PAGE } from './corpus.js'
import {
  MemcachedGetMany,
  MemcachedPutMany,
  RedisGetMany,
  RedisPutMany,
  type Waiter,
  memcachedGetManyRequest,
  memcachedPutManyRequest,
  redisMgetRequest,
  redisMsetRequest,
} from './batch.js'

export interface Conn {
  put(key: number, page: Uint8Array): Promise<void>
  /** True when the page came back equal to `expect`. `scratch` is the caller's, one per lane. */
  get(key: number, expect: Uint8Array, scratch: Uint8Array): Promise<boolean>
  /** Stores `pages[i]` under `keys[i]`, all in one request (a batch); rejects unless all stored. */
  putMany(keys: Uint32Array, pages: readonly Uint8Array[]): Promise<void>
  /**
   * Reads `keys` in one request; resolves with how many came back byte for byte equal to
   * `expects[i]`. `scratch` (the caller's, one per lane) holds `keys.length` pages.
   */
  getMany(keys: Uint32Array, expects: readonly Uint8Array[], scratch: Uint8Array): Promise<number>
  close(): Promise<void>
}

export type PeerClients = 'raw' | 'npm'

export interface Driver {
  /** What generates the load, for the report. */
  label: string
  open(index: number): Promise<Conn>
}

export function driverFor(
  kind: ServerKind,
  port: number,
  peerClients: PeerClients,
  path = '',
): Driver {
  switch (kind) {
    case 'tmem':
      return {
        label: 'tmem client library (src/client)',
        open: (i) => TmemConn.open({ host: HOST, port }, i),
      }
    case 'tmem-shm':
      return {
        label: 'tmem client library over shared memory (Unix socket)',
        open: (i) => TmemConn.open({ path }, i),
      }
    case 'redis':
      return peerClients === 'raw'
        ? { label: 'raw RESP SET/GET (MSET/MGET) driver', open: () => RawConn.open(port, REDIS) }
        : { label: 'ioredis (set/getBuffer)', open: () => openIoredis(port) }
    case 'memcached':
      return peerClients === 'raw'
        ? {
            label: 'raw meta-protocol ms/mg (quiet-mode batches) driver',
            open: () => RawConn.open(port, MEMCACHED),
          }
        : { label: 'memjs (binary protocol)', open: () => openMemjs(port) }
  }
}

// ---------------------------------------------------------------------------------------------
// tmem

class TmemConn implements Conn {
  readonly #client: TmemClient
  readonly #pool: number

  private constructor(client: TmemClient, pool: number) {
    this.#client = client
    this.#pool = pool
  }

  static async open(
    target: { host: string; port: number } | { path: string },
    index: number,
  ): Promise<TmemConn> {
    const client = await tmemConnect(target, {
      name: `bench-${process.pid}-${index}`,
      reconnect: false,
    })
    if ('path' in target && !client.sharedMemory.active)
      throw new Error(`tmem-shm: ${client.sharedMemory.reason}`)
    // Persistent: a get leaves the page in place, so every read of the key space hits.
    const pool = await client.newPool({ persistent: true })
    return new TmemConn(client, pool)
  }

  async put(key: number, page: Uint8Array): Promise<void> {
    if (!(await this.#client.put(this.#pool, key >>> 10, key & 1023, page))) {
      throw new Error(`tmem put of key ${key} was not stored`)
    }
  }

  async get(key: number, expect: Uint8Array, scratch: Uint8Array): Promise<boolean> {
    const page = await this.#client.get(this.#pool, key >>> 10, key & 1023, scratch)
    return page !== null && Buffer.compare(page, expect) === 0
  }

  /** The library's batch: over shared memory one ring fill; over a socket, a pipeline of puts. */
  async putMany(keys: Uint32Array, pages: readonly Uint8Array[]): Promise<void> {
    const entries = Array.from(keys, (key, i) => ({
      oid: key >>> 10,
      index: key & 1023,
      page: pages[i]!,
    }))
    const stored = await this.#client.putMany(this.#pool, entries)
    const missed = stored.indexOf(false)
    if (missed >= 0) throw new Error(`tmem put of key ${keys[missed]} was not stored`)
  }

  async getMany(
    keys: Uint32Array,
    expects: readonly Uint8Array[],
    scratch: Uint8Array,
  ): Promise<number> {
    const wanted = Array.from(keys, (key) => ({ oid: key >>> 10, index: key & 1023 }))
    const pages = await this.#client.getMany(this.#pool, wanted, scratch)
    let good = 0
    for (let i = 0; i < pages.length; i++) {
      const page = pages[i]
      if (page !== null && page !== undefined && Buffer.compare(page, expects[i]!) === 0) good++
    }
    return good
  }

  close(): Promise<void> {
    return this.#client.close()
  }
}

// ---------------------------------------------------------------------------------------------
// Raw RESP and memcached meta drivers

interface Protocol {
  setRequest(key: number, page: Uint8Array): Buffer
  getRequest(key: number): Buffer
  putManyRequest(keys: Uint32Array, pages: readonly Uint8Array[]): Buffer
  getManyRequest(keys: Uint32Array): Buffer
  putManyWaiter(resolve: () => void, reject: (error: Error) => void): Waiter
  getManyWaiter(
    expects: readonly Uint8Array[],
    resolve: (good: number) => void,
    reject: (error: Error) => void,
  ): Waiter
  /** Length of the whole reply at `offset`, or -1 while its first line is incomplete. */
  measure(bytes: Uint8Array, offset: number, end: number): number
  /** Offset of the value inside a complete reply, or -1 for a miss; throws on an error reply. */
  valueAt(bytes: Uint8Array, offset: number, length: number): number
  /** Throws unless the reply says "stored". */
  checkStored(bytes: Uint8Array, offset: number, length: number): void
}

const CR = 13
const LF = 10

function lineEnd(bytes: Uint8Array, offset: number, end: number): number {
  const at = bytes.indexOf(LF, offset)
  return at < 0 || at >= end ? -1 : at + 1
}

function lineText(bytes: Uint8Array, offset: number, length: number): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset + offset, Math.min(length, 120))
    .toString('latin1')
    .trim()
}

/**
 * Request buffers are carved from shared slabs, exactly as the tmem client carves its frames
 * (src/client/client.ts `requestFrame`), so that the load generators cost the same per op.
 */
const SLAB_BYTES = 256 * 1024
let slab = Buffer.allocUnsafeSlow(SLAB_BYTES)
let slabUsed = 0

function requestBuffer(head: string, page: Uint8Array | null): Buffer {
  const headBytes = head.length
  const bytes = headBytes + (page === null ? 0 : PAGE + 2)
  if (slabUsed + bytes > SLAB_BYTES) {
    slab = Buffer.allocUnsafeSlow(SLAB_BYTES)
    slabUsed = 0
  }
  const buffer = slab.subarray(slabUsed, slabUsed + bytes)
  slabUsed += (bytes + 7) & ~7
  buffer.write(head, 0, 'latin1')
  if (page !== null) {
    buffer.set(page, headBytes)
    buffer[headBytes + PAGE] = CR
    buffer[headBytes + PAGE + 1] = LF
  }
  return buffer
}

/** Redis RESP2: SET answers +OK, GET answers $4096 + value, or $-1 on a miss. */
const REDIS: Protocol = {
  setRequest: (key, page) => {
    const name = `p:${key}`
    return requestBuffer(`*3\r\n$3\r\nSET\r\n$${name.length}\r\n${name}\r\n$${PAGE}\r\n`, page)
  },
  getRequest: (key) => {
    const name = `p:${key}`
    return requestBuffer(`*2\r\n$3\r\nGET\r\n$${name.length}\r\n${name}\r\n`, null)
  },
  putManyRequest: redisMsetRequest,
  getManyRequest: redisMgetRequest,
  putManyWaiter: (resolve, reject) => new RedisPutMany(resolve, reject),
  getManyWaiter: (expects, resolve, reject) => new RedisGetMany(expects, resolve, reject),
  measure: (bytes, offset, end) => {
    const next = lineEnd(bytes, offset, end)
    if (next < 0) return -1
    if (bytes[offset] !== 0x24 /* $ */) return next - offset
    const size = parseDecimal(bytes, offset + 1, next - 2)
    return size < 0 ? next - offset : next - offset + size + 2
  },
  valueAt: (bytes, offset, length) => {
    if (bytes[offset] === 0x24 && bytes[offset + 1] !== 0x2d /* - */) {
      return lineEnd(bytes, offset, offset + length)
    }
    if (bytes[offset] === 0x24) return -1
    throw new Error(`Redis: ${lineText(bytes, offset, length)}`)
  },
  checkStored: (bytes, offset, length) => {
    if (bytes[offset] !== 0x2b /* + */) throw new Error(`Redis: ${lineText(bytes, offset, length)}`)
  },
}

/** memcached meta: `ms` answers HD, `mg <key> v` answers `VA <n>` + value, or EN. */
const MEMCACHED: Protocol = {
  setRequest: (key, page) => requestBuffer(`ms p:${key} ${PAGE}\r\n`, page),
  getRequest: (key) => requestBuffer(`mg p:${key} v\r\n`, null),
  putManyRequest: memcachedPutManyRequest,
  getManyRequest: memcachedGetManyRequest,
  putManyWaiter: (resolve, reject) => new MemcachedPutMany(resolve, reject),
  getManyWaiter: (expects, resolve, reject) => new MemcachedGetMany(expects, resolve, reject),
  measure: (bytes, offset, end) => {
    const next = lineEnd(bytes, offset, end)
    if (next < 0) return -1
    if (bytes[offset] !== 0x56 /* V */ || bytes[offset + 1] !== 0x41 /* A */) return next - offset
    let digitsEnd = offset + 3
    while (digitsEnd < next && bytes[digitsEnd] !== 0x20 && bytes[digitsEnd] !== CR) digitsEnd++
    return next - offset + parseDecimal(bytes, offset + 3, digitsEnd) + 2
  },
  valueAt: (bytes, offset, length) => {
    if (bytes[offset] === 0x56 && bytes[offset + 1] === 0x41)
      return lineEnd(bytes, offset, offset + length)
    if (bytes[offset] === 0x45 && bytes[offset + 1] === 0x4e) return -1 // EN
    throw new Error(`memcached: ${lineText(bytes, offset, length)}`)
  },
  checkStored: (bytes, offset, length) => {
    if (bytes[offset] !== 0x48 || bytes[offset + 1] !== 0x44) {
      throw new Error(`memcached: ${lineText(bytes, offset, length)}`)
    }
  },
}

/** A decimal number (optionally negative) in bytes[from, to); stops at CR. */
function parseDecimal(bytes: Uint8Array, from: number, to: number): number {
  let at = from
  let sign = 1
  if (bytes[at] === 0x2d) {
    sign = -1
    at++
  }
  let value = 0
  for (; at < to; at++) {
    const digit = (bytes[at] ?? 0) - 0x30
    if (digit < 0 || digit > 9) break
    value = value * 10 + digit
  }
  return sign * value
}

/** A single SET/GET (`ms`/`mg`): one reply unit. */
class OneReply implements Waiter {
  readonly #protocol: Protocol
  readonly #expect: Uint8Array | null
  readonly #resolve: (ok: boolean) => void
  readonly reject: (error: Error) => void

  constructor(
    protocol: Protocol,
    expect: Uint8Array | null,
    resolve: (ok: boolean) => void,
    reject: (error: Error) => void,
  ) {
    this.#protocol = protocol
    this.#expect = expect
    this.#resolve = resolve
    this.reject = reject
  }

  unit(bytes: Uint8Array, offset: number, length: number): boolean {
    if (this.#expect === null) {
      this.#protocol.checkStored(bytes, offset, length)
      this.#resolve(true)
      return true
    }
    const valueAt = this.#protocol.valueAt(bytes, offset, length)
    const valueBytes = offset + length - 2 - valueAt
    this.#resolve(
      valueAt >= 0 &&
        valueBytes === PAGE &&
        Buffer.compare(
          Buffer.from(bytes.buffer, bytes.byteOffset + valueAt, PAGE),
          this.#expect,
        ) === 0,
    )
    return true
  }
}

/** Largest reply: a value line, the page, CRLF. */
const REPLY_BYTES_MAX = 64 + PAGE + 2

class RawConn implements Conn {
  readonly #socket: Socket
  readonly #protocol: Protocol
  readonly #waiters: Waiter[] = []
  #head = 0
  /** A reply split across chunks, copied here until it is whole (like tmem's FrameReader). */
  readonly #partial = Buffer.allocUnsafe(REPLY_BYTES_MAX)
  #partialBytes = 0
  #corked = false
  #failed: Error | null = null

  private constructor(socket: Socket, protocol: Protocol) {
    this.#socket = socket
    this.#protocol = protocol
    socket.on('data', (chunk: Buffer) => this.#onData(chunk))
    socket.on('error', (error) => this.#fail(error))
    socket.on('close', () => this.#fail(new Error('Connection closed')))
  }

  static open(port: number, protocol: Protocol): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const socket = netConnect({ host: HOST, port })
      socket.setNoDelay(true)
      socket.once('error', reject)
      socket.once('connect', () => {
        socket.off('error', reject)
        resolve(new RawConn(socket, protocol))
      })
    })
  }

  put(key: number, page: Uint8Array): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const request = this.#protocol.setRequest(key, page)
      this.#send(request, new OneReply(this.#protocol, null, () => resolve(), reject))
    })
  }

  get(key: number, expect: Uint8Array, _scratch: Uint8Array): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      const request = this.#protocol.getRequest(key)
      this.#send(request, new OneReply(this.#protocol, expect, resolve, reject))
    })
  }

  putMany(keys: Uint32Array, pages: readonly Uint8Array[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const request = this.#protocol.putManyRequest(keys, pages)
      this.#send(request, this.#protocol.putManyWaiter(resolve, reject))
    })
  }

  getMany(
    keys: Uint32Array,
    expects: readonly Uint8Array[],
    _scratch: Uint8Array,
  ): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const request = this.#protocol.getManyRequest(keys)
      this.#send(request, this.#protocol.getManyWaiter(expects, resolve, reject))
    })
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#socket.once('close', () => resolve())
      this.#socket.end()
    })
  }

  #send(request: Buffer, waiter: Waiter): void {
    if (this.#failed !== null) {
      waiter.reject(this.#failed)
      return
    }
    this.#waiters.push(waiter)
    if (!this.#corked) {
      this.#corked = true
      this.#socket.cork()
      queueMicrotask(() => {
        this.#corked = false
        this.#socket.uncork()
      })
    }
    this.#socket.write(request)
  }

  #onData(chunk: Buffer): void {
    const protocol = this.#protocol
    let at = 0
    if (this.#partialBytes > 0) {
      const partial = this.#partial
      while (true) {
        const whole = protocol.measure(partial, 0, this.#partialBytes)
        const end = whole < 0 ? lineEnd(chunk, at, chunk.length) : -2
        const wanted =
          whole >= 0 ? whole - this.#partialBytes : end < 0 ? chunk.length - at : end - at
        const take = Math.min(wanted, chunk.length - at)
        chunk.copy(partial, this.#partialBytes, at, at + take)
        this.#partialBytes += take
        at += take
        if (whole < 0 && end >= 0) continue // first line now complete: measure again
        if (whole < 0 || this.#partialBytes < whole) return
        this.#partialBytes = 0
        this.#reply(partial, 0, whole)
        break
      }
    }
    while (at < chunk.length) {
      const whole = protocol.measure(chunk, at, chunk.length)
      if (whole < 0 || at + whole > chunk.length) {
        if (chunk.length - at > REPLY_BYTES_MAX) {
          this.#fail(new Error('Reply larger than a page'))
          return
        }
        chunk.copy(this.#partial, 0, at)
        this.#partialBytes = chunk.length - at
        return
      }
      this.#reply(chunk, at, whole)
      at += whole
    }
    if (this.#head > 1024 && this.#head * 2 > this.#waiters.length) {
      this.#waiters.splice(0, this.#head)
      this.#head = 0
    }
  }

  #reply(bytes: Uint8Array, offset: number, length: number): void {
    const waiter = this.#waiters[this.#head]
    if (waiter === undefined) {
      this.#fail(new Error('Reply without a request'))
      return
    }
    let done = true
    try {
      done = waiter.unit(bytes, offset, length)
    } catch (error) {
      waiter.reject(error as Error)
    }
    if (done) this.#waiters[this.#head++] = undefined as unknown as Waiter
  }

  #fail(error: Error): void {
    if (this.#failed !== null) return
    this.#failed = error
    const waiters = this.#waiters.slice(this.#head)
    this.#waiters.length = 0
    this.#head = 0
    for (const waiter of waiters) waiter.reject(error)
  }
}

// ---------------------------------------------------------------------------------------------
// npm clients (--peer-clients npm)

async function openIoredis(port: number): Promise<Conn> {
  const { Redis } = await import('ioredis')
  const redis = new Redis({ host: HOST, port, enableAutoPipelining: false, lazyConnect: true })
  await redis.connect()
  return {
    put: async (key, page) => {
      const reply = await redis.set(`p:${key}`, Buffer.from(page.buffer, page.byteOffset, PAGE))
      if (reply !== 'OK') throw new Error('Redis SET did not answer OK')
    },
    get: async (key, expect) => {
      const value = await redis.getBuffer(`p:${key}`)
      return value !== null && Buffer.compare(value, expect) === 0
    },
    putMany: async (keys, pages) => {
      const args: (string | Buffer)[] = []
      keys.forEach((key, i) => {
        const page = pages[i]!
        args.push(`p:${key}`, Buffer.from(page.buffer, page.byteOffset, PAGE))
      })
      const reply = await redis.mset(...args)
      if (reply !== 'OK') throw new Error('Redis MSET did not answer OK')
    },
    getMany: async (keys, expects) => {
      const values = await redis.mgetBuffer(...Array.from(keys, (key) => `p:${key}`))
      return values.filter((v, i) => v !== null && Buffer.compare(v, expects[i]!) === 0).length
    },
    close: async () => {
      await redis.quit()
    },
  }
}

async function openMemjs(port: number): Promise<Conn> {
  const memjs = await import('memjs')
  const client = memjs.Client.create(`${HOST}:${port}`, {
    retries: 0,
    timeout: 10,
    conntimeout: 10,
  })
  return {
    put: async (key, page) => {
      const stored = await client.set(`p:${key}`, Buffer.from(page.buffer, page.byteOffset, PAGE), {
        expires: 0,
      })
      if (!stored) throw new Error('memcached set was not stored')
    },
    get: async (key, expect) => {
      const { value } = await client.get(`p:${key}`)
      return value !== null && Buffer.compare(value, expect) === 0
    },
    // memjs has no multi-set or multi-get: a batch is its requests pipelined.
    putMany: async (keys, pages) => {
      const stored = await Promise.all(
        Array.from(keys, (key, i) =>
          client.set(`p:${key}`, Buffer.from(pages[i]!.buffer, pages[i]!.byteOffset, PAGE), {
            expires: 0,
          }),
        ),
      )
      if (stored.includes(false)) throw new Error('memcached set was not stored')
    },
    getMany: async (keys, expects) => {
      const values = await Promise.all(Array.from(keys, (key) => client.get(`p:${key}`)))
      return values.filter(
        ({ value }, i) => value !== null && Buffer.compare(value, expects[i]!) === 0,
      ).length
    },
    close: () => {
      client.close()
      return Promise.resolve()
    },
  }
}
