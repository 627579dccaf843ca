/**
 * The control client: the toolstack's (dom0's) side of the daemon, over the control endpoint
 * (the 0600 Unix socket, or loopback TCP with the token from the daemon's token file). It sends
 * TMEM_CONTROL, TMEM_AUTH and TMEM_RESTORE_NEW in their ABI layout with a tool buffer, and
 * reads daemon stats. The CLI verbs and save/restore are built on it.
 */
import { readFileSync } from 'node:fs'
import {
  TMEMC_LIST,
  TMEMC_LIST_PAGE,
  TMEM_LIST_PAGE_HEAD,
  TMEM_LIST_PAGE_LONG,
  TMEMC_SAVE_GET_NEXT_INV,
  TMEMC_SAVE_GET_NEXT_PAGE,
  TMEMC_SAVE_GET_POOL_UUID,
  TMEM_CONTROL,
  CLI_ID_NULL,
} from '../abi/constants.js'
import { type AbiVersion, controlOp, encodeOpInto } from '../abi/codec.js'
import { opLayout } from '../abi/layout.js'
import type { TmemOp } from '../abi/types.js'
import {
  CONTROL_DATA_BYTES_MAX,
  CONTROL_OUTPUT_FIELD_BYTES,
  FRAME_HEADER_BYTES,
  KIND_CONTROL,
  KIND_STATS,
  RC_BYTES,
  readI32LE,
  writeFrameHeader,
  writeU32LE,
} from '../protocol/frame.js'
import {
  type SessionMessage,
  type SessionReply,
  decodeSessionReply,
  encodeSessionRequest,
} from '../protocol/session-frame.js'
import {
  type DaemonStats,
  type StatsPage,
  type StatsRequest,
  decodeStats,
  decodeStatsPage,
  encodeStatsRequest,
} from '../protocol/stats.js'
import { commandErrorName, decodeCommandReply, encodeCommand } from '../protocol/command-frame.js'
import { TmemConnectionError, TmemError, TmemProtocolError, rcError } from './errors.js'
import { controlRules } from '../protocol/dial.js'
import type { ReplyView } from '../protocol/link.js'
import { Transport } from './transport.js'

/** The control endpoint: a Unix socket, or loopback TCP with a token (or the token file). */
export type ControlTarget =
  { path: string } | { host: string; port: number; token?: string; tokenFile?: string }

export interface ControlConnectOptions {
  /** A name for the daemon's logs. */
  name?: string
  abi?: AbiVersion
  /**
   * Longest wait for the connection and hello, in ms; past it the dial is dropped and the
   * promise rejects with a TmemConnectionError `ETIMEDOUT`. Default: no limit.
   */
  timeoutMs?: number
}

/** A control op's rc and the tool buffer as the engine left it. */
export interface ControlResult {
  rc: number
  data: Uint8Array
}

/** One NBD export as `exportList()` and friends describe it (docs/nbd.md, "Managing exports"). */
export interface ExportInfo {
  name: string
  /** Bytes. */
  size: number
  mode: 'swap' | 'cache'
  backing: string | null
  /** The shared pool's UUID (cache exports), or null. */
  shared: string | null
  readOnly: boolean
  /** The tmem client id of `nbd:NAME` (0 while it has none), and its pool's id. */
  client: number
  pool: number
  /** NBD connections open on the export. */
  connections: number
  /** Pages tmem holds for the export now. */
  pages: number
  /** Pages written to the backing file because tmem refused them. */
  spilledPages: number
  /** A swap export whose tmem client was destroyed: it answers EIO. */
  lost: boolean
}

/** Default LIST buffer: room for the long form of a few hundred clients. */
export const LIST_BUFFER_BYTES = 256 * 1024

/**
 * Connects to the daemon's control endpoint.
 *
 * @example
 * ```ts
 * const control = await connectControl({ path: '/run/user/1000/tmem/control.sock' })
 * console.log(await control.list(0xffff, true)) // the exact Xen TMEMC_LIST text
 * await control.close()
 * ```
 */
