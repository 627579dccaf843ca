/**
 * The Xen tmem save stream (docs/semantics.md "Save stream", "Live save"): sizes of its records in v1 and v0, and the
 * decoded forms the reader hands out. All integers are little-endian. docs/save-restore.md
 * draws the byte boxes.
 */
import { PAGE_SIZE } from '../abi/constants.js'
import type { Oid } from '../abi/types.js'

/** Marker before the tmem section: `fb ff ff ff`. */
export const MARKER_TMEM = -5
/** Marker before the invalidation section of a live save: `fa ff ff ff`. */
export const MARKER_TMEM_EXTRA = -6
/** u32 -1: header separators, end of pools, end of invalidations. */
export const END_WORD = 0xffffffff

/** marker (4) + version, max_pools, -1, client flags, weight, cap, -1 (7 × 4). */
export const HEADER_BYTES = 32
/** u32 pool id, u32 flags, u32 n_pages, u64 uuid[0], u64 uuid[1]. */
export const POOL_RECORD_BYTES = 28

/** Bytes of an OID in a stream of this version: 24 (v1) or 8 (v0). */
export function oidBytes(version: 0 | 1): number {
  return version === 1 ? 24 : 8
}

/** OID, u32 index, page: 4124 bytes in v1, 4108 in v0. */
export function pageRecordBytes(version: 0 | 1): number {
  return oidBytes(version) + 4 + PAGE_SIZE
}

/** u32 pool id, OID, u32 index: 32 bytes in v1, 16 in v0. */
export function invalidationRecordBytes(version: 0 | 1): number {
  return 4 + oidBytes(version) + 4
}

/** Client flags a stream may carry (docs/semantics.md "Client flags"): COMPRESS (1) and FROZEN (2). */
export const CLIENT_FLAGS_KNOWN = 0x3

/** The header of a tmem section. */
export interface StreamHeader {
  version: 0 | 1
  maxPools: number
  /** TMEM_CLIENT_COMPRESS (1) | TMEM_CLIENT_FROZEN (2). */
  clientFlags: number
  weight: number
  cap: number
}

/** A pool record, with its flags as written and as restore will create the pool (v1). */
export interface StreamPool {
  poolId: number
  /** Flags as they appear in the stream. */
  flags: number
  /** Flags for TMEM_RESTORE_NEW: the version bits set to 1 (the v0 upgrade). */
  restoreFlags: number
  persistent: boolean
  shared: boolean
  /** n_pages as written (an upper bound: a live save may end the pool early). */
  declaredPages: number
  /** `[uuid_lo, uuid_hi]`. */
  uuid: [bigint, bigint]
  /** Byte offset of the record. */
  offset: number
}

/** A page record. `data` is a view that is only valid during the visit. */
export interface StreamPage {
  poolId: number
  /** 0-based number of the record within its pool. */
  page: number
  /** Upgraded to three words for a v0 stream: `[object, 0, 0]`. */
  oid: Oid
  index: number
  data: Uint8Array
  offset: number
}

export interface StreamInvalidation {
  poolId: number
  oid: Oid
  index: number
  /** 0-based number of the record. */
  number: number
  offset: number
}
