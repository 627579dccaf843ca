/**
 * The save/restore ControlChannel over a daemon's control connection (`connectControl`), with
 * the two things the in-process channel gets for free:
 *
 * - `destroyClient`, through the daemon's SESSION DESTROY request, so a restore the target
 *   refuses half-way is undone completely (RestoreError.cleanup 'destroyed', not 'left');
 * - page prefetch for saves: `saveClient` asks for one page per SAVE_GET_NEXT_PAGE, which over
 *   a socket costs a round trip per page. The channel answers those calls from batches of
 *   SAVE_GET_PAGES (about 250 pages per round trip), which walk the same per-pool cursor in
 *   the same order, so the stream is byte for byte what the page-by-page walk would give.
 *   A batch is dropped at SAVE_BEGIN, SAVE_END and whenever the saver moves to another pool.
 * - batched restore: a RESTORE_PUT_PAGE is answered 1 at once and its page record joins a
 *   RESTORE_PAGES batch (the engine runs the same put for each record), sent when full, up to
 *   RESTORE_DEPTH batches in flight. Any other call waits for every batch to be answered
 *   first, and so does `settle()`; a batch that failed makes that call (or the next put)
 *   throw a ChannelStepError naming the pages, and the restorer rolls back as for any
 *   refused step. `destroyClient` drops what was not sent.
 */
import {
  PAGE_RECORD_HEADER_BYTES,
  PAGE_SIZE,
  TMEMC_RESTORE_PAGES,
  TMEMC_RESTORE_PUT_PAGE,
  TMEMC_SAVE_BEGIN,
  TMEMC_SAVE_END,
  TMEMC_SAVE_GET_CHANGES,
  TMEMC_SAVE_GET_NEXT_PAGE,
  TMEMC_SAVE_GET_PAGES,
  TMEM_CONTROL,
  rcName,
} from '../abi/constants.js'
import { controlOp, encodeHandleInto } from '../abi/codec.js'
import { TMEM_HANDLE_BYTES_V1 } from '../abi/layout.js'
import { nativeCopy } from '../util/bytes.js'
import { readU32LE, writeU32LE } from '../util/le.js'
import type { CtrlOp, TmemOp } from '../abi/types.js'
import type { TmemControlClient } from '../client/control.js'
import { CONTROL_DATA_BYTES_MAX } from '../protocol/frame.js'
import { SESSION_DESTROY, emptySession } from '../protocol/session-frame.js'
import { ChannelStepError, type ControlChannel } from './channel.js'

export interface NetworkChannelOptions {
  /** Serve SAVE_GET_NEXT_PAGE from SAVE_GET_PAGES batches. Default true. */
  prefetch?: boolean
  /**
   * Send RESTORE_PUT_PAGE calls as RESTORE_PAGES batches, several in flight, answering each
   * call before it ran (see the module comment). Default true.
   */
  batchRestore?: boolean
  /** Bytes asked for per batch. Default 1 MiB (the control frame limit). */
  batchBytes?: number
}

/** A page record: 40-byte header (handle, kind, 0) and the page. */
const RECORD_BYTES = PAGE_RECORD_HEADER_BYTES + PAGE_SIZE
/** Restore batches in flight. */
const RESTORE_DEPTH = 4

interface Batch {
  poolId: number
  bytes: Uint8Array
  count: number
  next: number
}

/**
 * One control op over the connection: the page travels as the input of RESTORE_PUT_PAGE and
 * RESTORE_PAGES, and the tool buffer of SAVE_GET_PAGES/CHANGES comes back into `data`.
 */
async function sendControl(
  client: TmemControlClient,
  op: TmemOp,
  data: Uint8Array | null | undefined,
): Promise<number> {
  const subop = 'ctrl' in op && op.cmd === TMEM_CONTROL ? op.ctrl.subop : -1
  const arg1 = 'ctrl' in op ? op.ctrl.arg1 : 0
  let input: Uint8Array | null = null
  let output: number | undefined
  if (subop === TMEMC_RESTORE_PUT_PAGE) input = data ?? null
  else if (subop === TMEMC_RESTORE_PAGES)
    input = data?.subarray(0, Math.min(arg1, data.length)) ?? null
  else if (subop === TMEMC_SAVE_GET_PAGES || subop === TMEMC_SAVE_GET_CHANGES)
    output = Math.min(arg1, CONTROL_DATA_BYTES_MAX, data?.length ?? 0)
  const reply = await client.control(op, input, output)
  if (data != null && reply.data.length > 0)
    data.set(reply.data.subarray(0, Math.min(data.length, reply.data.length)))
  return reply.rc
}

/**
 * A ControlChannel for save and restore over a control connection.
 *
 * @example
 * ```ts
 * const control = await connectControl({ path: '/run/user/1000/tmem/control.sock' })
 * await saveClientToFile(networkChannel(control), 7, '/var/lib/tmem/7.tmem')
 * ```
 */
