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
