/**
 * The shared-memory region of a local client: the hypercall at memory speed. Xen's guests never
 * sent a page anywhere; an op named a frame of the guest's own memory (`cmfn` in `struct
 * tmem_op`) and the hypervisor copied between that frame and its pool. Here the client and the
 * daemon both map one region holding the client's page frames and two rings, and an op's
 * `cmfn` is a frame number in the region. `docs/protocol.md` ("Shared memory") is the prose
 * form of this file. All integers are little-endian u32 unless said otherwise.
 *
 *   offset 0              4096            sqOffset + 64 x sqEntries    framesOffset
 *   +--------------------+---------------+-------------+--pad to 4096--+---------------------+
 *   | header (one page)  | submission    | completion  |               | frames: frameCount  |
 *   |                    | ring (64 B    | ring (8 B   |               | x 4096 B, frame n   |
 *   |                    | entries)      | entries)    |               | at framesOffset+4096n|
 *   +--------------------+---------------+-------------+---------------+---------------------+
 *
 * Header (the first 64 bytes are written once by the daemon; each cursor and flag then has a
 * 64-byte line of its own, so the two sides never write the same cache line):
 *
 *     0 magic "TSHM"   4 version 1   8 abi (0/1)   12 sqEntries   16 cqEntries   20 frameCount
 *    24 sqOffset      28 cqOffset   32 framesOffset  36 regionBytes  40..63 zero
 *    64 sqTail (client)   128 sqHead (daemon)   192 cqTail (daemon)   256 cqHead (client)
 *   320 daemonSleeping (daemon sets 1; the client clears it and kicks)
 *   384 clientSleeping (client sets 1; the daemon clears it and kicks)
 *   (a fresh header has both flags 1: each side starts asleep; cursors start at 0)
 *
 * Submission entry (64 bytes): the `tmem_op` exactly as `abi.encodeOp` writes it (56 bytes v1;
 * v0's 40 bytes then 16 zero bytes), the request id (u32, at 56) and a reserved u32 (at 60, 0).
 * Completion entry (8 bytes): the request id (u32) and the rc (i32).
 *
 * Cursors run free over the u32 range; an entry's slot is `cursor & (entries - 1)` (entries
 * are powers of two). A ring holds `tail - head` (mod 2^32) entries, never more than its size.
 *
 * Trust: each side keeps its own copy of the geometry (the daemon chose it; the client read it
 * once, from the hello) and its own copy of the cursors it owns; from the region it reads only
 * the other side's cursor and sleeping flag, and checks them before use (`shm-ring.ts`).
 */
import { TMEM_OP_BYTES_V1 } from '../abi/layout.js'
import { PAGE_SIZE } from '../abi/constants.js'
import { assert } from '../util/assert.js'
import { readU32LE, writeU32LE } from '../util/le.js'

/** "TSHM" read as a little-endian u32: the bytes 54 53 48 4d. */
export const SHM_MAGIC = 0x4d485354
export const SHM_VERSION = 1
export const SHM_HEADER_BYTES = 4096

// Header byte offsets.
export const SHM_HEADER_MAGIC = 0
export const SHM_HEADER_VERSION = 4
export const SHM_HEADER_ABI = 8
export const SHM_HEADER_SQ_ENTRIES = 12
export const SHM_HEADER_CQ_ENTRIES = 16
export const SHM_HEADER_FRAME_COUNT = 20
export const SHM_HEADER_SQ_OFFSET = 24
export const SHM_HEADER_CQ_OFFSET = 28
export const SHM_HEADER_FRAMES_OFFSET = 32
export const SHM_HEADER_REGION_BYTES = 36
export const SHM_SQ_TAIL = 64
export const SHM_SQ_HEAD = 128
export const SHM_CQ_TAIL = 192
export const SHM_CQ_HEAD = 256
export const SHM_DAEMON_SLEEPING = 320
export const SHM_CLIENT_SLEEPING = 384

/** The same offsets as indexes of an Int32Array over the region (for Atomics). */
export const SHM_WORD_SQ_TAIL = SHM_SQ_TAIL / 4
export const SHM_WORD_SQ_HEAD = SHM_SQ_HEAD / 4
export const SHM_WORD_CQ_TAIL = SHM_CQ_TAIL / 4
export const SHM_WORD_CQ_HEAD = SHM_CQ_HEAD / 4
export const SHM_WORD_DAEMON_SLEEPING = SHM_DAEMON_SLEEPING / 4
export const SHM_WORD_CLIENT_SLEEPING = SHM_CLIENT_SLEEPING / 4

/** A submission entry: the op (56 bytes at most), request id at 56, reserved u32 at 60. */
export const SQE_BYTES = 64
export const SQE_REQUEST_ID = 56
export const SQE_RESERVED = 60
/** A completion entry: request id at 0, rc (i32) at 4. */
export const CQE_BYTES = 8
export const CQE_REQUEST_ID = 0
export const CQE_RC = 4

// Limits (the daemon's; a client asks within them).
/** Most entries in a ring. */
export const SHM_RING_ENTRIES_MAX = 4096
/** Fewest entries in a ring. */
export const SHM_RING_ENTRIES_MIN = 8
/** Most frames in a region: 64 MiB of pages. */
export const SHM_FRAMES_MAX = 16384
/** Largest region: header, the largest rings, the most frames. */
export const SHM_REGION_BYTES_MAX =
  SHM_HEADER_BYTES +
  pageAlign(SQE_BYTES * SHM_RING_ENTRIES_MAX + CQE_BYTES * SHM_RING_ENTRIES_MAX) +
  SHM_FRAMES_MAX * PAGE_SIZE

