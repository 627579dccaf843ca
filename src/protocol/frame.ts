/**
 * The tmem wire protocol's frames, shared by the daemon and the client library (this file
 * imports only `abi/`, so a client never pulls in the engine). `docs/protocol.md` is the
 * prose form of what is written here.
 *
 * Every frame is a 16-byte header followed by `payloadBytes` bytes (all integers
 * little-endian):
 *
 *    0        4    5    6         8                12               16
 *   +--------+----+----+---------+----------------+----------------+----------------
 *   | magic  |ver |kind| flags=0 | request id     | payload bytes  | payload ...
 *   | "TMEM" | 1  |    |         | (echoed)       | (<= kind max)  |
 *   +--------+----+----+---------+----------------+----------------+----------------
 *
 * `FrameReader` reassembles frames from socket chunks. A frame that lies whole inside a chunk
 * is parsed in place (no copy); only a frame split across chunks is copied, into one pending
 * buffer sized at construction for the largest frame the reader accepts. A header is checked
 * (magic, version, flags, kind allowed, payload length inside the kind's bounds) as soon as
 * its 16 bytes are there, before any payload is buffered, so a hostile length never makes the
 * reader wait for or hold more than one maximum frame.
 *
 * Hot path: `next()` allocates nothing; `push()` only keeps a reference to the chunk.
 */
import { PAGE_SIZE } from '../abi/constants.js'
import { TMEM_OP_BYTES_V1 } from '../abi/layout.js'
import { assert } from '../util/assert.js'
import { copyBytes } from '../util/bytes.js'
import { readU16LE, readU32LE, writeU16LE, writeU32LE } from '../util/le.js'

/** `"TMEM"` read as a little-endian u32: the bytes 54 4d 45 4d. */
export const FRAME_MAGIC = 0x4d454d54
/** Version of the frame format (not the tmem ABI, which the hello fixes per connection). */
export const WIRE_VERSION = 1
export const FRAME_HEADER_BYTES = 16

export const HEADER_MAGIC = 0
export const HEADER_VERSION = 4
export const HEADER_KIND = 5
export const HEADER_FLAGS = 6
export const HEADER_REQUEST_ID = 8
export const HEADER_PAYLOAD_BYTES = 12

// Frame kinds. Requests are below 0x80, replies at or above.
export const KIND_HELLO = 0x01
export const KIND_OP = 0x02
export const KIND_CONTROL = 0x03
export const KIND_STATS = 0x04
export const KIND_GOODBYE = 0x05
export const KIND_HELLO_REPLY = 0x81
export const KIND_OP_REPLY = 0x82
export const KIND_CONTROL_REPLY = 0x83
export const KIND_STATS_REPLY = 0x84
export const KIND_GOODBYE_REPLY = 0x85
/** Sent by the daemon just before it closes a connection over a malformed frame. */
export const KIND_ERROR = 0xff

// Limits. Every length on the wire is checked against one of these.
export const SECRET_BYTES = 32
export const NAME_BYTES_MAX = 64
export const TOKEN_BYTES_MAX = 128
export const MESSAGE_BYTES_MAX = 512
/** Largest tool buffer a control request may ask for or carry (LIST text, save records). */
export const CONTROL_DATA_BYTES_MAX = 1 << 20
/** Bytes of an rc in a reply payload. */
export const RC_BYTES = 4

export const HELLO_FIXED_BYTES = 40
export const HELLO_PAYLOAD_BYTES_MAX = HELLO_FIXED_BYTES + NAME_BYTES_MAX + TOKEN_BYTES_MAX
export const HELLO_REPLY_FIXED_BYTES = 48
export const HELLO_REPLY_PAYLOAD_BYTES_MAX =
  HELLO_REPLY_FIXED_BYTES + NAME_BYTES_MAX + MESSAGE_BYTES_MAX