export function networkChannel(
  client: TmemControlClient,
  options: NetworkChannelOptions = {},
): ControlChannel & {
  destroyClient(cliId: number): Promise<boolean>
} {
  const prefetch = options.prefetch ?? true
  const batchBytes = Math.min(options.batchBytes ?? CONTROL_DATA_BYTES_MAX, CONTROL_DATA_BYTES_MAX)
  if (batchBytes < RECORD_BYTES)
    throw new RangeError(`A batch holds at least one page record (${RECORD_BYTES} bytes)`)
  const pages = new SavePrefetcher(client, batchBytes)
  const restore = options.batchRestore === false ? null : new RestoreBatcher(client, batchBytes)

  const run = (op: TmemOp, data: Uint8Array | null | undefined): Promise<number> | number => {
    if ('ctrl' in op && op.cmd === TMEM_CONTROL) {
      const subop = op.ctrl.subop
      if (subop === TMEMC_SAVE_BEGIN || subop === TMEMC_SAVE_END) pages.reset()
      if (
        prefetch &&
        subop === TMEMC_SAVE_GET_NEXT_PAGE &&
        data != null &&
        op.ctrl.arg1 >= TMEM_HANDLE_BYTES_V1 + PAGE_SIZE
      ) {
        return pages.nextPage(op, data)
      }
    }
    return sendControl(client, op, data)
  }

  return {
    control(op, data) {
      if (restore === null) return run(op, data)
      if (
        'ctrl' in op &&
        op.cmd === TMEM_CONTROL &&
        op.ctrl.subop === TMEMC_RESTORE_PUT_PAGE &&
        op.ctrl.arg1 === PAGE_SIZE &&
        data != null &&
        data.length >= PAGE_SIZE
      ) {
        return restore.put(op, data)
      }
      if (!restore.idle) return restore.settle().then(() => run(op, data))
      return run(op, data)
    },
    settle: () => restore?.settle() ?? Promise.resolve(),
    async destroyClient(cliId) {
      await restore?.drop()
      const reply = await client.session({ ...emptySession(SESSION_DESTROY), clientId: cliId })
      return reply.rc === 1
    },
  }
}

/**
 * SAVE_GET_NEXT_PAGE answered from SAVE_GET_PAGES batches (see the module comment): the batch
 * being read, the next one already asked for (double buffering), and spare batch buffers.
 */
class SavePrefetcher {
  readonly #client: TmemControlClient
  readonly #batchBytes: number
  #batch: Batch | null = null
  /** Batch buffers done with, for the next batches (at most two are alive: one read, one ahead). */
  readonly #spare: Uint8Array[] = []
  /** The next batch of `poolId`, and the one after it already asked for (double buffering). */
  #ahead: { poolId: number; batch: Promise<Batch | number> } | null = null

  constructor(client: TmemControlClient, batchBytes: number) {
    this.#client = client
    this.#batchBytes = batchBytes
  }

  /** Drops the batches (SAVE_BEGIN, SAVE_END). */
  reset(): void {
    this.#retire(this.#batch)
    this.#batch = null
    this.#ahead = null
  }

  nextPage(op: CtrlOp, data: Uint8Array): Promise<number> | number {
    if (data.length < TMEM_HANDLE_BYTES_V1 + PAGE_SIZE) return -12
    const batch = this.#batch
    if (batch !== null && batch.poolId === op.poolId && batch.next < batch.count)
      return this.#take(data)
    if (this.#ahead !== null && this.#ahead.poolId !== op.poolId) this.#ahead = null
    return this.#refill(op, data)
  }

  #retire(done: Batch | null): void {
    if (done !== null && this.#spare.length < 2) this.#spare.push(done.bytes)
  }

  /** SAVE_GET_PAGES for `poolId`: the records copied out, or the rc (0: no more pages). */
  #fetchBatch(op: CtrlOp, poolId: number): Promise<Batch | number> {
    const batchBytes = this.#batchBytes
    const fetchOp: TmemOp = {
      cmd: TMEM_CONTROL,
      poolId,
      ctrl: { ...op.ctrl, subop: TMEMC_SAVE_GET_PAGES, arg1: batchBytes, arg2: 0 },
    }
    const fetched = this.#client.controlWith(
      fetchOp,
      null,
      batchBytes,
      (rc, bytes, offset): Batch | number => {
        if (rc <= 0) return rc
        // The reply is valid only now: copy it into a spare batch buffer.
        const length = rc * RECORD_BYTES
        const copy = this.#spare.pop() ?? Buffer.allocUnsafeSlow(batchBytes)
        nativeCopy(bytes, offset, copy, 0, length)
        return { poolId, bytes: copy, count: rc, next: 0 }
      },
    )
    fetched.catch(() => undefined) // awaited later, or dropped with its batch
    return fetched
  }

  async #refill(op: CtrlOp, data: Uint8Array): Promise<number> {
    const poolId = op.poolId
    // The current batch is used up (or of another pool): its buffer serves a later batch.
    this.#retire(this.#batch)
    this.#batch = null
    const ahead = this.#ahead
    const next =
      ahead !== null && ahead.poolId === poolId ? ahead.batch : this.#fetchBatch(op, poolId)
    this.#ahead = null
    const got = await next
    if (typeof got === 'number') {
      this.#batch = null
      return got === 0 ? -1 : got // 0: no more pages, which SAVE_GET_NEXT_PAGE says with -1
    }
    this.#batch = got
    if (got.count * RECORD_BYTES + RECORD_BYTES <= this.#batchBytes) {
      // A short batch: the pool's list ended; nothing to ask for ahead.
    } else {
      this.#ahead = { poolId, batch: this.#fetchBatch(op, poolId) }
    }
    return this.#take(data)
  }

  /** SAVE_GET_NEXT_PAGE from the batch: the handle (the record's first 32 bytes) and the page. */
  #take(data: Uint8Array): number {
    const current = this.#batch!
    const at = current.next * RECORD_BYTES
    current.next++
    nativeCopy(current.bytes, at, data, 0, TMEM_HANDLE_BYTES_V1)
    nativeCopy(current.bytes, at + PAGE_RECORD_HEADER_BYTES, data, TMEM_HANDLE_BYTES_V1, PAGE_SIZE)
    return 1
  }
}

