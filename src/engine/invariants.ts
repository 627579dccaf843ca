/**
 * The invariant walker: a full check of every engine structure, for tests (after every step
 * of the model-based tests) and for debugging. It recomputes counts from the structures and
 * compares them with the counters. Throws AssertionError with a message naming the broken
 * invariant. Cost is linear in the number of pages; never call it on the data plane.
 */
import { PAGE_SIZE } from '../abi/constants.js'
import { AssertionError } from '../util/assert.js'
import type { Core } from './core.js'
import type { Pool } from './model.js'
import {
  type ListHead,
  NONE,
  SLOT_CONTENT,
  SLOT_FILLED,
  SLOT_KIND_MASK,
  SLOT_PERSISTENT,
  SLOT_USED,
} from './store.js'

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new AssertionError(`Invariant broken: ${message}`)
}

/** Walks a list forwards and backwards; returns its members in order. */
function walkList(
  prev: Uint32Array,
  next: Uint32Array,
  head: ListHead,
  limit: number,
  name: string,
): number[] {
  const members: number[] = []
  let before = NONE
  for (let id = head[0]!; id !== NONE; id = next[id]!) {
    check(prev[id] === before, `${name} back link of ${id}`)
    members.push(id)
    check(members.length <= limit, `${name} is longer than its capacity (a cycle)`)
    before = id
  }
  check(head[1] === before, `${name} tail`)
  return members
}

/** Checks every invariant of `engine`'s core (a `Host` or anything else holding a core). */
export function checkInvariants(engine: { readonly core: Core }): void {
  const core = engine.core
  contentRefs.clear()
  chunkCounts.clear()
  const store = core.store
  const counters = core.counters
  const pools = core.pools.all()
  const capacity = store.slots.capacity
  const seenSlots = new Set<number>()
  const seenFrames = new Set<number>()
  let pageTotal = 0
  let objectTotal = 0
  for (const pool of pools) {
    const counts = checkPool(core, pool, seenSlots, seenFrames)
    pageTotal += counts.pages
    objectTotal += counts.objects
  }
  check(pageTotal === counters.pageCount, 'global page count')
  check(objectTotal === counters.objectCount, 'global object count')
  check(store.slots.inUse === pageTotal, 'slots in use equal pages')
  check(store.objects.inUse === objectTotal, 'objects in use equal objects')
  for (let slot = 0; slot < store.slots.highWater; slot++) {
    const used = (store.slotFlags(slot) & SLOT_USED) !== 0
    check(used === seenSlots.has(slot), `slot ${slot} used flag matches reachability`)
  }
  const global = walkList(store.listPrev, store.listNext, core.globalLru, capacity, 'global LRU')
  check(global.length === counters.ephemeralCount, 'global LRU length equals ephemeral count')
  for (let i = 1; i < global.length; i++) {
    check(
      store.slotStamp[global[i]!]! > store.slotStamp[global[i - 1]!]!,
      'age stamps increase along the global LRU',
    )
  }
  let ephemeralTotal = 0
  for (const client of core.clientOrder) {
    const own = walkList(
      store.clientPrev,
      store.clientNext,
      client.lru,
      capacity,
      `client ${client.id} LRU`,
    )
    check(own.length === client.ephemeralCount, `client ${client.id} LRU length`)
    for (const slot of own) {
      const pool = core.pools.byGid(store.objectPool[store.slotObject(slot)]!)
      check(pool.owner === client, `client ${client.id} LRU holds a page of a pool it does not own`)
    }
    ephemeralTotal += own.length
    check(core.clientsById[client.id] === client, `client ${client.id} is indexed`)
  }
  check(ephemeralTotal === counters.ephemeralCount, 'client LRUs add up to the global LRU')
  for (const client of core.clientOrder) {
    check(
      !client.liveMigrating || core.changeLog !== null,
      `client ${client.id} migrates with no change log`,
    )
  }
  check(core.weightTotal === core.clientOrder.reduce((sum, c) => sum + c.weight, 0), 'weight total')
  const weighted = core.clientOrder.filter((c) => c.weight !== 0)
  check(
    weighted.length === core.weighted.length && weighted.every((c) => core.weighted.includes(c)),
    'the weighted clients are listed',
  )
  checkContents(core, seenFrames)
  checkFrames(core, seenFrames)
}

/** Each live content descriptor's own payload. */
function checkContents(core: Core, seenFrames: Set<number>): void {
  const contents = core.contents
  if (contents === null) return
  for (const id of contentRefs.keys()) {
    checkStored(
      core,
      contents.frame[id]!,
      contents.offset[id]!,
      contents.bytes[id]!,
      contents.kind[id]!,
      seenFrames,
      `content ${id}`,
    )
  }
}