/** An op request: the v1 or v0 struct, then optionally one page. */
export const OP_PAYLOAD_BYTES_MAX = TMEM_OP_BYTES_V1 + PAGE_SIZE
export const OP_REPLY_PAYLOAD_BYTES_MAX = RC_BYTES + PAGE_SIZE
/** A control request: the struct, a u32 output size, then the input data. */
export const CONTROL_OUTPUT_FIELD_BYTES = 4
export const CONTROL_PAYLOAD_BYTES_MAX =
  TMEM_OP_BYTES_V1 + CONTROL_OUTPUT_FIELD_BYTES + CONTROL_DATA_BYTES_MAX
export const CONTROL_REPLY_PAYLOAD_BYTES_MAX = RC_BYTES + CONTROL_DATA_BYTES_MAX
export const STATS_REPLY_PAYLOAD_BYTES_MAX = RC_BYTES + CONTROL_DATA_BYTES_MAX
export const ERROR_PAYLOAD_BYTES_MAX = 4 + MESSAGE_BYTES_MAX

// Why a frame was rejected. The daemon counts each reason and names it in logs and metrics.
export const REJECT_NONE = 0
export const REJECT_BAD_MAGIC = 1
export const REJECT_BAD_VERSION = 2
export const REJECT_BAD_FLAGS = 3
export const REJECT_UNKNOWN_KIND = 4
export const REJECT_BAD_LENGTH = 5
export const REJECT_HELLO_EXPECTED = 6
export const REJECT_HELLO_REPEATED = 7
export const REJECT_BAD_HELLO = 8
export const REJECT_BAD_OP_SIZE = 9
export const REJECT_BAD_CONTROL_SIZE = 10
export const REJECT_TRUNCATED = 11

/** Reason names, indexed by REJECT_* (stable: they appear in logs and metric labels). */
export const REJECT_NAMES: readonly string[] = [
  'none',
  'bad_magic',
  'bad_version',
  'bad_flags',
  'unknown_kind',
  'bad_length',
  'hello_expected',
  'hello_repeated',
  'bad_hello',
  'bad_op_size',
  'bad_control_size',
  'truncated',
]

/** A readable sentence for a reject reason, sent in the ERROR frame and logged. */
export function rejectMessage(reason: number): string {
  return REJECT_MESSAGES[reason] ?? `Frame rejected (reason ${reason})`
}

const REJECT_MESSAGES: readonly string[] = [
  'No error',
  'Bad frame magic (expected TMEM)',
  'Unsupported wire version',
  'Reserved header flags are not zero',
  'Frame kind is unknown or not allowed here',
  'Payload length is outside the bounds of its frame kind',
  'The first frame must be a hello',
  'Hello sent twice on one connection',
  'Malformed hello payload',
  'Op payload must be the tmem_op of the connection ABI optionally followed by one page',
  'Control payload must be the tmem_op, a u32 output size and at most the data limit',
  'Connection closed in the middle of a frame',
]

assert(REJECT_NAMES.length === REJECT_TRUNCATED + 1, 'One name per reject reason')
assert(REJECT_MESSAGES.length === REJECT_TRUNCATED + 1, 'One message per reject reason')
assert(FRAME_MAGIC === 0x4d454d54, 'Magic spells TMEM')

export { readU32LE, readI32LE, readU16LE, writeU32LE, writeU16LE } from '../util/le.js'

/** Writes a frame header at `offset`; the payload follows at `offset + FRAME_HEADER_BYTES`. */
export function writeFrameHeader(
  bytes: Uint8Array,
  offset: number,
  kind: number,
  requestId: number,
  payloadBytes: number,
): void {
  assert(kind > 0 && kind <= 0xff, 'Frame kind is a non-zero byte')
  assert(payloadBytes >= 0 && payloadBytes <= 0xffffffff, 'Payload length is a u32')
  writeU32LE(bytes, offset + HEADER_MAGIC, FRAME_MAGIC)
  bytes[offset + HEADER_VERSION] = WIRE_VERSION
  bytes[offset + HEADER_KIND] = kind
  writeU16LE(bytes, offset + HEADER_FLAGS, 0)
  writeU32LE(bytes, offset + HEADER_REQUEST_ID, requestId >>> 0)
  writeU32LE(bytes, offset + HEADER_PAYLOAD_BYTES, payloadBytes)
}

