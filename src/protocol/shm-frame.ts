/**
 * The socket frames that set up a shared-memory region and ring its doorbells (the region
 * itself: `shm-region.ts`; the prose: `docs/protocol.md`, "Shared memory"). They travel on the
 * client's Unix connection with the usual 16-byte header.
 *
 *   kind 0x07 SHM (client -> daemon), 16-byte payload, answered by SHM_REPLY:
 *    0     1         4            8            12           16
 *   +-----+---------+------------+------------+------------+
 *   | cmd | 0 0 0   | sqEntries  | cqEntries  | frameCount |   (sizes: ATTACH only, else 0)
 *   +-----+---------+------------+------------+------------+
 *     cmd 1 ATTACH: make a region of these sizes. 2 MAPPED: the client has mapped it (the
 *     daemon closes its descriptor; the region then has no name anywhere). 3 DETACH: stop
 *     using the region (ops go back to the socket).
 *
 *   kind 0x88 SHM_REPLY (daemon -> client), 12-byte payload:
 *    0        4        8        12
 *   +--------+--------+--------+
 *   | rc i32 | pid    | fd     |   pid/fd: ATTACH with rc 0, where the client opens the
 *   +--------+--------+--------+   region: /proc/<pid>/fd/<fd>; else 0
 *
 *   kind 0x08 SHM_KICK (client -> daemon) and 0x89 SHM_KICK (daemon -> client): empty
 *   payload, request id 0, never answered: "I published entries and you said you sleep".
 *
 * The daemon offers the region with hello flag 0x8 (HELLO_FLAG_SHM) on Unix connections when
 * it can map memory; a client sends SHM only after that flag, so old daemons never see it,
 * and old clients, which do not send it, are unaffected.
 */
import { readI32LE, readU32LE, writeU32LE } from '../util/le.js'

export const KIND_SHM = 0x07
export const KIND_SHM_KICK = 0x08
export const KIND_SHM_REPLY = 0x88
export const KIND_SHM_KICK_NOTICE = 0x89

export const SHM_ATTACH = 1
export const SHM_MAPPED = 2
export const SHM_DETACH = 3

export const SHM_PAYLOAD_BYTES = 16
export const SHM_REPLY_PAYLOAD_BYTES = 12

/** Hello reply flag: this connection may ask for a shared-memory region. */
export const HELLO_FLAG_SHM = 0x8

export interface ShmRequest {
  cmd: number
  sqEntries: number
  cqEntries: number
  frameCount: number
}

export interface ShmReply {
  rc: number
  pid: number
  fd: number
}

/** Writes an SHM payload at `offset`. */
export function encodeShmRequestInto(
  target: Uint8Array,
  offset: number,
  request: ShmRequest,
): void {
  target.fill(0, offset, offset + SHM_PAYLOAD_BYTES)
  target[offset] = request.cmd
  writeU32LE(target, offset + 4, request.sqEntries)
  writeU32LE(target, offset + 8, request.cqEntries)
  writeU32LE(target, offset + 12, request.frameCount)
}

/** Reads an SHM payload; null when malformed (length, reserved bytes, unknown cmd). */
export function decodeShmRequest(
  bytes: Uint8Array,
  offset: number,
  payloadBytes: number,
): ShmRequest | null {
  if (payloadBytes !== SHM_PAYLOAD_BYTES) return null
  if (bytes[offset + 1] !== 0 || bytes[offset + 2] !== 0 || bytes[offset + 3] !== 0) return null
  const cmd = bytes[offset] ?? 0
  if (cmd !== SHM_ATTACH && cmd !== SHM_MAPPED && cmd !== SHM_DETACH) return null
  return {
    cmd,
    sqEntries: readU32LE(bytes, offset + 4),
    cqEntries: readU32LE(bytes, offset + 8),
    frameCount: readU32LE(bytes, offset + 12),
  }
}

/** Writes an SHM_REPLY payload at `offset`. */
export function encodeShmReplyInto(target: Uint8Array, offset: number, reply: ShmReply): void {
  writeU32LE(target, offset, reply.rc >>> 0)
  writeU32LE(target, offset + 4, reply.pid)
  writeU32LE(target, offset + 8, reply.fd)
}

/** Reads an SHM_REPLY payload; null when its length is wrong. */
export function decodeShmReply(
  bytes: Uint8Array,
  offset: number,
  payloadBytes: number,
): ShmReply | null {
  if (payloadBytes !== SHM_REPLY_PAYLOAD_BYTES) return null
  return {
    rc: readI32LE(bytes, offset),
    pid: readU32LE(bytes, offset + 4),
    fd: readU32LE(bytes, offset + 8),
  }
}
