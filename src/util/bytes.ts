/**
 * Byte copies that allocate nothing, whatever the range.
 *
 * On Node 20 `Buffer.prototype.copy` is a native memcpy, but it wraps any source range that
 * is not the whole source in a new Uint8Array per call (Node 22 no longer does), as
 * `target.set(source.subarray(...))` would. On the data plane that is a view per page. So:
 *
 *  - a copy of a whole source goes to Buffer.prototype.copy (native, no allocation);
 *  - any other copy whose ends are 8-byte aligned in their buffers runs as a loop over
 *    Float64Array views of the two ArrayBuffers (bit patterns, NaNs included, are moved
 *    unchanged on x64); the views are made once per buffer and cached;
 *  - an unaligned copy (rare: the engine's and the wire's pages are aligned) goes to
 *    Buffer.prototype.copy and pays for one short-lived view;
 *  - the tail of a copy whose length is not a multiple of 8 is moved byte by byte.
 *
 * Measured here (bench-style loop, random frames of a 400 MB arena, median of 7): the
 * Float64Array loop 853 ns per page, Buffer.prototype.copy 821 ns.
 */
import { assert } from './assert.js'

type CopyFunction = (
  this: Uint8Array,
  target: Uint8Array,
  targetStart: number,
  sourceStart: number,
  sourceEnd: number,
) => number

const bufferCopy = (Buffer.prototype as unknown as { copy: CopyFunction }).copy

const wideViews = new WeakMap<ArrayBufferLike, Float64Array>()
// A four-entry cache in front of the WeakMap, replaced round robin and never reordered: the
// data plane copies between the same few buffers (arenas, a caller's page or a connection's
// receive and send buffers) over and over.
const cachedBuffers: (ArrayBufferLike | null)[] = [null, null, null, null]
const cachedViews: (Float64Array | null)[] = [null, null, null, null]
let cacheNext = 0

/**
 * The Float64Array over the whole of `buffer`, cached. It is made on first use only when
 * `create` is set: copies make views for their targets (arenas, scratch pages, a caller's or
 * a connection's long-lived buffers) but not for sources seen for the first time, such as a
 * socket's freshly received chunk, which would otherwise each pin a view in the WeakMap
 * until a full collection.
 */
function wideView(buffer: ArrayBufferLike, create: boolean): Float64Array | null {
  if (cachedBuffers[0] === buffer) return cachedViews[0]!
  if (cachedBuffers[1] === buffer) return cachedViews[1]!
  if (cachedBuffers[2] === buffer) return cachedViews[2]!
  if (cachedBuffers[3] === buffer) return cachedViews[3]!
  let view = wideViews.get(buffer)
  if (view === undefined) {
    if (!create) return null
    view = new Float64Array(buffer, 0, Math.floor(buffer.byteLength / 8))
    wideViews.set(buffer, view)
  }
  cachedBuffers[cacheNext] = buffer
  cachedViews[cacheNext] = view
  cacheNext = (cacheNext + 1) & 3
  return view
}

/**
 * Declares a long-lived buffer (an arena, a scratch page, a connection buffer) so that copies
 * out of it take the allocation-free wide path from the first one on.
 */
export function registerCopyBuffer(buffer: ArrayBufferLike): void {
  if (!wideViews.has(buffer))
    wideViews.set(buffer, new Float64Array(buffer, 0, Math.floor(buffer.byteLength / 8)))
}

/**
 * Buffer.prototype.copy on any two byte arrays: a native memcpy that makes one view per call
 * on Node 20. For control-plane copies of large blocks, where that view does not matter.
 */
export function nativeCopy(
  source: Uint8Array,
  sourceStart: number,
  target: Uint8Array,
  targetStart: number,
  length: number,
): void {
  bufferCopy.call(source, target, targetStart, sourceStart, sourceStart + length)
}

/** Copies `length` bytes from `source[sourceStart]` to `target[targetStart]`. */
export function copyBytes(
  source: Uint8Array,
  sourceStart: number,
  target: Uint8Array,
  targetStart: number,
  length: number,
): void {
  assert(sourceStart + length <= source.length, 'Copy source range is inside the source')
  assert(targetStart + length <= target.length, 'Copy target range is inside the target')
  if (length <= 0) return
  if (sourceStart === 0 && length === source.length) {
    bufferCopy.call(source, target, targetStart, 0, length)
    return
  }
  const from = source.byteOffset + sourceStart
  const to = target.byteOffset + targetStart
  const overlapping = source.buffer === target.buffer && from < to + length && to < from + length
  if (overlapping) {
    // Only the engine's own scratch pages share a buffer; move bytes in the safe direction.
    if (from < to) {
      for (let i = length - 1; i >= 0; i--) target[targetStart + i] = source[sourceStart + i]!
    } else {
      for (let i = 0; i < length; i++) target[targetStart + i] = source[sourceStart + i]!
    }
    return
  }
  if (((from | to) & 7) !== 0) {
    // Unaligned: the native copy, at the price of a short-lived view on Node 20. The engine's
    // own copies are always aligned; the wire protocol aligns pages in frames (protocol.md).
    bufferCopy.call(source, target, targetStart, sourceStart, sourceStart + length)
    return
  }
  const targetWide = wideView(target.buffer, true)!
  const sourceWide = wideView(source.buffer, false)
  if (sourceWide === null) {
    // A source never written through copyBytes (a socket chunk): the native copy.
    bufferCopy.call(source, target, targetStart, sourceStart, sourceStart + length)
    return
  }
  const words = length >>> 3
  let s = from >>> 3
  let t = to >>> 3
  const end = s + (words & ~7)
  while (s < end) {
    targetWide[t] = sourceWide[s]!
    targetWide[t + 1] = sourceWide[s + 1]!
    targetWide[t + 2] = sourceWide[s + 2]!
    targetWide[t + 3] = sourceWide[s + 3]!
    targetWide[t + 4] = sourceWide[s + 4]!
    targetWide[t + 5] = sourceWide[s + 5]!
    targetWide[t + 6] = sourceWide[s + 6]!
    targetWide[t + 7] = sourceWide[s + 7]!
    s += 8
    t += 8
  }
  for (let i = words & 7; i > 0; i--) targetWide[t++] = sourceWide[s++]!
  for (let i = words << 3; i < length; i++) target[targetStart + i] = source[sourceStart + i]!
}
