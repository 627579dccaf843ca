/**
 * Request bytes of the client library: frames carved from shared slabs, and object ids
 * written as little-endian u64 words. Used by the socket path and the shared-memory path.
 */
import type { OidInput } from './client.js'
import { writeU32LE } from '../util/le.js'

const U64_MASK = (1n << 64n) - 1n

/**
 * Request frames are carved from shared slabs, as `Buffer.allocUnsafe` does for small buffers
 * (but frames of a put, 4168 bytes, are too big for Node's pool): a frame then costs a view
 * instead of an ArrayBuffer of its own, which `Buffer.alloc` zero-filled per request and which
 * was the client's largest cost after the socket write. A frame stays valid as long as it is
 * referenced (a pending request keeps it for a replay); the GC frees a slab once none of its
 * frames is.
 */
const FRAME_SLAB_BYTES = 256 * 1024
let frameSlab = Buffer.allocUnsafeSlow(FRAME_SLAB_BYTES)
let frameSlabUsed = 0

/** A `bytes`-long frame whose first `zeroBytes` are zero; the rest is the caller's to fill. */
export function requestFrame(bytes: number, zeroBytes: number): Buffer {
  if (bytes > FRAME_SLAB_BYTES / 4) return Buffer.alloc(bytes)
  if (frameSlabUsed + bytes > FRAME_SLAB_BYTES) {
    frameSlab = Buffer.allocUnsafeSlow(FRAME_SLAB_BYTES)
    frameSlabUsed = 0
  }
  const frame = frameSlab.subarray(frameSlabUsed, frameSlabUsed + bytes)
  frameSlabUsed += (bytes + 7) & ~7
  frame.fill(0, 0, zeroBytes)
  return frame
}

/** Writes an oid as `words` little-endian u64 words (3 in v1, 1 in v0). */
export function writeOid(frame: Uint8Array, offset: number, words: number, oid: OidInput): void {
  if (typeof oid === 'number') {
    if (!Number.isSafeInteger(oid) || oid < 0) throw new RangeError('A numeric oid is a safe u53')
    writeU32LE(frame, offset, oid % 0x1_0000_0000)
    writeU32LE(frame, offset + 4, Math.floor(oid / 0x1_0000_0000))
    return
  }
  const parts: readonly (bigint | number)[] =
    typeof oid === 'bigint' ? [oid & U64_MASK, (oid >> 64n) & U64_MASK, oid >> 128n] : oid
  if (typeof oid === 'bigint' && (oid < 0n || oid >> 192n !== 0n)) {
    throw new RangeError('An oid is a 192-bit unsigned value')
  }
  for (let word = 0; word < 3; word++) {
    const value = BigInt(parts[word] ?? 0)
    if (value < 0n || value > U64_MASK) throw new RangeError('Each oid word is a u64')
    if (word >= words) {
      if (value !== 0n) throw new RangeError('A v0 oid has only one 64-bit word')
      continue
    }
    writeU32LE(frame, offset + 8 * word, Number(value & 0xffffffffn))
    writeU32LE(frame, offset + 8 * word + 4, Number(value >> 32n))
  }
}
