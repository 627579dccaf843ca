/**
 * The decoded form of `struct tmem_op`: a plain object that mirrors the C struct with `u.`
 * dropped and camelCase names. 64-bit fields are `bigint`, 32-bit fields are `number`
 * (u32 fields in 0..2^32-1, `poolId` signed). Which arm is present follows `cmd`:
 * TMEM_CONTROL uses `ctrl`; NEW_POOL, AUTH and RESTORE_NEW use `creat`; all others `gen`.
 * In v0 an oid decodes to `[object, 0n, 0n]`.
 */

export type Oid = [bigint, bigint, bigint]

export interface CreatArm {
  /** `[uuid_lo, uuid_hi]` */
  uuid: [bigint, bigint]
  flags: number
  arg1: number
}

export interface CtrlArm {
  subop: number
  cliId: number
  arg1: number
  arg2: number
  oid: Oid
  /** A guest handle: an address in the caller's space. Unused by this host (buffers travel with the op). */
  buf: bigint
}

export interface GenArm {
  oid: Oid
  index: number
  tmemOffset: number
  pfnOffset: number
  len: number
  cmfn: bigint
}

export interface CreatOp {
  cmd: number
  poolId: number
  creat: CreatArm
}

export interface CtrlOp {
  cmd: number
  poolId: number
  ctrl: CtrlArm
}

export interface GenOp {
  cmd: number
  poolId: number
  gen: GenArm
}

export type TmemOp = CreatOp | CtrlOp | GenOp

/** Decoded `struct tmem_handle` (save/restore record). */
export interface TmemHandle {
  poolId: number
  index: number
  oid: Oid
}
