/**
 * Unit tests of the wire framing (src/protocol/frame.ts) against an independent oracle: frames
 * are built here byte by byte from the layout in docs/protocol.md, never with the module's own
 * writer. Every frame kind is fed to a FrameReader split at every byte offset, and two or three
 * frames coalesced are fed split at every offset and one byte at a time; each must come out
 * identical and whole. Malformed headers are rejected as soon as their 16 bytes are in, before
 * any payload is waited for.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {
  FRAME_HEADER_BYTES,
  FrameReader,
  FrameRules,
  KIND_CONTROL,
  KIND_CONTROL_REPLY,
  KIND_ERROR,
  KIND_GOODBYE,
  KIND_GOODBYE_REPLY,
  KIND_HELLO,
  KIND_HELLO_REPLY,
  KIND_OP,
  KIND_OP_REPLY,
  KIND_STATS,
  KIND_STATS_REPLY,
  REJECT_BAD_FLAGS,
  REJECT_BAD_LENGTH,
  REJECT_BAD_MAGIC,
  REJECT_BAD_VERSION,
  REJECT_NONE,
  REJECT_UNKNOWN_KIND,
  writeFrameHeader,
} from '../../src/protocol/frame.js'

/** A frame built by hand: "TMEM", version 1, kind, flags 0, request id, length, payload. */
function naiveFrame(
  kind: number,
  requestId: number,
  payload: number[] | Uint8Array,
  version = 1,
  flags = 0,
): Uint8Array {
  const bytes: number[] = [0x54, 0x4d, 0x45, 0x4d, version, kind, flags & 0xff, flags >> 8]
  for (const value of [requestId, payload.length]) {
    bytes.push(value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff)
  }
  bytes.push(...payload)
  return Uint8Array.from(bytes)
}

function filled(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length)
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed * 7) & 0xff
  return out
}

const ALL_KINDS = [
  KIND_HELLO,
  KIND_OP,
  KIND_CONTROL,
  KIND_STATS,
  KIND_GOODBYE,
  KIND_HELLO_REPLY,
  KIND_OP_REPLY,
  KIND_CONTROL_REPLY,
  KIND_STATS_REPLY,
  KIND_GOODBYE_REPLY,
  KIND_ERROR,
]

function rules(): FrameRules {
  const r = new FrameRules()
  for (const kind of ALL_KINDS) r.allow(kind, 0, 8192)
  return r
}

/** One representative frame per kind, with realistic payload sizes. */
const SAMPLES: { name: string; frame: Uint8Array }[] = [
  { name: 'hello', frame: naiveFrame(KIND_HELLO, 0, filled(40 + 5, 1)) },
  { name: 'op (get, no page)', frame: naiveFrame(KIND_OP, 7, filled(56, 2)) },
  { name: 'op (put with page)', frame: naiveFrame(KIND_OP, 8, filled(56 + 4096, 3)) },
  { name: 'op v0', frame: naiveFrame(KIND_OP, 9, filled(40, 4)) },
  { name: 'control', frame: naiveFrame(KIND_CONTROL, 10, filled(56 + 4 + 100, 5)) },
  { name: 'stats', frame: naiveFrame(KIND_STATS, 11, []) },
  { name: 'goodbye', frame: naiveFrame(KIND_GOODBYE, 12, []) },
  { name: 'hello reply', frame: naiveFrame(KIND_HELLO_REPLY, 0, filled(48 + 9, 6)) },
  { name: 'op reply (rc)', frame: naiveFrame(KIND_OP_REPLY, 0xfffffffe, filled(4, 7)) },
  { name: 'op reply (page)', frame: naiveFrame(KIND_OP_REPLY, 13, filled(4 + 4096, 8)) },
  { name: 'control reply', frame: naiveFrame(KIND_CONTROL_REPLY, 14, filled(4 + 300, 9)) },
  { name: 'stats reply', frame: naiveFrame(KIND_STATS_REPLY, 15, filled(4 + 20, 10)) },
  { name: 'goodbye reply', frame: naiveFrame(KIND_GOODBYE_REPLY, 16, []) },
  { name: 'error', frame: naiveFrame(KIND_ERROR, 0, filled(4 + 30, 11)) },
]

