/**
 * The option haggling phase of the fixed newstyle handshake (proto.md): one function per
 * option, each reading the option's payload (already bounded and buffered by the connection)
 * and writing its replies. Every payload is checked field by field against its declared
 * length; a wrong one gets NBD_REP_ERR_INVALID and the connection goes on. Control plane:
 * allocates freely.
 *
 *   server: "NBDMAGIC" "IHAVEOPT" u16 handshake flags        client: u32 client flags
 *   client: "IHAVEOPT" u32 option u32 length <data>          (repeated)
 *   server: u64 0x3e889045565a9 u32 option u32 reply type u32 length <data>
 */
import type { ReplyWriter } from './writer.js'
import {
  NBD_BLOCK_MIN,
  NBD_BLOCK_PREFERRED,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
  NBD_IHAVEOPT_HI,
  NBD_IHAVEOPT_LO,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_MAGIC_HI,
  NBD_MAGIC_LO,
  NBD_META_BASE_ALLOCATION,
  NBD_META_ID_BASE_ALLOCATION,
  NBD_META_NAMESPACE_BASE,
  NBD_META_QUERIES_MAX,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_PAYLOAD_BYTES_MAX,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_MAGIC_HI,
  NBD_REP_MAGIC_LO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  NBD_STRING_BYTES_MAX,
} from './constants.js'

/** What the handshake needs to know of an export. */
export interface ExportView {
  readonly name: string
  readonly size: number
  readonly readOnly: boolean
  readonly description: string
}

/** The exports a connection may pick from; "" is the default (the first export). */
export interface ExportLookup {
  find(name: string): ExportView | undefined
  all(): ExportView[]
}

/** What the options so far agreed. */
export interface OptionState {
  noZeroes: boolean
  structured: boolean
  /** base:allocation was selected by SET_META_CONTEXT for the export of this name. */
  metaExport: string | null
}

export type OptionOutcome =
  { kind: 'continue' } | { kind: 'go'; export: ExportView } | { kind: 'close' }

const CONTINUE: OptionOutcome = { kind: 'continue' }
const CLOSE: OptionOutcome = { kind: 'close' }

/** The server's first 18 bytes. */
export function writeGreeting(w: ReplyWriter): void {
  w.u32(NBD_MAGIC_HI)
  w.u32(NBD_MAGIC_LO)
  w.u32(NBD_IHAVEOPT_HI)
  w.u32(NBD_IHAVEOPT_LO)
  w.u16(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)
}

/** Transmission flags of an export on a connection. */
export function transmissionFlags(view: ExportView, structured: boolean): number {
  let flags =
    NBD_FLAG_HAS_FLAGS |
    NBD_FLAG_SEND_FLUSH |
    NBD_FLAG_SEND_FUA |
    NBD_FLAG_SEND_TRIM |
    NBD_FLAG_SEND_WRITE_ZEROES |
    NBD_FLAG_SEND_CACHE |
    NBD_FLAG_SEND_FAST_ZERO |
    // Every write is applied (tmem or the one shared file descriptor) before its reply, and
    // FLUSH syncs that descriptor: what one connection sees, all see.
    NBD_FLAG_CAN_MULTI_CONN
  if (structured) flags |= NBD_FLAG_SEND_DF
  if (view.readOnly) flags |= NBD_FLAG_READ_ONLY
  return flags
}

/** An option reply header; the caller writes `length` bytes of data after it. */
export function replyHeader(w: ReplyWriter, option: number, type: number, length: number): void {
  w.u32(NBD_REP_MAGIC_HI)
  w.u32(NBD_REP_MAGIC_LO)
  w.u32(option)
  w.u32(type)
  w.u32(length)
}

function ack(w: ReplyWriter, option: number): OptionOutcome {
  replyHeader(w, option, NBD_REP_ACK, 0)
  return CONTINUE
}

function refuse(w: ReplyWriter, option: number, type: number): OptionOutcome {
  replyHeader(w, option, type, 0)
  return CONTINUE
}

/** Answers one option whose payload was larger than we buffer (it was read and dropped). */
export function refuseTooBig(w: ReplyWriter, option: number): OptionOutcome {
  if (option === NBD_OPT_EXPORT_NAME) return CLOSE
  return refuse(w, option, NBD_REP_ERR_TOO_BIG)
}

/** Answers one option. */
export function handleOption(
  w: ReplyWriter,
  state: OptionState,
  exports: ExportLookup,
  option: number,
  data: Buffer,
): OptionOutcome {
  switch (option) {
    case NBD_OPT_EXPORT_NAME:
      return exportName(w, state, exports, data)
    case NBD_OPT_ABORT:
      ack(w, option)
      return CLOSE
    case NBD_OPT_LIST:
      return list(w, exports, data)
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
      return infoOrGo(w, state, exports, option, data)
    case NBD_OPT_STRUCTURED_REPLY:
      if (data.length !== 0) return refuse(w, option, NBD_REP_ERR_INVALID)
      state.structured = true
      return ack(w, option)
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
      return metaContext(w, state, exports, option, data)
    default:
      // STARTTLS, EXTENDED_HEADERS, PEEK_EXPORT and every unknown option.
      return refuse(w, option, NBD_REP_ERR_UNSUP)
  }
}

