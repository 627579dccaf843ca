/**
 * The engine's page copy: caller's buffer to frame (put) and frame to caller's buffer (get).
 *
 * On Node 20 the public native copies either take a whole source (TypedArray#set,
 * Buffer#fill) or make a view of a partial one per call (Buffer#copy), and a frame is always
 * part of an arena. util/bytes.ts copyBytes avoids the view with a Float64Array loop, which
 * costs about twice a memcpy on a page in cache. Node's own buffer binding has the memmove
 * that Buffer#copy ends in, taking (source, target, targetStart, sourceStart, sourceEnd) and
 * allocating nothing; it is reached through `process.binding('buffer')` (deprecated in the
 * docs only, DEP0111, no warning unless --pending-deprecation). It is used only after a
 * self-test of its signature and of overlapping moves at load; when it is missing or behaves
 * differently, every copy goes to copyBytes. Measurements: bench/results.md (2026-12-07).
 */
import { copyBytes } from '../util/bytes.js'

type NativeCopy = (
  source: Uint8Array,
  target: Uint8Array,
  targetStart: number,
  sourceStart: number,
  sourceEnd: number,
) => number

/** Node's buffer-binding copy when it passes a self-test, else null. */
function findNativeCopy(): NativeCopy | null {
  try {
    const binding = (process as unknown as { binding(name: string): { copy?: unknown } }).binding(
      'buffer',
    )
    const copy = binding.copy
    if (typeof copy !== 'function') return null
    const native = copy as NativeCopy
    const source = new Uint8Array(16).map((_, i) => i + 1)
    const target = new Uint8Array(16)
    const copied = native(source, target, 3, 5, 9)
    const expected = [0, 0, 0, 6, 7, 8, 9, 0]
    if (copied !== 4 || expected.some((value, i) => target[i] !== value)) return null
    // Overlapping ranges of one buffer, both ways: a memmove, not a memcpy, so copyPage
    // need not compare the two buffers (reading `.buffer` costs about 60 ns a call).
    native(source, source, 2, 0, 4)
    native(source, source, 8, 9, 13)
    const moved = [1, 2, 1, 2, 3, 4, 7, 8, 10, 11, 12, 13, 13]
    if (moved.some((value, i) => source[i] !== value)) return null
    return native
  } catch {
    return null
  }
}

const found = findNativeCopy()
let native: NativeCopy | null = found

/** Whether page copies go to the native memmove ('native') or to copyBytes ('wide'). */
export function pageCopyMode(): 'native' | 'wide' {
  return native === null ? 'wide' : 'native'
}

/** Selects the copy for benchmarks; 'native' only takes effect when the self-test passed. */
export function setPageCopyMode(mode: 'native' | 'wide'): void {
  native = mode === 'native' ? found : null
}

/**
 * Copies `length` bytes from `source[sourceStart]` to `target[targetStart]`. Never allocates.
 * Node's binding copy trusts its arguments (a memmove with no bounds check), and the source
 * of a put is a client's buffer, so both ranges are checked here, whatever the caller did:
 * four comparisons against a 4 KiB copy.
 */
export function copyPage(
  source: Uint8Array,
  sourceStart: number,
  target: Uint8Array,
  targetStart: number,
  length: number,
): void {
  if (native !== null) {
    if (
      !(sourceStart >= 0 && targetStart >= 0 && length >= 0) ||
      sourceStart + length > source.length ||
      targetStart + length > target.length
    ) {
      throw new RangeError('A page copy runs outside its buffers')
    }
    native(source, target, targetStart, sourceStart, sourceStart + length)
    return
  }
  copyBytes(source, sourceStart, target, targetStart, length)
}
