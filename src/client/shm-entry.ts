/**
 * Submission entries as the client writes them (docs/protocol.md, "Region layout"), composed
 * in the client's private copy of each slot (kept for a re-send after a detach) and then
 * copied into the ring whole (`SubmissionProducer.pushWords`): no byte of the ring slot is
 * left as it was, and the ring gets word stores only.
 */
import type { OpLayout } from '../abi/layout.js'
import { SQE_BYTES, SQE_REQUEST_ID, SQE_RESERVED } from '../protocol/shm-region.js'
import { copyShort, copyWords } from '../protocol/shm-ring.js'
import { writeU32LE } from '../util/le.js'

export class EntryCopies {
  /** Every slot's entry, 64 bytes each. */
  readonly bytes: Uint8Array
  /** The same memory as words. */
  readonly words: Int32Array
  readonly #layout: OpLayout
  /** The last op array seen and a word view of it: callers reuse one scratch for every op. */
  #source: Uint8Array | null = null
  #sourceWords: Int32Array<ArrayBufferLike> = new Int32Array(0)

  constructor(slots: number, layout: OpLayout) {
    this.bytes = new Uint8Array(slots * SQE_BYTES)
    this.words = new Int32Array(this.bytes.buffer)
    this.#layout = layout
  }

  /**
   * Writes slot `slot`'s entry: the op `op[opAt..+layout.bytes]`, zeros up to the request id
   * (the rest of a v0 op), the cmfn naming `frame` (0 when it is -1: no frame), the request id
   * and a zero reserved word.
   */
  compose(slot: number, op: Uint8Array, opAt: number, frame: number, requestId: number): void {
    const at = slot * SQE_BYTES
    const opBytes = this.#layout.bytes
    const source = (opAt & 3) === 0 ? this.#wordsOf(op) : null
    if (source !== null) copyWords(source, opAt >>> 2, this.words, at >>> 2, opBytes >>> 2)
    else copyShort(op, opAt, this.bytes, at, opBytes)
    const words = this.words
    for (let word = (at + opBytes) >>> 2; word < (at + SQE_REQUEST_ID) >>> 2; word++)
      words[word] = 0
    const cmfnAt = at + this.#layout.genCmfn
    writeU32LE(this.bytes, cmfnAt, frame >= 0 ? frame : 0)
    writeU32LE(this.bytes, cmfnAt + 4, 0)
    writeU32LE(this.bytes, at + SQE_REQUEST_ID, requestId)
    writeU32LE(this.bytes, at + SQE_RESERVED, 0)
  }

  /** A word view of `op`, made once per array; null when `op` does not start on a word. */
  #wordsOf(op: Uint8Array): Int32Array | null {
    if (op === this.#source) return this.#sourceWords
    if ((op.byteOffset & 3) !== 0 || op.length < this.#layout.bytes) return null
    this.#source = op
    this.#sourceWords = new Int32Array(op.buffer, op.byteOffset, op.length >>> 2)
    return this.#sourceWords
  }
}
