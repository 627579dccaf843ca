/**
 * The package's error type for failed tmem operations: a stable string `code` (the errno
 * name: 'EFROZEN', 'ENOMEM', ...), the negative return value `errno`, and the command name.
 * Applications branch on `code`; messages are for people. Shared by the in-process friendly
 * layer and the network client.
 */
import { cmdName, rcName } from './abi/constants.js'

export class TmemError extends Error {
  override readonly name = 'TmemError'
  /** Stable code: the errno name of `errno`, such as 'EFROZEN'. */
  readonly code: string
  /** The negative return value of the operation. */
  readonly errno: number
  /** The command that failed, such as 'TMEM_PUT_PAGE'. */
  readonly cmd: string

  constructor(rc: number, cmd: number | string, detail?: string) {
    const command = typeof cmd === 'number' ? cmdName(cmd) : cmd
    const code = rcName(rc)
    super(`${command} failed with ${code} (${rc})${detail === undefined ? '' : `: ${detail}`}`)
    this.code = code
    this.errno = rc
    this.cmd = command
  }
}
