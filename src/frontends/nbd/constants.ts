/**
 * The NBD protocol as data (the NBD project's doc/proto.md, fixed newstyle handshake): every
 * magic, option, reply, info, flag, command and error code this server speaks, under the
 * protocol's own names so that they grep alike in C and TypeScript, plus the limits this
 * server states. Nothing here allocates or imports.
 *
 * test/frontends/nbd/constants.test.ts checks these numbers against a second copy transcribed
 * independently from proto.md, and against libnbd's header where it is installed.
 *
 * All integers on the wire are big-endian ("network byte order").
 */

// Handshake (proto.md "Fixed newstyle negotiation").
/** "NBDMAGIC": the server's first eight bytes. */
export const NBD_MAGIC_HI = 0x4e42444d
export const NBD_MAGIC_LO = 0x41474943
/** "IHAVEOPT": the newstyle magic after NBDMAGIC, and the prefix of every client option. */
export const NBD_IHAVEOPT_HI = 0x49484156
export const NBD_IHAVEOPT_LO = 0x454f5054
/** The magic of every option reply: 0x0003e889045565a9. */
export const NBD_REP_MAGIC_HI = 0x0003e889
export const NBD_REP_MAGIC_LO = 0x045565a9

// Handshake flags (server, u16) and client flags (u32).
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0
export const NBD_FLAG_NO_ZEROES = 1 << 1
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0
export const NBD_FLAG_C_NO_ZEROES = 1 << 1

// Options (u32).
export const NBD_OPT_EXPORT_NAME = 1
export const NBD_OPT_ABORT = 2
export const NBD_OPT_LIST = 3
export const NBD_OPT_PEEK_EXPORT = 4
export const NBD_OPT_STARTTLS = 5
export const NBD_OPT_INFO = 6
export const NBD_OPT_GO = 7
export const NBD_OPT_STRUCTURED_REPLY = 8
export const NBD_OPT_LIST_META_CONTEXT = 9
export const NBD_OPT_SET_META_CONTEXT = 10
export const NBD_OPT_EXTENDED_HEADERS = 11

// Option reply types (u32); the errors have bit 31 set.
export const NBD_REP_ACK = 1
export const NBD_REP_SERVER = 2
export const NBD_REP_INFO = 3
export const NBD_REP_META_CONTEXT = 4
export const NBD_REP_FLAG_ERROR = 0x8000_0000
export const NBD_REP_ERR_UNSUP = NBD_REP_FLAG_ERROR + 1
export const NBD_REP_ERR_POLICY = NBD_REP_FLAG_ERROR + 2
export const NBD_REP_ERR_INVALID = NBD_REP_FLAG_ERROR + 3
export const NBD_REP_ERR_PLATFORM = NBD_REP_FLAG_ERROR + 4
export const NBD_REP_ERR_TLS_REQD = NBD_REP_FLAG_ERROR + 5
export const NBD_REP_ERR_UNKNOWN = NBD_REP_FLAG_ERROR + 6
export const NBD_REP_ERR_SHUTDOWN = NBD_REP_FLAG_ERROR + 7
export const NBD_REP_ERR_BLOCK_SIZE_REQD = NBD_REP_FLAG_ERROR + 8
export const NBD_REP_ERR_TOO_BIG = NBD_REP_FLAG_ERROR + 9

// Information types in NBD_REP_INFO (u16).
export const NBD_INFO_EXPORT = 0
export const NBD_INFO_NAME = 1
export const NBD_INFO_DESCRIPTION = 2
export const NBD_INFO_BLOCK_SIZE = 3

// Transmission flags (u16, per export).
export const NBD_FLAG_HAS_FLAGS = 1 << 0
export const NBD_FLAG_READ_ONLY = 1 << 1
export const NBD_FLAG_SEND_FLUSH = 1 << 2
export const NBD_FLAG_SEND_FUA = 1 << 3
export const NBD_FLAG_ROTATIONAL = 1 << 4
export const NBD_FLAG_SEND_TRIM = 1 << 5
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6
export const NBD_FLAG_SEND_DF = 1 << 7
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8
export const NBD_FLAG_SEND_RESIZE = 1 << 9
export const NBD_FLAG_SEND_CACHE = 1 << 10
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11