/** RESTORE_PUT_PAGE calls gathered into RESTORE_PAGES batches (see the module comment). */
class RestoreBatcher {
  readonly #client: TmemControlClient
  readonly #records: Uint8Array
  readonly #perBatch: number
  #count = 0
  #cliId = 0
  /** Pages handed over so far (puts answered), for the error message. */
  #pages = 0
  readonly #inFlight = new Set<Promise<void>>()
  #failure: ChannelStepError | null = null

  constructor(client: TmemControlClient, batchBytes: number) {
    this.#client = client
    this.#perBatch = Math.floor(batchBytes / RECORD_BYTES)
    this.#records = new Uint8Array(this.#perBatch * RECORD_BYTES)
  }

  /** No batch gathering or in flight. */
  get idle(): boolean {
    return this.#count === 0 && this.#inFlight.size === 0 && this.#failure === null
  }

  put(op: CtrlOp, page: Uint8Array): Promise<number> | number {
    if (this.#failure !== null) throw this.#failure
    if (this.#count > 0 && op.ctrl.cliId !== this.#cliId)
      return this.settle().then(() => this.put(op, page))
    this.#cliId = op.ctrl.cliId
    const at = this.#count * RECORD_BYTES
    const records = this.#records
    // The record: the v1 handle (RESTORE_PUT_PAGE carries the index in arg2), kind 1 (a put), 0.
    encodeHandleInto({ poolId: op.poolId, index: op.ctrl.arg2, oid: op.ctrl.oid }, 1, records, at)
    writeU32LE(records, at + TMEM_HANDLE_BYTES_V1, 1)
    writeU32LE(records, at + TMEM_HANDLE_BYTES_V1 + 4, 0)
    nativeCopy(page, 0, records, at + PAGE_RECORD_HEADER_BYTES, PAGE_SIZE)
    this.#count++
    this.#pages++
    if (this.#count < this.#perBatch) return 1
    this.#send()
    if (this.#inFlight.size < RESTORE_DEPTH) return 1
    return Promise.race(this.#inFlight).then(() => {
      if (this.#failure !== null) throw this.#failure
      return 1
    })
  }

  /** Sends what is gathered and waits for every batch; throws the first failure. */
  async settle(): Promise<void> {
    this.#send()
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight)
    if (this.#failure !== null) throw this.#failure
  }

  /** Forgets what was not sent and waits for what was (the client is about to go). */
  async drop(): Promise<void> {
    this.#count = 0
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight)
    this.#failure = null
  }

  #send(): void {
    const count = this.#count
    if (count === 0) return
    this.#count = 0
    const bytes = count * RECORD_BYTES
    const first = this.#pages - count + 1
    const poolId = readU32LE(this.#records, 0)
    const op = controlOp(TMEMC_RESTORE_PAGES, this.#cliId, 0, bytes)
    // controlWith copies the records into its frame: the buffer is free again at once.
    const sent: Promise<void> = this.#client
      .controlWith(op, this.#records.subarray(0, bytes), 0, (rc) => rc)
      .then(
        (rc) => {
          if (rc !== count && this.#failure === null) {
            this.#failure = new ChannelStepError(
              'TMEMC_RESTORE_PAGES',
              rc,
              poolId,
              `RESTORE_PAGES of the stream's pages ${first} to ${first + count - 1} (one batch of RESTORE_PUT_PAGE) returned ${rcName(rc)} (${rc})`,
            )
          }
        },
        (error: unknown) => {
          if (this.#failure === null) {
            this.#failure = new ChannelStepError(
              'TMEMC_RESTORE_PAGES',
              -5,
              poolId,
              `RESTORE_PAGES of the stream's pages ${first} to ${first + count - 1} failed: ${error instanceof Error ? error.message : String(error)}`,
            )
          }
        },
      )
      .finally(() => this.#inFlight.delete(sent))
    this.#inFlight.add(sent)
  }
}
