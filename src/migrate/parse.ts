/**
 * The save stream reader: walks a whole stream (docs/semantics.md "Save stream", "Live save"; v1 and v0), checks every
 * record, and calls a visitor per header, pool, page and invalidation. Restore walks a
 * stream twice with it: once with no visitor to check everything, once to apply.
 *
 * Rules beyond Xen's own reader (docs/semantics.md "Decision: save stream fixes", "Restore"): the marker must be -5; version 0 or 1;
 * max_pools <= 16; both header separators -1; client flags only COMPRESS and FROZEN; cap
 * <= 100 (docs/semantics.md "Decision: cap"). A pool id must be below max_pools and appear once; its flags must be ones a
 * host accepts (no reserved bits, no precompression, 4 KiB pages, not shared and persistent
 * at once), with version 1 in a v1 stream (0 is also read: Xen's 2010-2012 saver left the
 * version out) and version 0 in a v0 stream; an ephemeral pool carries no pages; one pool
 * has no (OID, index) twice. After the end of the pools comes the end of the stream, or a
 * -6 section whose records name pools of the stream and which ends the stream.
 */
import { readI32LE, readU32LE } from '../util/le.js'
import {
  MAX_POOLS_PER_DOMAIN,
  TMEM_POOL_PAGESIZE_MASK,
  TMEM_POOL_PAGESIZE_SHIFT,
  TMEM_POOL_PERSIST,
  TMEM_POOL_PRECOMPRESSED,
  TMEM_POOL_RESERVED_BITS,
  TMEM_POOL_SHARED,
  TMEM_POOL_VERSION_MASK,
  TMEM_POOL_VERSION_SHIFT,
  TMEM_SPEC_VERSION,
  PAGE_SIZE,
} from '../abi/constants.js'
import type { Oid } from '../abi/types.js'
import { SaveStreamError, type SaveStreamErrorCode, type StreamPlace } from '../errors/mod.js'
import {
  CLIENT_FLAGS_KNOWN,
  END_WORD,
  MARKER_TMEM,
  MARKER_TMEM_EXTRA,
  POOL_RECORD_BYTES,
  oidBytes,
  type StreamHeader,
  type StreamInvalidation,
  type StreamPage,
  type StreamPool,
} from './format.js'
import type { ByteReader } from './source.js'
import type { ProgressMeter } from './progress.js'

/** Called for each record as it is read; a returned promise is awaited before reading on. */
export interface StreamVisitor {
  header?(header: StreamHeader): void | Promise<void>
  pool?(pool: StreamPool): void | Promise<void>
  page?(page: StreamPage): void | Promise<void>
  invalidation?(record: StreamInvalidation): void | Promise<void>
}

/** What a stream holds, as found by a complete read. */
export interface StreamSummary {
  header: StreamHeader
  pools: StreamPoolSummary[]
  /** Page records in all pools. */
  pages: number
  /** Records of the -6 section, or null when the stream has none. */
  invalidations: number | null
  /** Length of the stream. */
  bytes: number
}

export interface StreamPoolSummary extends StreamPool {
  /** Page records actually present. */
  pages: number
  /** True when a terminator ended the pool before n_pages records (a live save). */
  endedEarly: boolean
}

export interface WalkOptions {
  /** Reject a repeated (OID, index) within a pool. Default true. */
  checkDuplicates?: boolean
  /** A stream without a -6 section is truncated. Default false. */
  requireInvalidations?: boolean
}

/** @internal Reads and checks a whole stream, calling `visitor` on the way. */
export async function walkStream(
  reader: ByteReader,
  visitor: StreamVisitor,
  options: WalkOptions = {},
  meter?: ProgressMeter,
): Promise<StreamSummary> {
  return new Walk(reader, visitor, options, meter).run()
}

class Walk {
  readonly #reader: ByteReader
  readonly #visitor: StreamVisitor
  readonly #checkDuplicates: boolean
  readonly #requireInvalidations: boolean
  readonly #meter: ProgressMeter | undefined
  #version: 0 | 1 = 1

