/**
 * The tmem client library: a guest of the daemon. `connect()` returns a `TmemClient` with the
 * raw hypercall (`op`) and a pool API that pipelines (`newPool`, `put`, `get`, `flushPage`,
 * `flushObject`, `destroyPool`). Return codes follow STYLE §5.6: a negative rc rejects with a
 * `TmemError` whose `code` is the errno name; a miss is a value (`get` resolves null).
 *
 * The pool API writes its ops straight into the request frame at the offsets of
 * `abi/layout.ts` (the same bytes `abi.encodeOp` produces, which test/client checks), so a put
 * costs one frame buffer and no intermediate objects.
 */
import { EventEmitter } from 'node:events'
import {
  EEMPTY,
  PAGE_SIZE,
  TMEM_DESTROY_POOL,
  TMEM_FLUSH_OBJECT,
  TMEM_FLUSH_PAGE,
  TMEM_GET_PAGE,
  TMEM_NEW_POOL,
  TMEM_PUT_PAGE,
} from '../abi/constants.js'
import { type AbiVersion, encodeOpInto, poolFlags, uuidFromString } from '../abi/codec.js'
import { OP_CMD, OP_POOL_ID, opLayout } from '../abi/layout.js'
import type { TmemOp } from '../abi/types.js'
import {
  CLIENT_READ_BYTES,
  FRAME_HEADER_BYTES,
  KIND_OP,
  writeFrameHeader,
  writeU32LE,
} from '../protocol/frame.js'
import { HELLO_FLAG_ABI_REFUSED, HELLO_FLAG_RESUMED } from '../protocol/hello.js'
import { rcError } from './errors.js'
import { type ConnectTarget, clientRules } from '../protocol/dial.js'
import type { ReplyView } from '../protocol/link.js'
import { formatClientAddress } from '../protocol/session-frame.js'
import { Transport } from './transport.js'
import {
  RESULT_PAGE,
  RESULT_RAW,
  RESULT_STORED,
  RESULT_VOID,
  ShmBatch,
  shmCall,
} from './shm-ops.js'
import { type ShmChannelCounters, newShmChannelCounters } from './shm-channel.js'
import { ShmRoute } from './shm-route.js'
import { requestFrame, writeOid } from './request-bytes.js'
import {
  type ConnectOptions,
  type NewPoolOptions,
  type OidInput,
  type OpResult,
  parseSecret,
} from './client-options.js'
import { isReplayable, replyPage, replyRc } from './client-replies.js'

export type { ConnectTarget } from '../protocol/dial.js'
export type { ConnectOptions, NewPoolOptions, OidInput, OpResult } from './client-options.js'
export { parseSecret } from './client-options.js'

/**
 * Connects to a tmem daemon as a client.
 *
 * @example
 * ```ts
 * const client = await connect({ path: '/run/user/1000/tmem/tmem.sock' }, { name: 'web-1' })
 * const pool = await client.newPool({ persistent: true })
 * await client.put(pool, 42n, 0, page)
 * const back = await client.get(pool, 42n, 0) // Uint8Array, or null on a miss
 * await client.close()
 * ```
 */
export async function connect(
  target: ConnectTarget,
  options: ConnectOptions = {},
): Promise<TmemClient> {
  const abi = options.abi ?? 1
  if (abi !== 0 && abi !== 1) throw new RangeError('The ABI version must be 0 or 1')
  const transport = new Transport(target, {
    abiVersion: abi,
    name: options.name ?? '',
    secret: parseSecret(options.secret),
    token: '',
    reconnect: options.reconnect ?? true,
    rules: clientRules(),
    // Replies land in the reader's buffer: no 64 KiB chunk (and its garbage) per read.
    readInPlace: true,
    readBytes: CLIENT_READ_BYTES,
  })
  await transport.open()
  const shared = options.sharedMemory ?? true
  let route: ShmRoute | null = null
  if (shared !== false && 'path' in target) {
    route = new ShmRoute(transport, abi, shared === true ? {} : shared)
    await route.attach()
  }
  return new TmemClient(transport, abi, route)
}

export class TmemClient extends EventEmitter {
  readonly abi: AbiVersion
  readonly #transport: Transport
  readonly #layout: ReturnType<typeof opLayout>
  readonly #opBytes: number
  readonly #shm: ShmRoute | null
  /** The op of a shared-memory call is encoded here, then copied into the ring. */
  readonly #scratch = new Uint8Array(64)
  /** The scratch as words, to zero it in 16 stores (`fill` is a call into the runtime). */
  readonly #scratchWords = new Int32Array(this.#scratch.buffer)