// Transmission: requests and replies.
export const NBD_REQUEST_MAGIC = 0x25609513
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef
/** magic u32, flags u16, type u16, cookie u64, offset u64, length u32. */
export const NBD_REQUEST_BYTES = 28
/** magic u32, error u32, cookie u64. */
export const NBD_SIMPLE_REPLY_BYTES = 16
/** magic u32, flags u16, type u16, cookie u64, length u32. */
export const NBD_STRUCTURED_REPLY_BYTES = 20

// Commands (u16).
export const NBD_CMD_READ = 0
export const NBD_CMD_WRITE = 1
export const NBD_CMD_DISC = 2
export const NBD_CMD_FLUSH = 3
export const NBD_CMD_TRIM = 4
export const NBD_CMD_CACHE = 5
export const NBD_CMD_WRITE_ZEROES = 6
export const NBD_CMD_BLOCK_STATUS = 7
export const NBD_CMD_RESIZE = 8

// Command flags (u16).
export const NBD_CMD_FLAG_FUA = 1 << 0
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1
export const NBD_CMD_FLAG_DF = 1 << 2
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4

// Structured reply chunk flags and types (u16).
export const NBD_REPLY_FLAG_DONE = 1 << 0
export const NBD_REPLY_TYPE_NONE = 0
export const NBD_REPLY_TYPE_OFFSET_DATA = 1
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5
export const NBD_REPLY_TYPE_ERROR = (1 << 15) + 1
export const NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2

// Errors (u32), in simple replies and error chunks.
export const NBD_EPERM = 1
export const NBD_EIO = 5
export const NBD_ENOMEM = 12
export const NBD_EINVAL = 22
export const NBD_ENOSPC = 28
export const NBD_EOVERFLOW = 75
export const NBD_ENOTSUP = 95
export const NBD_ESHUTDOWN = 108

// The base:allocation metadata context.
export const NBD_META_BASE_ALLOCATION = 'base:allocation'
export const NBD_META_NAMESPACE_BASE = 'base:'
export const NBD_STATE_HOLE = 1 << 0
export const NBD_STATE_ZERO = 1 << 1

// Limits this server states or enforces.
/** proto.md bounds names and other strings at 4096 bytes. */
export const NBD_STRING_BYTES_MAX = 4096
/** Option payloads larger than this are read and discarded, and get NBD_REP_ERR_TOO_BIG. */
export const NBD_OPTION_BYTES_MAX = 64 * 1024
/** Options one connection may send before it picks an export (then it is closed). */
export const NBD_OPTION_COUNT_MAX = 1024
/** Metadata context queries in one LIST/SET_META_CONTEXT. */
export const NBD_META_QUERIES_MAX = 64
/** NBD_INFO_BLOCK_SIZE: the minimum, preferred and maximum block sizes we state. */
export const NBD_BLOCK_MIN = 512
export const NBD_BLOCK_PREFERRED = 4096
/** The largest READ or WRITE payload (the Linux kernel client's own request limit). */
export const NBD_PAYLOAD_BYTES_MAX = 32 * 1024 * 1024
/** Pages BLOCK_STATUS looks at per reply; a longer request gets a shorter answer (allowed). */
export const NBD_STATUS_PAGES_MAX = 16 * 1024
/** Context id of base:allocation on every connection. */
export const NBD_META_ID_BASE_ALLOCATION = 1

/** Name of an NBD error code for logs and messages. */
export function nbdErrorName(error: number): string {
  return NBD_ERROR_NAMES[error] ?? `NBD error ${error}`
}

const NBD_ERROR_NAMES: Readonly<Record<number, string>> = {
  [NBD_EPERM]: 'EPERM',
  [NBD_EIO]: 'EIO',
  [NBD_ENOMEM]: 'ENOMEM',
  [NBD_EINVAL]: 'EINVAL',
  [NBD_ENOSPC]: 'ENOSPC',
  [NBD_EOVERFLOW]: 'EOVERFLOW',
  [NBD_ENOTSUP]: 'ENOTSUP',
  [NBD_ESHUTDOWN]: 'ESHUTDOWN',
}
