/**
 * Names and values in the cluster (docs/remote.md "Key layout").
 *
 * One hash per tmem object, hash-tagged whole so the object lives in one slot:
 * `{tmem:<host id>:<client>:<pool>:<oid as 48 hex digits>}`; field = the page index in
 * decimal; value = a 12-byte header (kind, version) and the page as the engine stored it.
 * Each pool has an index, the set `{tmem:<host id>:<client>:<pool>}:objects` of its object
 * keys, so a pool, a client or a save can find every object without a scan.
 */
import {
  PAGE_SIZE,
  TMEM_DESTROY_POOL,
  TMEM_FLUSH_OBJECT,
  TMEM_FLUSH_PAGE,
  TMEM_GET_PAGE,
  TMEM_NEW_PAGE,
  TMEM_PUT_PAGE,
  TMEM_READ,
  TMEM_WRITE,
} from '../abi/constants.js'
import { readU32LE, writeU32LE } from '../util/le.js'

/** Bytes before the stored page in a value: u8 kind, 3 zero bytes, u64 version (LE). */
export const VALUE_HEADER_BYTES = 12

export interface SeedNode {
  host: string
  port: number
}

/** `redis-cluster://HOST:PORT[,HOST:PORT...]` into seed nodes; RangeError when malformed. */
export function parseRemoteUrl(url: string): SeedNode[] {
  const prefix = 'redis-cluster://'
  if (!url.startsWith(prefix)) throw new RangeError(`--remote must start with ${prefix}: ${url}`)
  const nodes = url
    .slice(prefix.length)
    .split(',')
    .map((part) => {
      const match = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(part.trim())
      const port = match === null ? NaN : Number(match[2])
      if (match === null || port < 1 || port > 65535)
        throw new RangeError(`--remote: "${part}" is not HOST:PORT`)
      return { host: match[1]!, port }
    })
  if (nodes.length === 0) throw new RangeError('--remote names no node')
  return nodes
}

const HEX_DIGITS = Array.from('0123456789abcdef', (digit) => digit.charCodeAt(0))
/** The character codes of one oid's text, filled by oidHex (reused: one thread). */
const oidCodes: number[] = new Array<number>(48).fill(0)

/**
 * The oid's six u32 words (low word first) as 48 hex digits, most significant first. Built
 * as one flat string from character codes: the remote tier makes one for every op on a pool
 * with remote pages and hashes it in its maps, and six padded pieces joined cost about three
 * times as much (a rope V8 then flattens to hash it).
 */
export function oidHex(oid: Uint32Array): string {
  let at = 0
  for (let word = 5; word >= 0; word--) {
    const value = oid[word]!
    for (let shift = 28; shift >= 0; shift -= 4)
      oidCodes[at++] = HEX_DIGITS[(value >>> shift) & 15]!
  }
  return String.fromCharCode.apply(null, oidCodes)
}

/**
 * The hash key of one object. `space` is the host id, or for a pool adopted in a live
 * migration `<host id>:<client id>` of the daemon it came from (then `clientId` is not used).
 */
export function objectKey(space: string, clientId: number, poolId: number, oid: string): string {
  return `{tmem:${ownerOf(space, clientId)}:${poolId}:${oid}}`
}

/** The key of a pool's index set (`space` as for objectKey). */
export function poolIndexKey(space: string, clientId: number, poolId: number): string {
  return `{tmem:${ownerOf(space, clientId)}:${poolId}}:objects`
}

/** `<host id>:<client id>`: a host id has no ':', an adopted namespace has one. */
function ownerOf(space: string, clientId: number): string {
  return space.includes(':') ? space : `${space}:${clientId}`
}

/** Bytes of one slab (see Slab). */
const SLAB_BYTES = 256 * 1024

/**
 * Buffers carved from 256 KiB slabs: the values sent and the pages fetched. A Buffer of 4 KiB
 * or more from `Buffer.allocUnsafe` gets an ArrayBuffer of its own, and a flow of them (one
 * per remote page) makes V8 collect its old space for their external memory far more often
 * than the same bytes in slabs do. A slab lives until its last view is collected; the views
 * are short-lived (a queued write, a reply).
 */
export class Slab {
  #slab = Buffer.allocUnsafeSlow(SLAB_BYTES)
  #used = 0

  take(length: number): Buffer {
    if (length > SLAB_BYTES / 8) return Buffer.allocUnsafe(length)
    if (this.#used + length > SLAB_BYTES) {
      this.#slab = Buffer.allocUnsafeSlow(SLAB_BYTES)
      this.#used = 0
    }
    const view = this.#slab.subarray(this.#used, this.#used + length)
    this.#used += (length + 7) & ~7
    return view
  }
}

/** A value: header, then `bytes[start..end]`, in a buffer from `slab`. */
export function encodeValue(
  slab: Slab,
  kind: number,
  version: number,
  bytes: Uint8Array,
  start: number,
  end: number,
): Buffer {
  const value = slab.take(VALUE_HEADER_BYTES + end - start)
  value.writeUInt32LE(kind & 0xff, 0)
  writeU32LE(value, 4, version % 0x100000000)
  writeU32LE(value, 8, Math.floor(version / 0x100000000))
  value.set(bytes.subarray(start, end), VALUE_HEADER_BYTES)
  return value
}

/** The version in a value's header, or -1 when it is too short to have one. */
export function valueVersion(value: Uint8Array): number {
  if (value.length < VALUE_HEADER_BYTES) return -1
  return readU32LE(value, 4) + readU32LE(value, 8) * 0x100000000
}

export function valueKind(value: Uint8Array): number {
  return value[0] ?? -1
}

/**
 * Whether the op at `bytes[offset]` is one the tier looks at (read before any decoding). The
 * legacy NEW_PAGE, WRITE and READ are: they are kept in order with a pending op on their page
 * (ordering.ts), and a legacy put replaces the page, so its remote copy must go.
 */
export function isPageCommand(bytes: Uint8Array, offset: number): boolean {
  if (!(offset >= 0 && offset + 4 <= bytes.length)) return false
  const cmd = readU32LE(bytes, offset)
  return (
    cmd === TMEM_PUT_PAGE ||
    cmd === TMEM_NEW_PAGE ||
    cmd === TMEM_WRITE ||
    cmd === TMEM_READ ||
    cmd === TMEM_GET_PAGE ||
    cmd === TMEM_FLUSH_PAGE ||
    cmd === TMEM_FLUSH_OBJECT ||
    cmd === TMEM_DESTROY_POOL
  )
}

/**
 * A flush, or a legacy put (NEW_PAGE, WRITE: never sent remote) that replaced the page or
 * failed and dropped it (docs/semantics.md "Duplicate put"): a remote copy is not the page.
 */
export function replacesPage(cmd: number): boolean {
  return cmd === TMEM_FLUSH_PAGE || cmd === TMEM_WRITE || cmd === TMEM_NEW_PAGE
}

export function isZeroPage(data: Uint8Array, at: number): boolean {
  for (let i = at; i < at + PAGE_SIZE; i++) if (data[i] !== 0) return false
  return true
}

export function fillWord(word: number): Uint8Array {
  const bytes = new Uint8Array(4)
  new DataView(bytes.buffer).setInt32(0, word, true)
  return bytes
}
