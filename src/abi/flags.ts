/**
 * Pool flag words (docs/semantics.md "Pool flags") and the Xen tools' UUID strings
 * (docs/semantics.md "Shared-pool authorisation"): build, split, read and write them.
 * Control-plane code; `codec.ts` re-exports everything here.
 */
import {
  TMEM_POOL_PAGESIZE_MASK,
  TMEM_POOL_PAGESIZE_SHIFT,
  TMEM_POOL_PERSIST,
  TMEM_POOL_PRECOMPRESSED,
  TMEM_POOL_RESERVED_BITS,
  TMEM_POOL_SHARED,
  TMEM_POOL_VERSION_MASK,
  TMEM_POOL_VERSION_SHIFT,
  TMEM_SPEC_VERSION,
} from './constants.js'
import { checkInteger, checkU32, checkU64 } from './check.js'

/** Inputs of `poolFlags`. */
export interface PoolFlagOptions {
  persistent?: boolean
  shared?: boolean
  /** Bits 24-31; TMEM_SPEC_VERSION (1) unless given. A v0 guest leaves them 0. */
  version?: number
  /** Bits 4-7: log2(page size) - 12. Only 0 (4 KiB) is accepted by a host. */
  pageSizeField?: number
}

/** Every field of a pool flag word, as `parsePoolFlags` reads it. */
export interface PoolFlagFields {
  persistent: boolean
  shared: boolean
  precompressed: boolean
  pageSizeField: number
  /** The word masked with TMEM_POOL_RESERVED_BITS (not shifted); non-zero is refused. */
  reserved: number
  version: number
}

/**
 * Builds a pool flag word (docs/semantics.md "Pool flags"). `poolFlags({})` is 0x01000000 (private ephemeral),
 * `poolFlags({ persistent: true })` 0x01000001, `poolFlags({ shared: true })` 0x01000002.
 *
 * @throws {RangeError} When `version` is not in 0..255 or `pageSizeField` not in 0..15.
 */
export function poolFlags(options: PoolFlagOptions = {}): number {
  const version = options.version ?? TMEM_SPEC_VERSION
  const pageSizeField = options.pageSizeField ?? 0
  checkInteger(version, 0, TMEM_POOL_VERSION_MASK, 'version')
  checkInteger(pageSizeField, 0, TMEM_POOL_PAGESIZE_MASK, 'pageSizeField')
  let flags = (version << TMEM_POOL_VERSION_SHIFT) | (pageSizeField << TMEM_POOL_PAGESIZE_SHIFT)
  if (options.persistent === true) flags |= TMEM_POOL_PERSIST
  if (options.shared === true) flags |= TMEM_POOL_SHARED
  return flags >>> 0
}

/** Splits a pool flag word into its fields; throws RangeError unless it is a u32. */
export function parsePoolFlags(flags: number): PoolFlagFields {
  checkU32(flags, 'flags')
  return {
    persistent: (flags & TMEM_POOL_PERSIST) !== 0,
    shared: (flags & TMEM_POOL_SHARED) !== 0,
    precompressed: (flags & TMEM_POOL_PRECOMPRESSED) !== 0,
    pageSizeField: (flags >>> TMEM_POOL_PAGESIZE_SHIFT) & TMEM_POOL_PAGESIZE_MASK,
    reserved: (flags & TMEM_POOL_RESERVED_BITS) >>> 0,
    version: (flags >>> TMEM_POOL_VERSION_SHIFT) & TMEM_POOL_VERSION_MASK,
  }
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/**
 * Reads a UUID string the way the Xen tools do (docs/semantics.md "Shared-pool authorisation", after the 2017 fix): 32 hex digits
 * with dashes at 8, 13, 18 and 23; the first 16 digits are `uuid_hi`, the last 16 `uuid_lo`,
 * most significant first, `a-f`/`A-F` worth 10-15. The old 1-character form is refused.
 *
 * @returns `[uuid_lo, uuid_hi]`, the order of `creat.uuid`.
 * @throws {RangeError} When the string is not of that shape.
 */
export function uuidFromString(text: string): [bigint, bigint] {
  if (!UUID_PATTERN.test(text)) {
    throw new RangeError(
      `UUID must be xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx in hex, got ${JSON.stringify(text)}`,
    )
  }
  const digits = text.replaceAll('-', '')
  return [BigInt(`0x${digits.slice(16)}`), BigInt(`0x${digits.slice(0, 16)}`)]
}

/** Writes `[uuid_lo, uuid_hi]` as the Xen tools' lowercase string; inverse of uuidFromString. */
export function uuidToString(uuid: readonly [bigint, bigint]): string {
  checkU64(uuid[0], 'uuid[0]')
  checkU64(uuid[1], 'uuid[1]')
  const hex = uuid[1].toString(16).padStart(16, '0') + uuid[0].toString(16).padStart(16, '0')
  const groups = [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20)]
  return `${groups.join('-')}-${hex.slice(20)}`
}