interface Seen {
  kind: number
  requestId: number
  payload: Uint8Array
}

/** Feeds chunks to a fresh reader and returns every frame it produced (copied). */
function feed(chunks: Uint8Array[]): { frames: Seen[]; error: number; partial: boolean } {
  const reader = new FrameReader(rules())
  const frames: Seen[] = []
  for (const chunk of chunks) {
    reader.push(chunk)
    while (reader.next()) {
      frames.push({
        kind: reader.kind,
        requestId: reader.requestId,
        payload: reader.bytes.slice(
          reader.payloadOffset,
          reader.payloadOffset + reader.payloadBytes,
        ),
      })
    }
    if (reader.error !== REJECT_NONE) break
    assert.ok(reader.isDrained(), 'the reader takes every byte it is given')
  }
  return { frames, error: reader.error, partial: reader.hasPartialFrame() }
}

function expected(frame: Uint8Array): Seen {
  return {
    kind: frame[5] ?? 0,
    requestId: new DataView(frame.buffer, frame.byteOffset).getUint32(8, true),
    payload: frame.slice(FRAME_HEADER_BYTES),
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0))
  let at = 0
  for (const part of parts) {
    out.set(part, at)
    at += part.length
  }
  return out
}

void describe('writeFrameHeader', () => {
  void test('writes the bytes of the documented header', () => {
    const bytes = new Uint8Array(FRAME_HEADER_BYTES)
    writeFrameHeader(bytes, 0, KIND_OP, 0x01020304, 4152)
    assert.deepEqual(bytes, naiveFrame(KIND_OP, 0x01020304, new Uint8Array(4152)).slice(0, 16))
  })
})

