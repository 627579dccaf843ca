/**
 * The codec of the public ABI: `struct tmem_op` and `struct tmem_handle` to and from bytes
 * (v1 and v0, docs/semantics.md "Op layout"), pool flag words (docs/semantics.md "Pool flags") and the Xen tools' UUID strings (docs/semantics.md "Shared-pool authorisation").
 *
 * Invariants:
 * - Encoding writes every byte of the struct: fields little-endian (stated at every DataView
 *   call), unused union bytes zero, so no stale caller bytes leak onto the wire.
 * - Encoding checks every field before it writes a byte: when it throws, the target is untouched.
 * - Decoding is total: any bytes long enough decode to an op, and the arm follows `cmd` alone.
 * - `decodeOp(encodeOp(op, v), v)` deep-equals `op` for every op that encodes.
 *
 * This is control-plane code: it allocates its results and uses `bigint` for 64-bit words. The
 * engine's data plane reads guest op bytes in place through the offsets of `layout.ts`.
 */
import { TMEM_AUTH, TMEM_CONTROL, TMEM_NEW_POOL, TMEM_RESTORE_NEW } from './constants.js'
import { checkS32, checkU32, checkU64 } from './check.js'
import {
  HANDLE_INDEX,
  HANDLE_OID,
  HANDLE_POOL_ID,
  OP_CMD,
  OP_CREAT_ARG1,
  OP_CREAT_FLAGS,
  OP_CREAT_UUID0,
  OP_CREAT_UUID1,
  OP_CTRL_ARG1,
  OP_CTRL_ARG2,
  OP_CTRL_CLI_ID,
  OP_CTRL_SUBOP,
  OP_POOL_ID,
  handleBytes,
  opLayout,
  type OpLayout,
} from './layout.js'
import type { CreatArm, CtrlArm, CtrlOp, GenArm, Oid, TmemHandle, TmemOp } from './types.js'

/** An ABI version this codec speaks: 1 (192-bit oids) or 0 (64-bit oids). */
export type AbiVersion = 0 | 1

/** The union arm of `struct tmem_op` that a command uses. */
export type OpArm = 'creat' | 'ctrl' | 'gen'

export {
  type PoolFlagFields,
  type PoolFlagOptions,
  parsePoolFlags,
  poolFlags,
  uuidFromString,
  uuidToString,
} from './flags.js'

/**
 * The union arm a command uses: `ctrl` for TMEM_CONTROL, `creat` for NEW_POOL, AUTH and
 * RESTORE_NEW, `gen` for every other code (DESTROY_POOL and unknown codes included).
 */
export function opArm(cmd: number): OpArm {
  if (cmd === TMEM_CONTROL) return 'ctrl'
  if (cmd === TMEM_NEW_POOL || cmd === TMEM_AUTH || cmd === TMEM_RESTORE_NEW) return 'creat'
  return 'gen'
}

/**
 * Encodes an op into a new buffer of 56 (v1) or 40 (v0) bytes.
 *
 * @param op The op; it must carry the arm that `opArm(op.cmd)` names.
 * @param version ABI version of the layout, 1 by default.
 * @returns The struct bytes, unused union bytes zero.
 * @throws {TypeError} When the op lacks the arm its command uses, or a field has the wrong type.
 * @throws {RangeError} When a field is out of range, or a v0 oid has non-zero words 1 or 2.
 * @example
 * ```ts
 * const bytes = encodeOp({ cmd: TMEM_NEW_POOL, poolId: 0,
 *   creat: { uuid: [0n, 0n], flags: poolFlags({ persistent: true }), arg1: 0 } })
 * bytes.length // 56
 * ```
 */
/** A TMEM_CONTROL op: `subop` on client `cliId` (pool, arg1, arg2 as the subop reads them; OID zero). */
export function controlOp(subop: number, cliId: number, poolId = 0, arg1 = 0, arg2 = 0): CtrlOp {
  return {
    cmd: TMEM_CONTROL,
    poolId,
    ctrl: { subop, cliId, arg1, arg2, oid: [0n, 0n, 0n], buf: 0n },
  }
}

