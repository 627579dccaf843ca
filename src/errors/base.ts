/**
 * The root of tmem's error family (docs/errors.md). Every error the library, the client, the
 * CLI and save/restore/migration raise on purpose is a `TmemError`:
 *
 *   TmemError                     code (stable string), errno (optional negative rc)
 *   ├─ TmemOpError                an op ran and returned rc < 0: code = errno name, cmd
 *   ├─ TmemConnectionError        the transport failed: ECONNRESET, ECLOSED, ETIMEDOUT, ...
 *   ├─ TmemProtocolError          a malformed frame: EPROTO
 *   ├─ SaveRestoreError           save/restore: SaveStreamError (with the stream offset),
 *   │                             RestoreError, SaveError
 *   ├─ MigrationError             a live migration refused or rolled back (code, phase)
 *   ├─ MigrationStepError         one step of a live migration was refused (side, step)
 *   └─ (src/cli/exit.ts)          UsageError, OpFailedError, UnreachableError
 *
 * Applications branch on `code`; messages are for people. This folder is the bottom layer: it
 * imports only src/abi, so every other layer can use it.
 */
import { cmdName, rcName } from '../abi/constants.js'

export interface TmemErrorOptions {
  /** The negative return value behind the error, when there is one. */
  errno?: number
  cause?: unknown
}

export class TmemError extends Error {
  override readonly name: string = 'TmemError'
  /** Stable code to branch on, such as 'EFROZEN', 'ECONNRESET' or 'ETRUNCATED'. */
  readonly code: string
  /** The negative return value (rc) behind the error, or undefined when there was none. */
  readonly errno: number | undefined

  constructor(code: string, message: string, options: TmemErrorOptions = {}) {
    super(message)
    this.code = code
    this.errno = options.errno
    if (options.cause !== undefined) this.cause = options.cause
  }
}

/**
 * An op ran and returned a negative rc: `code` is its errno name ('EFROZEN', 'ENOMEM', ...),
 * `errno` the rc itself (-1000 for EFROZEN), `cmd` the command name.
 */
export class TmemOpError extends TmemError {
  override readonly name: string = 'TmemOpError'
  declare readonly errno: number
  /** The command that failed, such as 'TMEM_PUT_PAGE'. */
  readonly cmd: string

  constructor(rc: number, cmd: number | string, detail?: string) {
    const command = typeof cmd === 'number' ? cmdName(cmd) : cmd
    const code = rcName(rc)
    super(
      code,
      `${command} failed with ${code} (${rc})${detail === undefined ? '' : `: ${detail}`}`,
      { errno: rc },
    )
    this.cmd = command
  }
}