void describe('FrameReader', () => {
  for (const { name, frame } of SAMPLES) {
    void test(`${name}: every split offset yields the frame once`, () => {
      for (let split = 0; split <= frame.length; split++) {
        const result = feed([frame.subarray(0, split), frame.subarray(split)])
        assert.equal(result.error, REJECT_NONE)
        assert.equal(result.partial, false)
        assert.deepEqual(result.frames, [expected(frame)], `split at ${split}`)
      }
    })
  }

  void test('coalesced frames split at every offset, and fed byte by byte', () => {
    const first = SAMPLES[1]?.frame ?? new Uint8Array()
    const second = SAMPLES[2]?.frame ?? new Uint8Array()
    const third = SAMPLES[0]?.frame ?? new Uint8Array()
    const stream = concat(first, second, third)
    const want = [expected(first), expected(second), expected(third)]
    for (let split = 0; split <= stream.length; split++) {
      const result = feed([stream.subarray(0, split), stream.subarray(split)])
      assert.deepEqual(result.frames, want, `split at ${split}`)
    }
    const bytes = [...stream].map((byte) => Uint8Array.of(byte))
    assert.deepEqual(feed(bytes).frames, want)
    // Three-way splits around the frame boundaries.
    const cuts = [first.length - 1, first.length, first.length + 1, first.length + second.length]
    for (const a of cuts) {
      for (let b = a; b <= stream.length; b += 97) {
        const result = feed([stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)])
        assert.deepEqual(result.frames, want, `splits at ${a} and ${b}`)
      }
    }
  })

  void test('a frame that lies whole in a chunk is parsed in place', () => {
    const frame = SAMPLES[2]?.frame ?? new Uint8Array()
    const reader = new FrameReader(rules())
    reader.push(frame)
    assert.ok(reader.next())
    assert.equal(reader.bytes, frame)
    assert.equal(reader.frameOffset, 0)
  })

  void test('a truncated stream leaves a partial frame', () => {
    const frame = SAMPLES[2]?.frame ?? new Uint8Array()
    for (const cut of [1, 15, 16, 17, frame.length - 1]) {
      const result = feed([frame.subarray(0, cut)])
      assert.deepEqual(result.frames, [])
      assert.equal(result.partial, true, `cut at ${cut}`)
    }
  })

  const malformed: { name: string; frame: Uint8Array; reason: number }[] = [
    {
      name: 'bad magic',
      frame: Uint8Array.from([0x47, 0x45, 0x54, 0x20, ...new Uint8Array(12)]),
      reason: REJECT_BAD_MAGIC,
    },
    { name: 'bad version', frame: naiveFrame(KIND_OP, 1, [], 2), reason: REJECT_BAD_VERSION },
    { name: 'flags set', frame: naiveFrame(KIND_OP, 1, [], 1, 0x100), reason: REJECT_BAD_FLAGS },
    { name: 'unknown kind', frame: naiveFrame(0x42, 1, []), reason: REJECT_UNKNOWN_KIND },
    { name: 'kind 0', frame: naiveFrame(0, 1, []), reason: REJECT_UNKNOWN_KIND },
  ]
  for (const { name, frame, reason } of malformed) {
    void test(`${name} is rejected once the header is in, whole or byte by byte`, () => {
      assert.equal(feed([frame]).error, reason)
      assert.equal(feed([...frame].map((byte) => Uint8Array.of(byte))).error, reason)
    })
  }

  void test('a length over the kind maximum is rejected without waiting for the payload', () => {
    const header = naiveFrame(KIND_OP, 1, []).slice()
    header.set([0xff, 0xff, 0xff, 0xff], 12)
    assert.equal(feed([header]).error, REJECT_BAD_LENGTH)
    const small = new FrameRules().allow(KIND_OP, 56, 60)
    const reader = new FrameReader(small)
    reader.push(naiveFrame(KIND_OP, 1, new Uint8Array(10)))
    assert.equal(reader.next(), false)
    assert.equal(reader.error, REJECT_BAD_LENGTH)
  })

  void test('the pending buffer is one maximum frame, allocated once', () => {
    const r = new FrameRules().allow(KIND_OP, 0, 4152)
    assert.equal(r.frameBytesMax, FRAME_HEADER_BYTES + 4152)
    assert.throws(() => new FrameReader(r, new Uint8Array(100)))
  })
})

