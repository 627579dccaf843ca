/**
 * Session control frames: what live migration needs from a daemon beyond tmem's control ops,
 * because names, secrets and connections are the daemon's, not the engine's. Shared by the
 * daemon and the client library (imports only frame.ts). docs/protocol.md ("Session control"
 * and "Moved") is the prose form.
 *
 * SESSION (0x06, control endpoint only) and SESSION_REPLY (0x86) share one layout; the reply
 * starts with an i32 rc and then describes the session the command acted on:
 *
 *    0     1     2          4        6        7     8          10      12         16          48
 *   +-----+-----+----------+--------+--------+-----+----------+-------+----------+-----------+------+---------+
 *   | cmd | abi | client id| flags  | name   | 0   | address  | peer  | grace ms | secret    | name | address |
 *   |     |     | (u16)    | (u16)  | bytes  |     | bytes u16| id u16| (u32)    | (32)      |      |         |
 *   +-----+-----+----------+--------+--------+-----+----------+-------+----------+-----------+------+---------+
 *
 * `peer id` is the client's id on the other daemon, used by PUSH only and zero in every other
 * command (a daemon refuses it set elsewhere, as any reserved field).
 *
 * MOVED (0x87) is a notice from the daemon to a client connection (request id 0), written
 * after the replies to every request the daemon ran for it; the daemon then closes:
 *
 *    0          4          6     8            40
 *   +----------+----------+-----+------------+---------+
 *   | grace ms | address  | 0   | secret (32)| address |
 *   | (u32)    | bytes u16| u16 |            |         |
 *   +----------+----------+-----+------------+---------+
 */
import {
  FRAME_HEADER_BYTES,
  NAME_BYTES_MAX,
  RC_BYTES,
  SECRET_BYTES,
  readI32LE,
  readU16LE,
  readU32LE,
  writeFrameHeader,
  writeU16LE,
  writeU32LE,
} from './frame.js'

export const KIND_SESSION = 0x06
export const KIND_SESSION_REPLY = 0x86
export const KIND_MOVED = 0x87

/** Longest address a MOVED notice or BIND can carry (`unix:/path` or `tcp:host:port`). */
export const ADDRESS_BYTES_MAX = 256
export const SESSION_FIXED_BYTES = 48
export const SESSION_PAYLOAD_BYTES_MAX = SESSION_FIXED_BYTES + NAME_BYTES_MAX + ADDRESS_BYTES_MAX
export const SESSION_REPLY_PAYLOAD_BYTES_MAX = RC_BYTES + SESSION_PAYLOAD_BYTES_MAX
export const MOVED_FIXED_BYTES = 40
export const MOVED_PAYLOAD_BYTES_MAX = MOVED_FIXED_BYTES + ADDRESS_BYTES_MAX

// Commands.
/** Describe the session of `name` (or of `client id` when the name is empty). rc = its id. */
export const SESSION_LOOKUP = 1
/** A client id that neither a session nor the engine uses. rc = the id. */
export const SESSION_FREE_ID = 2
/** Create engine client `client id` speaking `abi` (the shell a v0 restore needs). rc = id. */
export const SESSION_CREATE = 3
/** Give existing engine client `client id` the name `name` and `secret` (zero: a new one). */
export const SESSION_BIND = 4
/** End a BIND_PENDING session's wait: held hellos are answered, the client resumes. */
export const SESSION_ACTIVATE = 5
/** Destroy client `client id` (engine client and session); its connection is closed. */
export const SESSION_DESTROY = 6
/** Tell the client it moved to `address` with `secret`; its ops stop running here. */
export const SESSION_MOVED = 7
/** Undo MOVED (a migration that failed): the client may resume here with its old secret. */
export const SESSION_UNFENCE = 8
/**
 * Send pages of pool `flags` of client `client id` (which must be in a SAVE_BEGIN) straight to
 * the daemon whose control endpoint is `address` (its token in `secret` for TCP), as
 * RESTORE_PAGES of its client `peer id`: at most `grace ms` pages, from the pool's save
 * cursor on. rc = pages sent; the reply comes when they are all applied there.
 */
export const SESSION_PUSH = 9

export const SESSION_COMMAND_NAMES: Readonly<Record<number, string>> = {
  [SESSION_LOOKUP]: 'LOOKUP',
  [SESSION_FREE_ID]: 'FREE_ID',
  [SESSION_CREATE]: 'CREATE',
  [SESSION_BIND]: 'BIND',
  [SESSION_ACTIVATE]: 'ACTIVATE',
  [SESSION_DESTROY]: 'DESTROY',
  [SESSION_MOVED]: 'MOVED',
  [SESSION_UNFENCE]: 'UNFENCE',
  [SESSION_PUSH]: 'PUSH',
}