function checkPool(
  core: Core,
  pool: Pool,
  seenSlots: Set<number>,
  seenFrames: Set<number>,
): { pages: number; objects: number } {
  const store = core.store
  const capacity = store.slots.capacity
  const objects = walkList(
    store.objectPoolPrev,
    store.objectPoolNext,
    pool.objects,
    store.objects.capacity,
    `pool ${pool.gid} objects`,
  )
  check(objects.length === pool.objectCount, `pool ${pool.gid} object count`)
  let pages = 0
  const oid = new Uint32Array(6)
  for (const object of objects) {
    check(store.objectPool[object] === pool.gid, `object ${object} pool`)
    check(store.objectPages[object]! > 0, `object ${object} is empty but alive`)
    oid.set(store.objectOid.subarray(object * 6, object * 6 + 6))
    check(store.objectLookup(pool.gid, oid) === object, `object ${object} findable in the index`)
    let count = 0
    let before = NONE
    for (let slot = store.objectChain[object]!; slot !== NONE; slot = store.chainNext[slot]!) {
      check(store.chainPrev[slot] === before, `object ${object} chain back link`)
      check(!seenSlots.has(slot), `slot ${slot} reachable twice`)
      seenSlots.add(slot)
      check((store.slotFlags(slot) & SLOT_USED) !== 0, `slot ${slot} in a chain is free`)
      check(store.slotObject(slot) === object, `slot ${slot} object`)
      check(store.pageLookup(object, store.slotIndex(slot)) === slot, `slot ${slot} findable`)
      const persistent = (store.slotFlags(slot) & SLOT_PERSISTENT) !== 0
      check(persistent === pool.persistent, `slot ${slot} persistence matches its pool`)
      checkPayload(core, slot, seenFrames)
      count++
      check(count <= capacity, `object ${object} chain has a cycle`)
      before = slot
    }
    check(count === store.objectPages[object], `object ${object} page count`)
    pages += count
  }
  check(pages === pool.pageCount, `pool ${pool.gid} page count`)
  if (pool.persistent) {
    const list = walkList(
      store.listPrev,
      store.listNext,
      pool.persistentList,
      capacity,
      `pool ${pool.gid} persistent list`,
    )
    check(list.length === pool.pageCount, `pool ${pool.gid} persistent list length`)
  } else {
    check(pool.persistentList[0] === NONE, `ephemeral pool ${pool.gid} has a persistent list`)
  }
  return { pages, objects: objects.length }
}

/**
 * A slot's payload: a plain frame used by no one else, a chunk in a class frame that passes
 * its check (so corrupt compressed storage is caught here), or a content descriptor.
 */
function checkPayload(core: Core, slot: number, seenFrames: Set<number>): void {
  const store = core.store
  const flags = store.slotFlags(slot)
  const frame = store.slotFrame(slot)
  if ((flags & SLOT_CONTENT) !== 0) {
    const contents = core.contents
    check(contents !== null, `slot ${slot} is deduplicated without dedup`)
    check(contents.refs[frame]! > 0, `slot ${slot} points at a dead content descriptor`)
    contentRefs.set(frame, (contentRefs.get(frame) ?? 0) + 1)
    return
  }
  checkStored(
    core,
    frame,
    store.slotOffset(slot),
    store.slotBytes(slot),
    flags & SLOT_KIND_MASK,
    seenFrames,
    `slot ${slot}`,
  )
}

/** Content references seen during one walk (reset by checkInvariants). */
const contentRefs = new Map<number, number>()

function checkStored(
  core: Core,
  frame: number,
  offset: number,
  bytes: number,
  kind: number,
  seenFrames: Set<number>,
  name: string,
): void {
  const payloads = core.payloads
  check(bytes <= PAGE_SIZE, `${name} stored size`)
  if (kind === SLOT_FILLED) {
    check(bytes === 0, `${name} fill word with bytes`)
    return
  }
  if (kind === 0) {
    check(bytes === PAGE_SIZE, `${name} plain page size`)
    check(payloads.subpages.frameClass[frame] === 0, `${name} plain page in a class frame`)
    check(!seenFrames.has(frame), `frame ${frame} used by two slots`)
    seenFrames.add(frame)
    return
  }
  check(payloads.subpages.frameClass[frame] !== 0, `${name} chunk outside a class frame`)
  chunkCounts.set(frame, (chunkCounts.get(frame) ?? 0) + 1)
  check(
    payloads.expand(frame, offset, bytes, kind),
    `${name} stored payload fails its check (corrupt)`,
  )
}

/** Chunks seen per class frame during one walk. */
const chunkCounts = new Map<number, number>()

function checkFrames(core: Core, seenFrames: Set<number>): void {
  const frames = core.frames
  const subpages = core.payloads.subpages
  for (const [frame, count] of chunkCounts) {
    check(subpages.usedIn(frame) === count, `class frame ${frame} chunk count`)
  }
  const contents = core.contents
  if (contents !== null) {
    check(contentRefs.size === contents.count, 'live content descriptors equal referenced ones')
    for (const [id, refs] of contentRefs) {
      check(contents.refs[id] === refs, `content ${id} reference count`)
    }
  }
  check(
    frames.used === seenFrames.size + subpages.classFrames,
    'frames in use equal plain pages plus class frames',
  )
  check(frames.used <= frames.budget, 'frames within budget')
  const free = new Set<number>()
  frames.forEachFree((frame) => {
    check(!free.has(frame), `frame ${frame} on the free stack twice`)
    check(!seenFrames.has(frame), `frame ${frame} both free and used`)
    free.add(frame)
  })
  check(free.size === frames.freeCount, 'free stack count')
  check(frames.used + frames.freeCount === frames.arenaFrames, 'arena frames add up')
}
