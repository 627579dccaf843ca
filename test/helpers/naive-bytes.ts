/**
 * A deliberately naive little-endian byte builder: the independent oracle for the ABI tests.
 * It pushes one byte at a time with shifts and masks. It never uses DataView, Buffer or the
 * offsets of src/abi/layout.ts; tests state each field's offset from the spec tables with
 * `at(offset)`, which fails loudly when the bytes pushed so far do not reach exactly there.
 */

export class NaiveBytes {
  readonly #bytes: number[] = []

  /** Asserts that the next byte goes to `offset` (an offset typed from the spec). */
  at(offset: number): this {
    if (this.#bytes.length !== offset) {
      throw new Error(`Naive builder is at byte ${this.#bytes.length}, the spec says ${offset}`)
    }
    return this
  }

  /** Appends a u32, least significant byte first. */
  u32le(value: number): this {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      throw new Error(`Naive u32 out of range: ${value}`)
    }
    let rest = value
    for (let i = 0; i < 4; i++) {
      this.#bytes.push(rest % 256)
      rest = Math.floor(rest / 256)
    }
    return this
  }

  /** Appends an s32 as its two's complement u32. */
  s32le(value: number): this {
    if (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff) {
      throw new Error(`Naive s32 out of range: ${value}`)
    }
    return this.u32le(value < 0 ? value + 0x100000000 : value)
  }

  /** Appends a u64 from a bigint, shifting one byte off at a time. */
  u64le(value: bigint): this {
    if (value < 0n || value >= 1n << 64n) throw new Error(`Naive u64 out of range: ${value}`)
    let rest = value
    for (let i = 0; i < 8; i++) {
      this.#bytes.push(Number(rest & 0xffn))
      rest >>= 8n
    }
    return this
  }

  /** Appends `count` zero bytes. */
  zeros(count: number): this {
    for (let i = 0; i < count; i++) this.#bytes.push(0)
    return this
  }

  /** Appends raw byte values (each 0..255). */
  raw(...values: number[]): this {
    for (const value of values) this.#bytes.push(value & 0xff)
    return this
  }

  get length(): number {
    return this.#bytes.length
  }

  /** The bytes so far, asserting the total length (the struct size from the spec). */
  done(expectedLength: number): Uint8Array {
    this.at(expectedLength)
    return Uint8Array.from(this.#bytes)
  }
}

/** A fresh builder. */
export function naive(): NaiveBytes {
  return new NaiveBytes()
}