// Request flags (BIND).
/** Hellos for the session wait (unanswered) until ACTIVATE: the target of a migration. */
export const BIND_PENDING = 0x1
/** No grace timer until the first connection: a client restored from a file. */
export const BIND_HOLD = 0x2

// Reply flags: the state of the session described.
export const STATE_SESSION = 0x1
export const STATE_ENGINE = 0x2
export const STATE_CONNECTED = 0x4
export const STATE_PENDING = 0x8
export const STATE_MOVED = 0x10
/** The client's connection is loopback TCP (else a Unix socket). */
export const STATE_TCP = 0x20

// Return codes of session commands (negative errno values, as the engine's).
export const SESSION_EPERM = -1
export const SESSION_ENOENT = -2
export const SESSION_EBUSY = -16
export const SESSION_EEXIST = -17
export const SESSION_EINVAL = -22
export const SESSION_ENOSPC = -28
/** PUSH: the other daemon could not be reached, or refused the connection. */
export const SESSION_ECONNREFUSED = -111
/** PUSH: the other daemon failed part-way (its connection dropped, or it refused a batch). */
export const SESSION_EIO = -5

export interface SessionMessage {
  cmd: number
  abi: number
  clientId: number
  flags: number
  graceMs: number
  name: string
  address: string
  /** 32 bytes, or null (all zero on the wire). */
  secret: Uint8Array | null
  /** PUSH: the client's id on the other daemon (absent: 0). */
  peerId?: number
}

export interface SessionReply extends SessionMessage {
  rc: number
}

export function emptySession(cmd: number): SessionMessage {
  return { cmd, abi: 0, clientId: 0, flags: 0, graceMs: 0, name: '', address: '', secret: null }
}

/** Bytes of the session layout for `message`. Throws RangeError over a limit. */
export function sessionBytes(message: SessionMessage): number {
  const { name, address } = checkedStrings(message)
  return SESSION_FIXED_BYTES + name.length + address.length
}

/** Writes the session layout at `offset`; returns its length. */
export function encodeSessionInto(
  target: Uint8Array,
  offset: number,
  message: SessionMessage,
): number {
  const { name, address } = checkedStrings(message)
  if (message.secret !== null && message.secret.length !== SECRET_BYTES) {
    throw new RangeError('A secret is 32 bytes')
  }
  target.fill(0, offset, offset + SESSION_FIXED_BYTES)
  target[offset] = message.cmd
  target[offset + 1] = message.abi
  writeU16LE(target, offset + 2, message.clientId)
  writeU16LE(target, offset + 4, message.flags)
  target[offset + 6] = name.length
  writeU16LE(target, offset + 8, address.length)
  writeU16LE(target, offset + 10, message.peerId ?? 0)
  writeU32LE(target, offset + 12, message.graceMs >>> 0)
  if (message.secret !== null) target.set(message.secret, offset + 16)
  target.set(name, offset + SESSION_FIXED_BYTES)
  target.set(address, offset + SESSION_FIXED_BYTES + name.length)
  return SESSION_FIXED_BYTES + name.length + address.length
}

/** Reads the session layout; null when it is malformed (lengths disagree, reserved bytes set). */
export function decodeSession(
  bytes: Uint8Array,
  offset: number,
  length: number,
): SessionMessage | null {
  if (length < SESSION_FIXED_BYTES) return null
  const nameBytes = bytes[offset + 6] ?? 0
  const addressBytes = readU16LE(bytes, offset + 8)
  const cmd = bytes[offset] ?? 0
  const peerId = readU16LE(bytes, offset + 10)
  if (bytes[offset + 7] !== 0 || (peerId !== 0 && cmd !== SESSION_PUSH)) return null
  if (nameBytes > NAME_BYTES_MAX || addressBytes > ADDRESS_BYTES_MAX) return null
  if (SESSION_FIXED_BYTES + nameBytes + addressBytes !== length) return null
  const secret = bytes.slice(offset + 16, offset + 16 + SECRET_BYTES)
  const nameAt = offset + SESSION_FIXED_BYTES
  return {
    cmd,
    abi: bytes[offset + 1] ?? 0,
    clientId: readU16LE(bytes, offset + 2),
    flags: readU16LE(bytes, offset + 4),
    graceMs: readU32LE(bytes, offset + 12),
    name: utf8(bytes, nameAt, nameBytes),
    address: utf8(bytes, nameAt + nameBytes, addressBytes),
    secret: secret.every((byte) => byte === 0) ? null : secret,
    ...(peerId === 0 ? {} : { peerId }),
  }
}