export async function connectControl(
  target: ControlTarget,
  options: ControlConnectOptions = {},
): Promise<TmemControlClient> {
  const abi = options.abi ?? 1
  let token = ''
  if (!('path' in target)) {
    token = target.token ?? (target.tokenFile === undefined ? '' : readToken(target.tokenFile))
  }
  const dialTarget =
    'path' in target ? { path: target.path } : { host: target.host, port: target.port }
  const transport = new Transport(dialTarget, {
    abiVersion: abi,
    name: options.name ?? '',
    secret: null,
    token,
    reconnect: false,
    rules: controlRules(RC_BYTES + CONTROL_DATA_BYTES_MAX),
    readInPlace: true,
  })
  await openWithin(transport, options.timeoutMs ?? 0)
  return new TmemControlClient(transport, abi)
}

/** `transport.open()`, dropped with ETIMEDOUT after `timeoutMs` (0: no limit). */
async function openWithin(transport: Transport, timeoutMs: number): Promise<void> {
  if (timeoutMs <= 0) {
    await transport.open()
    return
  }
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(
        new TmemConnectionError(
          'ETIMEDOUT',
          `The daemon did not answer the hello within ${timeoutMs} ms`,
        ),
      )
      transport.destroy()
    }, timeoutMs)
  })
  try {
    await Promise.race([transport.open(), expired])
  } finally {
    clearTimeout(timer)
  }
}

function readToken(path: string): string {
  return readFileSync(path, 'utf8').trim()
}

export class TmemControlClient {
  readonly abi: AbiVersion
  readonly #transport: Transport

  /** Use `connectControl()`. */
  constructor(transport: Transport, abi: AbiVersion) {
    this.abi = abi
    this.#transport = transport
  }

  /**
   * Runs a privileged op (TMEM_CONTROL, TMEM_AUTH, TMEM_RESTORE_NEW). `data` is the tool
   * buffer's input (RESTORE_PUT_PAGE's page); `outputBytes` how much of the buffer comes back,
   * by default what the subop writes: LIST, SAVE_GET_NEXT_PAGE and SAVE_GET_NEXT_INV `arg1`
   * bytes, SAVE_GET_POOL_UUID 16. Resolves with the rc as the engine returned it.
   */
  control(op: TmemOp, data?: Uint8Array | null, outputBytes?: number): Promise<ControlResult> {
    return this.controlWith(
      op,
      data ?? null,
      outputBytes ?? defaultOutputBytes(op),
      (rc, bytes, offset, length) => ({
        rc,
        data: Uint8Array.from(bytes.subarray(offset, offset + length)),
      }),
    )
  }

