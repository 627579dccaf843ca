/**
 * Intrusive doubly linked lists over typed arrays: the links of member `id` are `prev[id]` and
 * `next[id]`, and a list is named by its head, a 2-element Uint32Array [head, tail] (NONE when
 * empty). The store's LRUs, persistent lists, object chains and pool object lists, and the
 * sub-page size classes, are all such lists. Nothing here allocates except `newListHead`.
 */
import { NONE } from './ids.js'

/** Head and tail of an intrusive list: a 2-element Uint32Array, [head, tail]. */
export type ListHead = Uint32Array

export function newListHead(): ListHead {
  return new Uint32Array([NONE, NONE])
}

/** Pushes `id` onto the tail of a list whose links are `prev`/`next`. */
export function listAppend(prev: Uint32Array, next: Uint32Array, head: ListHead, id: number): void {
  const tail = head[1]!
  prev[id] = tail
  next[id] = NONE
  if (tail === NONE) head[0] = id
  else next[tail] = id
  head[1] = id
}

/** Removes `id` from a list whose links are `prev`/`next`. */
export function listUnlink(prev: Uint32Array, next: Uint32Array, head: ListHead, id: number): void {
  const before = prev[id]!
  const after = next[id]!
  if (before === NONE) head[0] = after
  else next[before] = after
  if (after === NONE) head[1] = before
  else prev[after] = before
  prev[id] = NONE
  next[id] = NONE
}
