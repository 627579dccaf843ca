/**
 * Host options and their defaults. Validation throws RangeError/TypeError with a sentence;
 * this is the only place the engine throws on input (construction, not the data plane).
 */
import { PAGE_SIZE } from '../abi/constants.js'
import type { CodecName } from './codecs.js'

/** Resolves a guest frame number to the bytes of that frame (docs/semantics.md "Decision: guest frames"). */
export type FrameResolver = (
  clientId: number,
  cmfn: bigint,
  writable: boolean,
) => Uint8Array | null | undefined

export interface HostOptions {
  /** The host's memory for tmem pages, in pages. Default 16384 (64 MiB). */
  pages?: number
  /** The same budget in bytes (rounded down to whole pages); wins over `pages` when given. */
  bytes?: number
  /** Free pages kept in reserve before every put (docs/semantics.md "Minimum reserve"). Default min(256, pages >> 4). */
  reservePages?: number
  /** Initial compression setting of new clients (Xen boot option tmem_compress). */
  compress?: boolean
  /** Page codec for compressing clients: default the best installed (zstd, lz4, zlib). */
  codec?: CodecName
  /**
   * Most pages the host can hold (page descriptors). Default: `pages`, or 4 x `pages` when
   * compress, dedup or tze is on (they keep more pages than frames).
   */
  descriptors?: number
  /** Deduplicate ephemeral pages (Xen tmem_dedup). */
  dedup?: boolean
  /** Trailing-zero elimination (Xen tmem_tze). */
  tze?: boolean
  /** Shared pools need per-client authorisation unless global auth is on (docs/semantics.md "Decision: shared pools"). Default true. */
  sharedAuth?: boolean
  /** Serve v0 clients side by side with v1 clients (docs/semantics.md "Decision: v0 clients"). Default false. */
  acceptV0?: boolean
  /** Frame resolver for embedders; used when an op carries no data buffer (docs/semantics.md "Decision: guest frames"). */
  frameResolver?: FrameResolver
  /** Monotonic clock for the cycle statistics, in nanoseconds. Default performance.now() x 1e6. */
  clockNs?: () => number
  /**
   * Time one op in this many per client (a power of two), the client's first included; the
   * `T=` counts, sums, maxima and minima and the clients' `Tc` then describe the sampled ops
   * only, so they stay consistent with one another (docs/semantics.md "LIST"). Default 128
   * with the default clock (on Node 20 each high-resolution clock call allocates a heap
   * number and costs 100-250 ns; a sampled op reads it four times when it copies a page), 1
   * when `clockNs` is given.
   */
  timingSample?: number
  /**
   * Make every arena of the budget at start and touch each of its pages, so that no put pays
   * the operating system's first-touch fault (about 1 µs a page on Linux). Costs the whole
   * budget in resident memory from the start, and about that first-touch time at
   * construction (about 1 s per GiB). Default false: arenas are made as pages arrive.
   */
  prefault?: boolean
}

export interface ResolvedHostOptions {
  timingSample: number
  prefault: boolean
  pages: number
  descriptors: number
  codec: CodecName | undefined
  reservePages: number
  compress: boolean
  dedup: boolean
  tze: boolean
  sharedAuth: boolean
  acceptV0: boolean
  frameResolver: FrameResolver | null
  clockNs: () => number
}

/** Largest budget the 32-bit slot columns can address, with room for the NONE sentinel. */
export const PAGES_MAX = 0x3fffffff

/** Monotonic nanoseconds as a double; performance.now() allocates nothing, hrtime.bigint() does. */
function defaultClockNs(): number {
  return performance.now() * 1e6
}

export function resolveHostOptions(options: HostOptions = {}): ResolvedHostOptions {
  let pages = options.pages ?? 16384
  if (options.bytes !== undefined) {
    if (!Number.isSafeInteger(options.bytes) || options.bytes < PAGE_SIZE) {
      throw new RangeError('Host bytes must be an integer of at least one page (4096)')
    }
    pages = Math.floor(options.bytes / PAGE_SIZE)
  }
  if (!Number.isSafeInteger(pages) || pages < 1 || pages > PAGES_MAX) {
    throw new RangeError(`Host pages must be an integer from 1 to ${PAGES_MAX}`)
  }
  const reservePages = options.reservePages ?? Math.min(256, pages >> 4)
  if (!Number.isSafeInteger(reservePages) || reservePages < 0 || reservePages >= pages) {
    throw new RangeError('Host reservePages must be an integer from 0 to pages - 1')
  }
  const dedup = options.dedup ?? false
  const compress = options.compress ?? false
  // Xen switches tze off when dedup, compression and tze are all on (docs/semantics.md "Host options").
  const tze = (options.tze ?? false) && !(dedup && compress)
  const dense = compress || dedup || (options.tze ?? false)
  const descriptors = options.descriptors ?? (dense ? pages * 4 : pages)
  if (!Number.isSafeInteger(descriptors) || descriptors < 1 || descriptors > PAGES_MAX * 2) {
    throw new RangeError(`Host descriptors must be an integer from 1 to ${PAGES_MAX * 2}`)
  }
  const timingSample = options.timingSample ?? (options.clockNs === undefined ? 128 : 1)
  if (
    !Number.isInteger(timingSample) ||
    timingSample < 1 ||
    (timingSample & (timingSample - 1)) !== 0
  ) {
    throw new RangeError('Host timingSample must be a power of two')
  }
  return {
    timingSample,
    prefault: options.prefault ?? false,
    pages,
    descriptors,
    codec: options.codec,
    reservePages,
    compress,
    dedup,
    tze,
    sharedAuth: options.sharedAuth ?? true,
    acceptV0: options.acceptV0 ?? false,
    frameResolver: options.frameResolver ?? null,
    clockNs: options.clockNs ?? defaultClockNs,
  }
}
