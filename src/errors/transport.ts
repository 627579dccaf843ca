/**
 * Errors of a connection to a daemon (docs/errors.md, "Connection"). They have no errno: the
 * daemon never ran an op, so there is no rc to report.
 */
import { TmemError } from './base.js'

/**
 * The transport failed, did not answer in time, or the daemon refused the hello: `ECONNRESET`,
 * `ECLOSED`, `ETIMEDOUT`, `ECONNREFUSED`/`ENOENT`, `ESESSION`, `ENAMEINUSE`, `EBADSECRET`,
 * `EBADTOKEN`, `EABI`, `EBADNAME`, `ENOROOM`, `ESHUTDOWN`, `EMOVED`.
 */
export class TmemConnectionError extends TmemError {
  override readonly name: string = 'TmemConnectionError'

  constructor(code: string, message: string, cause?: unknown) {
    super(code, message, cause === undefined ? {} : { cause })
  }
}

/** The daemon closed the connection over a malformed frame, or sent one: code `EPROTO`. */
export class TmemProtocolError extends TmemError {
  override readonly name: string = 'TmemProtocolError'

  constructor(message: string) {
    super('EPROTO', message)
  }
}
