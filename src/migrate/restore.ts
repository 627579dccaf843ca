/**
 * Restore: re-creates a saved client on a host from a tmem stream (docs/semantics.md "Restore" with the docs/semantics.md "Decision: save stream fixes"
 * fixes), v1 or v0 (upgraded to v1: pool flags get version 1, OIDs become [object, 0, 0]).
 *
 * All or nothing, in two passes:
 * 1. The whole stream is read and checked (parse.ts) before the target is touched. A bad
 *    stream throws a SaveStreamError and the target sees not one call.
 * 2. The stream is read again and applied: RESTORE_BEGIN (which refuses an existing client:
 *    'EEXIST', target unchanged), SET_COMPRESS, SET_WEIGHT, SET_CAP, for each pool
 *    TMEM_AUTH (shared pools) and TMEM_RESTORE_NEW into the same slot with the same flags
 *    and UUID, RESTORE_PUT_PAGE for each page, RESTORE_FLUSH_PAGE for each invalidation, and
 *    FREEZE last if the client was saved frozen (Xen froze first, so every page failed with
 *    -EFROZEN; docs/semantics.md "Restore").
 * If the target refuses a step of pass 2 (no memory for a page, say), the client is removed
 * again with the channel's `destroyClient` and a RestoreError says so. A channel without
 * `destroyClient` cannot remove a client (no control subop does: TMEMC_DESTROY only thaws),
 * so the pages restored so far are flushed and the error reports the client as left.
 */
import {
  PAGE_SIZE,
  TMEM_CLIENT_COMPRESS,
  TMEM_CLIENT_FROZEN,
  TMEM_POOL_PERSIST,
  TMEM_POOL_SHARED,
  TMEM_SPEC_VERSION,
  TMEMC_FREEZE,
  TMEMC_RESTORE_BEGIN,
  TMEMC_RESTORE_FLUSH_PAGE,
  TMEMC_RESTORE_PUT_PAGE,
  TMEMC_SAVE_GET_POOL_FLAGS,
  TMEMC_SAVE_GET_VERSION,
  TMEMC_SET_CAP,
  TMEMC_SET_COMPRESS,
  TMEMC_SET_WEIGHT,
  rcName,
} from '../abi/constants.js'
import type { Oid } from '../abi/types.js'
import {
  ChannelStepError,
  type ControlChannel,
  Ctrl,
  authOp,
  checkCliId,
  restoreNewOp,
} from './channel.js'
import { RestoreError, type RestoreErrorDetail } from '../errors/mod.js'
import type { StreamHeader, StreamInvalidation, StreamPage, StreamPool } from './format.js'
import { type StreamSummary, type WalkOptions, walkStream } from './parse.js'
import { ProgressMeter, type ProgressOptions } from './progress.js'
import { type ByteReader, type RestoreSource, readerFactory } from './source.js'

export interface RestoreOptions extends ProgressOptions {
  /** Require the -6 section of a live save (its absence is then a truncation). Default false. */
  requireInvalidations?: boolean
  /** Reject a stream that has an (OID, index) twice in a pool. Default true. */
  checkDuplicates?: boolean
  /**
   * Authorise the client (TMEM_AUTH) for each shared pool's UUID before re-creating it, so
   * that a host requiring shared-pool authorisation (docs/semantics.md "Decision: shared pools") re-creates it shared. The source
   * client had that authorisation, or its pool would not be shared. Default true.
   */
  authorizeShared?: boolean
}

export interface RestoreResult {
  /** Version of the stream read (0: upgraded to v1 on the way in). */
  streamVersion: 0 | 1
  pools: number
  pages: number
  /** Invalidation records replayed (0 without a -6 section). */
  invalidations: number
  /** Stream length in bytes. */
  bytes: number
  weight: number
  cap: number
  compress: boolean
  frozen: boolean
  elapsedMs: number
}

