/**
 * Engine internals the density tests read: how and where a slot's page is stored whatever its
 * payload kind (plain frame, fill word, compressed or tze chunk, or a shared content
 * descriptor), so a test can find a chunk in the arena and corrupt it on purpose, and a check
 * that the density counters (`cp`/`cb`, `Sc`, `Zt`, `Gz`) agree with what is stored.
 */
import type { Host } from '../../src/engine/host.js'
import type { Pool } from '../../src/engine/model.js'
import { AssertionError } from '../../src/util/assert.js'
import { CHECK_BYTES } from '../../src/engine/payload.js'
import {
  NONE,
  SLOT_COMPRESSED,
  SLOT_CONTENT,
  SLOT_FILLED,
  SLOT_KIND_MASK,
  SLOT_TZE,
} from '../../src/engine/store.js'

export type PayloadKind = 'plain' | 'filled' | 'compressed' | 'tze'

/** Where and how a slot's page is stored, following a content descriptor when deduplicated. */
export interface StoredPayload {
  kind: PayloadKind
  shared: boolean
  frame: number
  offset: number
  bytes: number
  /** Absolute byte offset of the payload in `arena` (chunk: its CHECK_BYTES header comes first). */
  at: number
  arena: Buffer | null
}

function kindName(kind: number): PayloadKind {
  if (kind === SLOT_FILLED) return 'filled'
  if (kind === SLOT_COMPRESSED) return 'compressed'
  if (kind === SLOT_TZE) return 'tze'
  return 'plain'
}

export function storedPayload(host: Host, slot: number): StoredPayload {
  const store = host.core.store
  const flags = store.slotFlags(slot)
  let frame = store.slotFrame(slot)
  let offset = store.slotOffset(slot)
  let bytes = store.slotBytes(slot)
  let kind = flags & SLOT_KIND_MASK
  const shared = (flags & SLOT_CONTENT) !== 0
  if (shared) {
    const contents = host.core.contents!
    const id = frame
    frame = contents.frame[id]!
    offset = contents.offset[id]!
    bytes = contents.bytes[id]!
    kind = contents.kind[id]!
  }
  if (kind === SLOT_FILLED)
    return { kind: 'filled', shared, frame, offset, bytes, at: -1, arena: null }
  const arena = host.core.frames.arenaOf(frame)
  return {
    kind: kindName(kind),
    shared,
    frame,
    offset,
    bytes,
    at: host.core.frames.frameOffset(frame) + offset,
    arena,
  }
}

/** The slot of (pool, oid, index), or NONE. */
export function findSlot(host: Host, pool: Pool, oid: Uint32Array, index: number): number {
  const object = host.core.store.objectLookup(pool.gid, oid)
  return object === NONE ? NONE : host.core.store.pageLookup(object, index)
}

/** Every slot of a pool, in object order. */
export function poolSlots(host: Host, pool: Pool): number[] {
  const store = host.core.store
  const slots: number[] = []
  for (let object = pool.objects[0]!; object !== NONE; object = store.objectPoolNext[object]!) {
    for (let slot = store.objectChain[object]!; slot !== NONE; slot = store.chainNext[slot]!)
      slots.push(slot)
  }
  return slots
}

/**
 * The density counters agree with what is stored: per client `cp`/`cb` (compressed pages and
 * codec bytes of the pages in pools it owns, not deduplicated), and host-wide `Sc` (live
 * content descriptors), `Zt` and `Gz` (tze and compressed bytes of content descriptors).
 */
export function checkDensityCounters(host: Host): void {
  const store = host.core.store
  const owned = new Map<number, { pages: number; bytes: number }>()
  const liveContents = new Set<number>()
  for (const pool of host.core.pools.all()) {
    const mine = owned.get(pool.owner.id) ?? { pages: 0, bytes: 0 }
    owned.set(pool.owner.id, mine)
    for (const slot of poolSlots(host, pool)) {
      const flags = store.slotFlags(slot)
      if ((flags & SLOT_CONTENT) !== 0) {
        liveContents.add(store.slotFrame(slot))
      } else if ((flags & SLOT_KIND_MASK) === SLOT_COMPRESSED) {
        mine.pages++
        mine.bytes += store.slotBytes(slot) - CHECK_BYTES
      }
    }
  }
  for (const client of host.core.clientOrder) {
    const mine = owned.get(client.id) ?? { pages: 0, bytes: 0 }
    if (client.compressedPages !== mine.pages || client.compressedBytes !== mine.bytes) {
      throw new AssertionError(
        `counters: client ${client.id} cp:${client.compressedPages} cb:${client.compressedBytes}, ` +
          `its pools hold ${mine.pages} compressed pages of ${mine.bytes} bytes`,
      )
    }
  }
  const counters = host.core.counters
  const contents = host.core.contents
  let tze = 0
  let compressed = 0
  if (contents !== null) {
    for (const id of liveContents) {
      if (contents.kind[id] === SLOT_TZE) tze += contents.bytes[id]! - CHECK_BYTES
      if (contents.kind[id] === SLOT_COMPRESSED) compressed += contents.bytes[id]! - CHECK_BYTES
    }
  }
  if (counters.contentCount !== liveContents.size) {
    throw new AssertionError(
      `counters: Sc ${counters.contentCount}, ${liveContents.size} live content descriptors`,
    )
  }
  if (counters.tzeBytes !== tze || counters.compressedBytes !== compressed) {
    throw new AssertionError(
      `counters: Zt ${counters.tzeBytes} Gz ${counters.compressedBytes}, contents hold ${tze} and ${compressed}`,
    )
  }
}
