/**
 * Writes straight to a socket's stream handle, the call `Socket#write` ends in, without the
 * stream machinery around it. Per write, `Socket#write` costs a request object with five
 * properties added (a hidden-class change each), a callback closure, the Writable's state
 * updates and a `process.nextTick` to call the callback back, even when the kernel took every
 * byte at once, which is the common case for an NBD reply. Here such a write costs one call
 * into the handle; only a write the kernel could not take whole (a full socket buffer) makes
 * a request object, which the handle completes later through its `oncomplete`.
 *
 * The request class and the shared state words come from Node's `stream_wrap` binding
 * (`process.binding`, deprecated in the docs only: DEP0111, no warning unless
 * --pending-deprecation), the same way src/engine/page-copy.ts reaches the buffer binding.
 * `directWriter` returns null when the binding or the handle do not look as expected, and
 * the caller then uses `Socket#write`. Writes are queued in order by libuv whichever way
 * they were made, but this path and `Socket#write` must not be mixed while either has a
 * write pending; ReplyWriter uses one or the other for a socket's whole life (`end()` is
 * fine: libuv shuts the socket down after its queued writes).
 */
import type { Socket } from 'node:net'

interface StreamBinding {
  WriteWrap: new () => object
  streamBaseState: Int32Array
  kLastWriteWasAsync: number
}

interface StreamHandle {
  writeBuffer(req: object, data: Uint8Array): number
}

/** A pending write's request: `oncomplete(status)` runs when libuv has written the rest. */
interface WriteRequest {
  oncomplete: (status: number) => void
}

function findBinding(): StreamBinding | null {
  try {
    const binding = (
      process as unknown as { binding(name: string): Partial<StreamBinding> }
    ).binding('stream_wrap')
    const { WriteWrap, streamBaseState, kLastWriteWasAsync } = binding
    if (
      typeof WriteWrap !== 'function' ||
      !(streamBaseState instanceof Int32Array) ||
      typeof kLastWriteWasAsync !== 'number' ||
      kLastWriteWasAsync < 0 ||
      kLastWriteWasAsync >= streamBaseState.length
    ) {
      return null
    }
    return { WriteWrap, streamBaseState, kLastWriteWasAsync }
  } catch {
    return null
  }
}

const binding = findBinding()

/** The outcome of HandleWriter.write besides an error: all written, or the rest pending. */
export const WRITE_DONE = 0
export const WRITE_PENDING = 1

export class HandleWriter {
  readonly #handle: StreamHandle
  readonly #binding: StreamBinding
  readonly #onComplete: (status: number) => void
  /** The request the next write passes; replaced once a write keeps it (it went pending). */
  #req: WriteRequest

  constructor(handle: StreamHandle, b: StreamBinding, onComplete: (status: number) => void) {
    this.#handle = handle
    this.#binding = b
    this.#onComplete = onComplete
    this.#req = this.#newRequest()
  }

  /**
   * Writes `data`: WRITE_DONE when the kernel took all of it, WRITE_PENDING when libuv keeps
   * the rest (the caller must leave `data` alone until `onComplete` runs, once per pending
   * write, in the order written), or a negative errno (nothing more will come for it).
   */
  write(data: Uint8Array): number {
    const req = this.#req
    const error = this.#handle.writeBuffer(req, data)
    if (error !== 0) return error < 0 ? error : -error
    const b = this.#binding
    if (b.streamBaseState[b.kLastWriteWasAsync] === 0) return WRITE_DONE
    // The handle keeps this request until the write completes: the next write needs another.
    this.#req = this.#newRequest()
    return WRITE_PENDING
  }

  #newRequest(): WriteRequest {
    const req = new this.#binding.WriteWrap() as WriteRequest
    req.oncomplete = this.#onComplete
    return req
  }
}

/**
 * A HandleWriter for `socket`'s handle, or null when this Node does not have the binding or
 * the socket has no stream handle (a test's stand-in socket, say).
 */
export function directWriter(
  socket: Socket,
  onComplete: (status: number) => void,
): HandleWriter | null {
  if (binding === null) return null
  const handle = (socket as unknown as { _handle?: Partial<StreamHandle> | null })._handle
  if (handle === null || handle === undefined || typeof handle.writeBuffer !== 'function') {
    return null
  }
  return new HandleWriter(handle as StreamHandle, binding, onComplete)
}
