/**
 * The client's typed errors (STYLE §5.6). Applications branch on `code`, a stable string
 * documented in docs/protocol.md; messages are for people. Every error the client raises is a
 * `TmemError` (the package's shared class, src/errors.ts):
 *
 * - the daemon ran the op and it returned a negative rc: `code` is the errno name (`EFROZEN`,
 *   `ENOMEM`, `ENODEV`, ...), `errno` the rc itself (-1000 for EFROZEN);
 * - `TmemConnectionError` (errno 0): the transport failed or the daemon refused the hello:
 *   `ECONNRESET`, `ECLOSED`, `ECONNREFUSED`/`ENOENT`, `ESESSION`, `ENAMEINUSE`, `EBADSECRET`,
 *   `EBADTOKEN`, `EABI`, `EBADNAME`, `ENOROOM`, `ESHUTDOWN`;
 * - `TmemProtocolError` (errno 0, code `EPROTO`): the daemon closed the connection over a
 *   malformed frame, or sent one.
 */
import { TmemError } from '../errors.js'
import type { LinkErrors } from '../protocol/dial.js'

export { TmemError }

export class TmemConnectionError extends TmemError {
  override readonly code: string

  constructor(code: string, message: string) {
    super(0, '')
    this.code = code
    this.message = message
  }
}

export class TmemProtocolError extends TmemError {
  override readonly code: string

  constructor(message: string) {
    super(0, '')
    this.code = 'EPROTO'
    this.message = message
  }
}

/** The error for a negative rc returned by `cmd`, naming the pool when there was one. */
export function rcError(rc: number, cmd: number, poolId?: number): TmemError {
  return new TmemError(rc, cmd, poolId === undefined ? undefined : `pool ${poolId}`)
}

/** How a connection of the client library makes its errors (see protocol/link.ts). */
export const CLIENT_LINK_ERRORS: LinkErrors = {
  connection: (code, message) => new TmemConnectionError(code, message),
  protocol: (message) => new TmemProtocolError(message),
}