/**
 * Restores client `cliId` from `source` onto the host behind `channel`; the client must not
 * exist there yet.
 *
 * @throws {SaveStreamError} The stream is damaged, truncated or inconsistent; the target was
 *   not touched.
 * @throws {RestoreError} 'EEXIST' when the client exists (target unchanged); 'ERESTORE' when
 *   the target refused a step (the half-made client is destroyed, see `cleanup`).
 * @example
 * ```ts
 * await restoreClient(hostChannel(host), 7, '/var/lib/tmem/client7.tmem', {
 *   onProgress: (p) => console.log(p.phase, p.pages, p.bytesPerSecond),
 * })
 * ```
 */
export async function restoreClient(
  channel: ControlChannel,
  cliId: number,
  source: RestoreSource,
  options: RestoreOptions = {},
): Promise<RestoreResult> {
  checkCliId(cliId)
  const start = performance.now()
  const openReader = await readerFactory(source)
  const walkOptions: WalkOptions = {
    checkDuplicates: options.checkDuplicates ?? true,
    requireInvalidations: options.requireInvalidations ?? false,
  }
  const validateMeter = new ProgressMeter('validate', options)
  const summary = await withReader(openReader, (reader) => {
    validateMeter.bytesTotal = reader.size
    return walkStream(reader, {}, walkOptions, validateMeter)
  })
  validateMeter.done()

  const applier = new Applier(channel, cliId, options, summary)
  await applier.begin()
  const applyMeter = new ProgressMeter('restore', options)
  applyMeter.bytesTotal = summary.bytes
  applyMeter.pagesTotal = summary.pages
  try {
    await withReader(openReader, (reader) =>
      walkStream(reader, applier, { ...walkOptions, checkDuplicates: false }, applyMeter),
    )
    await applier.finish()
  } catch (error) {
    throw await applier.rollback(error)
  }
  applyMeter.done()
  const header = summary.header
  return {
    streamVersion: header.version,
    pools: summary.pools.length,
    pages: summary.pages,
    invalidations: summary.invalidations ?? 0,
    bytes: summary.bytes,
    weight: header.weight,
    cap: header.cap,
    compress: (header.clientFlags & TMEM_CLIENT_COMPRESS) !== 0,
    frozen: (header.clientFlags & TMEM_CLIENT_FROZEN) !== 0,
    elapsedMs: performance.now() - start,
  }
}

/**
 * Reads and checks a whole stream without touching any host, and says what it holds.
 *
 * @throws {SaveStreamError} As restoreClient does for a bad stream.
 */
export async function inspectSaveStream(
  source: RestoreSource,
  options: Pick<RestoreOptions, 'requireInvalidations' | 'checkDuplicates'> & ProgressOptions = {},
): Promise<StreamSummary> {
  const openReader = await readerFactory(source)
  const meter = new ProgressMeter('validate', options)
  const summary = await withReader(openReader, (reader) => {
    meter.bytesTotal = reader.size
    return walkStream(reader, {}, options, meter)
  })
  meter.done()
  return summary
}

async function withReader<T>(
  open: () => Promise<ByteReader>,
  use: (reader: ByteReader) => Promise<T>,
): Promise<T> {
  const reader = await open()
  try {
    return await use(reader)
  } finally {
    await reader.close()
  }
}

/** A page put by the restore, kept only when the channel cannot destroy clients. */
interface PutRecord {
  poolId: number
  oid: Oid
  index: number
}

/** Pass 2: the visitor that applies each record to the target. */
class Applier {
  readonly #channel: ControlChannel
  readonly #cliId: number
  readonly #ctrl: Ctrl
  readonly #authorizeShared: boolean
  readonly #summary: StreamSummary
  readonly #puts: PutRecord[] | null
  #begun = false
  /** Where in the stream the current step comes from, for messages. */
  #place: { poolId?: number; page?: number; offset?: number } = {}

  constructor(
    channel: ControlChannel,
    cliId: number,
    options: RestoreOptions,
    summary: StreamSummary,
  ) {
    this.#channel = channel
    this.#cliId = cliId
    this.#ctrl = new Ctrl(channel, cliId)
    this.#authorizeShared = options.authorizeShared ?? true
    this.#summary = summary
    this.#puts = channel.destroyClient === undefined ? [] : null
  }

