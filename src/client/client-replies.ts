/**
 * The socket side of `TmemClient`'s ops: which commands may be re-sent after a reconnect, and
 * the decoding of a reply frame (its rc, and the page a get or read brings back).
 */
import {
  PAGE_SIZE,
  TMEM_FLUSH_OBJECT,
  TMEM_FLUSH_PAGE,
  TMEM_GET_PAGE,
  TMEM_NEW_PAGE,
  TMEM_PUT_PAGE,
  TMEM_READ,
  TMEM_WRITE,
} from '../abi/constants.js'
import { RC_BYTES, readI32LE } from '../protocol/frame.js'
import type { ReplyView } from '../protocol/link.js'

/** Commands that may be re-sent after a reconnect: running them twice changes nothing. */
export function isReplayable(cmd: number): boolean {
  return (
    cmd === TMEM_PUT_PAGE ||
    cmd === TMEM_GET_PAGE ||
    cmd === TMEM_FLUSH_PAGE ||
    cmd === TMEM_FLUSH_OBJECT ||
    cmd === TMEM_NEW_PAGE ||
    cmd === TMEM_READ ||
    cmd === TMEM_WRITE
  )
}

/** The rc at the start of a reply's payload. */
export function replyRc(reply: ReplyView): number {
  return readI32LE(reply.bytes, reply.payloadOffset)
}

/** Copies the reply's page out (the reply bytes are reused after the callback). */
export function replyPage(reply: ReplyView, into?: Uint8Array): Uint8Array | null {
  if (reply.payloadBytes < RC_BYTES + PAGE_SIZE) return null
  const start = reply.payloadOffset + RC_BYTES
  const target = into ?? new Uint8Array(PAGE_SIZE)
  target.set(reply.bytes.subarray(start, start + PAGE_SIZE))
  return target
}
