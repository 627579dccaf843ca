/**
 * The eviction scan's bound (src/engine/evict.ts, EVICT_SCAN_MAX): one eviction looks at no
 * more than EVICT_SCAN_MAX pages. The pages it skips here are those of the object the put is
 * writing (spec §4.3: never evicted by its own put). With dedup on, every such page shares one
 * content, so a host of a few frames can hold a run of them longer than the bound; descriptors
 * are what runs out, and the put must evict to get one.
 *
 * The oracle is the documented rule: an eligible page right behind the run is evicted when the
 * run is one page shorter than the bound, and not reached (the put fails with ENOMEM, the page
 * stays) when the run is as long as the bound.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Host } from '../../src/engine/host.js'
import { EVICT_SCAN_MAX } from '../../src/engine/evict.js'
import { checkInvariants } from '../../src/engine/invariants.js'
import { TmemError } from '../../src/errors/mod.js'

const X = 1n
const Y = 2n

function filled(byte: number): Uint8Array {
  const bytes = new Uint8Array(4096)
  for (let i = 0; i < bytes.length; i++) bytes[i] = (byte + i) & 0xff
  return bytes
}

interface Run {
  host: Host
  put: (oid: bigint, index: number) => boolean
  has: (oid: bigint, index: number) => boolean
}

/** A host whose descriptors are exactly full: `run` pages of object X, then one of object Y. */
function hostWithRun(run: number): Run {
  const host = new Host({ pages: 64, reservePages: 0, dedup: true, descriptors: run + 1 })
  const pool = host.client(1).newPool({})
  const shared = filled(7)
  for (let index = 0; index < run; index++) pool.put(X, index, shared)
  pool.put(Y, 0, filled(99))
  assert.equal(host.stats().pages, run + 1)
  return {
    host,
    put: (oid, index) => pool.put(oid, index, shared),
    has: (oid, index) => pool.get(oid, index) !== null,
  }
}

void test('EVICT_SCAN_MAX - 1 skipped pages: the eligible page behind them is evicted', () => {
  const { host, put, has } = hostWithRun(EVICT_SCAN_MAX - 1)
  assert.equal(put(X, EVICT_SCAN_MAX), true)
  checkInvariants(host)
  assert.equal(host.stats().evicted, 1)
  assert.equal(has(Y, 0), false, 'the page behind the run was evicted')
})

void test('EVICT_SCAN_MAX skipped pages: the scan gives up, the put gets ENOMEM, nothing is lost', () => {
  const { host, put, has } = hostWithRun(EVICT_SCAN_MAX)
  assert.throws(
    () => put(X, EVICT_SCAN_MAX),
    (error: unknown) => error instanceof TmemError && error.code === 'ENOMEM',
  )
  checkInvariants(host)
  assert.equal(host.stats().evicted, 0)
  assert.equal(host.stats().pages, EVICT_SCAN_MAX + 1)
  assert.equal(has(Y, 0), true, 'the page behind the run is still there')
})
