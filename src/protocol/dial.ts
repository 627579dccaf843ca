/**
 * The dialing side's pieces of a connection (used by link.ts): where a daemon is, how a
 * connection makes its errors, which replies it accepts, and the dial itself.
 */
import { COMMAND_REPLY_PAYLOAD_BYTES_MAX, KIND_COMMAND_REPLY } from './command-frame.js'
import { KIND_SHM_KICK_NOTICE, KIND_SHM_REPLY, SHM_REPLY_PAYLOAD_BYTES } from './shm-frame.js'
import { type Socket, connect as netConnect } from 'node:net'
import {
  ERROR_PAYLOAD_BYTES_MAX,
  FrameRules,
  HELLO_REPLY_FIXED_BYTES,
  HELLO_REPLY_PAYLOAD_BYTES_MAX,
  KIND_CONTROL_REPLY,
  KIND_ERROR,
  KIND_GOODBYE_REPLY,
  KIND_HELLO_REPLY,
  KIND_OP_REPLY,
  KIND_STATS_REPLY,
  RC_BYTES,
} from './frame.js'
import {
  KIND_MOVED,
  KIND_SESSION_REPLY,
  MOVED_FIXED_BYTES,
  MOVED_PAYLOAD_BYTES_MAX,
  SESSION_REPLY_PAYLOAD_BYTES_MAX,
} from './session-frame.js'

/** Where the daemon is: its Unix socket, or a loopback TCP address. */
export type ConnectTarget = { path: string } | { host: string; port: number }

/** How a link makes the errors it raises. */
export interface LinkErrors {
  /** The connection failed, was refused at hello, or closed (`ECLOSED`, `ECONNRESET`, ...). */
  connection(code: string, message: string): Error
  /** The daemon broke the protocol (a malformed frame, a reply to no request). */
  protocol(message: string): Error
}

/** The errors of a link made without `LinkOptions.errors`. */
export class LinkError extends Error {
  override readonly name = 'LinkError'
  readonly code: string

  constructor(code: string, message: string) {
    super(message)
    this.code = code
  }
}

/** The errors of a link made without `LinkOptions.errors`: LinkError. */
export const PLAIN_ERRORS: LinkErrors = {
  connection: (code, message) => new LinkError(code, message),
  protocol: (message) => new LinkError('EPROTO', message),
}

/** Reply rules of a client (guest) connection. */
export function clientRules(): FrameRules {
  return baseRules()
    .allow(KIND_SHM_REPLY, SHM_REPLY_PAYLOAD_BYTES, SHM_REPLY_PAYLOAD_BYTES)
    .allow(KIND_SHM_KICK_NOTICE, 0, 0)
}

/** Reply rules of a control connection: tool buffers up to `replyPayloadBytesMax`. */
export function controlRules(replyPayloadBytesMax: number): FrameRules {
  return baseRules()
    .allow(KIND_CONTROL_REPLY, RC_BYTES, replyPayloadBytesMax)
    .allow(KIND_STATS_REPLY, RC_BYTES, replyPayloadBytesMax)
    .allow(KIND_SESSION_REPLY, RC_BYTES, SESSION_REPLY_PAYLOAD_BYTES_MAX)
    .allow(KIND_COMMAND_REPLY, RC_BYTES, COMMAND_REPLY_PAYLOAD_BYTES_MAX)
}

function baseRules(): FrameRules {
  return new FrameRules()
    .allow(KIND_HELLO_REPLY, HELLO_REPLY_FIXED_BYTES, HELLO_REPLY_PAYLOAD_BYTES_MAX)
    .allow(KIND_OP_REPLY, RC_BYTES, RC_BYTES + 4096)
    .allow(KIND_GOODBYE_REPLY, 0, 0)
    .allow(KIND_ERROR, 4, ERROR_PAYLOAD_BYTES_MAX)
    .allow(KIND_MOVED, MOVED_FIXED_BYTES, MOVED_PAYLOAD_BYTES_MAX)
}

/** Node's `onread` option: reads go into `buffer()`, `callback` is told how many bytes came. */
export interface ReadInPlace {
  buffer: () => Uint8Array
  callback: (count: number, buffer: Uint8Array) => boolean
}

export function dial(
  target: ConnectTarget,
  errors: LinkErrors,
  onread: ReadInPlace | null,
): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const reading = onread === null ? {} : { onread }
    const socket =
      'path' in target
        ? netConnect({ path: target.path, ...reading })
        : netConnect({ host: target.host, port: target.port, ...reading })
    const onError = (error: NodeJS.ErrnoException): void => {
      socket.destroy()
      const code = typeof error.code === 'string' ? error.code : 'ECONNREFUSED'
      reject(errors.connection(code, `Cannot reach the tmem daemon: ${error.message}`))
    }
    socket.once('error', onError)
    socket.once('connect', () => {
      socket.off('error', onError)
      resolve(socket)
    })
  })
}
