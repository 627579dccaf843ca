/**
 * Dedup keys its table by a fingerprint of a sample of the page (codecs.ts
 * `fingerprintSample`), confirmed by a full byte compare. A client that writes many pages
 * agreeing on the sample but differing elsewhere must get back exactly its bytes, and the
 * work of a lookup must stay bounded: at most SAME_SAMPLE_MAX full compares per put, and no
 * more than that many contents per fingerprint (the rest are stored without dedup).
 *
 * Oracle: a map of what each (object, index) was last given, built here byte by byte; the
 * premise (all hostile pages share one sampled fingerprint, and differ) is checked first.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Host } from '../../src/engine/host.js'
import { checkInvariants } from '../../src/engine/invariants.js'
import { fingerprintSample, sampledWord } from '../../src/engine/codecs.js'
import { SAME_SAMPLE_MAX } from '../../src/engine/dedup.js'

const PAGE = 4096
const PUT = 4
const GET = 5
const NEW_POOL = 1
const EPHEMERAL = 0x01000000

/** A page whose sampled words are all 0x11111111 and whose unsampled word `w` holds `value`. */
function hostilePage(value: number): Uint8Array {
  const words = new Uint32Array(PAGE / 4).fill(0x11111111)
  let w = 0
  while (sampledWord(w)) w++
  // Spread the value over two unsampled words so that every page is distinct.
  words[w] = value
  let v = w + 1
  while (sampledWord(v)) v++
  words[v] = value * 7 + 1
  return new Uint8Array(words.buffer)
}

function gen(cmd: number, pool: number, object: number, index: number) {
  return {
    cmd,
    poolId: pool,
    gen: {
      oid: [BigInt(object), 0n, 0n] as [bigint, bigint, bigint],
      index,
      tmemOffset: 0,
      pfnOffset: 0,
      len: 0,
      cmfn: 0n,
    },
  }
}

void test('pages sharing the dedup sample: every get returns its own bytes, compares stay bounded', () => {
  const host = new Host({ pages: 512, reservePages: 0, dedup: true, sharedAuth: false })
  const mk = (client: number): number =>
    host.op(client, {
      cmd: NEW_POOL,
      poolId: 0,
      creat: { uuid: [0n, 0n], flags: EPHEMERAL, arg1: 0 },
    })
  const hostile = mk(1)
  const victim = mk(2)
  assert.ok(hostile >= 0 && victim >= 0)

  // The premise: the pages differ, yet their sampled fingerprints are one.
  const count = 120
  const pages = Array.from({ length: count }, (_, i) => hostilePage(i + 1))
  const fp = fingerprintSample(new Int32Array(pages[0]!.buffer))
  for (const page of pages) assert.equal(fingerprintSample(new Int32Array(page.buffer)), fp)
  assert.notDeepEqual(pages[0], pages[1])

  const contents = host.core.contents
  assert.ok(contents !== null)
  const expected = new Map<string, Uint8Array>()
  let puts = 0
  // Each page twice (index i and i + count), so that dedup is asked for every one.
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < count; i++) {
      const before = contents.compares
      assert.equal(host.op(1, gen(PUT, hostile, 1, i + round * count), pages[i]), 1)
      puts++
      assert.ok(contents.compares - before <= SAME_SAMPLE_MAX, `put ${puts} compared too often`)
      expected.set(`1:${i + round * count}`, pages[i]!)
    }
  }
  // Another client's page with the same sample, written after: its own bytes come back.
  const other = hostilePage(count + 5)
  assert.equal(host.op(2, gen(PUT, victim, 9, 0), other), 1)
  assert.ok(contents.count <= SAME_SAMPLE_MAX, `${contents.count} contents share one fingerprint`)
  checkInvariants(host)

  for (const [key, page] of expected) {
    const index = Number(key.split(':')[1])
    const data = new Uint8Array(PAGE).fill(0x5a)
    assert.equal(host.op(1, gen(GET, hostile, 1, index), data), 1, `get ${key}`)
    assert.deepEqual(data, page, `page ${key} came back changed`)
  }
  const data = new Uint8Array(PAGE).fill(0x5a)
  assert.equal(host.op(2, gen(GET, victim, 9, 0), data), 1)
  assert.deepEqual(data, other)
})

void test('pages that are equal share one content even when others share their sample', () => {
  const host = new Host({ pages: 64, reservePages: 0, dedup: true, sharedAuth: false })
  const pool = host.op(1, {
    cmd: NEW_POOL,
    poolId: 0,
    creat: { uuid: [0n, 0n], flags: EPHEMERAL, arg1: 0 },
  })
  const pages = Array.from({ length: SAME_SAMPLE_MAX }, (_, i) => hostilePage(i + 1))
  pages.forEach((page, i) => assert.equal(host.op(1, gen(PUT, pool, 1, i), page), 1))
  const frames = host.core.frames.used
  // Copies of each: found among the contents of that fingerprint, no new frame.
  pages.forEach((page, i) =>
    assert.equal(host.op(1, gen(PUT, pool, 2, i), new Uint8Array(page)), 1),
  )
  assert.equal(host.core.frames.used, frames)
  assert.equal(host.core.contents?.count, SAME_SAMPLE_MAX)
  checkInvariants(host)
})