/**
 * Which frame kinds a reader accepts and the payload bounds of each: a table indexed by the
 * kind byte, -1 where the kind is not allowed. Built once per endpoint.
 */
export class FrameRules {
  readonly payloadBytesMin = new Int32Array(256).fill(-1)
  readonly payloadBytesMax = new Int32Array(256).fill(-1)
  /** Largest whole frame any allowed kind can make. */
  frameBytesMax = FRAME_HEADER_BYTES

  allow(kind: number, payloadBytesMin: number, payloadBytesMax: number): this {
    assert(kind >= 0 && kind <= 0xff, 'Frame kind is a byte')
    assert(payloadBytesMin >= 0, 'Payload minimum is not negative')
    assert(payloadBytesMax >= payloadBytesMin, 'Payload maximum is at least the minimum')
    this.payloadBytesMin[kind] = payloadBytesMin
    this.payloadBytesMax[kind] = payloadBytesMax
    this.frameBytesMax = Math.max(this.frameBytesMax, FRAME_HEADER_BYTES + payloadBytesMax)
    return this
  }

  /** REJECT_NONE when the header at `offset` is acceptable, else the reason. */
  checkHeader(bytes: Uint8Array, offset: number): number {
    if (readU32LE(bytes, offset + HEADER_MAGIC) !== FRAME_MAGIC) return REJECT_BAD_MAGIC
    if (bytes[offset + HEADER_VERSION] !== WIRE_VERSION) return REJECT_BAD_VERSION
    if (readU16LE(bytes, offset + HEADER_FLAGS) !== 0) return REJECT_BAD_FLAGS
    const kind = bytes[offset + HEADER_KIND] ?? 0
    const min = this.payloadBytesMin[kind] ?? -1
    if (min < 0) return REJECT_UNKNOWN_KIND
    const payloadBytes = readU32LE(bytes, offset + HEADER_PAYLOAD_BYTES)
    if (payloadBytes < min) return REJECT_BAD_LENGTH
    if (payloadBytes > (this.payloadBytesMax[kind] ?? -1)) return REJECT_BAD_LENGTH
    return REJECT_NONE
  }
}

const EMPTY = new Uint8Array(0)

/** Largest single socket read in in-place mode, unless the reader is given another size. */
export const READ_IN_PLACE_BYTES = 256 * 1024

/**
 * One in-place read on a client connection, at both ends: the size of the chunk Node would
 * otherwise allocate for every read. Reading in place keeps those chunks (external memory,
 * and a garbage collection every 64 MiB of traffic) off the op path.
 */
export const CLIENT_READ_BYTES = 64 * 1024

/**
 * Reassembles frames from a byte stream, in one of two modes:
 *
 * - **Chunks** (`push`): the socket's own buffers are pushed one at a time, once the previous
 *   one is drained. A frame lying whole in a chunk is described in place; one split across
 *   chunks is copied into the reader's buffer.
 * - **In place** (`readTarget` / `commit`, with a socket's `onread` option): the socket reads
 *   straight into the reader's buffer, so nothing is copied and no chunk is allocated. A frame
 *   of a megabyte arrives in place, read by read. The buffer holds the largest frame plus two
 *   reads; the unparsed tail moves to the front only when the room behind it runs short, or
 *   when the frame it starts would not fit where it is.
 *
 * Then call `next()` until it returns false. After a true return, `bytes`, `frameOffset`,
 * `kind`, `requestId`, `payloadOffset` and `payloadBytes` describe the frame; they stay valid
 * until the next call of `next()`, `push()` or `readTarget()`. After a false return, `error`
 * is REJECT_NONE when more bytes are needed, else the reason the stream is malformed (the
 * reader then stays in error).
 */
