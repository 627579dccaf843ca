/**
 * The `struct tmem_handle` the save subops write (docs/semantics.md "Op layout"), from the engine's OID words:
 * SAVE_GET_NEXT_PAGE and SAVE_GET_NEXT_INV (control.ts), and the head of each page record of
 * SAVE_GET_PAGES and SAVE_GET_CHANGES (changelog.ts). Allocation-free, unlike the codec's
 * `encodeHandleInto`, which takes bigints.
 */
import { writeU32LE } from '../util/le.js'

/** Writes a `struct tmem_handle` (v1: 32 bytes, v0: 16 bytes) from oid words at `oid[base]`. */
export function writeHandle(
  version: 0 | 1,
  data: Uint8Array,
  at: number,
  poolId: number,
  index: number,
  oid: Uint32Array,
  base: number,
): void {
  writeU32LE(data, at, poolId)
  writeU32LE(data, at + 4, index)
  const words = version === 0 ? 2 : 6
  for (let i = 0; i < words; i++) writeU32LE(data, at + 8 + 4 * i, oid[base + i]!)
}