export function encodeOp(op: TmemOp, version: AbiVersion = 1): Uint8Array {
  checkVersion(version)
  const bytes = new Uint8Array(opLayout(version).bytes)
  encodeOpInto(op, version, bytes, 0)
  return bytes
}

/**
 * Encodes an op into `target` at `offset`, overwriting exactly the struct's bytes.
 * Throws as `encodeOp` does, and also a RangeError when the target has too little room.
 */
export function encodeOpInto(
  op: TmemOp,
  version: AbiVersion,
  target: Uint8Array,
  offset: number,
): void {
  checkVersion(version)
  const layout = opLayout(version)
  checkRoom(target.length, offset, layout.bytes, `A v${version} tmem_op`)
  checkU32(op.cmd, 'cmd')
  checkS32(op.poolId, 'poolId')
  const view = new DataView(target.buffer, target.byteOffset + offset, layout.bytes)
  switch (opArm(op.cmd)) {
    case 'creat': {
      const creat = creatOf(op)
      checkCreat(creat)
      writeHeader(view, op)
      writeCreat(view, creat)
      return
    }
    case 'ctrl': {
      const ctrl = ctrlOf(op)
      checkCtrl(ctrl, version)
      writeHeader(view, op)
      writeCtrl(view, layout, ctrl)
      return
    }
    case 'gen': {
      const gen = genOf(op)
      checkGen(gen, version)
      writeHeader(view, op)
      writeGen(view, layout, gen)
      return
    }
  }
}

/**
 * Decodes the op at `offset`. The arm follows `cmd` (see `opArm`); u32 fields come back as
 * non-negative numbers, `poolId` signed, 64-bit fields as bigint. A v0 oid (or `arg3`) decodes
 * to `[object, 0n, 0n]`. Unused union bytes are ignored, as the hypervisor ignores them.
 *
 * @throws {RangeError} When fewer than 56 (v1) or 40 (v0) bytes follow `offset`.
 * @example
 * ```ts
 * const op = decodeOp(bytes)
 * if ('gen' in op) console.log(op.gen.oid, op.gen.index)
 * ```
 */
export function decodeOp(bytes: Uint8Array, version: AbiVersion = 1, offset = 0): TmemOp {
  checkVersion(version)
  const layout = opLayout(version)
  checkRoom(bytes.length, offset, layout.bytes, `A v${version} tmem_op`)
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, layout.bytes)
  const cmd = view.getUint32(OP_CMD, true)
  const poolId = view.getInt32(OP_POOL_ID, true)
  switch (opArm(cmd)) {
    case 'creat':
      return { cmd, poolId, creat: readCreat(view) }
    case 'ctrl':
      return { cmd, poolId, ctrl: readCtrl(view, layout) }
    case 'gen':
      return { cmd, poolId, gen: readGen(view, layout) }
  }
}

/** Encodes a save/restore handle into a new buffer of 32 (v1) or 16 (v0) bytes. */
export function encodeHandle(handle: TmemHandle, version: AbiVersion = 1): Uint8Array {
  checkVersion(version)
  const bytes = new Uint8Array(handleBytes(version))
  encodeHandleInto(handle, version, bytes, 0)
  return bytes
}

/** Encodes a handle into `target` at `offset`; throws as `encodeOpInto` does. */
export function encodeHandleInto(
  handle: TmemHandle,
  version: AbiVersion,
  target: Uint8Array,
  offset: number,
): void {
  checkVersion(version)
  const size = handleBytes(version)
  checkRoom(target.length, offset, size, `A v${version} tmem_handle`)
  checkU32(handle.poolId, 'poolId')
  checkU32(handle.index, 'index')
  checkOid(handle.oid, 'oid', version)
  const view = new DataView(target.buffer, target.byteOffset + offset, size)
  view.setUint32(HANDLE_POOL_ID, handle.poolId, true)
  view.setUint32(HANDLE_INDEX, handle.index, true)
  writeOid(view, HANDLE_OID, version === 1 ? 3 : 1, handle.oid)
}

