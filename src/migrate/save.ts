/**
 * Save: drives the save subops of a host (docs/semantics.md "Save subops") and writes the Xen v1 tmem stream of
 * docs/semantics.md "Save stream" byte for byte, with the docs/semantics.md "Decision: save stream fixes" fixes: every persistent page exactly once, oldest
 * first; pool flags with the version bits; a page with the all-ones OID fails the save with a
 * named error instead of writing a record that reads back as the page terminator.
 *
 * Differences from Xen's `xc_tmem_save`, all deliberate:
 * - A non-live save ends with SAVE_END. Xen never calls it because the domain is destroyed
 *   after a save; our host keeps the client, so SAVE_END gives it back its frozen state (it
 *   was frozen by SAVE_BEGIN) and resets the save state.
 * - A live save leaves the client in migration mode for `saveInvalidations`, which writes the
 *   -6 section and then calls SAVE_END.
 * - Any failure calls SAVE_END before throwing, so the client is never left frozen by a
 *   save that did not finish. What the sink received by then is not a valid stream.
 * - Pool flags are written with version 1 whatever the host reports, since the stream is a
 *   v1 stream (a v0 client of an `acceptV0` host is saved as a v1 client).
 * - A save subop that fails (other than the documented -1 "no pool" and "no more pages")
 *   fails the save instead of writing a record from garbage.
 */
import { readU32LE, writeU32LE } from '../util/le.js'
import {
  MAX_POOLS_PER_DOMAIN,
  PAGE_SIZE,
  TMEM_SPEC_VERSION,
  TMEMC_SAVE_BEGIN,
  TMEMC_SAVE_END,
  TMEMC_SAVE_GET_CLIENT_CAP,
  TMEMC_SAVE_GET_CLIENT_FLAGS,
  TMEMC_SAVE_GET_CLIENT_WEIGHT,
  TMEMC_SAVE_GET_MAXPOOLS,
  TMEMC_SAVE_GET_NEXT_INV,
  TMEMC_SAVE_GET_NEXT_PAGE,
  TMEMC_SAVE_GET_VERSION,
  rcName,
} from '../abi/constants.js'
import { TMEM_HANDLE_BYTES_V1 } from '../abi/layout.js'
import { type ControlChannel, Ctrl, checkCliId } from './channel.js'
import { SaveError } from '../errors/mod.js'
import {
  END_WORD,
  MARKER_TMEM,
  MARKER_TMEM_EXTRA,
  POOL_RECORD_BYTES,
  pageRecordBytes,
} from './format.js'
import { ProgressMeter, type ProgressOptions } from './progress.js'
import { ChunkWriter, type FileSink, type StreamSink, openFileSink } from './sink.js'
import { copyBytes } from '../util/bytes.js'
import { planPools } from './save-pools.js'

export interface SaveOptions extends ProgressOptions {
  /**
   * Live save (SAVE_BEGIN with live = 1): the client keeps running, pages it removes are
   * recorded for `saveInvalidations`, and SAVE_END is left to that call. Default false.
   */
  live?: boolean
  /** Size of the chunks handed to the sink. Default 1 MiB. */
  chunkBytes?: number
}

export interface SaveResult {
  /**
   * False when SAVE_BEGIN reported nothing to save (no such client, or no pools): nothing
   * was written and the client is unchanged, as Xen's "no tmem" case.
   */
  saved: boolean
  live: boolean
  /** Pool records written. */
  pools: number
  /** Page records written. */
  pages: number
  /** Stream bytes written. */
  bytes: number
  /** Pools whose page list ended before n_pages (a terminator was written): live saves only. */
  endedEarly: number[]
  elapsedMs: number
}

export interface InvalidationsOptions extends ProgressOptions {
  /** Call SAVE_END afterwards, ending the live save. Default true. */
  end?: boolean
  chunkBytes?: number
}

export interface InvalidationsResult {
  invalidations: number
  bytes: number
}

export interface SaveToFileResult extends SaveResult {
  /** Invalidation records written (live saves), else null. */
  invalidations: number | null
}

/** The tool buffer of SAVE_GET_NEXT_PAGE: a v1 tmem_handle, then the page. */
const PAGE_BUFFER_BYTES = TMEM_HANDLE_BYTES_V1 + PAGE_SIZE
// Offsets in a v1 tmem_handle (docs/semantics.md "Op layout").
const HANDLE_POOL_ID = 0
const HANDLE_INDEX = 4
const HANDLE_OID = 8
const OID_BYTES = 24

