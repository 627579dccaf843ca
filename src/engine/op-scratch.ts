/**
 * The decoded form of the op being executed, and its two decoders: from a `struct tmem_op` in
 * ABI layout (allocation-free on the put/get/flush path) and from a decoded `TmemOp`. `Host`
 * fills its one instance and hands it, as an argument, to the command that runs it (control
 * and the change log read the fields they need; the core's page commands take the oid, the
 * index and the window from it). Reused by every call.
 */
import {
  EFAULT,
  TMEM_AUTH,
  TMEM_CONTROL,
  TMEM_NEW_POOL,
  TMEM_READ,
  TMEM_RESTORE_NEW,
  TMEM_WRITE,
} from '../abi/constants.js'
import {
  OP_CMD,
  OP_CREAT_ARG1,
  OP_CREAT_FLAGS,
  OP_CREAT_UUID0,
  OP_CTRL_ARG1,
  OP_CTRL_ARG2,
  OP_CTRL_CLI_ID,
  OP_CTRL_SUBOP,
  OP_POOL_ID,
  opLayout,
} from '../abi/layout.js'
import type { TmemOp } from '../abi/types.js'

const U32 = 0x100000000

/**
 * A little-endian u32 at `bytes[at]`, which the caller has checked lies inside `bytes` (so no
 * element can be undefined; util/le.ts readU32LE pays a check per byte for that).
 */
function readU32LE(bytes: Uint8Array, at: number): number {
  return (
    (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0
  )
}

export class OpScratch {
  cmd = 0
  poolId = 0
  /** 192-bit oid as six little-endian u32 words (oid[0] low, oid[0] high, oid[1] low, ...). */
  readonly oid = new Uint32Array(6)
  index = 0
  tmemOffset = 0
  pfnOffset = 0
  len = 0
  cmfn = 0n
  uuidLo = 0n
  uuidHi = 0n
  flags = 0
  arg1 = 0
  arg2 = 0
  subop = 0
  cliId = 0
}

/**
 * Reads the op at `bytes[offset]` (56 bytes v1, 40 bytes v0) into `s`; false when it does
 * not fit. `withCmfn` reads the guest frame number too (only a frame resolver needs it, and
 * reading it makes a bigint).
 */
export function readOpBytes(
  s: OpScratch,
  bytes: Uint8Array,
  offset: number,
  version: 0 | 1,
  withCmfn: boolean,
): boolean {
  const layout = opLayout(version)
  if (!(bytes instanceof Uint8Array) || !Number.isInteger(offset) || offset < 0) return false
  if (offset + layout.bytes > bytes.length) return false
  s.cmd = readU32LE(bytes, offset + OP_CMD)
  s.poolId = readU32LE(bytes, offset + OP_POOL_ID) | 0
  if (s.cmd === TMEM_CONTROL) {
    s.subop = readU32LE(bytes, offset + OP_CTRL_SUBOP)
    s.cliId = readU32LE(bytes, offset + OP_CTRL_CLI_ID)
    s.arg1 = readU32LE(bytes, offset + OP_CTRL_ARG1)
    s.arg2 = readU32LE(bytes, offset + OP_CTRL_ARG2)
    readOid(s.oid, bytes, offset + layout.ctrlOid, layout.oidWords)
  } else if (s.cmd === TMEM_NEW_POOL || s.cmd === TMEM_AUTH || s.cmd === TMEM_RESTORE_NEW) {
    s.uuidLo = readU64(bytes, offset + OP_CREAT_UUID0)
    s.uuidHi = readU64(bytes, offset + OP_CREAT_UUID0 + 8)
    s.flags = readU32LE(bytes, offset + OP_CREAT_FLAGS)
    s.arg1 = readU32LE(bytes, offset + OP_CREAT_ARG1)
  } else {
    readOid(s.oid, bytes, offset + layout.genOid, layout.oidWords)
    s.index = readU32LE(bytes, offset + layout.genIndex)
    // The window is READ's and WRITE's alone: other commands skip three words of decode.
    const ranged = s.cmd === TMEM_READ || s.cmd === TMEM_WRITE
    s.tmemOffset = ranged ? readU32LE(bytes, offset + layout.genTmemOffset) : 0
    s.pfnOffset = ranged ? readU32LE(bytes, offset + layout.genPfnOffset) : 0
    s.len = ranged ? readU32LE(bytes, offset + layout.genLen) : 0
    s.cmfn = withCmfn ? readU64(bytes, offset + layout.genCmfn) : 0n
  }
  return true
}

function readU64(bytes: Uint8Array, at: number): bigint {
  return BigInt(readU32LE(bytes, at)) | (BigInt(readU32LE(bytes, at + 4)) << 32n)
}

function readOid(oid: Uint32Array, bytes: Uint8Array, at: number, words: number): void {
  oid[0] = readU32LE(bytes, at)
  oid[1] = readU32LE(bytes, at + 4)
  if (words === 1) {
    oid[2] = oid[3] = oid[4] = oid[5] = 0
    return
  }
  oid[2] = readU32LE(bytes, at + 8)
  oid[3] = readU32LE(bytes, at + 12)
  oid[4] = readU32LE(bytes, at + 16)
  oid[5] = readU32LE(bytes, at + 20)
}

/** Fills `s` from a decoded op; returns 0, or -EFAULT for a malformed op object. */
export function fillOp(s: OpScratch, op: TmemOp, version: 0 | 1): number {
  try {
    s.cmd = u32(op.cmd)
    s.poolId = s32(op.poolId)
    if ('ctrl' in op) {
      s.subop = u32(op.ctrl.subop)
      s.cliId = u32(op.ctrl.cliId)
      s.arg1 = u32(op.ctrl.arg1)
      s.arg2 = u32(op.ctrl.arg2)
      fillOid(s.oid, op.ctrl.oid, version)
    } else if ('creat' in op) {
      s.uuidLo = u64(op.creat.uuid[0])
      s.uuidHi = u64(op.creat.uuid[1])
      s.flags = u32(op.creat.flags)
      s.arg1 = u32(op.creat.arg1)
    } else if ('gen' in op) {
      fillOid(s.oid, op.gen.oid, version)
      s.index = u32(op.gen.index)
      s.tmemOffset = u32(op.gen.tmemOffset)
      s.pfnOffset = u32(op.gen.pfnOffset)
      s.len = u32(op.gen.len)
      s.cmfn = u64(op.gen.cmfn)
    } else {
      return -EFAULT
    }
    return 0
  } catch {
    return -EFAULT
  }
}

function fillOid(words: Uint32Array, oid: readonly bigint[], version: 0 | 1): void {
  for (let i = 0; i < 3; i++) {
    const value = u64(oid[i] ?? 0n)
    if (version === 0 && i > 0 && value !== 0n) throw new RangeError('A v0 oid has one word')
    words[2 * i] = Number(value & 0xffffffffn)
    words[2 * i + 1] = Number(value >> 32n)
  }
}

function u32(value: number): number {
  if (!Number.isInteger(value) || value < 0 || value >= U32) throw new RangeError('Not a u32')
  return value
}

function s32(value: number): number {
  if (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff) {
    throw new RangeError('Not an s32')
  }
  return value
}

function u64(value: bigint): bigint {
  if (typeof value !== 'bigint' || value < 0n || value > 0xffffffffffffffffn) {
    throw new RangeError('Not a u64')
  }
  return value
}
