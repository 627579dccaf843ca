/**
 * The hello exchange, shared by the daemon and the client library: the first frame of every
 * connection fixes its tmem ABI version (0 or 1), names the client, and (to reconnect) proves
 * with a secret that it is the client it was before. Control plane: these functions allocate.
 *
 * HELLO payload (client to daemon):
 *
 *    0     1     2        3         4          8                       40
 *   +-----+-----+--------+---------+----------+-----------------------+------+-------+
 *   | abi | 0   | name   | token   | 0        | secret (32 bytes,     | name | token |
 *   | 0/1 |     | bytes  | bytes   | (u32)    | all zero = none)      |      |       |
 *   +-----+-----+--------+---------+----------+-----------------------+------+-------+
 *
 * HELLO_REPLY payload (daemon to client):
 *
 *    0        1     2          4          8               40       42     43  44       46  48
 *   +--------+-----+----------+----------+---------------+--------+------+---+--------+---+----+-----+
 *   | status | abi | client   | grace ms | secret (32)   | flags  | name | 0 | message| 0 |name|msg  |
 *   |        |     | id (u16) | (u32)    |               | (u16)  | bytes|   | bytes  |   |    |     |
 *   +--------+-----+----------+----------+---------------+--------+------+---+--------+---+----+-----+
 */
import {
  FRAME_HEADER_BYTES,
  HELLO_FIXED_BYTES,
  HELLO_REPLY_FIXED_BYTES,
  KIND_HELLO,
  MESSAGE_BYTES_MAX,
  NAME_BYTES_MAX,
  SECRET_BYTES,
  TOKEN_BYTES_MAX,
  readU16LE,
  readU32LE,
  writeFrameHeader,
  writeU16LE,
  writeU32LE,
} from './frame.js'

// Hello statuses. Anything but HELLO_OK is a refusal: the daemon closes after the reply.
export const HELLO_OK = 0
export const HELLO_BAD_ABI = 1
export const HELLO_NAME_IN_USE = 2
export const HELLO_BAD_SECRET = 3
export const HELLO_BAD_TOKEN = 4
export const HELLO_NO_ROOM = 5
export const HELLO_BAD_NAME = 6
export const HELLO_SHUTTING_DOWN = 7
export const HELLO_SESSION_EXPIRED = 8
/**
 * The client moved to another daemon (live migration): the reply's message is the new
 * address (`unix:/path` or `tcp:host:port`) and its secret field the secret to use there.
 */
export const HELLO_MOVED = 9

/** Stable names of the hello statuses (the client's error codes are derived from them). */
export const HELLO_STATUS_NAMES: readonly string[] = [
  'OK',
  'BAD_ABI',
  'NAME_IN_USE',
  'BAD_SECRET',
  'BAD_TOKEN',
  'NO_ROOM',
  'BAD_NAME',
  'SHUTTING_DOWN',
  'SESSION_EXPIRED',
  'MOVED',
]

/**
 * The error codes a dialing side raises for refused hellos, indexed by the HELLO_* status
 * (documented in docs/protocol.md; the client library's `TmemConnectionError.code`).
 */
export const HELLO_ERROR_CODES: readonly string[] = [
  'OK',
  'EABI',
  'ENAMEINUSE',
  'EBADSECRET',
  'EBADTOKEN',
  'ENOROOM',
  'EBADNAME',
  'ESHUTDOWN',
  'ESESSION',
  'EMOVED',
]

// Hello reply flags.
/** The connection resumed an existing client: its pools are back. */
export const HELLO_FLAG_RESUMED = 0x1
/** The ABI version is not served (v0 without --accept-v0): TMEM_NEW_POOL will return -EPERM. */
export const HELLO_FLAG_ABI_REFUSED = 0x2
/** The connection is a control connection (no client id). */
export const HELLO_FLAG_CONTROL = 0x4

/** Client names: what a log line and a metric label can carry unquoted. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$/

export interface Hello {
  abiVersion: number
  name: string
  /** 32 bytes, or null for a first connection. */
  secret: Uint8Array | null
  token: string
}

export interface HelloReply {
  status: number
  abiVersion: number
  clientId: number
  graceMs: number
  secret: Uint8Array | null
  flags: number
  name: string
  message: string
}

/** A whole HELLO frame. Throws RangeError when a field is over its limit. */
export function encodeHello(requestId: number, hello: Hello): Uint8Array {
  const name = Buffer.from(hello.name, 'utf8')
  const token = Buffer.from(hello.token, 'utf8')
  if (name.length > NAME_BYTES_MAX) throw new RangeError('Client name is longer than 64 bytes')
  if (token.length > TOKEN_BYTES_MAX) throw new RangeError('Token is longer than 128 bytes')
  if (hello.secret !== null && hello.secret.length !== SECRET_BYTES) {
    throw new RangeError('Secret must be 32 bytes')
  }
  const payloadBytes = HELLO_FIXED_BYTES + name.length + token.length
  const frame = Buffer.alloc(FRAME_HEADER_BYTES + payloadBytes)
  writeFrameHeader(frame, 0, KIND_HELLO, requestId, payloadBytes)
  const at = FRAME_HEADER_BYTES
  frame[at] = hello.abiVersion
  frame[at + 2] = name.length
  frame[at + 3] = token.length
  if (hello.secret !== null) frame.set(hello.secret, at + 8)
  name.copy(frame, at + HELLO_FIXED_BYTES)
  token.copy(frame, at + HELLO_FIXED_BYTES + name.length)
  return frame
}