/** Where everything lies in a region; each side keeps its own copy and never re-reads it. */
export interface ShmGeometry {
  readonly abi: 0 | 1
  readonly sqEntries: number
  readonly cqEntries: number
  readonly frameCount: number
  readonly sqOffset: number
  readonly cqOffset: number
  readonly framesOffset: number
  readonly regionBytes: number
}

function pageAlign(bytes: number): number {
  return Math.ceil(bytes / PAGE_SIZE) * PAGE_SIZE
}

function isRingSize(entries: number): boolean {
  return (
    Number.isInteger(entries) &&
    entries >= SHM_RING_ENTRIES_MIN &&
    entries <= SHM_RING_ENTRIES_MAX &&
    (entries & (entries - 1)) === 0
  )
}

/**
 * The geometry for rings of `sqEntries`/`cqEntries` and `frameCount` frames. Throws a
 * RangeError (a sentence) when a size is outside the limits above.
 */
export function shmGeometry(
  abi: 0 | 1,
  sqEntries: number,
  cqEntries: number,
  frameCount: number,
): ShmGeometry {
  if (!isRingSize(sqEntries) || !isRingSize(cqEntries)) {
    throw new RangeError(
      `Ring entries must be powers of two from ${SHM_RING_ENTRIES_MIN} to ${SHM_RING_ENTRIES_MAX}`,
    )
  }
  if (!Number.isInteger(frameCount) || frameCount < 1 || frameCount > SHM_FRAMES_MAX) {
    throw new RangeError(`Frame count must be an integer from 1 to ${SHM_FRAMES_MAX}`)
  }
  const sqOffset = SHM_HEADER_BYTES
  const cqOffset = sqOffset + SQE_BYTES * sqEntries
  const framesOffset = pageAlign(cqOffset + CQE_BYTES * cqEntries)
  const regionBytes = framesOffset + frameCount * PAGE_SIZE
  assert(regionBytes <= SHM_REGION_BYTES_MAX, 'Region over its limit')
  return { abi, sqEntries, cqEntries, frameCount, sqOffset, cqOffset, framesOffset, regionBytes }
}

/** Writes a fresh header for `geometry` (the daemon, once, before the client maps it). */
export function writeShmHeader(region: Uint8Array, geometry: ShmGeometry): void {
  assert(region.length >= geometry.regionBytes, 'Region smaller than its geometry')
  region.fill(0, 0, SHM_HEADER_BYTES)
  writeU32LE(region, SHM_HEADER_MAGIC, SHM_MAGIC)
  writeU32LE(region, SHM_HEADER_VERSION, SHM_VERSION)
  writeU32LE(region, SHM_HEADER_ABI, geometry.abi)
  writeU32LE(region, SHM_HEADER_SQ_ENTRIES, geometry.sqEntries)
  writeU32LE(region, SHM_HEADER_CQ_ENTRIES, geometry.cqEntries)
  writeU32LE(region, SHM_HEADER_FRAME_COUNT, geometry.frameCount)
  writeU32LE(region, SHM_HEADER_SQ_OFFSET, geometry.sqOffset)
  writeU32LE(region, SHM_HEADER_CQ_OFFSET, geometry.cqOffset)
  writeU32LE(region, SHM_HEADER_FRAMES_OFFSET, geometry.framesOffset)
  writeU32LE(region, SHM_HEADER_REGION_BYTES, geometry.regionBytes)
  // Both sides start asleep: the first publish on either ring kicks the other.
  writeU32LE(region, SHM_DAEMON_SLEEPING, 1)
  writeU32LE(region, SHM_CLIENT_SLEEPING, 1)
}

/**
 * Reads and checks a header against the geometry this side expects (the client, after
 * mapping: the hello told it the sizes). Returns null when they agree, else why not.
 */
export function checkShmHeader(region: Uint8Array, expected: ShmGeometry): string | null {
  if (region.length < expected.regionBytes) return 'the mapping is smaller than the region'
  if (readU32LE(region, SHM_HEADER_MAGIC) !== SHM_MAGIC) return 'bad magic (expected TSHM)'
  if (readU32LE(region, SHM_HEADER_VERSION) !== SHM_VERSION) return 'unknown region version'
  const fields: readonly [number, number][] = [
    [SHM_HEADER_ABI, expected.abi],
    [SHM_HEADER_SQ_ENTRIES, expected.sqEntries],
    [SHM_HEADER_CQ_ENTRIES, expected.cqEntries],
    [SHM_HEADER_FRAME_COUNT, expected.frameCount],
    [SHM_HEADER_SQ_OFFSET, expected.sqOffset],
    [SHM_HEADER_CQ_OFFSET, expected.cqOffset],
    [SHM_HEADER_FRAMES_OFFSET, expected.framesOffset],
    [SHM_HEADER_REGION_BYTES, expected.regionBytes],
  ]
  for (const [offset, value] of fields) {
    if (readU32LE(region, offset) !== value)
      return `header field at ${offset} disagrees with the hello`
  }
  return null
}

/** Byte offset of frame `frame` (0 <= frame < frameCount) in the region. */
export function frameOffset(geometry: ShmGeometry, frame: number): number {
  assert(Number.isInteger(frame) && frame >= 0 && frame < geometry.frameCount, 'Frame out of range')
  return geometry.framesOffset + frame * PAGE_SIZE
}

// Load-time checks of the layout's arithmetic.
assert(TMEM_OP_BYTES_V1 <= SQE_REQUEST_ID, 'An op must fit before the request id')
assert(SQE_RESERVED + 4 === SQE_BYTES && CQE_RC + 4 === CQE_BYTES, 'Entry layouts must be full')
assert(SHM_CLIENT_SLEEPING + 64 <= SHM_HEADER_BYTES, 'Header words must fit the header page')
assert(SHM_REGION_BYTES_MAX < 2 ** 32, 'Region offsets must fit a u32')
