/**
 * Batches for the raw drivers (`drivers.ts`): one request carries many pages, as tmem's
 * `putMany`/`getMany` do, so that the batch cases (`1x64b`, `8x16b`) compare like with like.
 *
 * - Redis: `MSET k1 v1 ... kn vn` (one `+OK`) and `MGET k1 ... kn` (an array of n bulk strings).
 * - memcached (meta protocol): n pipelined `ms <key> 4096 q` (quiet: nothing comes back for a
 *   stored value, only failures) then `mn`, whose `MN` ends the batch; n pipelined
 *   `mg <key> v q O<i>` (quiet: a miss says nothing, a hit says `VA 4096 O<i>` and the value)
 *   then `mn`. The opaque token `O<i>` names the entry each value belongs to, so every page read
 *   is checked against the page put under its own key, byte for byte, as for single gets.
 *
 * A waiter sees the reply one unit at a time (a line, or a value line and its value, as the
 * protocol's `measure` cuts them) and says when the request's reply is complete.
 */
import { PAGE } from './corpus.js'

const CR = 13
const LF = 10

/** One request's reply, fed unit by unit; `unit` returns true on the last one. */
export interface Waiter {
  unit(bytes: Uint8Array, offset: number, length: number): boolean
  reject(error: Error): void
}

/** The bytes of one request: a head per entry (and the page after it, for a put). */
export function batchRequest(
  head: string,
  entryHeads: readonly string[],
  pages: readonly Uint8Array[] | null,
  tail: string,
): Buffer {
  let bytes = head.length + tail.length
  for (const entry of entryHeads) bytes += entry.length + (pages === null ? 0 : PAGE + 2)
  const buffer = Buffer.allocUnsafe(bytes)
  let at = buffer.write(head, 0, 'latin1')
  for (let i = 0; i < entryHeads.length; i++) {
    at += buffer.write(entryHeads[i]!, at, 'latin1')
    if (pages === null) continue
    buffer.set(pages[i]!, at)
    at += PAGE
    buffer[at++] = CR
    buffer[at++] = LF
  }
  buffer.write(tail, at, 'latin1')
  return buffer
}

export function redisMsetRequest(keys: Uint32Array, pages: readonly Uint8Array[]): Buffer {
  const heads = Array.from(keys, (key) => {
    const name = `p:${key}`
    return `$${name.length}\r\n${name}\r\n$${PAGE}\r\n`
  })
  return batchRequest(`*${1 + 2 * keys.length}\r\n$4\r\nMSET\r\n`, heads, pages, '')
}

export function redisMgetRequest(keys: Uint32Array): Buffer {
  const heads = Array.from(keys, (key) => {
    const name = `p:${key}`
    return `$${name.length}\r\n${name}\r\n`
  })
  return batchRequest(`*${1 + keys.length}\r\n$4\r\nMGET\r\n`, heads, null, '')
}

export function memcachedPutManyRequest(keys: Uint32Array, pages: readonly Uint8Array[]): Buffer {
  const heads = Array.from(keys, (key) => `ms p:${key} ${PAGE} q\r\n`)
  return batchRequest('', heads, pages, 'mn\r\n')
}

export function memcachedGetManyRequest(keys: Uint32Array): Buffer {
  const heads = Array.from(keys, (key, i) => `mg p:${key} v q O${i}\r\n`)
  return batchRequest('', heads, null, 'mn\r\n')
}

function text(bytes: Uint8Array, offset: number, length: number): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset + offset, Math.min(length, 120))
    .toString('latin1')
    .trim()
}

/** True when the value at bytes[at..at+PAGE) is `expect`. */
function samePage(bytes: Uint8Array, at: number, expect: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(bytes.buffer, bytes.byteOffset + at, PAGE), expect) === 0
}

/** Settles a batch: resolves with `value`, or rejects with the first failure seen. */
abstract class BatchWaiter<T> implements Waiter {
  protected failure: Error | null = null
  readonly #resolve: (value: T) => void
  readonly #reject: (error: Error) => void

  constructor(resolve: (value: T) => void, reject: (error: Error) => void) {
    this.#resolve = resolve
    this.#reject = reject
  }

  abstract unit(bytes: Uint8Array, offset: number, length: number): boolean

  reject(error: Error): void {
    this.#reject(error)
  }

