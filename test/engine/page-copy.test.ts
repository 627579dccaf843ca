/**
 * The engine's page copy (src/engine/page-copy.ts) in both of its modes, against a naive byte
 * loop: whole pages and odd ranges, aligned or not, between separate buffers and within one
 * buffer, overlapping ranges included (both modes move them as memmove does). The native mode
 * is the one the engine runs whenever the self-test at load passes; on this Node it must.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { copyPage, pageCopyMode, setPageCopyMode } from '../../src/engine/page-copy.js'

function naive(
  source: Uint8Array,
  sourceStart: number,
  target: Uint8Array,
  targetStart: number,
  length: number,
): void {
  const bytes = source.slice(sourceStart, sourceStart + length)
  for (let i = 0; i < length; i++) target[targetStart + i] = bytes[i]!
}

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length)
  let x = seed | 1
  for (let i = 0; i < length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    bytes[i] = x & 0xff
  }
  return bytes
}

const CASES: [number, number, number][] = [
  [0, 0, 4096],
  [4096, 0, 4096],
  [8192, 4096, 4096],
  [3, 5, 4096],
  [8, 4000, 100],
  [1, 2, 0],
  [12345, 7, 999],
]

for (const mode of ['native', 'wide'] as const) {
  void test(`copyPage (${mode}) copies exactly the range, between buffers and within one`, () => {
    setPageCopyMode(mode)
    try {
      for (const [sourceStart, targetStart, length] of CASES) {
        const source = pattern(16384, sourceStart + 1)
        const target = pattern(16384, 99)
        const expected = target.slice()
        naive(source, sourceStart, expected, targetStart, length)
        copyPage(source, sourceStart, target, targetStart, length)
        assert.deepEqual(target, expected, `${sourceStart} -> ${targetStart}, ${length} bytes`)
        const one = pattern(16384, 5)
        const oneExpected = one.slice()
        naive(one, sourceStart, oneExpected, targetStart + 8192, Math.min(length, 4096))
        copyPage(one, sourceStart, one, targetStart + 8192, Math.min(length, 4096))
        assert.deepEqual(one, oneExpected, `within one buffer: ${sourceStart}, ${length}`)
      }
    } finally {
      setPageCopyMode('native')
    }
  })
}

for (const mode of ['native', 'wide'] as const) {
  void test(`copyPage (${mode}) refuses a range outside either buffer and writes nothing`, () => {
    setPageCopyMode(mode)
    try {
      const source = pattern(8192, 3)
      const target = pattern(8192, 4)
      const before = target.slice()
      for (const [sourceStart, targetStart, length] of [
        [4097, 0, 4096],
        [0, 4097, 4096],
        [-1, 0, 4096],
        [0, -8, 4096],
        [0, 0, 8193],
      ] as const) {
        assert.throws(() => copyPage(source, sourceStart, target, targetStart, length))
        assert.deepEqual(target, before, `${sourceStart} -> ${targetStart}, ${length}`)
      }
    } finally {
      setPageCopyMode('native')
    }
  })
}

for (const mode of ['native', 'wide'] as const) {
  void test(`copyPage (${mode}) moves overlapping ranges of one buffer as memmove does`, () => {
    setPageCopyMode(mode)
    try {
      for (const [sourceStart, targetStart, length] of [
        [0, 8, 4096],
        [8, 0, 4096],
        [100, 101, 4000],
        [4097, 4093, 4096],
      ] as const) {
        const one = pattern(16384, 11)
        const expected = one.slice()
        naive(one, sourceStart, expected, targetStart, length)
        copyPage(one, sourceStart, one, targetStart, length)
        assert.deepEqual(one, expected, `${sourceStart} -> ${targetStart}, ${length} bytes`)
      }
    } finally {
      setPageCopyMode('native')
    }
  })
}

void test('the native copy passed its self-test on this Node', () => {
  assert.equal(pageCopyMode(), 'native')
})
