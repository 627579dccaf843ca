/**
 * Exit codes of the `tmem` command (STYLE §5.6), shared by every verb:
 * 0 ok, 1 the operation failed (the message names the errno), 2 usage, 3 daemon unreachable.
 */
export const EXIT_OK = 0
export const EXIT_FAILED = 1
export const EXIT_USAGE = 2
export const EXIT_UNREACHABLE = 3

/** A bad option or argument: printed as `tmem: <message>`, exit 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
  readonly code = 'EUSAGE'
}

/**
 * The daemon ran the op and it failed (or the CLI could not find what the op names, such as a
 * client name): printed as `tmem: <message>`, exit 1. `code` is the errno name (`EPERM`) when
 * the daemon returned an rc, else a CLI code (`ENOCLIENT`).
 */
export class OpFailedError extends Error {
  override readonly name = 'OpFailedError'
  readonly code: string
  /** The rc the daemon returned, or 0 when the failure was found by the CLI. */
  readonly rc: number

  constructor(message: string, code: string, rc = 0) {
    super(message)
    this.code = code
    this.rc = rc
  }
}

/**
 * The daemon could not be reached (no socket, refused, wrong token, no answer in time):
 * printed as `tmem: <message>`, exit 3.
 */
export class UnreachableError extends Error {
  override readonly name = 'UnreachableError'
  readonly code: string

  constructor(message: string, code: string) {
    super(message)
    this.code = code
  }
}