void describe('in-place reading (readTarget / commit, as with a socket onread buffer)', () => {
  const BIG = 300 * 1024 // frames larger than one read, so that they arrive read by read
  const bigRules = (): FrameRules =>
    new FrameRules().allow(KIND_CONTROL, 0, BIG).allow(KIND_OP, 0, 64)

  /** A frame built byte by byte (header as in naiveFrame, payload appended without spread). */
  function bigFrame(kind: number, requestId: number, payload: Uint8Array): Uint8Array {
    const header = naiveFrame(kind, requestId, [])
    const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length)
    out.set(header)
    out[12] = payload.length & 0xff
    out[13] = (payload.length >>> 8) & 0xff
    out[14] = (payload.length >>> 16) & 0xff
    out[15] = (payload.length >>> 24) & 0xff
    out.set(payload, FRAME_HEADER_BYTES)
    return out
  }

  interface Seen {
    kind: number
    requestId: number
    payload: Uint8Array
  }

  /**
   * Feeds `stream` the way a socket with `onread` does: each read lands in the target the
   * reader handed out before it; after a read some frames are parsed (`parseAfterRead`, maybe
   * none: the connection paused), the next target is asked for at once (Node asks right
   * after the callback), and every whole frame is parsed before the next read (reading
   * resumes only then).
   */
  function feed(
    reader: FrameReader,
    stream: Uint8Array,
    reads: number[],
    parseAfterRead: number[],
  ): Seen[] {
    const seen: Seen[] = []
    const parse = (limit: number): void => {
      for (let i = 0; i < limit && reader.next(); i++) {
        const payload = reader.bytes.slice(
          reader.payloadOffset,
          reader.payloadOffset + reader.payloadBytes,
        )
        seen.push({ kind: reader.kind, requestId: reader.requestId, payload })
      }
    }
    let target = reader.readTarget()
    let at = 0
    let step = 0
    while (at < stream.length) {
      const wanted = reads[step % reads.length]!
      const count = Math.min(wanted, target.length, stream.length - at)
      target.set(stream.subarray(at, at + count))
      reader.commit(count)
      at += count
      parse(parseAfterRead[step % parseAfterRead.length]!)
      target = reader.readTarget()
      parse(Infinity)
      step++
    }
    return seen
  }

  void test('random frames, random read sizes and pauses: every frame comes out whole and in order', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            big: fc.boolean(),
            length: fc.integer({ min: 0, max: BIG }),
            small: fc.integer({ min: 0, max: 64 }),
            id: fc.integer({ min: 0, max: 0xffffffff }),
          }),
          { minLength: 1, maxLength: 12 },
        ),
        fc.array(fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 70_000 })), {
          minLength: 1,
          maxLength: 8,
        }),
        fc.array(fc.oneof(fc.constant(Infinity), fc.integer({ min: 0, max: 2 })), {
          minLength: 1,
          maxLength: 4,
        }),
        (specs, reads, parseAfterRead) => {
          const frames = specs.map((spec, i) => {
            const kind = spec.big ? KIND_CONTROL : KIND_OP
            return {
              kind,
              requestId: spec.id,
              payload: filled(spec.big ? spec.length : spec.small, i),
            }
          })
          const parts = frames.map((f) => bigFrame(f.kind, f.requestId, f.payload))
          const stream = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0))
          let at = 0
          for (const part of parts) {
            stream.set(part, at)
            at += part.length
          }
          const reader = new FrameReader(
            bigRules(),
            new Uint8Array(FrameReader.inPlaceBytes(bigRules())),
          )
          const seen = feed(reader, stream, reads, parseAfterRead)
          assert.equal(reader.error, REJECT_NONE)
          assert.equal(seen.length, frames.length)
          for (let i = 0; i < frames.length; i++) {
            assert.equal(seen[i]!.kind, frames[i]!.kind)
            assert.equal(seen[i]!.requestId, frames[i]!.requestId)
            assert.deepEqual(seen[i]!.payload, frames[i]!.payload)
          }
          assert.equal(reader.hasPartialFrame(), false)
        },
      ),
      { numRuns: 150 },
    )
  })

  void test('a bad header after good frames is reported; the good ones came out first', () => {
    const good = bigFrame(KIND_CONTROL, 7, filled(100_000, 1))
    const bad = naiveFrame(KIND_CONTROL, 8, [1, 2, 3], 1, 0)
    bad[0] = 0x58 // not "TMEM"
    const stream = new Uint8Array(good.length + bad.length)
    stream.set(good)
    stream.set(bad, good.length)
    const reader = new FrameReader(bigRules(), new Uint8Array(FrameReader.inPlaceBytes(bigRules())))
    const seen = feed(reader, stream, [65536], [Infinity])
    assert.equal(seen.length, 1)
    assert.equal(seen[0]!.requestId, 7)
    assert.equal(reader.error, REJECT_BAD_MAGIC)
  })

  void test('a frame longer than its kind allows is refused from its header, before its payload', () => {
    const header = naiveFrame(KIND_OP, 1, [])
    header[12] = 65 // payload of 65 bytes where 64 is the most
    const reader = new FrameReader(bigRules(), new Uint8Array(FrameReader.inPlaceBytes(bigRules())))
    const target = reader.readTarget()
    target.set(header)
    reader.commit(header.length)
    assert.equal(reader.next(), false)
    assert.equal(reader.error, REJECT_BAD_LENGTH)
  })
})
