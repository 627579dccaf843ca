/**
 * Runs of whole pages: a swap export hands every whole page of a READ or WRITE that is at hand
 * to the engine in one call (`Host.opPagesBytes`), and serves the run's misses and refusals
 * page by page afterwards. Checked here:
 * - `opPagesBytes` on a host gives each page the return code, the bytes and the counters that
 *   one `opBytes` call per page gives a twin host (same clock), bad input included;
 * - WRITE payloads cut at random places into many pieces (single bytes, part pages, several
 *   pages at once) and READs of random ranges read back as a plain byte array says;
 * - a run that fills tmem spills its refused pages to the backing file, or, without one,
 *   answers ENOSPC and keeps the pages written before.
 * The oracle is a naive model (a byte array per export, a Map of pages per pool) and the reply
 * bytes are read with the test's own offsets, not the frontend's constants.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import {
  EEMPTY,
  TMEM_FLUSH_PAGE,
  TMEM_GET_PAGE,
  TMEM_NEW_POOL,
  TMEM_PUT_PAGE,
} from '../../../src/abi/constants.js'
import { encodeOp, poolFlags } from '../../../src/abi/codec.js'
import { OP_CMD, OP_LAYOUT_V1 } from '../../../src/abi/layout.js'
import { Host } from '../../../src/engine/host.js'
import { SessionTable } from '../../../src/server/sessions.js'
import { Export } from '../../../src/frontends/nbd/export.js'
import { parseExportSpec } from '../../../src/frontends/nbd/spec.js'
import { type Request, Transmission } from '../../../src/frontends/nbd/transmission.js'
import { ReplyWriter } from '../../../src/frontends/nbd/writer.js'
import { xorshift32 } from '../../helpers/prng.js'

const SEED = Number(process.env['TMEM_SEED'] ?? Date.now() % 0x7fffffff)
const PAGE = 4096
const KiB = 1024
const MiB = 1024 * 1024

/** Whole numbers below `below`, from `seed` (test/helpers/prng.ts). */
function xorshift(seed: number): (below: number) => number {
  const next = xorshift32(seed)
  return (below) => Math.floor(next() * below)
}

function counterClock(): () => number {
  let now = 0
  return () => (now += 100)
}

// ---------------------------------------------------------------------------------------------
// The engine entry.

/** A host with one persistent pool (client 1), and a GET/PUT/FLUSH_PAGE op on its object. */
function poolHost(pages: number): { host: Host; op: Uint8Array } {
  const host = new Host({ bytes: pages * PAGE, clockNs: counterClock() })
  const flags = poolFlags({ persistent: true, shared: false })
  const create = encodeOp({
    cmd: TMEM_NEW_POOL,
    poolId: 0,
    creat: { uuid: [0n, 0n], flags, arg1: 0 },
  })
  const pool = host.opBytes(1, create, 0, 1, null, 0)
  assert.ok(pool >= 0, 'NEW_POOL')
  const gen = { oid: [5n, 6n, 7n] as [bigint, bigint, bigint], tmemOffset: 0, pfnOffset: 0 }
  const op = encodeOp({
    cmd: TMEM_GET_PAGE,
    poolId: pool,
    gen: { ...gen, index: 0, len: 0, cmfn: 0n },
  })
  return { host, op }
}

function setOp(op: Uint8Array, cmd: number, index: number): void {
  const view = new DataView(op.buffer, op.byteOffset, op.byteLength)
  view.setUint32(OP_CMD, cmd, true)
  view.setUint32(OP_LAYOUT_V1.genIndex, index, true)
}

