/**
 * The client's errors (docs/errors.md). The classes are the package's error family
 * (src/errors/); this file adds the client's helpers. Every error the client raises is a
 * `TmemError`; applications branch on `code`:
 *
 * - `TmemOpError`: the daemon ran the op and it returned a negative rc: `code` is the errno
 *   name (`EFROZEN`, `ENOMEM`, `ENODEV`, ...), `errno` the rc itself (-1000 for EFROZEN);
 * - `TmemConnectionError` (no errno): the transport failed or the daemon refused the hello:
 *   `ECONNRESET`, `ECLOSED`, `ETIMEDOUT`, `ECONNREFUSED`/`ENOENT`, `ESESSION`, `ENAMEINUSE`,
 *   `EBADSECRET`, `EBADTOKEN`, `EABI`, `EBADNAME`, `ENOROOM`, `ESHUTDOWN`, `EMOVED`;
 * - `TmemProtocolError` (no errno, code `EPROTO`): the daemon closed the connection over a
 *   malformed frame, or sent one.
 */
import { TmemConnectionError, TmemError, TmemOpError, TmemProtocolError } from '../errors/mod.js'
import type { LinkErrors } from '../protocol/dial.js'

export { TmemConnectionError, TmemError, TmemOpError, TmemProtocolError }

/** The error for a negative rc returned by `cmd`, naming the pool when there was one. */
export function rcError(rc: number, cmd: number, poolId?: number): TmemOpError {
  return new TmemOpError(rc, cmd, poolId === undefined ? undefined : `pool ${poolId}`)
}

/** How a connection of the client library makes its errors (see protocol/link.ts). */
export const CLIENT_LINK_ERRORS: LinkErrors = {
  connection: (code, message) => new TmemConnectionError(code, message),
  protocol: (message) => new TmemProtocolError(message),
}
