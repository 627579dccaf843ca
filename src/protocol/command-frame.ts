/**
 * COMMAND frames: named control-plane requests that are not tmem control ops, such as the NBD
 * frontend's `export.add`. The daemon runs whatever handlers the program that composed it
 * registered (server/commands.ts); this file is only the wire form, shared by the daemon and
 * the client library. docs/protocol.md ("Commands") is the prose form.
 *
 * COMMAND (0x0a, control endpoint only): UTF-8 JSON `{"command": NAME, "args": {...}}`.
 * COMMAND_REPLY (0x8a): an i32 rc, then UTF-8 JSON. rc 0: the command's result. rc < 0 (a
 * negated errno: -EINVAL, -ENOENT, -EEXIST, -EBUSY, -ENOSYS...): `{"message": "..."}`, a
 * sentence for a person. Control plane: allocates freely.
 */
import { FRAME_HEADER_BYTES, RC_BYTES, readI32LE, writeFrameHeader } from './frame.js'

export const KIND_COMMAND = 0x0a
export const KIND_COMMAND_REPLY = 0x8a

/** Largest COMMAND payload (the JSON request). */
export const COMMAND_PAYLOAD_BYTES_MAX = 16 * 1024
/** Largest COMMAND_REPLY payload: the rc and the JSON result. */
export const COMMAND_REPLY_PAYLOAD_BYTES_MAX = RC_BYTES + 256 * 1024

// Reply codes: negated errnos, as the engine's rcs are.
export const COMMAND_OK = 0
export const COMMAND_ENOENT = -2
export const COMMAND_EBUSY = -16
export const COMMAND_EEXIST = -17
export const COMMAND_EINVAL = -22
export const COMMAND_ENOSYS = -38
/** The handler failed for another reason (a file it could not open, ...). */
export const COMMAND_EIO = -5
/** The daemon refused the frame (a COMMAND on a client endpoint). */
export const COMMAND_EPERM = -1

/** Errno names of the reply codes, for errors: -17 -> 'EEXIST'. */
export function commandErrorName(rc: number): string {
  const names: Record<number, string> = {
    [COMMAND_EPERM]: 'EPERM',
    [COMMAND_ENOENT]: 'ENOENT',
    [COMMAND_EIO]: 'EIO',
    [COMMAND_EBUSY]: 'EBUSY',
    [COMMAND_EEXIST]: 'EEXIST',
    [COMMAND_EINVAL]: 'EINVAL',
    [COMMAND_ENOSYS]: 'ENOSYS',
  }
  return names[rc] ?? `E${-rc}`
}

/** Command names: lower-case words joined by dots or dashes. */
export const COMMAND_NAME_PATTERN = /^[a-z][a-z0-9-]*(?:\.[a-z][a-z0-9-]*)*$/

export interface CommandRequest {
  command: string
  args: Record<string, unknown>
}

export interface CommandReply {
  rc: number
  /** The result (rc 0) or `{ message }` (rc < 0). */
  body: unknown
}

/** The whole COMMAND frame (header included). Throws RangeError when it is too large. */
export function encodeCommand(requestId: number, request: CommandRequest): Buffer {
  const json = Buffer.from(JSON.stringify(request), 'utf8')
  if (json.length > COMMAND_PAYLOAD_BYTES_MAX)
    throw new RangeError(`A command is at most ${COMMAND_PAYLOAD_BYTES_MAX} bytes of JSON`)
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + json.length)
  writeFrameHeader(frame, 0, KIND_COMMAND, requestId, json.length)
  json.copy(frame, FRAME_HEADER_BYTES)
  return frame
}

/** A COMMAND payload, or null when it is not `{command: NAME, args?: object}`. */
export function decodeCommand(
  bytes: Uint8Array,
  offset: number,
  length: number,
): CommandRequest | null {
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + offset, length).toString())
  } catch {
    return null
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return null
  const { command, args } = parsed as { command?: unknown; args?: unknown }
  if (typeof command !== 'string' || !COMMAND_NAME_PATTERN.test(command)) return null
  if (args === undefined) return { command, args: {} }
  if (typeof args !== 'object' || args === null || Array.isArray(args)) return null
  return { command, args: args as Record<string, unknown> }
}

/** A COMMAND_REPLY payload; null when its body is not JSON. */
export function decodeCommandReply(
  bytes: Uint8Array,
  offset: number,
  length: number,
): CommandReply | null {
  if (length < RC_BYTES) return null
  const rc = readI32LE(bytes, offset)
  const text = Buffer.from(bytes.buffer, bytes.byteOffset + offset + RC_BYTES, length - RC_BYTES)
  // A bare rc: the daemon refused the frame itself (-EPERM on a client endpoint).
  if (text.length === 0) return { rc, body: null }
  try {
    return { rc, body: JSON.parse(text.toString()) as unknown }
  } catch {
    return null
  }
}
