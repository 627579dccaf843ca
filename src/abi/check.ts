/**
 * Field checks shared by the ABI codecs: a value of the wrong type is a TypeError, the right
 * type with a wrong value a RangeError, and the message names the field.
 */
const U32_MAX = 0xffff_ffff
const S32_MIN = -0x8000_0000
const S32_MAX = 0x7fff_ffff
const U64_MAX = 0xffff_ffff_ffff_ffffn

export function checkInteger(value: unknown, min: number, max: number, name: string): void {
  if (typeof value !== 'number') throw new TypeError(`Field ${name} must be a number`)
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`Field ${name} must be an integer from ${min} to ${max}, got ${value}`)
  }
}

export function checkU32(value: unknown, name: string): void {
  checkInteger(value, 0, U32_MAX, name)
}

export function checkS32(value: unknown, name: string): void {
  checkInteger(value, S32_MIN, S32_MAX, name)
}

export function checkU64(value: unknown, name: string): void {
  if (typeof value !== 'bigint') throw new TypeError(`Field ${name} must be a bigint`)
  if (value < 0n || value > U64_MAX) {
    throw new RangeError(`Field ${name} must be an integer from 0 to 2^64-1, got ${value}`)
  }
}