  /** Checks the target's version and creates the client; nothing to undo if this throws. */
  async begin(): Promise<void> {
    const version = await this.#ctrl.run(TMEMC_SAVE_GET_VERSION)
    if (version !== TMEM_SPEC_VERSION) {
      throw new RestoreError(
        'ERESTORE',
        { cliId: this.#cliId, step: 'TMEMC_SAVE_GET_VERSION', rc: version, cleanup: 'none' },
        `the target speaks tmem version ${version}; restore needs version 1`,
      )
    }
    const rc = await this.#ctrl.run(TMEMC_RESTORE_BEGIN)
    if (rc < 0) {
      throw new RestoreError(
        'EEXIST',
        { cliId: this.#cliId, step: 'TMEMC_RESTORE_BEGIN', rc, cleanup: 'none' },
        `the target already has client ${this.#cliId} (RESTORE_BEGIN returned ${rc})`,
      )
    }
    this.#begun = true
  }

  async header(header: StreamHeader): Promise<void> {
    // Compression is applied either way, so that a target whose new clients compress by
    // default restores a client that did not.
    const compress = (header.clientFlags & TMEM_CLIENT_COMPRESS) !== 0 ? 1 : 0
    await this.#set(
      TMEMC_SET_COMPRESS,
      'TMEMC_SET_COMPRESS',
      compress,
      compress === 1
        ? 'the target refused compression (a host with dedup cannot compress)'
        : 'the target refused to turn compression off',
    )
    await this.#set(
      TMEMC_SET_WEIGHT,
      'TMEMC_SET_WEIGHT',
      header.weight,
      `the target refused weight ${header.weight}`,
    )
    await this.#set(
      TMEMC_SET_CAP,
      'TMEMC_SET_CAP',
      header.cap,
      `the target refused cap ${header.cap}`,
    )
  }

  async pool(pool: StreamPool): Promise<void> {
    this.#place = { poolId: pool.poolId, offset: pool.offset }
    const channel = this.#channel
    if (pool.shared && this.#authorizeShared) {
      const rc = await channel.control(authOp(this.#cliId, pool.uuid, 1))
      if (rc < 0)
        throw this.#failure(
          'TMEM_AUTH',
          rc,
          `the target refused shared-pool authorisation for pool ${pool.poolId} (${rcName(rc)})`,
        )
    }
    const slot = await channel.control(
      restoreNewOp(this.#cliId, pool.poolId, pool.restoreFlags, pool.uuid),
    )
    if (slot !== pool.poolId) {
      throw this.#failure(
        'TMEM_RESTORE_NEW',
        slot,
        `the target refused pool ${pool.poolId} with flags 0x${pool.restoreFlags.toString(16)} (${slot < 0 ? `${rcName(slot)}, ${slot}` : `got slot ${slot}`})`,
      )
    }
    // A shared request the target downgraded to private (no authorisation) is a failure.
    const flags = await this.#ctrl.run(TMEMC_SAVE_GET_POOL_FLAGS, pool.poolId)
    const kind = TMEM_POOL_PERSIST | TMEM_POOL_SHARED
    if (flags < 0 || (flags & kind) !== (pool.restoreFlags & kind)) {
      throw this.#failure(
        'TMEMC_SAVE_GET_POOL_FLAGS',
        flags,
        `pool ${pool.poolId} came back with flags 0x${(flags >>> 0).toString(16)} instead of 0x${pool.restoreFlags.toString(16)} (a shared pool needs TMEM_AUTH or global auth on the target)`,
      )
    }
  }

  async page(page: StreamPage): Promise<void> {
    this.#place = { poolId: page.poolId, page: page.page, offset: page.offset }
    const rc = await this.#ctrl.run(
      TMEMC_RESTORE_PUT_PAGE,
      page.poolId,
      PAGE_SIZE,
      page.index,
      page.data,
      page.oid,
    )
    if (rc !== 1) {
      throw this.#failure(
        'TMEMC_RESTORE_PUT_PAGE',
        rc,
        `RESTORE_PUT_PAGE of page ${page.page} of pool ${page.poolId} (OID ${oidText(page.oid)}, index ${page.index}) returned ${rcName(rc)} (${rc})`,
      )
    }
    this.#puts?.push({ poolId: page.poolId, oid: page.oid, index: page.index })
  }

  async invalidation(record: StreamInvalidation): Promise<void> {
    this.#place = { poolId: record.poolId, offset: record.offset }
    const rc = await this.#ctrl.run(
      TMEMC_RESTORE_FLUSH_PAGE,
      record.poolId,
      0,
      record.index,
      null,
      record.oid,
    )
    if (rc <= 0) {
      throw this.#failure(
        'TMEMC_RESTORE_FLUSH_PAGE',
        rc,
        `RESTORE_FLUSH_PAGE of invalidation ${record.number} (pool ${record.poolId}, OID ${oidText(record.oid)}, index ${record.index}) returned ${rcName(rc)} (${rc})`,
      )
    }
  }

  /** FREEZE after the data is in, if the client was saved frozen. */
  async finish(): Promise<void> {
    this.#place = {}
    await this.#channel.settle?.()
    if ((this.#summary.header.clientFlags & TMEM_CLIENT_FROZEN) === 0) return
    await this.#set(TMEMC_FREEZE, 'TMEMC_FREEZE', 0, 'the target refused to freeze the client')
  }

  /** Undoes pass 2 as far as the channel allows; returns the error to throw. */
  async rollback(error: unknown): Promise<RestoreError> {
    const cleanup = this.#begun ? await this.#undo() : 'none'
    if (error instanceof StepFailure)
      return new RestoreError('ERESTORE', { ...error.detail, cleanup }, error.problem)
    if (error instanceof ChannelStepError) {
      return new RestoreError(
        'ERESTORE',
        {
          cliId: this.#cliId,
          step: error.step,
          rc: error.rc,
          poolId: error.poolId,
          cleanup,
          cause: error,
        },
        error.message,
      )
    }
    const text = error instanceof Error ? error.message : String(error)
    return new RestoreError(
      'ERESTORE',
      {
        cliId: this.#cliId,
        step: 'read stream (second pass)',
        cleanup,
        cause: error,
        ...this.#place,
      },
      `reading the stream a second time failed: ${text}`,
    )
  }

  async #undo(): Promise<RestoreErrorDetail['cleanup']> {
    const channel = this.#channel
    if (channel.destroyClient !== undefined) {
      try {
        await channel.destroyClient(this.#cliId)
        return 'destroyed'
      } catch {
        // Fall through to flushing what was put.
      }
    }
    for (const put of this.#puts ?? []) {
      try {
        await this.#ctrl.run(TMEMC_RESTORE_FLUSH_PAGE, put.poolId, 0, put.index, null, put.oid)
      } catch {
        // Best effort.
      }
    }
    return 'left'
  }

  /** A client-wide subop that must not fail. */
  async #set(subop: number, step: string, arg1: number, problem: string): Promise<void> {
    const rc = await this.#ctrl.run(subop, 0, arg1)
    if (rc < 0) throw this.#failure(step, rc, `${problem} (${step} returned ${rc})`)
  }

  #failure(step: string, rc: number, problem: string): StepFailure {
    return new StepFailure({ cliId: this.#cliId, step, rc, ...this.#place }, problem)
  }
}

/** A refused step of pass 2, before rollback has decided what became of the client. */
class StepFailure extends Error {
  readonly detail: Omit<RestoreErrorDetail, 'cleanup'>
  readonly problem: string

  constructor(detail: Omit<RestoreErrorDetail, 'cleanup'>, problem: string) {
    super(problem)
    this.detail = detail
    this.problem = problem
  }
}

function oidText(oid: Oid): string {
  return `[0x${oid[0].toString(16)}, 0x${oid[1].toString(16)}, 0x${oid[2].toString(16)}]`
}