function exportName(
  w: ReplyWriter,
  state: OptionState,
  exports: ExportLookup,
  data: Buffer,
): OptionOutcome {
  // This option has no error reply: an unknown name can only close the connection.
  const view = data.length > NBD_STRING_BYTES_MAX ? undefined : exports.find(data.toString('utf8'))
  if (view === undefined) return CLOSE
  w.u64(view.size)
  w.u16(transmissionFlags(view, state.structured))
  if (!state.noZeroes) w.zeros(124)
  if (state.metaExport !== view.name) state.metaExport = null
  return { kind: 'go', export: view }
}

function list(w: ReplyWriter, exports: ExportLookup, data: Buffer): OptionOutcome {
  if (data.length !== 0) return refuse(w, NBD_OPT_LIST, NBD_REP_ERR_INVALID)
  for (const view of exports.all()) {
    const name = Buffer.from(view.name, 'utf8')
    const description = Buffer.from(view.description, 'utf8')
    replyHeader(w, NBD_OPT_LIST, NBD_REP_SERVER, 4 + name.length + description.length)
    w.u32(name.length)
    w.bytes(name)
    w.bytes(description)
  }
  return ack(w, NBD_OPT_LIST)
}

/** A cursor over an option payload that refuses to read past its end. */
class Fields {
  at = 0
  ok = true
  constructor(readonly data: Buffer) {}

  u16(): number {
    if (this.at + 2 > this.data.length) return this.#bad()
    this.at += 2
    return this.data.readUInt16BE(this.at - 2)
  }

  u32(): number {
    if (this.at + 4 > this.data.length) return this.#bad()
    this.at += 4
    return this.data.readUInt32BE(this.at - 4)
  }

  text(length: number): string {
    if (length > NBD_STRING_BYTES_MAX || this.at + length > this.data.length) {
      this.#bad()
      return ''
    }
    this.at += length
    return this.data.toString('utf8', this.at - length, this.at)
  }

  get complete(): boolean {
    return this.ok && this.at === this.data.length
  }

  #bad(): number {
    this.ok = false
    this.at = this.data.length
    return 0
  }
}

function infoOrGo(
  w: ReplyWriter,
  state: OptionState,
  exports: ExportLookup,
  option: number,
  data: Buffer,
): OptionOutcome {
  const fields = new Fields(data)
  const name = fields.text(fields.u32())
  const count = fields.u16()
  const requests: number[] = []
  for (let i = 0; i < count && fields.ok; i++) requests.push(fields.u16())
  if (!fields.complete) return refuse(w, option, NBD_REP_ERR_INVALID)
  const view = exports.find(name)
  if (view === undefined) return refuse(w, option, NBD_REP_ERR_UNKNOWN)
  replyHeader(w, option, NBD_REP_INFO, 12)
  w.u16(NBD_INFO_EXPORT)
  w.u64(view.size)
  w.u16(transmissionFlags(view, state.structured))
  // Sent whether asked for or not: we take any alignment, so no client is held to it.
  replyHeader(w, option, NBD_REP_INFO, 14)
  w.u16(NBD_INFO_BLOCK_SIZE)
  w.u32(NBD_BLOCK_MIN)
  w.u32(NBD_BLOCK_PREFERRED)
  w.u32(NBD_PAYLOAD_BYTES_MAX)
  if (requests.includes(NBD_INFO_NAME)) {
    const text = Buffer.from(view.name, 'utf8')
    replyHeader(w, option, NBD_REP_INFO, 2 + text.length)
    w.u16(NBD_INFO_NAME)
    w.bytes(text)
  }
  if (requests.includes(NBD_INFO_DESCRIPTION)) {
    const text = Buffer.from(view.description, 'utf8')
    replyHeader(w, option, NBD_REP_INFO, 2 + text.length)
    w.u16(NBD_INFO_DESCRIPTION)
    w.bytes(text)
  }
  ack(w, option)
  if (option === NBD_OPT_INFO) return CONTINUE
  if (state.metaExport !== view.name) state.metaExport = null
  return { kind: 'go', export: view }
}

function metaContext(
  w: ReplyWriter,
  state: OptionState,
  exports: ExportLookup,
  option: number,
  data: Buffer,
): OptionOutcome {
  const set = option === NBD_OPT_SET_META_CONTEXT
  // proto.md: SET "replaces all previously-set metadata contexts (including when this
  // command fails)": an earlier selection must not survive any of the refusals below.
  if (set) state.metaExport = null
  const fields = new Fields(data)
  const name = fields.text(fields.u32())
  const count = fields.u32()
  if (count > NBD_META_QUERIES_MAX) return refuse(w, option, NBD_REP_ERR_TOO_BIG)
  const queries: string[] = []
  for (let i = 0; i < count && fields.ok; i++) queries.push(fields.text(fields.u32()))
  if (!fields.complete) return refuse(w, option, NBD_REP_ERR_INVALID)
  if (set && !state.structured) return refuse(w, option, NBD_REP_ERR_INVALID)
  const view = exports.find(name)
  if (view === undefined) return refuse(w, option, NBD_REP_ERR_UNKNOWN)
  // LIST with no query, or a bare "base:", names every base context; SET must be exact.
  const matches =
    queries.some((query) => query === NBD_META_BASE_ALLOCATION) ||
    (!set && (count === 0 || queries.includes(NBD_META_NAMESPACE_BASE)))
  if (set && matches) state.metaExport = view.name
  if (matches) {
    const text = Buffer.from(NBD_META_BASE_ALLOCATION, 'utf8')
    replyHeader(w, option, NBD_REP_META_CONTEXT, 4 + text.length)
    w.u32(set ? NBD_META_ID_BASE_ALLOCATION : 0)
    w.bytes(text)
  }
  return ack(w, option)
}
