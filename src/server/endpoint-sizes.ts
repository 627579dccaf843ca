/**
 * The per-endpoint frame tables: which frame kinds a client or a control connection may send
 * (and how big), and the reply and send buffer sizes each kind of connection gets. The daemon
 * hands one of these to every `Connection` it accepts.
 */
import { PAGE_SIZE } from '../abi/constants.js'
import { TMEM_OP_BYTES_V1 } from '../abi/layout.js'
import {
  CLIENT_READ_BYTES,
  CONTROL_OUTPUT_FIELD_BYTES,
  CONTROL_PAYLOAD_BYTES_MAX,
  CONTROL_REPLY_PAYLOAD_BYTES_MAX,
  FRAME_HEADER_BYTES,
  FrameRules,
  HELLO_FIXED_BYTES,
  HELLO_PAYLOAD_BYTES_MAX,
  HELLO_REPLY_PAYLOAD_BYTES_MAX,
  KIND_CONTROL,
  KIND_GOODBYE,
  KIND_HELLO,
  KIND_OP,
  KIND_STATS,
  OP_PAYLOAD_BYTES_MAX,
  OP_REPLY_PAYLOAD_BYTES_MAX,
} from '../protocol/frame.js'
import {
  KIND_SESSION,
  SESSION_FIXED_BYTES,
  SESSION_PAYLOAD_BYTES_MAX,
} from '../protocol/session-frame.js'
import { KIND_SHM, KIND_SHM_KICK, SHM_PAYLOAD_BYTES } from '../protocol/shm-frame.js'
import { COMMAND_PAYLOAD_BYTES_MAX, KIND_COMMAND } from '../protocol/command-frame.js'
import { STATS_REQUEST_BYTES_MAX } from '../protocol/stats.js'
import type { ConnectionSizes } from './connection.js'

/** Each of a client connection's two send buffers (about 15 page replies). */
export const CLIENT_SEND_BUFFER_BYTES = 64 * 1024

const CLIENT_RULES = new FrameRules()
  .allow(KIND_HELLO, HELLO_FIXED_BYTES, HELLO_PAYLOAD_BYTES_MAX)
  .allow(KIND_OP, 0, OP_PAYLOAD_BYTES_MAX)
  // Answered with -EPERM; bounded small so a client connection never buffers a tool buffer.
  .allow(KIND_CONTROL, 0, TMEM_OP_BYTES_V1 + CONTROL_OUTPUT_FIELD_BYTES + PAGE_SIZE)
  .allow(KIND_STATS, 0, STATS_REQUEST_BYTES_MAX)
  .allow(KIND_GOODBYE, 0, 0)
  .allow(KIND_SESSION, 0, SESSION_PAYLOAD_BYTES_MAX)
  .allow(KIND_SHM, SHM_PAYLOAD_BYTES, SHM_PAYLOAD_BYTES)
  .allow(KIND_SHM_KICK, 0, 0)
  .allow(KIND_COMMAND, 0, COMMAND_PAYLOAD_BYTES_MAX)

const CONTROL_RULES = new FrameRules()
  .allow(KIND_HELLO, HELLO_FIXED_BYTES, HELLO_PAYLOAD_BYTES_MAX)
  .allow(KIND_OP, 0, OP_PAYLOAD_BYTES_MAX)
  .allow(KIND_CONTROL, 0, CONTROL_PAYLOAD_BYTES_MAX)
  .allow(KIND_STATS, 0, STATS_REQUEST_BYTES_MAX)
  .allow(KIND_GOODBYE, 0, 0)
  .allow(KIND_SESSION, SESSION_FIXED_BYTES, SESSION_PAYLOAD_BYTES_MAX)
  .allow(KIND_COMMAND, 0, COMMAND_PAYLOAD_BYTES_MAX)

export const CLIENT_SIZES: ConnectionSizes = {
  rules: CLIENT_RULES,
  replyBytesMax:
    FRAME_HEADER_BYTES + Math.max(OP_REPLY_PAYLOAD_BYTES_MAX, HELLO_REPLY_PAYLOAD_BYTES_MAX),
  sendBufferBytes: CLIENT_SEND_BUFFER_BYTES,
  readInPlace: true,
  readBytes: CLIENT_READ_BYTES,
}

export const CONTROL_SIZES: ConnectionSizes = {
  rules: CONTROL_RULES,
  replyBytesMax: FRAME_HEADER_BYTES + CONTROL_REPLY_PAYLOAD_BYTES_MAX,
  sendBufferBytes: FRAME_HEADER_BYTES + CONTROL_REPLY_PAYLOAD_BYTES_MAX,
  readInPlace: true,
}
