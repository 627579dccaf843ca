/**
 * Byte layouts of `struct tmem_op` (v1: 56 bytes, v0: 40 bytes) and `struct tmem_handle`
 * (v1: 32 bytes, v0: 16 bytes) for x86_64, little-endian, natural C alignment (docs/semantics.md "Op layout").
 * Field keys keep the C names. The engine reads ops straight from these offsets with a
 * DataView, so a VMM can hand it a guest's op bytes untranslated.
 *
 * v1 tmem_op (all offsets in bytes):
 *
 *   0        4        8                16               24       28       32
 *   +--------+--------+----------------+----------------+--------+--------+
 *   | cmd    |pool_id | creat: uuid[0] | uuid[1]        | flags  | arg1   |
 *   |        |        | ctrl:  subop|cli_id| arg1|arg2  | oid[0] ...      |  oid to 48, buf 48..56
 *   |        |        | gen:   oid[0]  | oid[1]         | oid[2]          |
 *   +--------+--------+----------------+----------------+-----------------+
 *   32      36           40          44      48               56
 *   | index | tmem_offset| pfn_offset | len   | cmfn            |   (gen arm)
 *
 * All of it is checked against a C compiler's offsetof/sizeof by test/abi/c-layout.test.ts.
 */

export const TMEM_OP_BYTES_V1 = 56
export const TMEM_OP_BYTES_V0 = 40
export const TMEM_HANDLE_BYTES_V1 = 32
export const TMEM_HANDLE_BYTES_V0 = 16

/** Size of `struct tmem_op` for an ABI version (0 or 1). */
export function opBytes(version: number): number {
  return version === 0 ? TMEM_OP_BYTES_V0 : TMEM_OP_BYTES_V1
}

/** Size of `struct tmem_handle` for an ABI version (0 or 1). */
export function handleBytes(version: number): number {
  return version === 0 ? TMEM_HANDLE_BYTES_V0 : TMEM_HANDLE_BYTES_V1
}

/** Offsets shared by both versions. */
export const OP_CMD = 0
export const OP_POOL_ID = 4
export const OP_CREAT_UUID0 = 8
export const OP_CREAT_UUID1 = 16
export const OP_CREAT_FLAGS = 24
export const OP_CREAT_ARG1 = 28
export const OP_CTRL_SUBOP = 8
export const OP_CTRL_CLI_ID = 12
export const OP_CTRL_ARG1 = 16
export const OP_CTRL_ARG2 = 20

/** Offsets of the fields whose place differs between v1 and v0. */
export interface OpLayout {
  readonly bytes: number
  /** Object id words: three u64 in v1, one u64 in v0. */
  readonly oidWords: number
  readonly ctrlOid: number
  readonly ctrlBuf: number
  readonly genOid: number
  readonly genIndex: number
  readonly genTmemOffset: number
  readonly genPfnOffset: number
  readonly genLen: number
  readonly genCmfn: number
}

export const OP_LAYOUT_V1: OpLayout = {
  bytes: TMEM_OP_BYTES_V1,
  oidWords: 3,
  ctrlOid: 24,
  ctrlBuf: 48,
  genOid: 8,
  genIndex: 32,
  genTmemOffset: 36,
  genPfnOffset: 40,
  genLen: 44,
  genCmfn: 48,
}

export const OP_LAYOUT_V0: OpLayout = {
  bytes: TMEM_OP_BYTES_V0,
  oidWords: 1,
  ctrlOid: 24,
  ctrlBuf: 32,
  genOid: 8,
  genIndex: 16,
  genTmemOffset: 20,
  genPfnOffset: 24,
  genLen: 28,
  genCmfn: 32,
}

/** Offsets of `struct tmem_handle`; the oid is three u64 words in v1 and one in v0. */
export const HANDLE_POOL_ID = 0
export const HANDLE_INDEX = 4
export const HANDLE_OID = 8

/** The layout table for an ABI version (0 or 1). */
export function opLayout(version: number): OpLayout {
  return version === 0 ? OP_LAYOUT_V0 : OP_LAYOUT_V1
}

// Load-time checks: every field lies inside the struct, and the gen arm fields do not overlap.
for (const layout of [OP_LAYOUT_V1, OP_LAYOUT_V0]) {
  const fields = [
    layout.genOid,
    layout.genOid + 8 * layout.oidWords,
    layout.genTmemOffset,
    layout.genPfnOffset,
    layout.genLen,
    layout.genCmfn,
  ]
  if (fields[1] !== layout.genIndex) throw new Error('Layout gen oid must end at index')
  for (let i = 1; i < fields.length; i++) {
    if ((fields[i] ?? 0) <= (fields[i - 1] ?? 0)) throw new Error('Layout gen fields overlap')
  }
  if (layout.genCmfn + 8 !== layout.bytes) throw new Error('Layout cmfn must end the struct')
  if (layout.ctrlBuf + 8 !== layout.bytes) throw new Error('Layout buf must end the struct')
}
