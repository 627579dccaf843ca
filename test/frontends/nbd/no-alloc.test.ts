/**
 * The NBD data path allocates nothing per page or per request (STYLE §9 habit 1, after
 * test/engine/no-alloc.test.ts): after a warm-up, tens of thousands of requests (aligned and
 * unaligned WRITEs with streamed payloads, READs, TRIM, WRITE_ZEROES, BLOCK_STATUS) through
 * `Transmission` and a swap `Export` into a real engine leave the heap where it was, and the
 * garbage collector does not run during the loop. Replies are written into the reply chunks
 * and dropped unsent each round (the socket's own buffers are Node's, not ours), and WRITE
 * payloads come from a registered buffer, as a read-in-place socket would give them (with
 * Node's own socket chunks the engine's copy of an unaligned page makes one view object, see
 * docs/nbd.md). Counts bytes and collections, never time. Needs --expose-gc; without it the
 * test skips visibly.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Socket } from 'node:net'
import { GCProfiler } from 'node:v8'
import { pino } from 'pino'
import { Host } from '../../../src/engine/host.js'
import { registerCopyBuffer } from '../../../src/util/bytes.js'
import { SessionTable } from '../../../src/server/sessions.js'
import { Export } from '../../../src/frontends/nbd/export.js'
import { parseExportSpec } from '../../../src/frontends/nbd/spec.js'
import { type Request, Transmission } from '../../../src/frontends/nbd/transmission.js'
import { ReplyWriter } from '../../../src/frontends/nbd/writer.js'

const gc = (globalThis as { gc?: () => void }).gc
const skip = gc === undefined ? 'needs node --expose-gc (tools/run-tests.mjs passes it)' : false

const HEAP_GROWTH_MAX = 1024 * 1024
const COLLECTIONS_MAX = 1

function counterClock(): () => number {
  let now = 0
  return () => (now = (now + 100) & 0x3fffffff)
}

void test('NBD requests through Transmission and Export allocate nothing', { skip }, () => {
  const log = pino({ level: 'silent' })
  const host = new Host({ bytes: 32 * 1024 * 1024, clockNs: counterClock() })
  const sessions = new SessionTable(host, 0, log)
  const exp = Export.open(host, sessions, log, parseExportSpec('name=na,size=16M'))
  const socket = { destroyed: false, write: () => true } as unknown as Socket
  const w = new ReplyWriter(socket)
  const t = new Transmission(w, exp, true, true)
  // As if read in place: see the note on WRITE pages in docs/nbd.md.
  const payload = new Uint8Array(20_000).fill(0x3c)
  registerCopyBuffer(payload.buffer)
  const req: Request = { flags: 0, type: 0, cookieHi: 0, cookieLo: 0, offset: 0, length: 0 }
  const run = (type: number, flags: number, offset: number, length: number): void => {
    req.type = type
    req.flags = flags
    req.offset = offset
    req.length = length
    req.cookieLo = (req.cookieLo + 1) >>> 0
    if (t.request(req) === 'payload') {
      // Two pieces, so that a page is gathered across them as from two socket reads.
      const cut = Math.min(length, 5000)
      t.writeData(payload, 0, cut)
      t.writeData(payload, cut, length)
    }
  }
  const round = (i: number): void => {
    const at = (i % 2000) * 4096
    run(1, 0, at, 16384) // WRITE, aligned
    run(1, 1, at + 100, 9000) // WRITE with FUA, unaligned, over three pages
    run(0, 0, at, 16384) // READ
    run(0, 0, at + 7, 100) // READ, inside one page
    run(4, 0, at + 4096, 4096) // TRIM
    run(6, 0, at + 8192 + 10, 20) // WRITE_ZEROES, partial
    run(7, 0, at, 8 * 4096) // BLOCK_STATUS
    run(6, 2, at + 12 * 4096, 4096) // WRITE_ZEROES with NO_HOLE: a zero page stored
    w.discardUnsent()
  }
  for (let i = 0; i < 2000; i++) round(i)
  gc?.()
  gc?.()
  const heapBefore = process.memoryUsage().heapUsed
  const profiler = new GCProfiler()
  profiler.start()
  const rounds = 6000
  for (let i = 0; i < rounds; i++) round(i)
  const collections = profiler.stop().statistics.length
  gc?.()
  gc?.()
  const growth = process.memoryUsage().heapUsed - heapBefore
  assert.ok(
    collections <= COLLECTIONS_MAX,
    `${collections} collections during ${rounds * 8} requests`,
  )
  assert.ok(growth < HEAP_GROWTH_MAX, `heap grew ${growth} bytes`)
  // And the requests did something: the last round's pages are there.
  const page = new Uint8Array(4096)
  assert.equal(exp.readPage((rounds - 1) % 2000, page, 0), 0)
  assert.equal(page[0], 0x3c)
  exp.close(true)
})
