/**
 * Checks of the arguments JavaScript callers hand to `Host` (host.ts): data buffers, ABI
 * versions, ranges. Callers are not trusted to pass the types TypeScript promises.
 */
import { PAGE_SIZE } from '../abi/constants.js'
import type { OpScratch } from './op-scratch.js'

/**
 * Stands in for a data argument that is not a Uint8Array (a JS caller's mistake): too short
 * for any page or record, so it fails exactly as a short buffer does (-EFAULT where used).
 */
const UNUSABLE_BUFFER = new Uint8Array(0)

/** The caller's data argument: a buffer, none (null or undefined), or UNUSABLE_BUFFER. */
export function bufferArgument(data: unknown): Uint8Array | null {
  if (data === null || data === undefined) return null
  return data instanceof Uint8Array ? data : UNUSABLE_BUFFER
}

/** Whether `version` is an ABI version this host speaks (0 or 1). */
export function isAbiVersion(version: unknown): version is 0 | 1 {
  return version === 0 || version === 1
}

/** The 2012 range rule for READ/WRITE (docs/semantics.md "Decision: legacy and unknown commands"). */
export function rangeValid(s: OpScratch): boolean {
  if (s.tmemOffset > PAGE_SIZE || s.pfnOffset > PAGE_SIZE || s.len > PAGE_SIZE) return false
  if (s.len !== 0 && (s.tmemOffset + s.len > PAGE_SIZE || s.pfnOffset + s.len > PAGE_SIZE)) {
    return false
  }
  return true
}

/** Whether `[offset, offset + length)` are whole numbers that lie inside `buffer`. */
export function isRange(buffer: Uint8Array, offset: number, length: number): boolean {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length)) return false
  return offset >= 0 && length >= 0 && offset + length <= buffer.length
}