  /** Use `connect()`. */
  constructor(transport: Transport, abi: AbiVersion, shm: ShmRoute | null = null) {
    super()
    this.abi = abi
    this.#transport = transport
    this.#shm = shm
    this.#layout = opLayout(abi)
    this.#opBytes = this.#layout.bytes
    transport.on('disconnect', () => this.emit('disconnect'))
    transport.on('reconnect', () => this.emit('reconnect'))
    transport.on('moved', (address: string) => this.emit('moved', address))
    transport.on('close', (error: Error) => this.emit('close', error))
  }

  /**
   * The daemon this client talks to, `unix:/path` or `tcp:host:port`. It changes when the
   * control plane migrates the client to another daemon (event `moved`).
   */
  get address(): string {
    return formatClientAddress(this.#transport.target)
  }

  /**
   * Whether ops go through shared memory, and if not, why (`unavailable: ...`); `counters`
   * say what the client's regions did so far (ops, kicks each way, waits for room, sleeps).
   */
  get sharedMemory(): { active: boolean; reason: string; counters: ShmChannelCounters } {
    if (this.#shm === null) {
      return {
        active: false,
        reason: 'unavailable: not asked for, or not a Unix socket',
        counters: newShmChannelCounters(),
      }
    }
    return {
      active: this.#shm.channel !== null,
      reason: this.#shm.channel !== null ? '' : this.#shm.reason,
      counters: this.#shm.counters(),
    }
  }

  /** The client id the daemon gave this client (Xen's domain id). */
  get clientId(): number {
    return this.#transport.hello?.clientId ?? 0
  }

  get name(): string {
    return this.#transport.hello?.name ?? ''
  }

  /** The secret that lets a new connection take this client back (hex). Keep it private. */
  get secret(): string {
    return Buffer.from(this.#transport.secret ?? new Uint8Array(0)).toString('hex')
  }

  /** How long the daemon keeps this client after the connection drops, in ms. */
  get graceMs(): number {
    return this.#transport.hello?.graceMs ?? 0
  }

  /** True when this connection resumed an existing client (its pools are back). */
  get resumed(): boolean {
    return ((this.#transport.hello?.flags ?? 0) & HELLO_FLAG_RESUMED) !== 0
  }

  /** True when the daemon does not serve this ABI version (v0 without --accept-v0). */
  get abiRefused(): boolean {
    return ((this.#transport.hello?.flags ?? 0) & HELLO_FLAG_ABI_REFUSED) !== 0
  }

  /** The daemon's hello message (why an ABI is refused), or ''. */
  get notice(): string {
    return this.#transport.hello?.message ?? ''
  }

  /**
   * The hypercall over the wire: sends the op in its exact ABI layout (with `page` for put and
   * write, or as the starting frame of a read) and resolves with the rc as the engine returned
   * it, and the page for a get or read that hit. Never rejects on an rc; only on transport
   * failure.
   */
  op(op: TmemOp, page?: Uint8Array | null): Promise<OpResult> {
    const withPage = page !== undefined && page !== null
    if (withPage && page.length !== PAGE_SIZE) throw new RangeError('A page is 4096 bytes')
    const channel = this.#shm?.channel ?? null
    if (channel !== null) {
      encodeOpInto(op, this.abi, this.#scratch, 0)
      return shmCall(channel, this.#scratch, withPage ? page : null, RESULT_RAW, op.cmd, op.poolId)
    }
    const payloadBytes = this.#opBytes + (withPage ? PAGE_SIZE : 0)
    const frame = requestFrame(
      FRAME_HEADER_BYTES + payloadBytes,
      FRAME_HEADER_BYTES + this.#opBytes,
    )
    writeFrameHeader(frame, 0, KIND_OP, 0, payloadBytes)
    encodeOpInto(op, this.abi, frame, FRAME_HEADER_BYTES)
    if (withPage) frame.set(page, FRAME_HEADER_BYTES + this.#opBytes)
    return this.#send(frame, op.cmd, (reply) => ({ rc: replyRc(reply), page: replyPage(reply) }))
  }

  /** Creates a pool; resolves with its id (0..15). Rejects with EPERM, ENOMEM, ... */
  async newPool(options: NewPoolOptions = {}): Promise<number> {
    const uuid =
      options.uuid === undefined
        ? ([0n, 0n] as const)
        : typeof options.uuid === 'string'
          ? uuidFromString(options.uuid)
          : options.uuid
    const flags = poolFlags({
      persistent: options.persistent ?? false,
      shared: options.shared ?? false,
      version: this.abi === 0 ? 0 : 1,
    })
    const op: TmemOp = {
      cmd: TMEM_NEW_POOL,
      poolId: 0,
      creat: { uuid: [uuid[0], uuid[1]], flags, arg1: 0 },
    }
    const { rc } = await this.op(op)
    if (rc < 0) throw rcError(rc, TMEM_NEW_POOL)
    return rc
  }

  /** Stores a 4096-byte page; resolves true when stored. Rejects with EFROZEN, ENOMEM, ... */
  put(poolId: number, oid: OidInput, index: number, page: Uint8Array): Promise<boolean> {
    if (page.length !== PAGE_SIZE) throw new RangeError('A page is 4096 bytes')
    const channel = this.#shm?.channel ?? null
    if (channel !== null) {
      this.#writeGen(this.#clearScratch(), 0, TMEM_PUT_PAGE, poolId, oid, index)
      return shmCall(channel, this.#scratch, page, RESULT_STORED, TMEM_PUT_PAGE, poolId)
    }
    const frame = this.#genFrame(TMEM_PUT_PAGE, poolId, oid, index, true)
    frame.set(page, FRAME_HEADER_BYTES + this.#opBytes)
    return this.#send(frame, TMEM_PUT_PAGE, (reply) => {
      const rc = replyRc(reply)
      if (rc < 0) throw rcError(rc, TMEM_PUT_PAGE, poolId)
      return rc === 1
    })
  }

  /**
   * Reads a page back; resolves with it (in `into` when given), or null on a miss (rc 0, or
   * -EEMPTY: the pool holds no page). Rejects with ENODEV, EFAULT, ...
   */
  get(poolId: number, oid: OidInput, index: number, into?: Uint8Array): Promise<Uint8Array | null> {
    if (into !== undefined && into.length < PAGE_SIZE) throw new RangeError('A page is 4096 bytes')
    const channel = this.#shm?.channel ?? null
    if (channel !== null) {
      this.#writeGen(this.#clearScratch(), 0, TMEM_GET_PAGE, poolId, oid, index)
      return shmCall(channel, this.#scratch, null, RESULT_PAGE, TMEM_GET_PAGE, poolId, into)
    }
    const frame = this.#genFrame(TMEM_GET_PAGE, poolId, oid, index, false)
    return this.#send(frame, TMEM_GET_PAGE, (reply) => {
      const rc = replyRc(reply)
      if (rc === 0 || rc === -EEMPTY) return null
      if (rc < 0) throw rcError(rc, TMEM_GET_PAGE, poolId)
      return replyPage(reply, into)
    })
  }

  /** Removes one page (found or not). Rejects with EFROZEN (the flush was still done), ... */
  flushPage(poolId: number, oid: OidInput, index: number): Promise<void> {
    const channel = this.#shm?.channel ?? null
    if (channel !== null) {
      this.#writeGen(this.#clearScratch(), 0, TMEM_FLUSH_PAGE, poolId, oid, index)
      return shmCall(channel, this.#scratch, null, RESULT_VOID, TMEM_FLUSH_PAGE, poolId)
    }
    const frame = this.#genFrame(TMEM_FLUSH_PAGE, poolId, oid, index, false)
    return this.#send(frame, TMEM_FLUSH_PAGE, (reply) => {
      const rc = replyRc(reply)
      if (rc < 0) throw rcError(rc, TMEM_FLUSH_PAGE, poolId)
    })
  }

  /** Removes every page of an object. Rejects with EFROZEN (the flush was still done), ... */
  flushObject(poolId: number, oid: OidInput): Promise<void> {
    const channel = this.#shm?.channel ?? null
    if (channel !== null) {
      this.#writeGen(this.#clearScratch(), 0, TMEM_FLUSH_OBJECT, poolId, oid, 0)
      return shmCall(channel, this.#scratch, null, RESULT_VOID, TMEM_FLUSH_OBJECT, poolId)
    }
    const frame = this.#genFrame(TMEM_FLUSH_OBJECT, poolId, oid, 0, false)
    return this.#send(frame, TMEM_FLUSH_OBJECT, (reply) => {
      const rc = replyRc(reply)
      if (rc < 0) throw rcError(rc, TMEM_FLUSH_OBJECT, poolId)
    })
  }

  /** Destroys a pool and its pages; resolves false when there was no such pool. */
  destroyPool(poolId: number): Promise<boolean> {
    const channel = this.#shm?.channel ?? null
    if (channel !== null) {
      this.#writeGen(this.#clearScratch(), 0, TMEM_DESTROY_POOL, poolId, 0, 0)
      return shmCall(channel, this.#scratch, null, RESULT_STORED, TMEM_DESTROY_POOL, poolId)
    }
    const frame = this.#genFrame(TMEM_DESTROY_POOL, poolId, 0, 0, false)
    return this.#send(frame, TMEM_DESTROY_POOL, (reply) => {
      const rc = replyRc(reply)
      if (rc < 0) throw rcError(rc, TMEM_DESTROY_POOL, poolId)
      return rc === 1
    })
  }

  /** Drops the connection but keeps the client: a connect with `secret` within grace resumes it. */
  disconnect(): Promise<void> {
    this.#transport.destroy()
    return Promise.resolve()
  }

  /**
   * Stores many pages of one pool: resolves with, for each entry, whether it was stored.
   * Over shared memory the whole batch fills the ring with no promise per page. Rejects with
   * the first error (EFROZEN, ENOMEM, ...) once every entry has finished.
   */
  putMany(
    poolId: number,
    entries: readonly { oid: OidInput; index: number; page: Uint8Array }[],
  ): Promise<boolean[]> {
    for (const entry of entries)
      if (entry.page.length !== PAGE_SIZE) throw new RangeError('A page is 4096 bytes')
    const channel = this.#shm?.channel ?? null
    if (channel === null)
      return Promise.all(entries.map((e) => this.put(poolId, e.oid, e.index, e.page)))
    const pages = entries.map((entry) => entry.page)
    return new Promise<boolean[]>((resolve, reject) => {
      channel.enqueue(
        new ShmBatch<boolean>(
          TMEM_PUT_PAGE,
          poolId,
          entries.length,
          (target, i) => {
            const entry = entries[i]!
            target.fill(0, 0, this.#opBytes)
            this.#writeGen(target, 0, TMEM_PUT_PAGE, poolId, entry.oid, entry.index)
          },
          pages,
          null,
          { resolve, reject },
        ),
      )
    })
  }

  /**
   * Reads many pages of one pool: resolves with each page (in `into`, entry i at i x 4096,
   * when given) or null on a miss. Rejects with the first error once every entry finished.
   */
  getMany(
    poolId: number,
    keys: readonly { oid: OidInput; index: number }[],
    into?: Uint8Array,
  ): Promise<(Uint8Array | null)[]> {
    if (into !== undefined && into.length < keys.length * PAGE_SIZE)
      throw new RangeError('into holds fewer pages than keys')
    const channel = this.#shm?.channel ?? null
    if (channel === null) {
      return Promise.all(
        keys.map((k, i) =>
          this.get(poolId, k.oid, k.index, into?.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE)),
        ),
      )
    }
    return new Promise<(Uint8Array | null)[]>((resolve, reject) => {
      channel.enqueue(
        new ShmBatch<Uint8Array | null>(
          TMEM_GET_PAGE,
          poolId,
          keys.length,
          (target, i) => {
            const key = keys[i]!
            target.fill(0, 0, this.#opBytes)
            this.#writeGen(target, 0, TMEM_GET_PAGE, poolId, key.oid, key.index)
          },
          null,
          into ?? null,
          { resolve, reject },
        ),
      )
    })
  }

  /** Ends the client: the daemon destroys its pools now, as for a domain that shut down. */
  async close(): Promise<void> {
    await this.#shm?.drain()
    return this.#transport.goodbye()
  }

  #send<T>(frame: Uint8Array, cmd: number, decode: (reply: ReplyView) => T): Promise<T> {
    return this.#transport.ask(frame, isReplayable(cmd), decode)
  }

  /** A request frame holding a `gen`-arm op: header, cmd, pool id, oid words, index. */
  #genFrame(cmd: number, poolId: number, oid: OidInput, index: number, withPage: boolean): Buffer {
    const payloadBytes = this.#opBytes + (withPage ? PAGE_SIZE : 0)
    // A put's page area is overwritten whole by the caller; only header and op start zeroed.
    const frame = requestFrame(
      FRAME_HEADER_BYTES + payloadBytes,
      FRAME_HEADER_BYTES + this.#opBytes,
    )
    writeFrameHeader(frame, 0, KIND_OP, 0, payloadBytes)
    this.#writeGen(frame, FRAME_HEADER_BYTES, cmd, poolId, oid, index)
    return frame
  }

  /** The shared-memory scratch, zeroed. */
  #clearScratch(): Uint8Array {
    const words = this.#scratchWords
    for (let i = 0; i < words.length; i++) words[i] = 0
    return this.#scratch
  }

  /**
   * Writes a `gen`-arm op at `target[at]`, which the caller zeroed (`requestFrame` does, and
   * `#clearScratch`): cmd, pool id, oid words, index.
   */
  #writeGen(
    target: Uint8Array,
    at: number,
    cmd: number,
    poolId: number,
    oid: OidInput,
    index: number,
  ): void {
    if (!Number.isInteger(poolId) || poolId < -0x80000000 || poolId > 0x7fffffff) {
      throw new RangeError('Pool id must be a 32-bit integer')
    }
    if (!Number.isInteger(index) || index < 0 || index > 0xffffffff) {
      throw new RangeError('Index must be a u32')
    }
    writeU32LE(target, at + OP_CMD, cmd)
    writeU32LE(target, at + OP_POOL_ID, poolId >>> 0)
    writeOid(target, at + this.#layout.genOid, this.#layout.oidWords, oid)
    writeU32LE(target, at + this.#layout.genIndex, index)
  }
}