/** Decodes the handle at `offset` (pool id unsigned); throws RangeError on short input. */
export function decodeHandle(bytes: Uint8Array, version: AbiVersion = 1, offset = 0): TmemHandle {
  checkVersion(version)
  const size = handleBytes(version)
  checkRoom(bytes.length, offset, size, `A v${version} tmem_handle`)
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, size)
  return {
    poolId: view.getUint32(HANDLE_POOL_ID, true),
    index: view.getUint32(HANDLE_INDEX, true),
    oid: readOid(view, HANDLE_OID, version === 1 ? 3 : 1),
  }
}

// Arms: pick, check, write, read.

function creatOf(op: TmemOp): CreatArm {
  if ('creat' in op && isObject(op.creat)) return op.creat
  throw armMismatch(op.cmd, 'creat')
}

function ctrlOf(op: TmemOp): CtrlArm {
  if ('ctrl' in op && isObject(op.ctrl)) return op.ctrl
  throw armMismatch(op.cmd, 'ctrl')
}

function genOf(op: TmemOp): GenArm {
  if ('gen' in op && isObject(op.gen)) return op.gen
  throw armMismatch(op.cmd, 'gen')
}

function armMismatch(cmd: number, arm: OpArm): TypeError {
  return new TypeError(`Command ${cmd} uses the ${arm} arm but the op has no ${arm} object`)
}

function checkCreat(creat: CreatArm): void {
  if (!Array.isArray(creat.uuid) || creat.uuid.length !== 2) {
    throw new TypeError('Field creat.uuid must be an array of two bigints')
  }
  checkU64(creat.uuid[0], 'creat.uuid[0]')
  checkU64(creat.uuid[1], 'creat.uuid[1]')
  checkU32(creat.flags, 'creat.flags')
  checkU32(creat.arg1, 'creat.arg1')
}

function checkCtrl(ctrl: CtrlArm, version: AbiVersion): void {
  checkU32(ctrl.subop, 'ctrl.subop')
  checkU32(ctrl.cliId, 'ctrl.cliId')
  checkU32(ctrl.arg1, 'ctrl.arg1')
  checkU32(ctrl.arg2, 'ctrl.arg2')
  checkOid(ctrl.oid, 'ctrl.oid', version)
  checkU64(ctrl.buf, 'ctrl.buf')
}

function checkGen(gen: GenArm, version: AbiVersion): void {
  checkOid(gen.oid, 'gen.oid', version)
  checkU32(gen.index, 'gen.index')
  checkU32(gen.tmemOffset, 'gen.tmemOffset')
  checkU32(gen.pfnOffset, 'gen.pfnOffset')
  checkU32(gen.len, 'gen.len')
  checkU64(gen.cmfn, 'gen.cmfn')
}

/** Zeroes the whole struct, then writes cmd and pool_id: padding never keeps old bytes. */
function writeHeader(view: DataView, op: TmemOp): void {
  for (let offset = 0; offset < view.byteLength; offset += 4) view.setUint32(offset, 0, true)
  view.setUint32(OP_CMD, op.cmd, true)
  view.setInt32(OP_POOL_ID, op.poolId, true)
}

function writeCreat(view: DataView, creat: CreatArm): void {
  writeU64(view, OP_CREAT_UUID0, creat.uuid[0])
  writeU64(view, OP_CREAT_UUID1, creat.uuid[1])
  view.setUint32(OP_CREAT_FLAGS, creat.flags, true)
  view.setUint32(OP_CREAT_ARG1, creat.arg1, true)
}

function writeCtrl(view: DataView, layout: OpLayout, ctrl: CtrlArm): void {
  view.setUint32(OP_CTRL_SUBOP, ctrl.subop, true)
  view.setUint32(OP_CTRL_CLI_ID, ctrl.cliId, true)
  view.setUint32(OP_CTRL_ARG1, ctrl.arg1, true)
  view.setUint32(OP_CTRL_ARG2, ctrl.arg2, true)
  writeOid(view, layout.ctrlOid, layout.oidWords, ctrl.oid)
  writeU64(view, layout.ctrlBuf, ctrl.buf)
}

