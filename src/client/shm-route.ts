/**
 * A client's shared-memory route: the channel of the connection's region while there is one,
 * and what happens to it when the connection changes. `TmemClient` sends every guest op this
 * way while `ready`, else over the socket; both orders of ops are kept, because the client
 * switches only between ops (a region is attached after everything sent before it ran) and
 * hands the ring's unfinished ops back to the socket in order when the region goes.
 *
 *  - connect, and every reconnect: `attach()` (ATTACH, map, MAPPED; see shm-attach.ts);
 *  - the connection drops: the channel is detached; its ops in flight are sent over the socket
 *    after the new hello (all of them after a MOVED notice, else only the idempotent ones; the
 *    others fail with ECONNRESET), then the ops that were still queued for room;
 *  - the connection closes for good: they fail with the connection's error.
 */
import { PAGE_SIZE as PAGE_SIZE_BYTES } from '../abi/constants.js'
import {
  FRAME_HEADER_BYTES,
  KIND_OP,
  RC_BYTES,
  readI32LE,
  readU32LE,
  writeFrameHeader,
} from '../protocol/frame.js'
import { KIND_SHM_KICK } from '../protocol/shm-frame.js'
import type { ReplyView } from '../protocol/link.js'
import { TmemConnectionError } from './errors.js'
import {
  type ShmChannel,
  type ShmChannelCounters,
  type ShmOrphan,
  type ShmPump,
  type ShmWaiter,
  newShmChannelCounters,
} from './shm-channel.js'
import { type SharedMemoryOptions, attachSharedMemory, releaseSharedMemory } from './shm-attach.js'
import type { Transport } from './transport.js'

/** Commands that may be re-sent after a reconnect (as in client.ts). */
function replayable(cmd: number): boolean {
  return cmd >= 3 && cmd <= 9
}

const KICK_FRAME = new Uint8Array(FRAME_HEADER_BYTES)
writeFrameHeader(KICK_FRAME, 0, KIND_SHM_KICK, 0, 0)

function counterKeys(counters: ShmChannelCounters): (keyof ShmChannelCounters)[] {
  return Object.keys(counters) as (keyof ShmChannelCounters)[]
}

export class ShmRoute {
  /** Why the client is not on shared memory ('' while it is). */
  reason = 'unavailable: not attached yet'
  readonly #transport: Transport
  readonly #abi: 0 | 1
  readonly #options: SharedMemoryOptions
  #channel: ShmChannel | null = null
  #attaching: Promise<void> | null = null
  /** The counters of the channels detached so far. */
  readonly #past = newShmChannelCounters()

