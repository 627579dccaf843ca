/**
 * The remote tier's pure parts against independent oracles: slots from Redis's own
 * documentation (CLUSTER KEYSLOT), the oid text built by hand, and the presence index against
 * a plain map of pages.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { keySlot } from '../../src/remote/cluster.js'
import {
  encodeValue,
  Slab,
  objectKey,
  oidHex,
  parseRemoteUrl,
  poolIndexKey,
  valueKind,
  valueVersion,
} from '../../src/remote/keys.js'
import { entryBytes, entryVersion, Presence } from '../../src/remote/presence.js'

void test('key slots are the ones Redis documents', () => {
  assert.equal(keySlot('foo'), 12182)
  assert.equal(keySlot('somekey'), 11058)
  assert.equal(keySlot('123456789'), 0x31c3)
  // A hash tag: only what is between the first { and the next } counts.
  assert.equal(keySlot('{user1000}.following'), keySlot('user1000'))
  // An empty tag {} does not count: the whole key is hashed.
  assert.equal(keySlot('foo{}{bar}'), 8363)
})

void test('key layout: one hash per object, hash-tagged whole; the pool index beside it', () => {
  const oid = new Uint32Array([0x44332211, 0x88776655, 1, 0, 0, 0xfeedf00d])
  assert.equal(
    oidHex(oid),
    'feedf00d' + '00000000' + '00000000' + '00000001' + '88776655' + '44332211',
  )
  // Against the oid as one 192-bit number, for words of every size.
  for (let n = 0; n < 200; n++) {
    const words = new Uint32Array(6).map((_, i) => ((n * 2654435761) >>> (i * 5)) >>> (n % 32))
    const value = words.reduce((sum, word, i) => sum | (BigInt(word) << BigInt(32 * i)), 0n)
    assert.equal(oidHex(words), value.toString(16).padStart(48, '0'))
  }
  const key = objectKey('h1', 3, 2, oidHex(oid))
  assert.equal(key, `{tmem:h1:3:2:${oidHex(oid)}}`)
  assert.equal(poolIndexKey('h1', 3, 2), '{tmem:h1:3:2}:objects')
})

void test('values carry the kind and a 53-bit version before the stored bytes', () => {
  const stored = Uint8Array.from([9, 8, 7, 6, 5])
  const value = encodeValue(new Slab(), 2, 2 ** 40 + 5, stored, 1, 4)
  assert.equal(valueKind(value), 2)
  assert.equal(valueVersion(value), 2 ** 40 + 5)
  assert.deepEqual([...value.subarray(12)], [8, 7, 6])
  assert.equal(valueVersion(new Uint8Array(4)), -1)
})

void test('--remote URLs: seed nodes, or a clear error', () => {
  assert.deepEqual(parseRemoteUrl('redis-cluster://127.0.0.1:7000,localhost:7001'), [
    { host: '127.0.0.1', port: 7000 },
    { host: 'localhost', port: 7001 },
  ])
  assert.throws(() => parseRemoteUrl('redis://127.0.0.1:7000'), /redis-cluster:\/\//)
  assert.throws(() => parseRemoteUrl('redis-cluster://127.0.0.1'), /HOST:PORT/)
  assert.throws(() => parseRemoteUrl('redis-cluster://h:70000'), /HOST:PORT/)
})

void test('the presence index agrees with a plain map of pages', () => {
  const presence = new Presence()
  const model = new Map<string, { version: number; bytes: number }>()
  let seed = 12345
  const random = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
    return seed % n
  }
  for (let step = 0; step < 5000; step++) {
    const client = random(3)
    const pool = random(2)
    const oid = String(random(5))
    const index = random(4)
    const name = `${client}/${pool}/${oid}/${index}`
    const action = random(10)
    if (action < 5) {
      const version = step + 1
      const bytes = random(4) === 0 ? 0 : 12 + random(4096)
      presence.set(client, pool, false, oid, index, version, bytes)
      model.set(name, { version, bytes })
    } else if (action < 8) {
      assert.equal(presence.delete(client, pool, oid, index), model.delete(name))
    } else if (action < 9) {
      let pages = 0
      for (const key of [...model.keys()]) {
        if (key.startsWith(`${client}/${pool}/${oid}/`)) {
          model.delete(key)
          pages++
        }
      }
      assert.equal(presence.deleteObject(client, pool, oid), pages)
    } else {
      presence.deletePool(client, pool)
      for (const key of [...model.keys()])
        if (key.startsWith(`${client}/${pool}/`)) model.delete(key)
    }
    const entry = presence.get(client, pool, oid, index)
    const expected = model.get(name)
    if (expected === undefined) assert.equal(entry, 0)
    else {
      assert.equal(entryVersion(entry), expected.version)
      assert.equal(entryBytes(entry), expected.bytes)
    }
  }
  for (let client = 0; client < 3; client++) {
    let bytes = 0
    for (const [key, value] of model) if (key.startsWith(`${client}/`)) bytes += value.bytes
    assert.equal(presence.clientBytes(client), bytes)
  }
  let pages = 0
  for (const pool of presence.pools()) pages += pool.pages
  assert.equal(pages, model.size)
})