function writeGen(view: DataView, layout: OpLayout, gen: GenArm): void {
  writeOid(view, layout.genOid, layout.oidWords, gen.oid)
  view.setUint32(layout.genIndex, gen.index, true)
  view.setUint32(layout.genTmemOffset, gen.tmemOffset, true)
  view.setUint32(layout.genPfnOffset, gen.pfnOffset, true)
  view.setUint32(layout.genLen, gen.len, true)
  writeU64(view, layout.genCmfn, gen.cmfn)
}

function readCreat(view: DataView): CreatArm {
  return {
    uuid: [readU64(view, OP_CREAT_UUID0), readU64(view, OP_CREAT_UUID1)],
    flags: view.getUint32(OP_CREAT_FLAGS, true),
    arg1: view.getUint32(OP_CREAT_ARG1, true),
  }
}

function readCtrl(view: DataView, layout: OpLayout): CtrlArm {
  return {
    subop: view.getUint32(OP_CTRL_SUBOP, true),
    cliId: view.getUint32(OP_CTRL_CLI_ID, true),
    arg1: view.getUint32(OP_CTRL_ARG1, true),
    arg2: view.getUint32(OP_CTRL_ARG2, true),
    oid: readOid(view, layout.ctrlOid, layout.oidWords),
    buf: readU64(view, layout.ctrlBuf),
  }
}

function readGen(view: DataView, layout: OpLayout): GenArm {
  return {
    oid: readOid(view, layout.genOid, layout.oidWords),
    index: view.getUint32(layout.genIndex, true),
    tmemOffset: view.getUint32(layout.genTmemOffset, true),
    pfnOffset: view.getUint32(layout.genPfnOffset, true),
    len: view.getUint32(layout.genLen, true),
    cmfn: readU64(view, layout.genCmfn),
  }
}

// Words.

/** Writes one (v0) or three (v1) oid words; the caller has checked that v0 words 1, 2 are 0. */
function writeOid(view: DataView, offset: number, words: number, oid: Oid): void {
  writeU64(view, offset, oid[0])
  if (words === 1) return
  writeU64(view, offset + 8, oid[1])
  writeU64(view, offset + 16, oid[2])
}

function readOid(view: DataView, offset: number, words: number): Oid {
  if (words === 1) return [readU64(view, offset), 0n, 0n]
  return [readU64(view, offset), readU64(view, offset + 8), readU64(view, offset + 16)]
}

function readU64(view: DataView, offset: number): bigint {
  return view.getBigUint64(offset, true)
}

function writeU64(view: DataView, offset: number, value: bigint): void {
  view.setBigUint64(offset, value, true)
}

// Checks. Wrong type is a TypeError, right type with a wrong value a RangeError.

function checkVersion(version: unknown): void {
  if (version !== 0 && version !== 1) {
    throw new RangeError(`ABI version must be 0 or 1, got ${String(version)}`)
  }
}

function checkRoom(length: number, offset: number, size: number, what: string): void {
  if (!Number.isInteger(offset) || offset < 0) {
    throw new RangeError(`Offset must be a non-negative integer, got ${offset}`)
  }
  if (length < offset + size) {
    const left = Math.max(0, length - offset)
    throw new RangeError(`${what} needs ${size} bytes at offset ${offset} but ${left} remain`)
  }
}

function checkOid(oid: unknown, name: string, version: AbiVersion): void {
  if (!Array.isArray(oid) || oid.length !== 3) {
    throw new TypeError(`Field ${name} must be an array of three bigints`)
  }
  checkU64(oid[0], `${name}[0]`)
  checkU64(oid[1], `${name}[1]`)
  checkU64(oid[2], `${name}[2]`)
  if (version === 0 && (oid[1] !== 0n || oid[2] !== 0n)) {
    throw new RangeError(`Field ${name} has non-zero words 1 or 2, which ABI v0 cannot carry`)
  }
}

function isObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null
}
