/**
 * copyBytes against a naive byte-at-a-time memmove: random buffers, offsets (aligned and
 * not), lengths, and source and target in the same ArrayBuffer (overlapping or not).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { copyBytes } from '../../src/util/bytes.js'

function naiveMove(buffer: Uint8Array, from: number, to: number, length: number): void {
  const snapshot = Uint8Array.from(buffer)
  for (let i = 0; i < length; i++) buffer[to + i] = snapshot[from + i]!
}

void test('copyBytes equals a naive memmove for every range and alignment', () => {
  fc.assert(
    fc.property(
      fc.boolean(),
      fc.nat(15),
      fc.nat(15),
      fc.nat(120),
      fc.nat(120),
      fc.nat(130),
      fc.uint8Array({ minLength: 512, maxLength: 512 }),
      (shared, sourceBase, targetBase, sourceStart, targetStart, length, fill) => {
        const a = new ArrayBuffer(512)
        const b = shared ? a : new ArrayBuffer(512)
        new Uint8Array(a).set(fill)
        if (!shared) new Uint8Array(b).set(fill.map((x) => x ^ 0x5a))
        const source = new Uint8Array(a, sourceBase, 300)
        const target = new Uint8Array(b, targetBase, 300)
        const expectedA = Uint8Array.from(new Uint8Array(a))
        const expectedB = shared ? expectedA : Uint8Array.from(new Uint8Array(b))
        // The oracle: move the bytes one at a time in the whole buffers.
        if (shared) naiveMove(expectedA, sourceBase + sourceStart, targetBase + targetStart, length)
        else
          for (let i = 0; i < length; i++)
            expectedB[targetBase + targetStart + i] = expectedA[sourceBase + sourceStart + i]!
        copyBytes(source, sourceStart, target, targetStart, length)
        assert.deepEqual(new Uint8Array(b), expectedB)
        if (!shared) assert.deepEqual(new Uint8Array(a), expectedA)
      },
    ),
    { numRuns: 3000 },
  )
})

void test('copyBytes moves NaN bit patterns unchanged', () => {
  const source = new Uint8Array(64)
  const view = new DataView(source.buffer)
  view.setUint32(8, 0x7ff00001, true) // a signalling NaN
  view.setUint32(12, 0x7ff40000, true)
  view.setUint32(16, 0xffffffff, true)
  view.setUint32(20, 0xfff7ffff, true)
  const target = new Uint8Array(128)
  copyBytes(source, 8, target, 16, 48)
  assert.deepEqual(target.subarray(16, 64), source.subarray(8, 56))
})
