/**
 * The control channel save and restore talk through: one call, `control(op, data)`, that
 * runs a privileged op (TMEM_CONTROL, TMEM_AUTH, TMEM_RESTORE_NEW) on some host and returns
 * its return value. `data` is the tool buffer, in and out: the engine writes the LIST text,
 * a pool UUID or a handle plus page into it, and reads a restore page from it.
 *
 * `hostChannel(host)` is the in-process engine. A network control client fits in a few
 * lines (see docs/save-restore.md): copy the reply's buffer back into `data`, return `rc`.
 *
 * The optional `destroyClient` is what makes a failed restore atomic: no control subop can
 * remove a client again (TMEMC_DESTROY only thaws, docs/semantics.md "Control subops"), so a channel without it
 * leaves an emptied client behind when the target refuses a restore half-way.
 */
import { TMEM_AUTH, TMEM_CONTROL, TMEM_RESTORE_NEW } from '../abi/constants.js'
import type { CreatOp, CtrlOp, Oid, TmemOp } from '../abi/types.js'

/** A privileged path to one tmem host. */
export interface ControlChannel {
  /**
   * Runs a privileged op; `data` is the tool buffer (read and written in place). Returns the
   * op's return value. The caller does not touch `op` or `data` until the call has returned
   * (or its promise settled), and may reuse both afterwards.
   */
  control(op: TmemOp, data?: Uint8Array | null): Promise<number> | number
  /**
   * Optional: removes a client completely, as for a dead domain. Used only to undo a restore
   * that the target refused half-way. Returns false when there was no such client.
   */
  destroyClient?(cliId: number): Promise<boolean> | boolean
  /**
   * Optional: a channel that answers some calls before they ran (the network channel batches
   * RESTORE_PUT_PAGE) runs them all now; it rejects with a ChannelStepError if one failed.
   * The restorer calls it before it reports success.
   */
  settle?(): Promise<void>
}

/**
 * A step a channel ran later than it answered it (a batch of RESTORE_PUT_PAGE) and that
 * failed: thrown by the channel's next call, or by `settle`.
 */
export class ChannelStepError extends Error {
  override readonly name = 'ChannelStepError'
  readonly step: string
  readonly rc: number
  readonly poolId: number

  constructor(step: string, rc: number, poolId: number, message: string) {
    super(message)
    this.step = step
    this.rc = rc
    this.poolId = poolId
  }
}

/** The part of the engine's `Host` a host channel needs. */
export interface ControlHost {
  control(op: TmemOp, data?: Uint8Array | null): number
  destroyClient(clientId: number): boolean
}

/**
 * The in-process channel: `host.control(op, data)`, and `host.destroyClient` for rollback.
 *
 * @example
 * ```ts
 * const channel = hostChannel(host)
 * await saveClient(channel, 7, memory.sink)
 * ```
 */
export function hostChannel(host: ControlHost): ControlChannel {
  return {
    control: (op, data) => host.control(op, data ?? null),
    destroyClient: (cliId) => host.destroyClient(cliId),
  }
}

/** The largest client id a save or restore can name (0xFFFF means "all clients"). */
export const CLI_ID_MAX = 0xfffe

export function checkCliId(cliId: number): void {
  if (!Number.isInteger(cliId) || cliId < 0 || cliId > CLI_ID_MAX) {
    throw new RangeError(`Client id must be an integer from 0 to ${CLI_ID_MAX}, got ${cliId}`)
  }
}

/**
 * A reusable TMEM_CONTROL op for one client. Callers set the fields they need and call
 * `run`; the object is not retained by the channel beyond the call (see ControlChannel).
 */
export class Ctrl {
  readonly #channel: ControlChannel
  readonly op: CtrlOp

  constructor(channel: ControlChannel, cliId: number) {
    this.#channel = channel
    this.op = {
      cmd: TMEM_CONTROL,
      poolId: 0,
      ctrl: { subop: 0, cliId, arg1: 0, arg2: 0, oid: [0n, 0n, 0n], buf: 0n },
    }
  }

  /** Runs `subop` with these fields (the OID defaults to zero). */
  run(
    subop: number,
    poolId = 0,
    arg1 = 0,
    arg2 = 0,
    data: Uint8Array | null = null,
    oid?: Oid,
  ): Promise<number> | number {
    const op = this.op
    op.poolId = poolId
    op.ctrl.subop = subop
    op.ctrl.arg1 = arg1
    op.ctrl.arg2 = arg2
    if (oid !== undefined) op.ctrl.oid = oid
    else op.ctrl.oid = ZERO_OID
    return this.#channel.control(op, data)
  }
}

const ZERO_OID: Oid = [0n, 0n, 0n]

/** TMEM_RESTORE_NEW: a pool with these flags and UUID in `slot` of client `cliId`. */
export function restoreNewOp(
  cliId: number,
  slot: number,
  flags: number,
  uuid: readonly [bigint, bigint],
): CreatOp {
  return {
    cmd: TMEM_RESTORE_NEW,
    poolId: slot,
    creat: { uuid: [uuid[0], uuid[1]], flags, arg1: cliId },
  }
}

/** TMEM_AUTH: authorise (1) client `cliId` for the shared pool with this UUID. */
export function authOp(cliId: number, uuid: readonly [bigint, bigint], auth: number): CreatOp {
  return {
    cmd: TMEM_AUTH,
    poolId: 0,
    creat: { uuid: [uuid[0], uuid[1]], flags: auth, arg1: cliId },
  }
}