  /**
   * Like `control`, but hands the reply's tool buffer to `consume` in place (valid only during
   * the call) instead of copying it: for moving page batches without a copy.
   */
  controlWith<T>(
    op: TmemOp,
    data: Uint8Array | null,
    outputBytes: number,
    consume: (rc: number, bytes: Uint8Array, offset: number, length: number) => T,
  ): Promise<T> {
    const input = data ?? new Uint8Array(0)
    if (!Number.isInteger(outputBytes) || outputBytes < 0 || outputBytes > CONTROL_DATA_BYTES_MAX) {
      throw new RangeError(`Output size must be 0 to ${CONTROL_DATA_BYTES_MAX} bytes`)
    }
    if (input.length > CONTROL_DATA_BYTES_MAX) {
      throw new RangeError(`Control data is at most ${CONTROL_DATA_BYTES_MAX} bytes`)
    }
    const opBytes = opLayout(this.abi).bytes
    const payloadBytes = opBytes + CONTROL_OUTPUT_FIELD_BYTES + input.length
    const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payloadBytes)
    frame.fill(0, 0, FRAME_HEADER_BYTES + opBytes)
    writeFrameHeader(frame, 0, KIND_CONTROL, 0, payloadBytes)
    encodeOpInto(op, this.abi, frame, FRAME_HEADER_BYTES)
    writeU32LE(frame, FRAME_HEADER_BYTES + opBytes, outputBytes)
    frame.set(input, FRAME_HEADER_BYTES + opBytes + CONTROL_OUTPUT_FIELD_BYTES)
    return this.#send(frame, (reply) => {
      const start = reply.payloadOffset + RC_BYTES
      return consume(
        readI32LE(reply.bytes, reply.payloadOffset),
        reply.bytes,
        start,
        reply.payloadBytes - RC_BYTES,
      )
    })
  }

  /**
   * A SESSION request (docs/protocol.md, "Session control"): the daemon-level requests of live
   * migration (look up, bind, activate, destroy, moved, unfence). Resolves with the rc and the
   * session the daemon describes; never rejects on an rc.
   */
  session(message: SessionMessage): Promise<SessionReply> {
    return this.#send(encodeSessionRequest(0, message), (reply) => {
      const decoded = decodeSessionReply(reply.bytes, reply.payloadOffset, reply.payloadBytes)
      if (decoded === null) throw new TmemProtocolError('Malformed session reply')
      return decoded
    })
  }

  /**
   * TMEMC_LIST: the exact Xen text (docs/semantics.md "LIST") for one client, or all (0xFFFF). Rejects with a
   * TmemError when the engine returns a negative rc (an unknown client).
   */
  async list(
    cliId: number = CLI_ID_NULL,
    long = false,
    bufferBytes = LIST_BUFFER_BYTES,
  ): Promise<string> {
    const op: TmemOp = {
      cmd: TMEM_CONTROL,
      poolId: 0,
      ctrl: {
        subop: TMEMC_LIST,
        cliId,
        arg1: bufferBytes,
        arg2: long ? 1 : 0,
        oid: [0n, 0n, 0n],
        buf: 0n,
      },
    }
    const { rc, data } = await this.control(op)
    if (rc < 0) throw rcError(rc, TMEM_CONTROL)
    const end = data.indexOf(0)
    return Buffer.from(data.subarray(0, end < 0 ? data.length : end)).toString('latin1')
  }

  /**
   * TMEMC_LIST_PAGE (tmem's own): the Xen LIST lines of whole clients from id `first` up, as
   * many as fit in `bufferBytes`; `head` begins with the G= and S= lines, and the last page
   * ends with the T= line. Resolves with the text and the id to ask for next (0xFFFF: done).
   */
  async listPage(
    first: number,
    long: boolean,
    head: boolean,
    bufferBytes = LIST_BUFFER_BYTES,
  ): Promise<{ text: string; next: number }> {
    const flags = (long ? TMEM_LIST_PAGE_LONG : 0) | (head ? TMEM_LIST_PAGE_HEAD : 0)
    const { rc, data } = await this.control(
      controlOp(TMEMC_LIST_PAGE, first, 0, bufferBytes, flags),
    )
    if (rc < 0) throw rcError(rc, TMEM_CONTROL)
    const end = data.indexOf(0)
    const text = Buffer.from(data.subarray(0, end < 0 ? data.length : end)).toString('latin1')
    return { text, next: rc }
  }

  /**
   * A paged STATS request (docs/protocol.md "STATS"): a page of clients from an id up, with at
   * most `maxBytes` of reply (0: the daemon's default), or one client by id or by name. The
   * reply has the shape of `stats()` holding only those clients and their sessions, plus
   * `page.next` (the id to ask for next, -1 when done). Works at any number of clients.
   */
  statsPage(request: StatsRequest): Promise<StatsPage> {
    const body = encodeStatsRequest(request)
    const frame = Buffer.alloc(FRAME_HEADER_BYTES + body.length)
    writeFrameHeader(frame, 0, KIND_STATS, 0, body.length)
    frame.set(body, FRAME_HEADER_BYTES)
    return this.#send(frame, (reply) => statsBody(reply, decodeStatsPage))
  }

  /**
   * The daemon's stats (protocol/stats.ts): `{ daemon: {counters...}, sessions: [{ id, name,
   * connected, ... }], host: <engine stats> }`, checked field by field: a reply that is not
   * what the types say rejects with a TmemProtocolError.
   */
  stats(): Promise<DaemonStats> {
    const frame = Buffer.alloc(FRAME_HEADER_BYTES)
    writeFrameHeader(frame, 0, KIND_STATS, 0, 0)
    return this.#send(frame, (reply) => statsBody(reply, decodeStats))
  }

  /**
   * A named daemon command (docs/protocol.md, "Commands"). Resolves with its JSON result;
   * rejects with a TmemError whose `code` is the errno name (`EEXIST`, `ENOENT`, `EBUSY`,
   * `EINVAL`, `ENOSYS` when the daemon has no such command) and `errno` the rc.
   */
  command(command: string, args: Record<string, unknown> = {}): Promise<unknown> {
    return this.#send(encodeCommand(0, { command, args }), (reply) => {
      const decoded = decodeCommandReply(reply.bytes, reply.payloadOffset, reply.payloadBytes)
      if (decoded === null) throw new TmemProtocolError('Malformed command reply')
      if (decoded.rc >= 0) return decoded.body
      const said = (decoded.body as { message?: unknown } | null)?.message
      const code = commandErrorName(decoded.rc)
      const message = typeof said === 'string' ? said : `${command} failed with ${code}`
      throw new TmemError(code, message, { errno: decoded.rc })
    })
  }

  /**
   * Adds an NBD export to a daemon serving NBD: `spec` as `--export` takes it
   * (`name=NAME,size=SIZE[,mode=swap|cache][,backing=FILE][,shared=UUID][,readonly]`).
   */
  async exportAdd(spec: string): Promise<ExportInfo> {
    return (await this.command('export.add', { spec })) as ExportInfo
  }

  /**
   * Removes an export: its tmem client and pages are destroyed. An export with connections
   * open is refused (`EBUSY`) unless `force`, which closes them.
   */
  async exportRemove(name: string, force = false): Promise<ExportInfo> {
    return (await this.command('export.remove', { name, force })) as ExportInfo
  }

  async exportList(): Promise<ExportInfo[]> {
    return (await this.command('export.list')) as ExportInfo[]
  }

  close(): Promise<void> {
    return this.#transport.goodbye()
  }

  /** Drops the connection at once, without a goodbye; requests still waiting fail with ECLOSED. */
  destroy(): void {
    this.#transport.destroy()
  }

  #send<T>(frame: Uint8Array, decode: (reply: ReplyView) => T): Promise<T> {
    return this.#transport.ask(frame, false, decode)
  }
}