/**
 * Writes the tmem section of client `cliId` (marker -5 to the end-of-pools word) to `sink`.
 *
 * @returns What was written; `saved: false` when the host has nothing to save for the client.
 * @throws {SaveError} 'EALLONESOID' for a persistent page whose OID is all ones, 'ESAVE' when
 *   a save subop fails. The client's frozen state is restored (SAVE_END) before the throw; a
 *   sink's own error is rethrown the same way.
 * @example
 * ```ts
 * const memory = memorySink()
 * const result = await saveClient(hostChannel(host), 7, memory.sink)
 * if (result.saved) writeFileSync('client7.tmem', memory.bytes())
 * ```
 */
export async function saveClient(
  channel: ControlChannel,
  cliId: number,
  sink: StreamSink,
  options: SaveOptions = {},
): Promise<SaveResult> {
  checkCliId(cliId)
  const live = options.live ?? false
  const ctrl = new Ctrl(channel, cliId)
  const meter = new ProgressMeter('save', options)
  const begun = await ctrl.run(TMEMC_SAVE_BEGIN, 0, live ? 1 : 0)
  if (begun <= 0) {
    return {
      saved: false,
      live,
      pools: 0,
      pages: 0,
      bytes: 0,
      endedEarly: [],
      elapsedMs: meter.elapsedMs(),
    }
  }
  try {
    const writer = new ChunkWriter(sink, options.chunkBytes)
    const result = await writeSection(ctrl, cliId, writer, meter)
    await writer.flush()
    meter.bytes = writer.written
    meter.done()
    if (!live) await endSave(ctrl, cliId)
    return { saved: true, live, ...result, bytes: writer.written, elapsedMs: meter.elapsedMs() }
  } catch (error) {
    await abortSave(ctrl)
    throw error
  }
}

async function writeSection(
  ctrl: Ctrl,
  cliId: number,
  writer: ChunkWriter,
  meter: ProgressMeter,
): Promise<{ pools: number; pages: number; endedEarly: number[] }> {
  const query = async (subop: number, step: string, poolId = 0): Promise<number> => {
    const rc = await ctrl.run(subop, poolId)
    if (rc === -1) throw new SaveError('ESAVE', { cliId, step, rc, poolId }, `${step} returned -1`)
    return rc >>> 0
  }
  const version = await query(TMEMC_SAVE_GET_VERSION, 'TMEMC_SAVE_GET_VERSION')
  if (version !== TMEM_SPEC_VERSION) {
    throw new SaveError(
      'ESAVE',
      { cliId, step: 'TMEMC_SAVE_GET_VERSION', rc: version },
      `the host speaks tmem version ${version}; this saver writes version 1 streams`,
    )
  }
  const maxPools = await query(TMEMC_SAVE_GET_MAXPOOLS, 'TMEMC_SAVE_GET_MAXPOOLS')
  if (maxPools > MAX_POOLS_PER_DOMAIN) {
    throw new SaveError(
      'ESAVE',
      { cliId, step: 'TMEMC_SAVE_GET_MAXPOOLS', rc: maxPools },
      `the host reports ${maxPools} pools per client; a stream carries at most ${MAX_POOLS_PER_DOMAIN}`,
    )
  }
  const clientFlags = await query(TMEMC_SAVE_GET_CLIENT_FLAGS, 'TMEMC_SAVE_GET_CLIENT_FLAGS')
  // Weight and cap 0xFFFFFFFF come back as -2 (docs/semantics.md "Save subops") and are written as such, as Xen does.
  const weight = await query(TMEMC_SAVE_GET_CLIENT_WEIGHT, 'TMEMC_SAVE_GET_CLIENT_WEIGHT')
  const cap = await query(TMEMC_SAVE_GET_CLIENT_CAP, 'TMEMC_SAVE_GET_CLIENT_CAP')

  const plans = await planPools(ctrl, cliId, maxPools)
  meter.pagesTotal = plans.reduce((sum, plan) => sum + plan.pages, 0)

  await writer.room(32)
  writer.u32(MARKER_TMEM >>> 0)
  writer.u32(version)
  writer.u32(maxPools)
  writer.u32(END_WORD)
  writer.u32(clientFlags)
  writer.u32(weight)
  writer.u32(cap)
  writer.u32(END_WORD)

  const buffer = new Uint8Array(PAGE_BUFFER_BYTES)
  const recordBytes = pageRecordBytes(1)
  const endedEarly: number[] = []
  let pages = 0
  for (const plan of plans) {
    await writer.room(POOL_RECORD_BYTES)
    writer.u32(plan.poolId)
    writer.u32(plan.flags)
    writer.u32(plan.pages)
    writer.bytes(plan.uuid, 0, 16)
    for (let n = 0; n < plan.pages; n++) {
      if (!writer.fits(recordBytes)) await writer.room(recordBytes)
      const rc = await nextPage(ctrl, plan.poolId, writer, buffer)
      if (rc === 0) continue
      if (rc === -1) {
        // The pool's list ended early (pages removed during a live save): the terminator.
        writer.fill(0xff, OID_BYTES)
        endedEarly.push(plan.poolId)
        break
      }
      if (rc < 0) {
        throw new SaveError(
          'ESAVE',
          { cliId, step: 'TMEMC_SAVE_GET_NEXT_PAGE', rc, poolId: plan.poolId },
          `TMEMC_SAVE_GET_NEXT_PAGE returned ${rcName(rc)} (${rc}) for pool ${plan.poolId}`,
        )
      }
      const chunk = writer.chunk
      const at = writer.cursor
      if (allOnes(chunk, at, OID_BYTES)) {
        const index = readU32LE(chunk, at + OID_BYTES)
        throw new SaveError(
          'EALLONESOID',
          { cliId, step: 'TMEMC_SAVE_GET_NEXT_PAGE', poolId: plan.poolId, index },
          `persistent page (pool ${plan.poolId}, OID all ones, index ${index}) cannot be saved: the v1 stream reads that OID as the end of the pool's pages (docs/save-restore.md, and docs/semantics.md "Save stream"); flush it or give it another OID`,
        )
      }
      writer.advance(recordBytes)
      pages++
      meter.pages = pages
      meter.bytes = writer.written
      meter.tick()
    }
  }
  await writer.room(4)
  writer.u32(END_WORD)
  return { pools: plans.length, pages, endedEarly }
}

