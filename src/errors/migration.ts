/**
 * Errors of live migration (docs/migration.md, docs/errors.md).
 *
 * - `MigrationStepError`: one request of a phase was refused or answered wrongly. Its `code`
 *   is the real cause: the errno name the daemon answered ('ENOMEM', 'EIO', ...), or
 *   'EBADREPLY' for an answer that is no error but not the one expected. `side` says which
 *   daemon, `step` which request. The phases throw it; it reaches the caller as the `cause`
 *   of a MigrationError.
 * - `MigrationError`: what `migrateClient` rejects with. A refusal before anything moved
 *   (EUNREACHABLE, ENOCLIENT, EEXIST, EABI, ENOTSUPP), or EMIGRATE: the migration failed
 *   part-way and was rolled back; `causeCode` names why (the step's code, or a connection
 *   code such as ETIMEDOUT or ECONNRESET).
 */
import { rcName } from '../abi/constants.js'
import { TmemError } from './base.js'

/** The phases of a live migration, in order (docs/migration.md, "Phases"). */
export type MigratePhase =
  'preflight' | 'shell' | 'precopy' | 'changes' | 'frozen' | 'switch' | 'done'

export type MigrationErrorCode =
  /** The target (or source) daemon cannot be reached. Nothing moved. */
  | 'EUNREACHABLE'
  /** The source has no such client. Nothing moved. */
  | 'ENOCLIENT'
  /** The target already has a client of that name (or cannot take its id). Nothing moved. */
  | 'EEXIST'
  /** The target does not serve the client's ABI (v0 without --accept-v0). Nothing moved. */
  | 'EABI'
  /** The target daemon does not support live migration. Nothing moved. */
  | 'ENOTSUPP'
  /** The migration failed part-way; see `phase`, `causeCode` and `sourceIntact`. */
  | 'EMIGRATE'

export type TargetCleanup = 'none' | 'destroyed' | 'unreachable'

export interface MigrationErrorDetail {
  sourceIntact?: boolean
  targetCleanup?: TargetCleanup
  cause?: unknown
}

export class MigrationError extends TmemError {
  override readonly name: string = 'MigrationError'
  declare readonly code: MigrationErrorCode
  readonly phase: MigratePhase
  /** True when the source client was left as it was (running, all its pages). */
  readonly sourceIntact: boolean
  /** What became of the half-made client on the target. */
  readonly targetCleanup: TargetCleanup
  /**
   * The code of the real cause: the cause's own `code` when it is a TmemError ('ENOMEM',
   * 'ETIMEDOUT', 'ECONNRESET', ...), else this error's code.
   */
  readonly causeCode: string

  constructor(
    code: MigrationErrorCode,
    phase: MigratePhase,
    message: string,
    detail: MigrationErrorDetail = {},
  ) {
    const cause = detail.cause
    super(code, message, {
      ...(cause === undefined ? {} : { cause }),
      ...(cause instanceof TmemError && cause.errno !== undefined ? { errno: cause.errno } : {}),
    })
    this.phase = phase
    this.sourceIntact = detail.sourceIntact ?? true
    this.targetCleanup = detail.targetCleanup ?? 'none'
    this.causeCode = cause instanceof TmemError ? cause.code : code
  }
}

/** Which daemon a step ran on. */
export type MigrationSide = 'source' | 'target'

export class MigrationStepError extends TmemError {
  override readonly name: string = 'MigrationStepError'
  readonly side: MigrationSide
  /** The request, such as 'RESTORE_PAGES' or 'SESSION BIND'. */
  readonly step: string

  /**
   * `rc` is what the daemon answered: negative, the code is its errno name; not negative,
   * the answer was not the one expected (`EBADREPLY`). A string is a code of this module's
   * own (`EDRAIN`). `problem` adds what was asked.
   */
  constructor(side: MigrationSide, step: string, rc: number | string, problem = '') {
    const code = typeof rc === 'string' ? rc : rc < 0 ? errnoName(rc) : 'EBADREPLY'
    const answer =
      typeof rc === 'string'
        ? `failed (${code})`
        : rc < 0
          ? `answered ${code} (${rc})`
          : `answered ${rc}, which is not the expected answer`
    super(
      code,
      `${step} on the ${side} ${answer}${problem === '' ? '' : `: ${problem}`}`,
      typeof rc === 'number' && rc < 0 ? { errno: rc } : {},
    )
    this.side = side
    this.step = step
  }
}

/** SESSION rcs are Linux errno values (docs/protocol.md): the ones the ABI's table lacks. */
const SESSION_ERRNO_NAMES: Readonly<Record<number, string>> = {
  2: 'ENOENT',
  5: 'EIO',
  16: 'EBUSY',
  17: 'EEXIST',
  111: 'ECONNREFUSED',
}

/** The errno name of a negative rc of an engine op or a SESSION request. */
export function errnoName(rc: number): string {
  return SESSION_ERRNO_NAMES[-rc] ?? rcName(rc)
}
