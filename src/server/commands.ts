/**
 * COMMAND frames on the control endpoint (protocol/command-frame.ts): named requests whose
 * handlers the program that composes the daemon registers, so that a frontend the server layer
 * does not know (the NBD server, which cli/daemon.ts starts) can take control verbs such as
 * `export.add`. A name nobody registered gets -ENOSYS. A handler runs synchronously on the
 * event loop and returns a JSON-able result, or throws a CommandError (its rc and sentence go
 * back to the caller); any other exception is -EIO with its message. Control plane: allocates.
 */
import type { Logger } from 'pino'
import {
  FRAME_HEADER_BYTES,
  type FrameReader,
  RC_BYTES,
  writeFrameHeader,
  writeU32LE,
} from '../protocol/frame.js'
import {
  COMMAND_EINVAL,
  COMMAND_EIO,
  COMMAND_ENOSYS,
  COMMAND_NAME_PATTERN,
  COMMAND_REPLY_PAYLOAD_BYTES_MAX,
  KIND_COMMAND_REPLY,
  decodeCommand,
} from '../protocol/command-frame.js'
import type { Connection } from './connection.js'

/** A handler's refusal: `rc` is a negated errno (COMMAND_E* in protocol/command-frame.ts). */
export class CommandError extends Error {
  override readonly name = 'CommandError'
  readonly rc: number

  constructor(rc: number, message: string) {
    super(message)
    this.rc = rc
  }
}

export type CommandHandler = (args: Record<string, unknown>) => unknown

export class ControlCommands {
  readonly #handlers = new Map<string, CommandHandler>()
  readonly #log: Logger

  constructor(log: Logger) {
    this.#log = log
  }

  /** Adds `name` (e.g. `export.add`); throws when it is taken or not a command name. */
  register(name: string, handler: CommandHandler): void {
    if (!COMMAND_NAME_PATTERN.test(name)) throw new RangeError(`Bad command name ${name}`)
    if (this.#handlers.has(name)) throw new Error(`Command ${name} is already registered`)
    this.#handlers.set(name, handler)
  }

  unregister(name: string): void {
    this.#handlers.delete(name)
  }

  /** A COMMAND frame: run its handler and write the reply. */
  serve(conn: Connection, reader: FrameReader): void {
    const request = decodeCommand(reader.bytes, reader.payloadOffset, reader.payloadBytes)
    let rc: number
    let body: unknown
    if (request === null) {
      rc = COMMAND_EINVAL
      body = { message: 'A command is JSON {"command": NAME, "args": {...}}' }
    } else {
      ;({ rc, body } = this.#run(request.command, request.args))
      this.#log.info({ conn: conn.serial, command: request.command, rc }, 'control command')
    }
    let json = Buffer.from(JSON.stringify(body ?? null), 'utf8')
    if (json.length > COMMAND_REPLY_PAYLOAD_BYTES_MAX - RC_BYTES) {
      rc = COMMAND_EIO
      json = Buffer.from(JSON.stringify({ message: 'The result is too large to send' }))
    }
    const send = conn.send
    const at = conn.sendUsed
    writeFrameHeader(send, at, KIND_COMMAND_REPLY, reader.requestId, RC_BYTES + json.length)
    writeU32LE(send, at + FRAME_HEADER_BYTES, rc >>> 0)
    json.copy(send, at + FRAME_HEADER_BYTES + RC_BYTES)
    conn.sendUsed = at + FRAME_HEADER_BYTES + RC_BYTES + json.length
  }

  #run(name: string, args: Record<string, unknown>): { rc: number; body: unknown } {
    const handler = this.#handlers.get(name)
    if (handler === undefined) {
      return { rc: COMMAND_ENOSYS, body: { message: `This daemon has no command ${name}` } }
    }
    try {
      return { rc: 0, body: handler(args) }
    } catch (error) {
      if (error instanceof CommandError) return { rc: error.rc, body: { message: error.message } }
      this.#log.warn({ command: name, err: error }, 'control command failed')
      return { rc: COMMAND_EIO, body: { message: (error as Error).message ?? String(error) } }
    }
  }
}