/**
 * SAVE_GET_NEXT_PAGE, leaving a page record (OID, index, page) at the writer's cursor when it
 * returns 1 (the cursor is not advanced). The caller has made room for the record.
 *
 * The host writes a tmem_handle (pool id, index, OID) then the page; the record wants OID,
 * index, page. Handing the host the chunk 4 bytes before the cursor puts the page where the
 * record wants it, so only the 28 header bytes move and the page is copied once. The 4 bytes
 * before the cursor (the previous record's tail) are put back. At the very start of a chunk
 * there is nothing before the cursor, and the handle goes through a scratch buffer instead.
 */
async function nextPage(
  ctrl: Ctrl,
  poolId: number,
  writer: ChunkWriter,
  scratch: Uint8Array,
): Promise<number> {
  const at = writer.cursor
  if (at < 4) {
    const rc = await ctrl.run(TMEMC_SAVE_GET_NEXT_PAGE, poolId, PAGE_BUFFER_BYTES, 0, scratch)
    if (rc === 1) {
      const chunk = writer.chunk
      copyBytes(scratch, HANDLE_OID, chunk, at, OID_BYTES)
      copyBytes(scratch, HANDLE_INDEX, chunk, at + OID_BYTES, 4)
      copyBytes(scratch, TMEM_HANDLE_BYTES_V1, chunk, at + OID_BYTES + 4, PAGE_SIZE)
    }
    return rc
  }
  const chunk = writer.chunk
  const tail = readU32LE(chunk, at - 4)
  const view = chunk.subarray(at - 4, at - 4 + PAGE_BUFFER_BYTES)
  const rc = await ctrl.run(TMEMC_SAVE_GET_NEXT_PAGE, poolId, PAGE_BUFFER_BYTES, 0, view)
  if (rc === 1) {
    // Now: [at-4] pool id, [at] index, [at+4] OID, [at+28] page.
    const index = readU32LE(chunk, at)
    chunk.copyWithin(at, at + 4, at + 4 + OID_BYTES)
    writeU32LE(chunk, at + OID_BYTES, index)
  }
  writeU32LE(chunk, at - 4, tail)
  return rc
}

/**
 * Writes the invalidation section of a live save (docs/semantics.md "Live save"): marker -6, one record (u32
 * pool id, 24-byte OID, u32 index) per page the client removed since SAVE_BEGIN, and -1.
 * Then, unless `end: false`, SAVE_END ends the live save (the client gets its frozen state
 * back). On failure SAVE_END is called as well.
 *
 * Call it after `saveClient(..., { live: true })`, once the client has stopped changing its
 * persistent pages (in a migration: at the start of the frozen window).
 */
