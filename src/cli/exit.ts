/**
 * Exit codes of the `tmem` command (STYLE §5.6), shared by every verb:
 * 0 ok, 1 the operation failed (the message names the errno), 2 usage, 3 daemon unreachable.
 * docs/errors.md lists every error code with the exit code it maps to.
 *
 * The CLI's own errors are part of the package's family (`TmemError`, src/errors/), so a code
 * means the same thing in the library and on the command line.
 */
import { MigrationError, TmemConnectionError, TmemError, TmemProtocolError } from '../errors/mod.js'

export const EXIT_OK = 0
export const EXIT_FAILED = 1
export const EXIT_USAGE = 2
export const EXIT_UNREACHABLE = 3

/** A bad option or argument: printed as `tmem: <message>`, exit 2. */
export class UsageError extends TmemError {
  override readonly name: string = 'UsageError'
  declare readonly code: 'EUSAGE'

  constructor(message: string) {
    super('EUSAGE', message)
  }
}

/**
 * The daemon ran the op and it failed (or the CLI could not find what the op names, such as a
 * client name): printed as `tmem: <message>`, exit 1. `code` is the errno name (`EPERM`) when
 * the daemon returned an rc, else a CLI code (`ENOCLIENT`).
 */
export class OpFailedError extends TmemError {
  override readonly name: string = 'OpFailedError'
  /** The rc the daemon returned, or 0 when the failure was found by the CLI. */
  readonly rc: number

  constructor(message: string, code: string, rc = 0) {
    super(code, message, rc < 0 ? { errno: rc } : {})
    this.rc = rc
  }
}

/**
 * The daemon could not be reached (no socket, refused, wrong token, no answer in time):
 * printed as `tmem: <message>`, exit 3.
 */
export class UnreachableError extends TmemError {
  override readonly name: string = 'UnreachableError'

  constructor(message: string, code: string) {
    super(code, message)
  }
}

/**
 * The exit code an error maps to (docs/errors.md): usage 2; a daemon that cannot be reached
 * or stopped answering 3 (a connection error, or a migration refused as EUNREACHABLE); any
 * other error 1.
 */
export function exitCodeOf(error: unknown): number {
  if (error instanceof UsageError) return EXIT_USAGE
  if (error instanceof UnreachableError) return EXIT_UNREACHABLE
  if (error instanceof TmemProtocolError) return EXIT_FAILED
  if (error instanceof TmemConnectionError) return EXIT_UNREACHABLE
  if (error instanceof MigrationError && error.code === 'EUNREACHABLE') return EXIT_UNREACHABLE
  return EXIT_FAILED
}

/** The line printed for an error: its message, and the code of a connection error. */
export function messageOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error)
  if (error instanceof TmemConnectionError && !(error instanceof UnreachableError))
    return `${error.message} (${error.code})`
  return error.message
}
