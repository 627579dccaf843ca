/**
 * LIST prints a client's weight as Xen's `%d` does (spec §5.7): the u32 value read as a signed
 * 32-bit integer, so 0xFFFFFFFF lists as -1 and 0x80000000 as -2147483648. Expected text is
 * typed from the C conversion, not computed by the code under test. (The cap is also `%d` in
 * Xen, but SET_CAP takes only 0..100, so it never reaches the sign bit.)
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { F, Harness, SUB } from './conformance-helpers.js'

void describe('LIST ww is signed, as printf %d', () => {
  for (const [value, text] of [
    [0xffffffff, '-1'],
    [0x80000000, '-2147483648'],
    [0x7fffffff, '2147483647'],
    [7, '7'],
  ] as const) {
    void test(`weight ${value.toString(16)} lists as ${text}`, () => {
      const h = new Harness()
      assert.equal(h.newPool(1, F.PRIVATE_EPH), 0)
      assert.equal(h.ctrl(SUB.SET_WEIGHT, { cliId: 1, arg1: value }), 0)
      assert.match(h.list(), new RegExp(`\\nC=CI:1,ww:${text},ca:0,co:0,fr:0,`))
    })
  }
})