export async function saveInvalidations(
  channel: ControlChannel,
  cliId: number,
  sink: StreamSink,
  options: InvalidationsOptions = {},
): Promise<InvalidationsResult> {
  checkCliId(cliId)
  const ctrl = new Ctrl(channel, cliId)
  const meter = new ProgressMeter('invalidations', options)
  try {
    const writer = new ChunkWriter(sink, options.chunkBytes)
    await writer.room(4)
    writer.u32(MARKER_TMEM_EXTRA >>> 0)
    const buffer = new Uint8Array(TMEM_HANDLE_BYTES_V1)
    let invalidations = 0
    for (;;) {
      const rc = await ctrl.run(TMEMC_SAVE_GET_NEXT_INV, 0, TMEM_HANDLE_BYTES_V1, 0, buffer)
      if (rc <= 0) break
      await writer.room(32)
      writer.bytes(buffer, HANDLE_POOL_ID, 4)
      writer.bytes(buffer, HANDLE_OID, OID_BYTES)
      writer.bytes(buffer, HANDLE_INDEX, 4)
      invalidations++
      meter.pages = invalidations
      meter.bytes = writer.written
      meter.tick()
    }
    await writer.room(4)
    writer.u32(END_WORD)
    await writer.flush()
    meter.bytes = writer.written
    meter.done()
    if (options.end ?? true) await endSave(ctrl, cliId)
    return { invalidations, bytes: writer.written }
  } catch (error) {
    await abortSave(ctrl)
    throw error
  }
}

/**
 * SAVE_END: ends a save of `cliId` (migration mode off, invalidation list dropped, frozen
 * state as before SAVE_BEGIN). Returns false when the host has no such client.
 */
export async function saveEnd(channel: ControlChannel, cliId: number): Promise<boolean> {
  checkCliId(cliId)
  return (await new Ctrl(channel, cliId).run(TMEMC_SAVE_END)) >= 0
}

async function endSave(ctrl: Ctrl, cliId: number): Promise<void> {
  const rc = await ctrl.run(TMEMC_SAVE_END)
  if (rc < 0) {
    throw new SaveError(
      'ESAVE',
      { cliId, step: 'TMEMC_SAVE_END', rc },
      `TMEMC_SAVE_END returned ${rc}: the client disappeared during the save`,
    )
  }
}

/** SAVE_END after a failure; its own failure must not hide the first one. */
async function abortSave(ctrl: Ctrl): Promise<void> {
  try {
    await ctrl.run(TMEMC_SAVE_END)
  } catch {
    // The original error is the one to report.
  }
}

/**
 * Saves client `cliId` to `path` (see `openFileSink`): a regular file appears only when the
 * whole stream is written (and is left alone when nothing was saved or the save failed); a
 * FIFO or character device is written in place; a symlink's target is written. With
 * `live: true` it writes the tmem section while the client runs, then the -6 section, then
 * ends the save.
 */
export async function saveClientToFile(
  channel: ControlChannel,
  cliId: number,
  path: string,
  options: SaveOptions = {},
): Promise<SaveToFileResult> {
  checkCliId(cliId)
  return saveClientToSink(channel, cliId, await openFileSink(path), options)
}

/**
 * `saveClientToFile` into a sink already opened (`openFileSink`, or `writableFileSink` for
 * stdout): commits it after a whole save, aborts it after a failed or empty one.
 */
export async function saveClientToSink(
  channel: ControlChannel,
  cliId: number,
  file: FileSink,
  options: SaveOptions = {},
): Promise<SaveToFileResult> {
  checkCliId(cliId)
  try {
    const result = await saveClient(channel, cliId, file.sink, options)
    if (!result.saved) {
      await file.abort()
      return { ...result, invalidations: null }
    }
    let invalidations: number | null = null
    let bytes = result.bytes
    if (result.live) {
      const extra = await saveInvalidations(channel, cliId, file.sink, options)
      invalidations = extra.invalidations
      bytes += extra.bytes
    }
    await file.commit()
    return { ...result, bytes, invalidations }
  } catch (error) {
    await file.abort()
    throw error
  }
}

function allOnes(bytes: Uint8Array, at: number, length: number): boolean {
  for (let i = at; i < at + length; i++) if (bytes[i] !== 0xff) return false
  return true
}
