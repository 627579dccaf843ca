/**
 * Byte copies without allocation. `Buffer.prototype.copy` is a native memcpy that accepts any
 * Uint8Array as source and target, where `target.set(source.subarray(...))` would allocate a
 * view per call.
 */

type CopyFunction = (
  this: Uint8Array,
  target: Uint8Array,
  targetStart: number,
  sourceStart: number,
  sourceEnd: number,
) => number

const bufferCopy = (Buffer.prototype as unknown as { copy: CopyFunction }).copy

/** Copies `length` bytes from `source[sourceStart]` to `target[targetStart]`. */
export function copyBytes(
  source: Uint8Array,
  sourceStart: number,
  target: Uint8Array,
  targetStart: number,
  length: number,
): void {
  bufferCopy.call(source, target, targetStart, sourceStart, sourceStart + length)
}
