/**
 * A submission entry as the client writes it (docs/protocol.md, "Region layout"), composed in
 * the client's private memory and then copied into the ring whole (`SubmissionProducer.
 * pushWords`): no byte of the ring slot is left as it was, and the ring gets word stores only.
 */
import type { OpLayout } from '../abi/layout.js'
import { SQE_REQUEST_ID, SQE_RESERVED } from '../protocol/shm-region.js'
import { copyShort, zeroShort } from '../protocol/shm-ring.js'
import { writeU32LE } from '../util/le.js'

/**
 * Writes the 64-byte entry at `target[at]`: the op `op[opAt..+layout.bytes]`, zeros up to the
 * request id (the rest of a v0 op), the cmfn naming `frame` (0 when it is -1: no frame), the
 * request id and a zero reserved word.
 */
export function composeEntry(
  target: Uint8Array,
  at: number,
  layout: OpLayout,
  op: Uint8Array,
  opAt: number,
  frame: number,
  requestId: number,
): void {
  copyShort(op, opAt, target, at, layout.bytes)
  zeroShort(target, at + layout.bytes, at + SQE_REQUEST_ID)
  const cmfnAt = at + layout.genCmfn
  zeroShort(target, cmfnAt, cmfnAt + 8)
  if (frame >= 0) writeU32LE(target, cmfnAt, frame)
  writeU32LE(target, at + SQE_REQUEST_ID, requestId)
  writeU32LE(target, at + SQE_RESERVED, 0)
}