/** A whole SESSION request frame. */
export function encodeSessionRequest(requestId: number, message: SessionMessage): Uint8Array {
  const payloadBytes = sessionBytes(message)
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payloadBytes)
  writeFrameHeader(frame, 0, KIND_SESSION, requestId, payloadBytes)
  encodeSessionInto(frame, FRAME_HEADER_BYTES, message)
  return frame
}

/** Reads a SESSION_REPLY payload; null when malformed. */
export function decodeSessionReply(
  bytes: Uint8Array,
  offset: number,
  length: number,
): SessionReply | null {
  if (length < RC_BYTES) return null
  const rc = readI32LE(bytes, offset)
  if (length === RC_BYTES) return { rc, ...emptySession(0) }
  const message = decodeSession(bytes, offset + RC_BYTES, length - RC_BYTES)
  return message === null ? null : { rc, ...message }
}

export interface MovedNotice {
  graceMs: number
  address: string
  secret: Uint8Array
}

/** A whole MOVED frame (request id 0). */
export function encodeMoved(notice: MovedNotice): Uint8Array {
  const address = Buffer.from(notice.address, 'utf8')
  if (address.length > ADDRESS_BYTES_MAX)
    throw new RangeError(`An address is at most ${ADDRESS_BYTES_MAX} bytes`)
  if (notice.secret.length !== SECRET_BYTES) throw new RangeError('A secret is 32 bytes')
  const payloadBytes = MOVED_FIXED_BYTES + address.length
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payloadBytes)
  writeFrameHeader(frame, 0, KIND_MOVED, 0, payloadBytes)
  const at = FRAME_HEADER_BYTES
  writeU32LE(frame, at, notice.graceMs >>> 0)
  writeU16LE(frame, at + 4, address.length)
  frame.set(notice.secret, at + 8)
  frame.set(address, at + MOVED_FIXED_BYTES)
  return frame
}

/** Reads a MOVED payload; null when malformed. */
export function decodeMoved(bytes: Uint8Array, offset: number, length: number): MovedNotice | null {
  if (length < MOVED_FIXED_BYTES) return null
  const addressBytes = readU16LE(bytes, offset + 4)
  if (readU16LE(bytes, offset + 6) !== 0 || MOVED_FIXED_BYTES + addressBytes !== length) return null
  return {
    graceMs: readU32LE(bytes, offset),
    address: utf8(bytes, offset + MOVED_FIXED_BYTES, addressBytes),
    secret: bytes.slice(offset + 8, offset + 8 + SECRET_BYTES),
  }
}

/**
 * Where a client connects, as MOVED and the CLI write it: `unix:/path` or `tcp:host:port`
 * (IPv6 hosts in brackets). Returns null for anything else.
 */
export function parseClientAddress(
  address: string,
): { path: string } | { host: string; port: number } | null {
  if (address.startsWith('unix:')) {
    const path = address.slice(5)
    return path === '' ? null : { path }
  }
  if (!address.startsWith('tcp:')) return null
  const rest = address.slice(4)
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(rest)
  if (match === null) return null
  const port = Number(match[3])
  if (!Number.isInteger(port) || port < 1 || port > 65535) return null
  return { host: match[1] ?? match[2] ?? '', port }
}

export function formatClientAddress(
  target: { path: string } | { host: string; port: number },
): string {
  if ('path' in target) return `unix:${target.path}`
  return target.host.includes(':')
    ? `tcp:[${target.host}]:${target.port}`
    : `tcp:${target.host}:${target.port}`
}

function checkedStrings(message: SessionMessage): { name: Buffer; address: Buffer } {
  const name = Buffer.from(message.name, 'utf8')
  const address = Buffer.from(message.address, 'utf8')
  if (name.length > NAME_BYTES_MAX)
    throw new RangeError(`A client name is at most ${NAME_BYTES_MAX} bytes`)
  if (address.length > ADDRESS_BYTES_MAX)
    throw new RangeError(`An address is at most ${ADDRESS_BYTES_MAX} bytes`)
  return { name, address }
}

function utf8(bytes: Uint8Array, at: number, length: number): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset + at, length).toString('utf8')
}
