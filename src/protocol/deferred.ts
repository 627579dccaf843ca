/**
 * The contract between the daemon's op path and a host whose ops may finish later (the
 * remote tier, docs/remote.md). Such a host returns OP_DEFERRED from `opBytes` instead of a
 * return code, and the next `takeDeferred()` is the promise of that op's reply. The daemon
 * answers the op when the promise settles and holds the connection's later ops until then,
 * so one client's ops keep their order while every other client is served as before.
 */

/** Not a tmem return code: "the answer comes from `takeDeferred()`". */
export const OP_DEFERRED = 0x7ffffff0

/** A deferred op's reply: its return code, and the page of a get that found one. */
export interface DeferredReply {
  rc: number
  page: Uint8Array | null
}
