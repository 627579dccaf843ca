/**
 * The engine's side of a remote tier (docs/remote.md): an evicted ephemeral page described
 * with its stored bytes, and the way back from stored bytes to a page.
 *
 * When the embedder sets `Host.onEvictEphemeral`, the core calls `describeVictim` for every
 * eviction victim before its storage is freed. The description is one reused object whose
 * `bytes` view points into the arena: the callee copies what it keeps before it returns and
 * calls nothing in the engine meanwhile. The stored form is handed over as it is (a
 * compressed chunk stays compressed, a trimmed tze page stays trimmed, a filled page is its
 * fill word), so `expandStored` with the same host's codec rebuilds the page.
 */
import { PAGE_SIZE } from '../abi/constants.js'
import type { Core } from './core.js'
import type { Pool } from './model.js'
import { CHECK_BYTES } from './payload.js'
import { SLOT_COMPRESSED, SLOT_CONTENT, SLOT_FILLED, SLOT_KIND_MASK, SLOT_TZE } from './store.js'

/** Stored kinds as handed to a remote tier (stable: they are written into the cluster). */
export const STORED_PLAIN = 0
export const STORED_COMPRESSED = 1
export const STORED_TRIMMED = 2
export const STORED_FILLED = 3

/** One evicted ephemeral page; reused for every victim. */
export class EvictedPage {
  clientId = 0
  poolId = 0
  /** The 192-bit oid as six little-endian u32 words. */
  readonly oid = new Uint32Array(6)
  index = 0
  /** STORED_PLAIN, STORED_COMPRESSED, STORED_TRIMMED or STORED_FILLED. */
  kind = STORED_PLAIN
  /** The stored bytes are `bytes[offset..offset+length]` (arena memory: copy, do not keep). */
  bytes: Uint8Array = new Uint8Array(0)
  offset = 0
  length = 0
  /** The fill word of a STORED_FILLED page (0 is the zero page). */
  fill = 0
}

/** Fills `out` with the victim at `slot` of `pool`. */
export function describeVictim(core: Core, pool: Pool, slot: number, out: EvictedPage): void {
  const store = core.store
  const object = store.slotObject(slot)
  out.clientId = pool.owner.id
  out.poolId = pool.poolId
  out.oid.set(store.objectOid.subarray(object * 6, object * 6 + 6))
  out.index = store.slotIndex(slot)
  let frame = store.slotFrame(slot)
  let offset = store.slotOffset(slot)
  let bytes = store.slotBytes(slot)
  let kind = store.slotFlags(slot) & SLOT_KIND_MASK
  const contents = core.contents
  if ((store.slotFlags(slot) & SLOT_CONTENT) !== 0 && contents !== null) {
    offset = contents.offset[frame]!
    bytes = contents.bytes[frame]!
    kind = contents.kind[frame]!
    frame = contents.frame[frame]!
  }
  if (kind === SLOT_FILLED) {
    out.kind = STORED_FILLED
    out.fill = frame | 0
    out.length = 0
    return
  }
  out.bytes = core.frames.arenaOf(frame)
  out.offset = core.frames.frameOffset(frame) + (kind === 0 ? 0 : offset)
  out.length = kind === 0 ? PAGE_SIZE : bytes
  out.kind = kind === SLOT_COMPRESSED ? STORED_COMPRESSED : kind === SLOT_TZE ? STORED_TRIMMED : 0
}

/**
 * Rebuilds a page from its stored form `input[start..end]` into `page[0..4096]`; false when
 * the bytes do not make a page (wrong length, no codec, corrupt chunk).
 */
export function expandStored(
  core: Core,
  kind: number,
  input: Uint8Array,
  start: number,
  end: number,
  page: Uint8Array,
): boolean {
  const length = end - start
  if (kind === STORED_PLAIN) {
    if (length !== PAGE_SIZE) return false
    page.set(input.subarray(start, end))
    return true
  }
  if (kind === STORED_TRIMMED) {
    if (length < CHECK_BYTES || length - CHECK_BYTES > PAGE_SIZE) return false
    page.set(input.subarray(start + CHECK_BYTES, end))
    page.fill(0, length - CHECK_BYTES, PAGE_SIZE)
    return true
  }
  if (kind === STORED_COMPRESSED) {
    const codec = core.payloads.codec
    if (codec === null || length <= CHECK_BYTES) return false
    return codec.decompress(input, start + CHECK_BYTES, end, page) === PAGE_SIZE
  }
  if (kind === STORED_FILLED && length === 4) {
    for (let at = 0; at < PAGE_SIZE; at += 4) page.set(input.subarray(start, end), at)
    return true
  }
  return false
}
