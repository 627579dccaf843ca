/**
 * Bounded concurrency for the migration's fetch loops: keep up to `depth` requests in flight
 * while more are wanted, and pause while the consumer is behind.
 */

/**
 * Runs `fetch` with up to `depth` calls in flight while `more(inFlight)` says another is
 * wanted. Before each round of issues it awaits `room()` (the consumer's back-pressure).
 * Resolves once no more is wanted and every call has settled; rejects with the first failure
 * (the calls still in flight are then left to settle on their own, their rejections handled).
 *
 * `more` is asked again after every await, since a call that completes meanwhile may end the
 * pass (a change log caught up, a pool read to its end). Waiting for "the next of the calls in
 * flight" when none is in flight would never settle: that was the intermittent stall of live
 * migration under a writer (issue 5), where a fetch finished during `room()`.
 */
export async function pipeline(
  depth: number,
  room: () => Promise<void>,
  more: (inFlight: number) => boolean,
  fetch: () => Promise<void>,
): Promise<void> {
  if (!(depth >= 1)) throw new RangeError(`depth must be at least 1, not ${depth}`)
  const inFlight = new Set<Promise<void>>()
  while (more(inFlight.size)) {
    await room()
    while (inFlight.size < depth && more(inFlight.size)) {
      const call = fetch().finally(() => inFlight.delete(call))
      call.catch(() => undefined)
      inFlight.add(call)
    }
    if (inFlight.size === 0) break
    await Promise.race(inFlight)
  }
  await Promise.all(inFlight)
}