  protected settle(value: T): true {
    if (this.failure !== null) this.#reject(this.failure)
    else this.#resolve(value)
    return true
  }
}

/** MSET: one `+OK`. */
export class RedisPutMany extends BatchWaiter<void> {
  unit(bytes: Uint8Array, offset: number, length: number): boolean {
    if (bytes[offset] !== 0x2b /* + */)
      this.failure = new Error(`Redis: ${text(bytes, offset, length)}`)
    return this.settle(undefined)
  }
}

/** MGET: `*n`, then n bulk strings; resolves with how many were the expected pages. */
export class RedisGetMany extends BatchWaiter<number> {
  readonly #expects: readonly Uint8Array[]
  #seen = -1
  #good = 0

  constructor(
    expects: readonly Uint8Array[],
    resolve: (good: number) => void,
    reject: (error: Error) => void,
  ) {
    super(resolve, reject)
    this.#expects = expects
  }

  unit(bytes: Uint8Array, offset: number, length: number): boolean {
    if (this.#seen < 0) {
      if (bytes[offset] !== 0x2a /* * */) {
        this.failure = new Error(`Redis: ${text(bytes, offset, length)}`)
        return this.settle(0)
      }
      this.#seen = 0
      return this.#expects.length === 0 ? this.settle(0) : false
    }
    const i = this.#seen++
    // `$4096\r\n` + value + CRLF; `$-1` is a miss.
    const valueAt = bytes.indexOf(LF, offset) + 1
    if (
      bytes[offset] === 0x24 &&
      offset + length - 2 - valueAt === PAGE &&
      samePage(bytes, valueAt, this.#expects[i]!)
    )
      this.#good++
    return this.#seen === this.#expects.length ? this.settle(this.#good) : false
  }
}

/** True for the `MN` line that ends a memcached batch. */
function isMn(bytes: Uint8Array, offset: number): boolean {
  return bytes[offset] === 0x4d && bytes[offset + 1] === 0x4e
}

/** The number of the ` O<digits>` flag in the line bytes[from, to), or -1. */
function opaque(bytes: Uint8Array, from: number, to: number): number {
  for (let at = from; at + 2 < to; at++) {
    if (bytes[at] !== 0x20 || bytes[at + 1] !== 0x4f /* O */) continue
    let value = 0
    let digits = 0
    for (let d = at + 2; d < to; d++, digits++) {
      const digit = bytes[d]! - 0x30
      if (digit < 0 || digit > 9) break
      value = value * 10 + digit
    }
    return digits > 0 ? value : -1
  }
  return -1
}

/** Quiet `ms` x n + `mn`: any line before `MN` is a failure (quiet mode hides only HD). */
export class MemcachedPutMany extends BatchWaiter<void> {
  unit(bytes: Uint8Array, offset: number, length: number): boolean {
    if (isMn(bytes, offset)) return this.settle(undefined)
    this.failure ??= new Error(`memcached: ${text(bytes, offset, length)}`)
    return false
  }
}

/** Quiet `mg` x n + `mn`: a `VA 4096 O<i>` and its value per hit; counts the right pages. */
export class MemcachedGetMany extends BatchWaiter<number> {
  readonly #expects: readonly Uint8Array[]
  readonly #seen: Uint8Array
  #good = 0

  constructor(
    expects: readonly Uint8Array[],
    resolve: (good: number) => void,
    reject: (error: Error) => void,
  ) {
    super(resolve, reject)
    this.#expects = expects
    this.#seen = new Uint8Array(expects.length)
  }

  unit(bytes: Uint8Array, offset: number, length: number): boolean {
    if (isMn(bytes, offset)) return this.settle(this.#good)
    if (bytes[offset] !== 0x56 || bytes[offset + 1] !== 0x41) {
      this.failure ??= new Error(`memcached: ${text(bytes, offset, length)}`)
      return false
    }
    const lineEnd = bytes.indexOf(LF, offset) + 1
    const i = opaque(bytes, offset, lineEnd)
    const valueBytes = offset + length - 2 - lineEnd
    if (
      i >= 0 &&
      i < this.#expects.length &&
      this.#seen[i] === 0 &&
      valueBytes === PAGE &&
      samePage(bytes, lineEnd, this.#expects[i]!)
    ) {
      this.#seen[i] = 1
      this.#good++
    }
    return false
  }
}
