/**
 * Pages for the remote-tier tests: each one different from every other (a small LCG seeded
 * from the page's name), and a check that a client reads back exactly what a map of
 * "oid:index" -> page says it last put.
 */
import assert from 'node:assert/strict'
import type { TmemClient } from '../../src/client/client.js'

/** 4096 bytes from a 32-bit LCG started at `seed` (0 counts as 1). */
export function lcgPage(seed: number): Uint8Array {
  const bytes = new Uint8Array(4096)
  const view = new DataView(bytes.buffer)
  let x = seed >>> 0 || 1
  for (let i = 0; i < 1024; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0
    view.setUint32(i * 4, x, true)
  }
  return bytes
}

/** Every page of `oracle` reads back from `pool`, byte for byte. */
export async function readAll(
  client: TmemClient,
  pool: number,
  oracle: Map<string, Uint8Array>,
): Promise<void> {
  for (const [key, want] of oracle) {
    const [oid, index] = key.split(':').map(Number) as [number, number]
    const got = await client.get(pool, oid, index)
    assert.ok(got !== null, `page ${key} is missing`)
    assert.ok(Buffer.from(got).equals(want), `page ${key} differs`)
  }
}
