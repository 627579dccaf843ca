/**
 * Byte copies through `Buffer.prototype.copy`, which accepts any Uint8Array as source and
 * target. It allocates nothing only when the copy reads the whole source (source start 0,
 * length = source length): on Node 20 any other source range is wrapped in a new view per
 * call, as `target.set(source.subarray(...))` would be. The target offset costs nothing. So
 * on the data plane, copy out of a frame through `Frames.frameView`, not the arena.
 * (test/engine/no-alloc.test.ts counts the collections.)
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