/** Reads a HELLO payload; null when it is malformed (lengths disagree, reserved bytes set). */
export function decodeHello(bytes: Uint8Array, offset: number, payloadBytes: number): Hello | null {
  if (payloadBytes < HELLO_FIXED_BYTES) return null
  const nameBytes = bytes[offset + 2] ?? 0
  const tokenBytes = bytes[offset + 3] ?? 0
  if (bytes[offset + 1] !== 0 || readU32LE(bytes, offset + 4) !== 0) return null
  if (nameBytes > NAME_BYTES_MAX || tokenBytes > TOKEN_BYTES_MAX) return null
  if (HELLO_FIXED_BYTES + nameBytes + tokenBytes !== payloadBytes) return null
  const secret = Buffer.from(bytes.subarray(offset + 8, offset + 8 + SECRET_BYTES))
  const nameAt = offset + HELLO_FIXED_BYTES
  return {
    abiVersion: bytes[offset] ?? 0,
    name: Buffer.from(bytes.subarray(nameAt, nameAt + nameBytes)).toString('utf8'),
    secret: secret.every((byte) => byte === 0) ? null : secret,
    token: Buffer.from(
      bytes.subarray(nameAt + nameBytes, nameAt + nameBytes + tokenBytes),
    ).toString('utf8'),
  }
}

/** Bytes a HELLO_REPLY payload for `reply` takes (name and message cut to their limits). */
export function helloReplyPayloadBytes(reply: HelloReply): number {
  return (
    HELLO_REPLY_FIXED_BYTES +
    fit(reply.name, NAME_BYTES_MAX).length +
    fit(reply.message, MESSAGE_BYTES_MAX).length
  )
}

/** Writes a HELLO_REPLY payload at `offset`; returns its length. */
export function encodeHelloReplyInto(
  target: Uint8Array,
  offset: number,
  reply: HelloReply,
): number {
  const name = fit(reply.name, NAME_BYTES_MAX)
  const message = fit(reply.message, MESSAGE_BYTES_MAX)
  target.fill(0, offset, offset + HELLO_REPLY_FIXED_BYTES)
  target[offset] = reply.status
  target[offset + 1] = reply.abiVersion
  writeU16LE(target, offset + 2, reply.clientId)
  writeU32LE(target, offset + 4, reply.graceMs)
  if (reply.secret !== null) target.set(reply.secret, offset + 8)
  writeU16LE(target, offset + 40, reply.flags)
  target[offset + 42] = name.length
  writeU16LE(target, offset + 44, message.length)
  target.set(name, offset + HELLO_REPLY_FIXED_BYTES)
  target.set(message, offset + HELLO_REPLY_FIXED_BYTES + name.length)
  return HELLO_REPLY_FIXED_BYTES + name.length + message.length
}

/** Reads a HELLO_REPLY payload; null when it is malformed. */
export function decodeHelloReply(
  bytes: Uint8Array,
  offset: number,
  payloadBytes: number,
): HelloReply | null {
  if (payloadBytes < HELLO_REPLY_FIXED_BYTES) return null
  const nameBytes = bytes[offset + 42] ?? 0
  const messageBytes = readU16LE(bytes, offset + 44)
  if (nameBytes > NAME_BYTES_MAX || messageBytes > MESSAGE_BYTES_MAX) return null
  if (HELLO_REPLY_FIXED_BYTES + nameBytes + messageBytes !== payloadBytes) return null
  const secret = Buffer.from(bytes.subarray(offset + 8, offset + 8 + SECRET_BYTES))
  const nameAt = offset + HELLO_REPLY_FIXED_BYTES
  const messageAt = nameAt + nameBytes
  return {
    status: bytes[offset] ?? 0,
    abiVersion: bytes[offset + 1] ?? 0,
    clientId: readU16LE(bytes, offset + 2),
    graceMs: readU32LE(bytes, offset + 4),
    secret: secret.every((byte) => byte === 0) ? null : secret,
    flags: readU16LE(bytes, offset + 40),
    name: Buffer.from(bytes.subarray(nameAt, messageAt)).toString('utf8'),
    message: Buffer.from(bytes.subarray(messageAt, messageAt + messageBytes)).toString('utf8'),
  }
}

/** UTF-8 bytes of `text`, cut at `limit` bytes on a character boundary. */
function fit(text: string, limit: number): Buffer {
  const bytes = Buffer.from(text, 'utf8')
  if (bytes.length <= limit) return bytes
  let end = limit
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--
  return bytes.subarray(0, end)
}