/** A STATS reply's rc (rejected when negative) and its body, checked by `decode`. */
function statsBody<T>(
  reply: ReplyView,
  decode: (bytes: Uint8Array, offset: number, length: number) => T,
): T {
  const rc = readI32LE(reply.bytes, reply.payloadOffset)
  if (rc < 0) throw rcError(rc, TMEM_CONTROL)
  try {
    return decode(reply.bytes, reply.payloadOffset + RC_BYTES, reply.payloadBytes - RC_BYTES)
  } catch (error) {
    throw new TmemProtocolError(
      `Malformed stats reply: ${error instanceof Error ? error.message : String(error)}`,
    )
  }
}

function defaultOutputBytes(op: TmemOp): number {
  if (op.cmd !== TMEM_CONTROL || !('ctrl' in op)) return 0
  const { subop, arg1 } = op.ctrl
  if (
    subop === TMEMC_LIST ||
    subop === TMEMC_LIST_PAGE ||
    subop === TMEMC_SAVE_GET_NEXT_PAGE ||
    subop === TMEMC_SAVE_GET_NEXT_INV
  ) {
    return Math.min(arg1, CONTROL_DATA_BYTES_MAX)
  }
  if (subop === TMEMC_SAVE_GET_POOL_UUID) return 16
  return 0
}