void describe(`Host.opPagesBytes (seed ${SEED}, TMEM_SEED replays)`, () => {
  void test('each page of a run as its own opBytes call: codes, bytes, counters', () => {
    const random = xorshift(SEED)
    // 200 frames for 400 page indexes: runs of puts meet a full host part way.
    const run = poolHost(200)
    const single = poolHost(200)
    const model = new Map<number, number>()
    const source = new Uint8Array(33 * PAGE)
    const targetRun = new Uint8Array(33 * PAGE)
    const targetSingle = new Uint8Array(33 * PAGE)
    const results = new Int32Array(32)
    for (let step = 0; step < 600; step++) {
      const PUT = TMEM_PUT_PAGE
      const cmd = [PUT, PUT, TMEM_GET_PAGE, TMEM_GET_PAGE, TMEM_FLUSH_PAGE][random(5)]!
      const first = random(400)
      const count = random(33)
      const at = random(PAGE)
      const stamp = step + 1
      for (let i = 0; i < count; i++)
        source.fill((stamp + i) & 255, at + i * PAGE, at + (i + 1) * PAGE)
      targetRun.fill(0)
      targetSingle.fill(0)
      const data = cmd === PUT ? source : cmd === TMEM_GET_PAGE ? targetRun : null
      setOp(run.op, cmd, first)
      results.fill(99)
      run.host.opPagesBytes(1, run.op, 0, 1, count, data, at, results)
      for (let i = 0; i < count; i++) {
        setOp(single.op, cmd, first + i)
        const page = cmd === PUT ? source : cmd === TMEM_GET_PAGE ? targetSingle : null
        const rc = single.host.opBytes(1, single.op, 0, 1, page, at + i * PAGE)
        assert.equal(results[i], rc, `step ${step} cmd ${cmd} page ${first + i}`)
        // The model: what a page holds after a good put, gone after a flush or a failed put.
        if (cmd === PUT && rc === 1) model.set(first + i, (stamp + i) & 255)
        else if (cmd !== TMEM_GET_PAGE) model.delete(first + i)
        if (cmd === TMEM_GET_PAGE) {
          const expected = model.get(first + i)
          const hit = expected === undefined ? rc === 0 || rc === -EEMPTY : rc === 1
          assert.ok(hit, `GET ${first + i}: ${rc}, as the model says`)
          if (expected !== undefined) {
            const got = targetRun.subarray(at + i * PAGE, at + (i + 1) * PAGE)
            assert.ok(
              got.every((b) => b === expected),
              `GET ${first + i} bytes`,
            )
          }
        }
      }
      assert.equal(results[count] ?? 99, 99, 'nothing past the run is written')
      assert.deepEqual(targetRun, targetSingle, `step ${step}: the same bytes`)
    }
    assert.deepEqual(run.host.stats(), single.host.stats(), 'the same counters and times')
  })

  void test('bad input: every page of the run fails as its own call would', () => {
    const run = poolHost(64)
    const single = poolHost(64)
    const results = new Int32Array(8)
    const cases: [version: number, bytes: Uint8Array, first: number][] = [
      [2, run.op, 0], // unknown ABI version
      [1, run.op.subarray(0, 20), 0], // an op that does not fit
      [1, run.op, 0xfffffffe], // indexes past 2^32 - 1
    ]
    for (const [version, bytes, first] of cases) {
      if (bytes.length === run.op.length) setOp(run.op, TMEM_PUT_PAGE, first)
      const page = new Uint8Array(8 * PAGE)
      run.host.opPagesBytes(1, bytes, 0, version as 0 | 1, 4, page, 0, results)
      for (let i = 0; i < 4; i++) {
        const index = first + i
        let one = -22 // EINVAL: no single call can name an index past 2^32 - 1
        if (index <= 0xffffffff) {
          setOp(single.op, TMEM_PUT_PAGE, index)
          const op = bytes.length === run.op.length ? single.op : single.op.subarray(0, 20)
          one = single.host.opBytes(1, op, 0, version as 0 | 1, page, i * PAGE)
        }
        assert.equal(results[i], one, `version ${version}, ${bytes.length} op bytes, page ${index}`)
      }
    }
    assert.equal(results[0], 1, 'a good index before the end of the range is put')
    assert.equal(results[2], -22, 'EINVAL past 2^32 - 1')
  })
})

// ---------------------------------------------------------------------------------------------
// Through the frontend.

interface Rig {
  exp: Export
  t: Transmission
  w: ReplyWriter
  out: Buffer[]
  req: Request
}

function rig(hostBytes: number, spec: string): Rig {
  const log = pino({ level: 'silent' })
  const host = new Host({ bytes: hostBytes })
  const sessions = new SessionTable(host, 0, log)
  const exp = Export.open(host, sessions, log, parseExportSpec(spec))
  const out: Buffer[] = []
  const socket = {
    destroyed: false,
    cork: () => undefined,
    uncork: () => undefined,
    write: (data: Buffer, done: () => void) => {
      out.push(Buffer.from(data))
      done()
      return true
    },
  } as unknown as Socket
  const w = new ReplyWriter(socket)
  const t = new Transmission(w, exp, false, false)
  const req: Request = { flags: 0, type: 0, cookieHi: 0, cookieLo: 0, offset: 0, length: 0 }
  return { exp, t, w, out, req }
}

/** Runs one request; its payload arrives in pieces ending at `cuts`. The reply's error and data. */
function send(
  r: Rig,
  type: number,
  offset: number,
  length: number,
  payload: Uint8Array | null = null,
  cuts: number[] = [],
): { error: number; data: Buffer } {
  r.req.type = type
  r.req.offset = offset
  r.req.length = length
  r.req.cookieLo = (r.req.cookieLo + 1) >>> 0
  if (r.t.request(r.req) === 'payload') {
    assert.ok(payload !== null, 'a WRITE has its payload')
    let pos = 0
    for (const cut of [...cuts, length]) {
      while (pos < cut) pos = r.t.writeData(payload, pos, cut)
    }
    assert.equal(r.t.writing, false, 'the payload is all taken')
  }
  r.w.flush()
  const reply = Buffer.concat(r.out.splice(0))
  // Simple reply: magic 67 44 66 98, error (4), cookie (8), then a good READ's data.
  assert.deepEqual([...reply.subarray(0, 4)], [0x67, 0x44, 0x66, 0x98], 'simple reply magic')
  const error = reply[4]! * 2 ** 24 + reply[5]! * 2 ** 16 + reply[6]! * 2 ** 8 + reply[7]!
  const cookie = reply[12]! * 2 ** 24 + reply[13]! * 2 ** 16 + reply[14]! * 2 ** 8 + reply[15]!
  assert.equal(cookie, r.req.cookieLo, 'the reply answers this request')
  const data = reply.subarray(16)
  assert.equal(data.length, type === 0 && error === 0 ? length : 0, 'data only for a good READ')
  return { error, data }
}