  constructor(transport: Transport, abi: 0 | 1, options: SharedMemoryOptions) {
    this.#transport = transport
    this.#abi = abi
    this.#options = options
    transport.on('shm-kick', () => this.#channel?.kicked())
    transport.on('drop', (moved: boolean) => this.#detach(moved ? null : 'replay'))
    transport.on('reconnect', () => void this.attach())
    transport.on('close', (error: Error) => this.#detach(error))
  }

  /** The channel to send ops through, or null (use the socket). */
  get channel(): ShmChannel | null {
    return this.#channel
  }

  /** What every channel of this client did so far (the live one included). */
  counters(): ShmChannelCounters {
    const total = { ...this.#past }
    const live = this.#channel?.counters
    if (live !== undefined) for (const key of counterKeys(total)) total[key] += live[key]
    return total
  }

  /** Attaches a region if the daemon offers one; resolves once settled (never rejects). */
  attach(): Promise<void> {
    this.#attaching ??= this.#attachOnce().finally(() => {
      this.#attaching = null
    })
    return this.#attaching
  }

  /** Waits until every op sent through the region has finished (before a goodbye). */
  async drain(): Promise<void> {
    const channel = this.#channel
    if (channel === null) return
    // Waits on completions, not by polling once per event-loop turn: a daemon that stops
    // answering would have kept the closing client's CPU at 100% for as long as it waited.
    while (channel.inFlight > 0 && !channel.detached) await channel.whenIdle()
  }

  async #attachOnce(): Promise<void> {
    if (this.#channel !== null) return
    try {
      const result = await attachSharedMemory(
        {
          helloFlags: () => this.#transport.hello?.flags ?? 0,
          ask: (frame, replay, decode) => this.#transport.ask(frame, replay, decode),
        },
        this.#abi,
        this.#options,
        () => this.#transport.notice(KICK_FRAME),
        (why) => this.#transport.breach(`Shared memory: ${why}`),
      )
      this.#channel = result.channel
      this.reason = result.reason
    } catch (error) {
      this.reason = `unavailable: ${(error as Error).message}`
    }
  }

  /**
   * The region is gone. `'replay'`: a plain drop (idempotent ops go again over the socket);
   * null: a move (all go); an Error: the connection closed for good (all fail with it).
   */
  #detach(how: 'replay' | null | Error): void {
    const channel = this.#channel
    if (channel === null) return
    this.#channel = null
    for (const key of counterKeys(this.#past)) this.#past[key] += channel.counters[key]
    this.reason = 'unavailable: the connection dropped'
    const { orphans, pumps } = channel.detach()
    releaseSharedMemory(channel)
    for (const orphan of orphans) this.#resendOrphan(orphan, how)
    for (const pump of pumps) this.#resendPump(pump, how)
  }

  #resendOrphan(orphan: ShmOrphan, how: 'replay' | null | Error): void {
    if (how instanceof Error) {
      orphan.waiter.shmFailed(orphan.tag, how)
      return
    }
    const cmd = readU32LE(orphan.op, 0)
    if (how === 'replay' && !replayable(cmd)) {
      orphan.waiter.shmFailed(
        orphan.tag,
        new TmemConnectionError('ECONNRESET', 'The connection dropped before the reply came'),
      )
      return
    }
    this.#send(orphan.op, 0, orphan.page, 0, orphan.waiter, orphan.tag)
  }

  #resendPump(pump: ShmPump, how: 'replay' | null | Error): void {
    pump.drain((op, opAt, page, pageAt, waiter, tag) => {
      // Never submitted: safe to send whatever the command, unless the connection is gone.
      if (how instanceof Error) waiter.shmFailed(tag, how)
      else this.#send(op, opAt, page, pageAt, waiter, tag)
    })
  }

  /** Sends one op over the socket; its reply goes to `waiter` as a completion would. */
  #send(
    op: Uint8Array,
    opAt: number,
    page: Uint8Array | null,
    pageAt: number,
    waiter: ShmWaiter,
    tag: number,
  ): void {
    const opBytes = this.#abi === 0 ? 40 : 56
    const payloadBytes = opBytes + (page === null ? 0 : PAGE_SIZE_BYTES)
    const frame = new Uint8Array(FRAME_HEADER_BYTES + payloadBytes)
    writeFrameHeader(frame, 0, KIND_OP, 0, payloadBytes)
    frame.set(op.subarray(opAt, opAt + opBytes), FRAME_HEADER_BYTES)
    // The op named a frame of the old region; over the socket the page travels with it.
    frame.fill(0, FRAME_HEADER_BYTES + opBytes - 8, FRAME_HEADER_BYTES + opBytes)
    if (page !== null)
      frame.set(page.subarray(pageAt, pageAt + PAGE_SIZE_BYTES), FRAME_HEADER_BYTES + opBytes)
    this.#transport.request(
      frame,
      replayable(readU32LE(op, opAt)),
      (reply: ReplyView) => {
        const rc = readI32LE(reply.bytes, reply.payloadOffset)
        const hasPage = reply.payloadBytes >= RC_BYTES + PAGE_SIZE_BYTES
        waiter.shmDone(tag, rc, reply.bytes, hasPage ? reply.payloadOffset + RC_BYTES : -1)
      },
      (error) => waiter.shmFailed(tag, error),
    )
  }
}
