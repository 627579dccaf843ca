/**
 * A deliberately naive big-endian byte builder for NBD messages, and a raw socket client that
 * waits on bytes, not on time. The builder pushes one byte at a time with division and modulo;
 * it never uses Buffer's writers or any constant of src/frontends/nbd, so a wrong number there
 * cannot hide itself in the expected bytes. Magics are spelled as the ASCII or hex proto.md
 * gives them.
 */
import assert from 'node:assert/strict'
import { type Socket, connect } from 'node:net'

export class NaiveBE {
  readonly bytes: number[] = []

  uint(value: number | bigint, size: number): this {
    let rest = BigInt(value)
    const out: number[] = []
    for (let i = 0; i < size; i++) {
      out.unshift(Number(rest % 256n))
      rest /= 256n
    }
    if (rest !== 0n) throw new Error(`Naive: ${value} does not fit ${size} bytes`)
    this.bytes.push(...out)
    return this
  }

  u16(value: number): this {
    return this.uint(value, 2)
  }

  u32(value: number): this {
    return this.uint(value, 4)
  }

  u64(value: number | bigint): this {
    return this.uint(value, 8)
  }

  ascii(text: string): this {
    for (const ch of text) this.bytes.push(ch.charCodeAt(0))
    return this
  }

  raw(data: Uint8Array | number[]): this {
    for (const byte of data) this.bytes.push(byte)
    return this
  }

  zeros(count: number): this {
    for (let i = 0; i < count; i++) this.bytes.push(0)
    return this
  }

  buffer(): Buffer {
    return Buffer.from(this.bytes)
  }
}

/** A client option: "IHAVEOPT", option, length, data. */
export function option(code: number, data: NaiveBE | number[] = []): Buffer {
  const body = data instanceof NaiveBE ? data.bytes : data
  return new NaiveBE().ascii('IHAVEOPT').u32(code).u32(body.length).raw(body).buffer()
}

/** An option reply header as proto.md draws it. */
export function optionReply(code: number, type: number, data: NaiveBE | number[] = []): Buffer {
  const body = data instanceof NaiveBE ? data.bytes : data
  return new NaiveBE().u64(0x3e889045565a9n).u32(code).u32(type).u32(body.length).raw(body).buffer()
}

/** A request: 0x25609513, flags, type, cookie, offset, length [, payload]. */
export function request(
  type: number,
  flags: number,
  cookie: number,
  offset: number,
  length: number,
  payload?: Uint8Array,
): Buffer {
  const b = new NaiveBE().u32(0x25609513).u16(flags).u16(type).u64(cookie).u64(offset).u32(length)
  if (payload !== undefined) b.raw(payload)
  return b.buffer()
}

export function simpleReply(error: number, cookie: number, data?: Uint8Array): Buffer {
  const b = new NaiveBE().u32(0x67446698).u32(error).u64(cookie)
  if (data !== undefined) b.raw(data)
  return b.buffer()
}

export function chunk(flags: number, type: number, cookie: number, data: NaiveBE): Buffer {
  return new NaiveBE()
    .u32(0x668e33ef)
    .u16(flags)
    .u16(type)
    .u64(cookie)
    .u32(data.bytes.length)
    .raw(data.bytes)
    .buffer()
}

/** A socket with an input queue: read(n) resolves once n bytes arrived. */
export class RawClient {
  readonly socket: Socket
  /** Bytes received and not yet read, as they came (concatenated only by read()). */
  readonly #chunks: Buffer[] = []
  #length = 0
  #waiter: (() => void) | null = null
  ended = false
  readonly closed: Promise<void>

  private constructor(socket: Socket) {
    this.socket = socket
    socket.on('data', (data: Buffer) => {
      this.#chunks.push(data)
      this.#length += data.length
      this.#wake()
    })
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.ended = true
        this.#wake()
        resolve()
      })
    })
    socket.on('error', () => undefined)
  }

  static open(path: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ path })
      socket.once('connect', () => resolve(new RawClient(socket)))
      socket.once('error', reject)
    })
  }

  #wake(): void {
    const waiter = this.#waiter
    this.#waiter = null
    waiter?.()
  }

  /** Exactly `n` bytes; rejects if the connection closes first. */
  async read(n: number): Promise<Buffer> {
    while (this.#length < n) {
      if (this.ended) throw new Error(`Connection closed with ${this.#length} of ${n} bytes`)
      await new Promise<void>((resolve) => (this.#waiter = resolve))
    }
    const out = Buffer.alloc(n)
    let done = 0
    while (done < n) {
      const head = this.#chunks[0]!
      const take = Math.min(head.length, n - done)
      head.copy(out, done, 0, take)
      done += take
      if (take === head.length) this.#chunks.shift()
      else this.#chunks[0] = head.subarray(take)
    }
    this.#length -= n
    return out
  }

  write(data: Uint8Array): void {
    this.socket.write(data)
  }

  /** The greeting, our flags (fixed newstyle, no zeroes). */
  async handshake(): Promise<Buffer> {
    const greeting = await this.read(18)
    this.write(new NaiveBE().u32(3).buffer())
    return greeting
  }

  close(): void {
    this.socket.destroy()
  }
}

export async function expectBytes(
  client: RawClient,
  expected: Buffer,
  what: string,
): Promise<void> {
  const got = await client.read(expected.length)
  assert.deepEqual(got.toString('hex'), expected.toString('hex'), what)
}

/** The payload of INFO/GO: name, then the information requests. */
export function goPayload(name: string, infos: number[] = []): NaiveBE {
  const b = new NaiveBE().u32(name.length).ascii(name).u16(infos.length)
  for (const info of infos) b.u16(info)
  return b
}

/** The payload of LIST/SET_META_CONTEXT: name, then the queries. */
export function metaPayload(name: string, queries: string[]): NaiveBE {
  const b = new NaiveBE().u32(name.length).ascii(name).u32(queries.length)
  for (const query of queries) b.u32(query.length).ascii(query)
  return b
}

/** A connection in transmission on `name`; structured replies and base:allocation if asked. */
export async function openExport(
  socketPath: string,
  name: string,
  structured: boolean,
): Promise<RawClient> {
  const client = await RawClient.open(socketPath)
  await client.handshake()
  if (structured) {
    client.write(option(8))
    await expectBytes(client, optionReply(8, 1), 'STRUCTURED_REPLY ack')
    client.write(option(10, metaPayload(name, ['base:allocation'])))
    const context = new NaiveBE().u32(1).ascii('base:allocation')
    await expectBytes(
      client,
      Buffer.concat([optionReply(10, 4, context), optionReply(10, 1)]),
      'SET_META_CONTEXT',
    )
  }
  client.write(option(7, goPayload(name)))
  await client.read(20 + 12) // INFO_EXPORT (checked in protocol.test.ts)
  await client.read(20 + 14) // INFO_BLOCK_SIZE
  await expectBytes(client, optionReply(7, 1), 'GO ack')
  return client
}
