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
} from '../abi/constants.js'
import { TMEM_HANDLE_BYTES_V1 } from '../abi/layout.js'
import type { CtrlOp, TmemOp } from '../abi/types.js'
import type { TmemControlClient } from '../client/control.js'
import { CONTROL_DATA_BYTES_MAX } from '../server/frame.js'
import { SESSION_DESTROY, emptySession } from '../server/session-frame.js'
import type { ControlChannel } from './channel.js'

export interface NetworkChannelOptions {
  /** Serve SAVE_GET_NEXT_PAGE from SAVE_GET_PAGES batches. Default true. */
  prefetch?: boolean
  /** Bytes asked for per batch. Default 1 MiB (the control frame limit). */
  batchBytes?: number
}

/** A page record: 40-byte header (handle, kind, 0) and the page. */
const RECORD_BYTES = PAGE_RECORD_HEADER_BYTES + PAGE_SIZE

interface Batch {
  poolId: number
  bytes: Uint8Array
  count: number
  next: number
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
export function networkChannel(client: TmemControlClient, options: NetworkChannelOptions = {}): ControlChannel & {
  destroyClient(cliId: number): Promise<boolean>
} {
  const prefetch = options.prefetch ?? true
  const batchBytes = Math.min(options.batchBytes ?? CONTROL_DATA_BYTES_MAX, CONTROL_DATA_BYTES_MAX)
  if (batchBytes < RECORD_BYTES) throw new RangeError(`A batch holds at least one page record (${RECORD_BYTES} bytes)`)
  let batch: Batch | null = null

  const send = async (op: TmemOp, data: Uint8Array | null | undefined): Promise<number> => {
    const subop = 'ctrl' in op && op.cmd === TMEM_CONTROL ? op.ctrl.subop : -1
    const arg1 = 'ctrl' in op ? op.ctrl.arg1 : 0
    let input: Uint8Array | null = null
    let output: number | undefined
    if (subop === TMEMC_RESTORE_PUT_PAGE) input = data ?? null
    else if (subop === TMEMC_RESTORE_PAGES) input = data?.subarray(0, Math.min(arg1, data.length)) ?? null
    else if (subop === TMEMC_SAVE_GET_PAGES || subop === TMEMC_SAVE_GET_CHANGES) output = Math.min(arg1, CONTROL_DATA_BYTES_MAX, data?.length ?? 0)
    const reply = await client.control(op, input, output)
    if (data != null && reply.data.length > 0) data.set(reply.data.subarray(0, Math.min(data.length, reply.data.length)))
    return reply.rc
  }

  /** SAVE_GET_NEXT_PAGE from a batch: the handle (the record's first 32 bytes) and the page. */
  const nextPage = async (op: CtrlOp, data: Uint8Array): Promise<number> => {
    const poolId = op.poolId
    if (batch === null || batch.poolId !== poolId || batch.next >= batch.count) {
      const fetchOp: TmemOp = { cmd: TMEM_CONTROL, poolId, ctrl: { ...op.ctrl, subop: TMEMC_SAVE_GET_PAGES, arg1: batchBytes, arg2: 0 } }
      const fetched = await client.controlWith(fetchOp, null, batchBytes, (rc, bytes, offset) => {
        if (rc <= 0) return { rc, copy: null }
        return { rc, copy: bytes.slice(offset, offset + rc * RECORD_BYTES) }
      })
      if (fetched.rc === 0) {
        batch = null
        return -1 // no more pages: what SAVE_GET_NEXT_PAGE says at the end of the list
      }
      if (fetched.rc < 0 || fetched.copy === null) {
        batch = null
        return fetched.rc
      }
      batch = { poolId, bytes: fetched.copy, count: fetched.rc, next: 0 }
    }
    if (data.length < TMEM_HANDLE_BYTES_V1 + PAGE_SIZE) return -12
    const at = batch.next * RECORD_BYTES
    batch.next++
    data.set(batch.bytes.subarray(at, at + TMEM_HANDLE_BYTES_V1), 0)
    data.set(batch.bytes.subarray(at + PAGE_RECORD_HEADER_BYTES, at + RECORD_BYTES), TMEM_HANDLE_BYTES_V1)
    return 1
  }

  return {
    control(op, data) {
      if ('ctrl' in op && op.cmd === TMEM_CONTROL) {
        const subop = op.ctrl.subop
        if (subop === TMEMC_SAVE_BEGIN || subop === TMEMC_SAVE_END) batch = null
        if (prefetch && subop === TMEMC_SAVE_GET_NEXT_PAGE && data != null && op.ctrl.arg1 >= TMEM_HANDLE_BYTES_V1 + PAGE_SIZE) {
          return nextPage(op, data)
        }
      }
      return send(op, data)
    },
    async destroyClient(cliId) {
      const reply = await client.session({ ...emptySession(SESSION_DESTROY), clientId: cliId })
      return reply.rc === 1
    },
  }
}