export class FrameReader {
  /** Where the current frame lives: the pushed chunk, or the reader's buffer. */
  bytes: Uint8Array = EMPTY
  frameOffset = 0
  kind = 0
  requestId = 0
  payloadOffset = 0
  payloadBytes = 0
  error = REJECT_NONE

  readonly #rules: FrameRules
  /** Bytes not yet parsed live in #buffer[#start, #end). */
  readonly #buffer: Uint8Array
  #start = 0
  #end = 0
  #chunk: Uint8Array = EMPTY
  #chunkOffset = 0
  /** The size of one in-place read. */
  readonly #readBytes: number

  /**
   * `buffer` may be given so that a server uses a Buffer. It must hold the largest frame, and
   * for in-place reading (`inPlaceBytes(rules, readBytes)`) two reads of `readBytes` more.
   */
  constructor(rules: FrameRules, buffer?: Uint8Array, readBytes = READ_IN_PLACE_BYTES) {
    assert(Number.isInteger(readBytes) && readBytes > 0, 'An in-place read has a size')
    this.#rules = rules
    this.#buffer = buffer ?? new Uint8Array(rules.frameBytesMax)
    this.#readBytes = readBytes
    assert(this.#buffer.length >= rules.frameBytesMax, 'The reader buffer holds one frame')
  }

  /** Buffer size for in-place reading under `rules`, with reads of `readBytes`. */
  static inPlaceBytes(rules: FrameRules, readBytes = READ_IN_PLACE_BYTES): number {
    return rules.frameBytesMax + 2 * readBytes
  }

  /** A reader with a buffer of its own, for in-place reads of `readBytes`. */
  static inPlace(rules: FrameRules, readBytes = READ_IN_PLACE_BYTES): FrameReader {
    return new FrameReader(
      rules,
      new Uint8Array(FrameReader.inPlaceBytes(rules, readBytes)),
      readBytes,
    )
  }

  /** True when every byte of the last pushed chunk has been taken. */
  isDrained(): boolean {
    return this.#chunkOffset >= this.#chunk.length
  }

  /** True when part of a frame is waiting for more bytes (a close now truncates it). */
  hasPartialFrame(): boolean {
    return this.#end > this.#start
  }

  push(chunk: Uint8Array): void {
    assert(this.isDrained(), 'Push only after the previous chunk is drained')
    this.#chunk = chunk
    this.#chunkOffset = 0
  }

  /**
   * In-place mode: where the next socket read should put its bytes (at most
   * its read size). Invalidates the frame last described. Call it only between reads,
   * and `commit` what the read wrote before asking again.
   *
   * Why the room is always at least one read: after a read, the unparsed bytes are at most a
   * partial frame plus that read (reading resumes only once every whole frame is parsed), so
   * moving them to the front leaves two reads' room minus one.
   */
  readTarget(): Uint8Array {
    const buffer = this.#buffer
    const readBytes = this.#readBytes
    assert(
      buffer.length >= this.#rules.frameBytesMax + 2 * readBytes,
      'In-place reading has room for two reads',
    )
    if (this.#start === this.#end) {
      this.#start = 0
      this.#end = 0
    } else if (
      buffer.length - this.#end < readBytes ||
      this.#start + this.#partialFrameBytes() > buffer.length
    ) {
      buffer.copyWithin(0, this.#start, this.#end)
      this.#end -= this.#start
      this.#start = 0
    }
    assert(buffer.length - this.#end >= readBytes, 'A read always has room')
    return buffer.subarray(this.#end, this.#end + readBytes)
  }

  /** In-place mode: `count` bytes were read into the last `readTarget()`. */
  commit(count: number): void {
    assert(count >= 0 && this.#end + count <= this.#buffer.length, 'A read stays inside its target')
    this.#end += count
  }

  next(): boolean {
    if (this.error !== REJECT_NONE) return false
    if (this.#end > this.#start) return this.#nextFromBuffer()
    const chunk = this.#chunk
    const start = this.#chunkOffset
    const remaining = chunk.length - start
    if (remaining === 0) {
      this.#chunk = EMPTY
      this.#chunkOffset = 0
      return false
    }
    if (remaining < FRAME_HEADER_BYTES) {
      this.#stash(remaining)
      return false
    }
    const reason = this.#rules.checkHeader(chunk, start)
    if (reason !== REJECT_NONE) {
      this.error = reason
      return false
    }
    const frameBytes = FRAME_HEADER_BYTES + readU32LE(chunk, start + HEADER_PAYLOAD_BYTES)
    if (remaining < frameBytes) {
      this.#stash(remaining)
      return false
    }
    this.#chunkOffset = start + frameBytes
    this.#describe(chunk, start)
    return true
  }

  /**
   * The next frame from the reader's buffer, completed from the pushed chunk if there is one
   * (in-place mode has none: the bytes are already there).
   */
  #nextFromBuffer(): boolean {
    const buffer = this.#buffer
    if (this.#end - this.#start < FRAME_HEADER_BYTES) {
      this.#take(FRAME_HEADER_BYTES - (this.#end - this.#start))
      if (this.#end - this.#start < FRAME_HEADER_BYTES) return false
    }
    const start = this.#start
    const reason = this.#rules.checkHeader(buffer, start)
    if (reason !== REJECT_NONE) {
      this.error = reason
      return false
    }
    const frameBytes = FRAME_HEADER_BYTES + readU32LE(buffer, start + HEADER_PAYLOAD_BYTES)
    if (this.#end - start < frameBytes) {
      // Chunk mode buffers a frame from the front; in place, one that does not fit where it
      // is moves to the front at the next readTarget().
      assert(
        this.#chunk === EMPTY || start + frameBytes <= buffer.length,
        'A checked frame fits the reader buffer',
      )
      this.#take(frameBytes - (this.#end - start))
      if (this.#end - start < frameBytes) return false
    }
    this.#start = start + frameBytes
    this.#describe(buffer, start)
    return true
  }

  /**
   * Length of the frame starting at #start when its header is in and valid, else 0 (a bad
   * header is reported by the next `next()`).
   */
  #partialFrameBytes(): number {
    if (this.#end - this.#start < FRAME_HEADER_BYTES) return 0
    if (this.#rules.checkHeader(this.#buffer, this.#start) !== REJECT_NONE) return 0
    return FRAME_HEADER_BYTES + readU32LE(this.#buffer, this.#start + HEADER_PAYLOAD_BYTES)
  }

  /** Copies up to `wanted` bytes of the chunk onto the end of the buffered frame. */
  #take(wanted: number): void {
    const chunk = this.#chunk
    const start = this.#chunkOffset
    const count = Math.min(wanted, chunk.length - start)
    if (count === 0) return
    copyBytes(chunk, start, this.#buffer, this.#end, count)
    this.#end += count
    this.#chunkOffset = start + count
  }

  /** Moves the chunk's tail (the start of a frame) to the front of the reader's buffer. */
  #stash(count: number): void {
    assert(this.#end === this.#start, 'Stash starts a new buffered frame')
    assert(count <= this.#buffer.length, 'A stashed partial frame fits')
    this.#start = 0
    this.#end = 0
    this.#take(count)
    this.#chunk = EMPTY
    this.#chunkOffset = 0
  }

  #describe(bytes: Uint8Array, offset: number): void {
    this.bytes = bytes
    this.frameOffset = offset
    this.kind = bytes[offset + HEADER_KIND] ?? 0
    this.requestId = readU32LE(bytes, offset + HEADER_REQUEST_ID)
    this.payloadOffset = offset + FRAME_HEADER_BYTES
    this.payloadBytes = readU32LE(bytes, offset + HEADER_PAYLOAD_BYTES)
  }
}
