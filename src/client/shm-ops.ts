/**
 * The client's ops over a shared-memory channel (`shm-channel.ts`): one promise per call for
 * the single-op API, and batches (`putMany`, `getMany`) that fill the ring with one waiter
 * object and one promise for the whole batch. Outcomes are decoded exactly as the socket
 * path decodes replies (`client.ts`), so the API and its errors are the same either way.
 */
import {
  EEMPTY,
  PAGE_SIZE,
  TMEM_GET_PAGE,
  TMEM_NEW_PAGE,
  TMEM_PUT_PAGE,
  TMEM_READ,
  TMEM_WRITE,
} from '../abi/constants.js'
import { TMEM_OP_BYTES_V1 } from '../abi/layout.js'
import { copyBytes } from '../util/bytes.js'
import { rcError } from './errors.js'
import type { ShmChannel, ShmPump, ShmResend, ShmWaiter } from './shm-channel.js'

/** How a single op's rc becomes its promise's value. */
export const RESULT_RAW = 0
export const RESULT_STORED = 1
export const RESULT_PAGE = 2
export const RESULT_VOID = 3
export const RESULT_POOL = 4

/** True for the commands whose op names a frame. */
export function needsFrame(cmd: number): boolean {
  return (
    cmd === TMEM_PUT_PAGE ||
    cmd === TMEM_GET_PAGE ||
    cmd === TMEM_READ ||
    cmd === TMEM_WRITE ||
    cmd === TMEM_NEW_PAGE
  )
}

/** One op's waiter, and its pump when it had to wait for room. */
class OneOp implements ShmWaiter, ShmPump {
  readonly #resolve: (value: unknown) => void
  readonly #reject: (error: Error) => void
  readonly #result: number
  readonly #cmd: number
  readonly #poolId: number
  readonly #into: Uint8Array | undefined
  #op: Uint8Array | null = null
  #page: Uint8Array | null = null

  constructor(
    resolve: (value: unknown) => void,
    reject: (error: Error) => void,
    result: number,
    cmd: number,
    poolId: number,
    into: Uint8Array | undefined,
  ) {
    this.#resolve = resolve
    this.#reject = reject
    this.#result = result
    this.#cmd = cmd
    this.#poolId = poolId
    this.#into = into
  }

  /** Keeps copies of the op and page to submit later. */
  hold(op: Uint8Array, page: Uint8Array | null): void {
    // Copies, not views: `op` is the client's scratch and a Buffer's slice() would share it.
    this.#op = new Uint8Array(TMEM_OP_BYTES_V1)
    this.#op.set(op.subarray(0, TMEM_OP_BYTES_V1))
    this.#page = page === null ? null : new Uint8Array(PAGE_SIZE)
    if (page !== null) this.#page!.set(page.subarray(0, PAGE_SIZE))
  }