/** Cut points inside [0, length): a few, many, single bytes and whole runs all show up. */
function cutsFor(random: (below: number) => number, length: number): number[] {
  const cuts = new Set<number>()
  const many = random(4) === 0 ? 40 : random(6)
  for (let i = 0; i < many; i++) cuts.add(1 + random(Math.max(1, length - 1)))
  if (random(3) === 0) {
    const at = random(length)
    for (let i = 1; i <= 5 && at + i < length; i++) cuts.add(at + i)
  }
  return [...cuts].filter((cut) => cut > 0 && cut < length).sort((a, b) => a - b)
}

function sameBytes(got: Buffer, model: Uint8Array, offset: number, what: string): void {
  const expected = model.subarray(offset, offset + got.length)
  if (!got.equals(expected)) {
    let i = 0
    while (got[i] === expected[i]) i++
    assert.fail(`${what}: byte ${offset + i} is ${got[i]}, the model says ${expected[i]}`)
  }
}

void describe(`NBD runs of pages through Transmission (seed ${SEED}, TMEM_SEED replays)`, () => {
  void test('WRITE payloads cut at random places read back as the model says', () => {
    const random = xorshift(SEED)
    const size = 2 * MiB
    const r = rig(8 * MiB, `name=runs,size=${size}`)
    const model = new Uint8Array(size)
    const payload = new Uint8Array(300 * KiB)
    for (let step = 0; step < 400; step++) {
      const aligned = random(2) === 0
      const offset = aligned ? random(size / PAGE) * PAGE : random(size)
      const longest = Math.min(size - offset, [PAGE, 64 * KiB, 300 * KiB][random(3)]!)
      const length =
        aligned && random(2) === 0 ? Math.max(PAGE, longest & ~(PAGE - 1)) : 1 + random(longest)
      if (offset + length > size) continue
      if (random(3) !== 0) {
        for (let i = 0; i < length; i++) payload[i] = random(256)
        const { error } = send(r, 1, offset, length, payload, cutsFor(random, length))
        assert.equal(error, 0, `WRITE ${offset}+${length}`)
        model.set(payload.subarray(0, length), offset)
      } else {
        const { error, data } = send(r, 0, offset, length)
        assert.equal(error, 0, `READ ${offset}+${length}`)
        sameBytes(data, model, offset, `READ ${offset}+${length} at step ${step}`)
      }
    }
    for (let at = 0; at < size; at += 256 * KiB) {
      const { data } = send(r, 0, at, 256 * KiB)
      sameBytes(data, model, at, `final READ at ${at}`)
    }
  })

  void test('a run that fills tmem spills to the backing file and reads back', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nbd-runs-'))
    try {
      const random = xorshift(SEED + 1)
      const size = 8 * MiB
      const r = rig(2 * MiB, `name=spill,size=${size},backing=${join(dir, 'spill.img')}`)
      const model = new Uint8Array(size)
      const payload = new Uint8Array(128 * KiB)
      for (let at = 0; at < size; at += 128 * KiB) {
        for (let i = 0; i < payload.length; i++) payload[i] = random(256)
        const { error } = send(r, 1, at, payload.length, payload, random(2) === 0 ? [] : [5000])
        assert.equal(error, 0, `WRITE at ${at}`)
        model.set(payload, at)
      }
      assert.ok(r.exp.spilledPages > 0, 'pages went to the file')
      assert.ok(r.exp.spilledPages < size / PAGE, 'and some stayed in tmem')
      for (let at = 0; at < size; at += 96 * KiB) {
        const length = Math.min(96 * KiB, size - at)
        const { error, data } = send(r, 0, at, length)
        assert.equal(error, 0, `READ at ${at}`)
        sameBytes(data, model, at, `READ at ${at}`)
      }
      r.exp.close()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  void test('without a backing file a run that fills tmem answers ENOSPC; earlier pages stay', () => {
    const size = 8 * MiB
    const r = rig(2 * MiB, `name=full,size=${size}`)
    const model = new Uint8Array(size)
    const payload = new Uint8Array(64 * KiB)
    let written = 0
    let refused = 0
    for (let at = 0; at < size; at += payload.length) {
      payload.fill((at / payload.length + 1) & 255)
      const { error } = send(r, 1, at, payload.length, payload)
      if (error === 0) {
        assert.equal(refused, 0, 'nothing goes in once tmem refused')
        model.set(payload, at)
        written = at + payload.length
      } else {
        assert.equal(error, 28, `ENOSPC at ${at}`)
        refused++
      }
    }
    assert.ok(written > 0 && refused > 0, 'some writes went in, later ones were refused')
    const { error, data } = send(r, 0, 0, written)
    assert.equal(error, 0)
    sameBytes(data, model, 0, 'the pages written before tmem filled')
  })
})
