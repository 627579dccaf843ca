/**
 * Named errors of save and restore (part of the TmemError family, docs/errors.md). Each has a stable string `code` to branch on and a
 * message for people that says where the problem is (byte offset, pool id, page number).
 *
 * - `SaveStreamError`: the stream itself is bad (truncated, wrong marker or version, an
 *   inconsistent pool or page record). Raised while reading, before the target is touched.
 * - `RestoreError`: the stream is good but the target refused it (the client already exists,
 *   no memory for a page, ...). Says whether the half-restored client was removed again.
 * - `SaveError`: the source could not be saved (a page whose OID is all ones, a save subop
 *   that failed). The client's frozen state has been put back with SAVE_END.
 */
import { TmemError, type TmemErrorOptions } from './base.js'

/** Common base of the three save/restore error classes, for a single `instanceof` check. */
export class SaveRestoreError extends TmemError {
  override readonly name: string = 'SaveRestoreError'

  constructor(code: string, message: string, options: TmemErrorOptions = {}) {
    super(code, message, options)
  }
}

/** Codes of a bad stream. */
export type SaveStreamErrorCode =
  /** The stream ends inside a record, or before the end-of-pools marker. */
  | 'ETRUNCATED'
  /** The first word is not -5, or what follows the tmem section is neither -6 nor the end. */
  | 'EBADMARKER'
  /** The stream version is neither 0 nor 1. */
  | 'EBADVERSION'
  /** max_pools > 16, a separator that is not -1, unknown client flags, or cap > 100. */
  | 'EBADHEADER'
  /** A pool id out of range or seen twice, bad pool flags, or pages for an ephemeral pool. */
  | 'EBADPOOL'
  /** The same (OID, index) twice in one pool. */
  | 'EBADPAGE'
  /** An invalidation record for a pool the stream does not contain. */
  | 'EBADINV'

/** Where in the stream a problem was found. */
export interface StreamPlace {
  /** Byte offset from the start of the stream (the -5 marker is at 0). */
  offset: number
  poolId?: number
  /** 0-based number of the page record within its pool. */
  page?: number
  /** 0-based number of the invalidation record. */
  invalidation?: number
}

export class SaveStreamError extends SaveRestoreError {
  override readonly name: string = 'SaveStreamError'
  declare readonly code: SaveStreamErrorCode
  /** Byte offset of the field or record at fault. */
  readonly offset: number
  readonly poolId: number | undefined
  readonly page: number | undefined
  readonly invalidation: number | undefined

  constructor(code: SaveStreamErrorCode, place: StreamPlace, problem: string) {
    super(code, `Bad tmem save stream (${code}) at byte ${place.offset}${where(place)}: ${problem}`)
    this.offset = place.offset
    this.poolId = place.poolId
    this.page = place.page
    this.invalidation = place.invalidation
  }
}

function where(place: StreamPlace): string {
  const parts: string[] = []
  if (place.page !== undefined) parts.push(`page record ${place.page}`)
  if (place.invalidation !== undefined) parts.push(`invalidation record ${place.invalidation}`)
  if (place.poolId !== undefined) parts.push(`pool ${place.poolId}`)
  if (parts.length === 0) return ''
  return ` (${parts.join(' of ')})`
}

/** Codes of a restore the target refused. */
export type RestoreErrorCode =
  /** RESTORE_BEGIN failed: the target already has a client with this id. Nothing changed. */
  | 'EEXIST'
  /** A restore step failed on the target (see `step` and `rc`). */
  | 'ERESTORE'

export interface RestoreErrorDetail {
  cliId: number
  /** The subop or command that failed, e.g. 'TMEMC_RESTORE_PUT_PAGE'. */
  step: string
  /** Its return value, when it returned one. */
  rc?: number
  poolId?: number
  page?: number
  offset?: number
  /**
   * What became of the half-made client: 'none' (nothing had been created), 'destroyed'
   * (removed again), or 'left' (the channel cannot destroy clients; see docs).
   */
  cleanup: 'none' | 'destroyed' | 'left'
  cause?: unknown
}

export class RestoreError extends SaveRestoreError {
  override readonly name: string = 'RestoreError'
  declare readonly code: RestoreErrorCode
  readonly cliId: number
  readonly step: string
  readonly rc: number | undefined
  readonly poolId: number | undefined
  readonly page: number | undefined
  readonly offset: number | undefined
  readonly cleanup: 'none' | 'destroyed' | 'left'

  constructor(code: RestoreErrorCode, detail: RestoreErrorDetail, problem: string) {
    super(
      code,
      `Restore of tmem client ${detail.cliId} failed (${code}): ${problem}${cleanupText(detail.cleanup)}`,
      errnoOf(detail),
    )
    this.cliId = detail.cliId
    this.step = detail.step
    this.rc = detail.rc
    this.poolId = detail.poolId
    this.page = detail.page
    this.offset = detail.offset
    this.cleanup = detail.cleanup
  }
}

function cleanupText(cleanup: 'none' | 'destroyed' | 'left'): string {
  switch (cleanup) {
    case 'none':
      return '; the target was not changed'
    case 'destroyed':
      return '; the half-restored client was destroyed again'
    case 'left':
      return '; the restored pages were flushed but the client and its empty pools remain (this channel cannot destroy clients)'
  }
}

/** Codes of a failed save. */
export type SaveErrorCode =
  /** A persistent page has the all-ones OID, which the stream uses as its page terminator. */
  | 'EALLONESOID'
  /** A save subop failed or returned something the stream cannot carry. */
  | 'ESAVE'

export interface SaveErrorDetail {
  cliId: number
  step: string
  rc?: number
  poolId?: number
  index?: number
  cause?: unknown
}

export class SaveError extends SaveRestoreError {
  override readonly name: string = 'SaveError'
  declare readonly code: SaveErrorCode
  readonly cliId: number
  readonly step: string
  readonly rc: number | undefined
  readonly poolId: number | undefined
  readonly index: number | undefined

  constructor(code: SaveErrorCode, detail: SaveErrorDetail, problem: string) {
    super(code, `Save of tmem client ${detail.cliId} failed (${code}): ${problem}`, errnoOf(detail))
    this.cliId = detail.cliId
    this.step = detail.step
    this.rc = detail.rc
    this.poolId = detail.poolId
    this.index = detail.index
  }
}

/** The errno and cause options of a detail: a negative rc is the error's errno. */
function errnoOf(detail: { rc?: number; cause?: unknown }): TmemErrorOptions {
  const options: TmemErrorOptions = {}
  if (detail.rc !== undefined && detail.rc < 0) options.errno = detail.rc
  if (detail.cause !== undefined) options.cause = detail.cause
  return options
}