  constructor(
    reader: ByteReader,
    visitor: StreamVisitor,
    options: WalkOptions,
    meter: ProgressMeter | undefined,
  ) {
    this.#reader = reader
    this.#visitor = visitor
    this.#checkDuplicates = options.checkDuplicates ?? true
    this.#requireInvalidations = options.requireInvalidations ?? false
    this.#meter = meter
  }

  async run(): Promise<StreamSummary> {
    const header = await this.#header()
    await this.#visitor.header?.(header)
    const pools = await this.#pools(header)
    let pages = 0
    for (const pool of pools) pages += pool.pages
    const invalidations = await this.#extraSection(new Set(pools.map((pool) => pool.poolId)))
    const meter = this.#meter
    if (meter !== undefined) meter.bytes = this.#reader.position
    return { header, pools, pages, invalidations, bytes: this.#reader.position }
  }

  // -------------------------------------------------------------------------------------
  // Header.

  async #header(): Promise<StreamHeader> {
    const markerBytes = await this.#take(4, { offset: 0 }, 'the -5 marker of the tmem section')
    const marker = readI32LE(markerBytes, 0)
    if (marker !== MARKER_TMEM) {
      this.#fail(
        'EBADMARKER',
        { offset: 0 },
        `expected the tmem marker -5 (fb ff ff ff), found ${marker} (${hex(markerBytes, 0, 4)})`,
      )
    }
    const bytes = await this.#take(28, { offset: 4 }, 'the 28-byte header')
    const version = readU32LE(bytes, 0)
    if (version !== 0 && version !== 1) {
      this.#fail('EBADVERSION', { offset: 4 }, `stream version ${version}; only 0 and 1 exist`)
    }
    this.#version = version
    const maxPools = readU32LE(bytes, 4)
    if (maxPools > MAX_POOLS_PER_DOMAIN) {
      this.#fail(
        'EBADHEADER',
        { offset: 8 },
        `max_pools ${maxPools} exceeds ${MAX_POOLS_PER_DOMAIN}`,
      )
    }
    if (readU32LE(bytes, 8) !== END_WORD) {
      this.#fail(
        'EBADHEADER',
        { offset: 12 },
        `expected the separator -1 after max_pools, found ${readU32LE(bytes, 8)}`,
      )
    }
    const clientFlags = readU32LE(bytes, 12)
    if ((clientFlags & ~CLIENT_FLAGS_KNOWN) !== 0) {
      this.#fail(
        'EBADHEADER',
        { offset: 16 },
        `client flags 0x${clientFlags.toString(16)} have bits other than COMPRESS (1) and FROZEN (2)`,
      )
    }
    const weight = readU32LE(bytes, 16)
    const cap = readU32LE(bytes, 20)
    if (cap > 100)
      this.#fail('EBADHEADER', { offset: 24 }, `cap ${cap} is not a percentage (0 to 100)`)
    if (readU32LE(bytes, 24) !== END_WORD) {
      this.#fail(
        'EBADHEADER',
        { offset: 28 },
        `expected the separator -1 after cap, found ${readU32LE(bytes, 24)}`,
      )
    }
    return { version, maxPools, clientFlags, weight, cap }
  }

  // -------------------------------------------------------------------------------------
  // Pools and pages.

  async #pools(header: StreamHeader): Promise<StreamPoolSummary[]> {
    const pools: StreamPoolSummary[] = []
    const seen = new Set<number>()
    for (;;) {
      const offset = this.#reader.position
      const first = await this.#take(4, { offset }, 'a pool record or the end-of-pools word -1')
      const poolId = readU32LE(first, 0)
      if (poolId === END_WORD) return pools
      const place = { offset, poolId }
      if (poolId >= header.maxPools) {
        this.#fail('EBADPOOL', place, `pool id ${poolId} is not below max_pools ${header.maxPools}`)
      }
      if (seen.has(poolId)) this.#fail('EBADPOOL', place, `pool id ${poolId} appears twice`)
      seen.add(poolId)
      const rest = await this.#take(POOL_RECORD_BYTES - 4, place, 'the pool record')
      const flags = readU32LE(rest, 0)
      const declaredPages = readU32LE(rest, 4)
      const uuid: [bigint, bigint] = [u64(rest, 8), u64(rest, 16)]
      const pool = this.#checkPool(place, flags, declaredPages, uuid)
      await this.#visitor.pool?.(pool)
      const summary: StreamPoolSummary = { ...pool, pages: 0, endedEarly: false }
      await this.#pages(summary)
      pools.push(summary)
    }
  }

  #checkPool(
    place: StreamPlace & { poolId: number },
    flags: number,
    declaredPages: number,
    uuid: [bigint, bigint],
  ): StreamPool {
    const persistent = (flags & TMEM_POOL_PERSIST) !== 0
    const shared = (flags & TMEM_POOL_SHARED) !== 0
    const version = (flags >>> TMEM_POOL_VERSION_SHIFT) & TMEM_POOL_VERSION_MASK
    const pageSizeField = (flags >>> TMEM_POOL_PAGESIZE_SHIFT) & TMEM_POOL_PAGESIZE_MASK
    const at = { ...place, offset: place.offset + 4 }
    const problem = (text: string): never =>
      this.#fail('EBADPOOL', at, `flags 0x${flags.toString(16).padStart(8, '0')}: ${text}`)
    if ((flags & TMEM_POOL_RESERVED_BITS) !== 0) problem('reserved bits 8-23 are set')
    if ((flags & TMEM_POOL_PRECOMPRESSED) !== 0) problem('precompressed pools are not supported')
    if (pageSizeField !== 0)
      problem(`page size ${PAGE_SIZE << pageSizeField} bytes; only ${PAGE_SIZE} is supported`)
    if (this.#version === 1 ? version > 1 : version !== 0) {
      problem(`pool version ${version} in a version ${this.#version} stream`)
    }
    if (shared && persistent) problem('a shared persistent pool cannot be created')
    if (!persistent && declaredPages !== 0) {
      this.#fail(
        'EBADPOOL',
        { ...place, offset: place.offset + 8 },
        `ephemeral pool with n_pages ${declaredPages}; ephemeral pools are saved empty`,
      )
    }
    const restoreFlags =
      ((flags & ~(TMEM_POOL_VERSION_MASK << TMEM_POOL_VERSION_SHIFT)) |
        (TMEM_SPEC_VERSION << TMEM_POOL_VERSION_SHIFT)) >>>
      0
    return {
      poolId: place.poolId,
      flags,
      restoreFlags,
      persistent,
      shared,
      declaredPages,
      uuid,
      offset: place.offset,
    }
  }

  async #pages(pool: StreamPoolSummary): Promise<void> {
    const reader = this.#reader
    const oidSize = oidBytes(this.#version)
    const visitor = this.#visitor
    const visit = visitor.page !== undefined
    const keys = this.#checkDuplicates && pool.declaredPages > 1 ? new Set<string>() : null
    const meter = this.#meter
    for (let page = 0; page < pool.declaredPages; page++) {
      const offset = reader.position
      const place: StreamPlace = { offset, poolId: pool.poolId, page }
      const oidView = await this.#take(
        oidSize,
        place,
        `page record ${page} of the ${pool.declaredPages} that n_pages announces`,
      )
      if (allOnes(oidView, 0, oidSize)) {
        pool.endedEarly = true
        return
      }
      const oid = visit ? readOid(oidView, this.#version) : null
      const key = keys === null ? null : latin1(oidView, 0, oidSize)
      const rest = await this.#take(
        4 + PAGE_SIZE,
        place,
        `page record ${page} of the ${pool.declaredPages} that n_pages announces`,
      )
      const index = readU32LE(rest, 0)
      if (keys !== null) {
        const full = `${key}${latin1(rest, 0, 4)}`
        if (keys.has(full)) {
          this.#fail(
            'EBADPAGE',
            place,
            `(OID ${oidText(oidView, this.#version)}, index ${index}) appears twice in the pool`,
          )
        }
        keys.add(full)
      }
      pool.pages++
      if (visit) {
        await visitor.page!({
          poolId: pool.poolId,
          page,
          oid: oid!,
          index,
          data: rest.subarray(4, 4 + PAGE_SIZE),
          offset,
        })
      }
      if (meter !== undefined) {
        meter.pages++
        meter.bytes = reader.position
        meter.tick()
      }
    }
  }

  // -------------------------------------------------------------------------------------
  // The invalidation section.

  async #extraSection(poolIds: Set<number>): Promise<number | null> {
    const reader = this.#reader
    const offset = reader.position
    const left = await reader.available(4)
    if (left === 0) {
      if (this.#requireInvalidations) {
        this.#fail(
          'ETRUNCATED',
          { offset },
          'the stream ends where the invalidation section (-6) of a live save must start',
        )
      }
      return null
    }
    const markerBytes = await this.#take(4, { offset }, 'the -6 marker of the invalidation section')
    const marker = readI32LE(markerBytes, 0)
    if (marker !== MARKER_TMEM_EXTRA) {
      this.#fail(
        'EBADMARKER',
        { offset },
        `after the end of the pools expected the end of the stream or the marker -6 (fa ff ff ff), found ${marker} (${hex(markerBytes, 0, 4)})`,
      )
    }
    const oidSize = oidBytes(this.#version)
    const visitor = this.#visitor
    for (let number = 0; ; number++) {
      const at = reader.position
      const place: StreamPlace = { offset: at, invalidation: number }
      const first = await this.#take(4, place, 'an invalidation record or the end word -1')
      const poolId = readU32LE(first, 0)
      if (poolId === END_WORD) break
      place.poolId = poolId
      if (!poolIds.has(poolId)) {
        this.#fail('EBADINV', place, `pool ${poolId} is not in the stream's pool records`)
      }
      const rest = await this.#take(oidSize + 4, place, 'the invalidation record')
      if (visitor.invalidation !== undefined) {
        const oid = readOid(rest, this.#version)
        await visitor.invalidation({
          poolId,
          oid,
          index: readU32LE(rest, oidSize),
          number,
          offset: at,
        })
      }
    }
    const end = reader.position
    const trailing = await reader.available(1)
    if (trailing !== 0) {
      this.#fail(
        'EBADMARKER',
        { offset: end },
        'unexpected bytes after the end of the invalidation section',
      )
    }
    return countFrom(end, offset, oidSize)
  }

  // -------------------------------------------------------------------------------------

  async #take(length: number, place: StreamPlace, what: string): Promise<Uint8Array> {
    const reader = this.#reader
    const view = await reader.take(length)
    if (view !== null) return view
    const left = await reader.available(length)
    const at = reader.position
    this.#fail(
      'ETRUNCATED',
      { ...place, offset: at },
      `the stream ends ${left} byte${left === 1 ? '' : 's'} into ${what} (${length} bytes needed)`,
    )
  }

  #fail(code: SaveStreamErrorCode, place: StreamPlace, problem: string): never {
    throw new SaveStreamError(code, place, problem)
  }
}