  pump(channel: ShmChannel): boolean {
    return channel.submitNow(this.#op!, 0, this.#page, 0, needsFrame(this.#cmd), this, 0)
  }

  drain(resend: ShmResend): void {
    resend(this.#op!, 0, this.#page, 0, this, 0)
  }

  shmDone(_tag: number, rc: number, bytes: Uint8Array, pageAt: number): void {
    try {
      this.#resolve(
        decodeResult(this.#result, rc, this.#cmd, this.#poolId, bytes, pageAt, this.#into),
      )
    } catch (error) {
      this.#reject(error as Error)
    }
  }

  shmFailed(_tag: number, error: Error): void {
    this.#reject(error)
  }
}

function decodeResult(
  result: number,
  rc: number,
  cmd: number,
  poolId: number,
  bytes: Uint8Array,
  pageAt: number,
  into: Uint8Array | undefined,
): unknown {
  switch (result) {
    case RESULT_RAW: {
      const hit = rc === 1 && pageAt >= 0 && (cmd === TMEM_GET_PAGE || cmd === TMEM_READ)
      return { rc, page: hit ? copyPage(bytes, pageAt, into) : null }
    }
    case RESULT_PAGE:
      if (rc === 0 || rc === -EEMPTY) return null
      if (rc < 0) throw rcError(rc, cmd, poolId)
      return copyPage(bytes, pageAt, into)
    case RESULT_POOL:
      if (rc < 0) throw rcError(rc, cmd)
      return rc
    default:
      if (rc < 0) throw rcError(rc, cmd, poolId)
      return result === RESULT_STORED ? rc === 1 : undefined
  }
}

/**
 * The page at `bytes[pageAt..]`, copied into `into` or into a new array. A new page is made by
 * `slice` (one allocation and a memcpy): `copyBytes` into a fresh array would also make and
 * cache a wide view of its buffer, one more object per page (and most of a get's client CPU).
 */
function copyPage(bytes: Uint8Array, pageAt: number, into: Uint8Array | undefined): Uint8Array {
  if (into === undefined) return bytes.slice(pageAt, pageAt + PAGE_SIZE)
  if (pageAt === 0 && bytes.length === PAGE_SIZE) {
    // A frame view (shm-channel.ts): TypedArray set is the builtin memcpy, with none of
    // Buffer.prototype.copy's argument checks.
    into.set(bytes)
    return into
  }
  copyBytes(bytes, pageAt, into, 0, PAGE_SIZE)
  return into
}

/**
 * Runs one op through the channel: `op[0..]` is the encoded op (a scratch the caller reuses),
 * `page` a put's page. Resolves as `result` says.
 */
export function shmCall<T>(
  channel: ShmChannel,
  op: Uint8Array,
  page: Uint8Array | null,
  result: number,
  cmd: number,
  poolId: number,
  into?: Uint8Array,
): Promise<T> {
  // The executor is one shared function, not a closure made per op: it leaves the settle
  // functions where the line after it picks them up.
  const promise = new Promise<T>(captureSettle)
  const waiter = new OneOp(capturedResolve, capturedReject, result, cmd, poolId, into)
  capturedResolve = capturedReject = settleNothing
  try {
    if (channel.trySubmit(op, 0, page, 0, needsFrame(cmd), waiter, 0)) return promise
    waiter.hold(op, page)
    channel.enqueue(waiter)
  } catch (error) {
    waiter.shmFailed(0, error as Error)
  }
  return promise
}

function settleNothing(): void {}

let capturedResolve: (value: unknown) => void = settleNothing
let capturedReject: (error: Error) => void = settleNothing

/** The executor of every `shmCall` promise (the Promise constructor runs it at once). */
function captureSettle<T>(resolve: (value: T) => void, reject: (error: Error) => void): void {
  capturedResolve = resolve as (value: unknown) => void
  capturedReject = reject
}

/** Writes the op of batch entry `i` into `target[0..]`. */
export type EncodeEntry = (target: Uint8Array, i: number) => void

/**
 * A batch of puts or gets: one waiter for all its ops, one promise. It submits as many as
 * fit, waits at the head of the queue for room, and settles when every op has finished:
 * resolving with the per-entry results, or rejecting with the first error.
 */
export class ShmBatch<T> implements ShmWaiter, ShmPump {
  readonly results: T[]
  readonly #count: number
  readonly #cmd: number
  readonly #poolId: number
  readonly #encode: EncodeEntry
  readonly #pages: readonly Uint8Array[] | null
  readonly #into: Uint8Array | null
  readonly #scratch: Uint8Array
  readonly #resolve: (results: T[]) => void
  readonly #reject: (error: Error) => void
  #next = 0
  #done = 0
  #error: Error | null = null

  constructor(
    cmd: number,
    poolId: number,
    count: number,
    encode: EncodeEntry,
    pages: readonly Uint8Array[] | null,
    into: Uint8Array | null,
    settle: { resolve: (results: T[]) => void; reject: (error: Error) => void },
  ) {
    this.#cmd = cmd
    this.#poolId = poolId
    this.#count = count
    this.#encode = encode
    this.#pages = pages
    this.#into = into
    this.#scratch = new Uint8Array(TMEM_OP_BYTES_V1)
    this.results = new Array<T>(count)
    this.#resolve = settle.resolve
    this.#reject = settle.reject
    if (count === 0) settle.resolve(this.results)
  }

  pump(channel: ShmChannel): boolean {
    while (this.#next < this.#count) {
      const i = this.#next
      this.#encode(this.#scratch, i)
      const page = this.#pages === null ? null : this.#pages[i]!
      if (!channel.submitNow(this.#scratch, 0, page, 0, true, this, i)) return false
      this.#next++
    }
    return true
  }

  drain(resend: ShmResend): void {
    while (this.#next < this.#count) {
      const i = this.#next++
      const op = new Uint8Array(TMEM_OP_BYTES_V1)
      this.#encode(op, i)
      resend(op, 0, this.#pages === null ? null : this.#pages[i]!, 0, this, i)
    }
  }

  shmDone(tag: number, rc: number, bytes: Uint8Array, pageAt: number): void {
    if (this.#cmd === TMEM_PUT_PAGE) {
      if (rc < 0) this.#error ??= rcError(rc, this.#cmd, this.#poolId)
      this.results[tag] = (rc === 1) as T
    } else if (rc === 1 && pageAt >= 0) {
      const into =
        this.#into === null
          ? undefined
          : this.#into.subarray(tag * PAGE_SIZE, (tag + 1) * PAGE_SIZE)
      this.results[tag] = copyPage(bytes, pageAt, into) as T
    } else {
      if (rc < 0 && rc !== -EEMPTY) this.#error ??= rcError(rc, this.#cmd, this.#poolId)
      this.results[tag] = null as T
    }
    this.#finishOne()
  }

  shmFailed(tag: number, error: Error): void {
    this.#error ??= error
    this.results[tag] = (this.#cmd === TMEM_PUT_PAGE ? false : null) as T
    this.#finishOne()
  }

  #finishOne(): void {
    if (++this.#done < this.#count) return
    if (this.#error !== null) this.#reject(this.#error)
    else this.#resolve(this.results)
  }
}