/** Invalidation records between the -6 marker at `start` and the end word before `end`. */
function countFrom(end: number, start: number, oidSize: number): number {
  return (end - start - 8) / (oidSize + 8)
}

function u64(bytes: Uint8Array, at: number): bigint {
  return BigInt(readU32LE(bytes, at)) | (BigInt(readU32LE(bytes, at + 4)) << 32n)
}

function readOid(bytes: Uint8Array, version: 0 | 1): Oid {
  if (version === 0) return [u64(bytes, 0), 0n, 0n]
  return [u64(bytes, 0), u64(bytes, 8), u64(bytes, 16)]
}

function allOnes(bytes: Uint8Array, at: number, length: number): boolean {
  for (let i = at; i < at + length; i++) if (bytes[i] !== 0xff) return false
  return true
}

function latin1(bytes: Uint8Array, at: number, length: number): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset + at, length).toString('latin1')
}

function hex(bytes: Uint8Array, at: number, length: number): string {
  return Array.from(bytes.subarray(at, at + length), (b) => b.toString(16).padStart(2, '0')).join(
    ' ',
  )
}

function oidText(bytes: Uint8Array, version: 0 | 1): string {
  const oid = readOid(bytes, version)
  return version === 0
    ? `0x${oid[0].toString(16)}`
    : `[0x${oid[0].toString(16)}, 0x${oid[1].toString(16)}, 0x${oid[2].toString(16)}]`
}
