/**
 * The shared-memory setup frames against bytes built by hand from docs/protocol.md ("Shared
 * memory"): the SHM payload, the SHM_REPLY payload, and what a malformed SHM payload is.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  HELLO_FLAG_SHM,
  KIND_SHM,
  KIND_SHM_KICK,
  KIND_SHM_KICK_NOTICE,
  KIND_SHM_REPLY,
  SHM_ATTACH,
  SHM_DETACH,
  SHM_MAPPED,
  decodeShmReply,
  decodeShmRequest,
  encodeShmReplyInto,
  encodeShmRequestInto,
} from '../../src/protocol/shm-frame.js'
import { naive } from '../helpers/naive-bytes.js'

void test('kinds, commands and the hello flag have the numbers the docs give', () => {
  assert.deepEqual(
    [KIND_SHM, KIND_SHM_KICK, KIND_SHM_REPLY, KIND_SHM_KICK_NOTICE],
    [0x07, 0x08, 0x88, 0x89],
  )
  assert.deepEqual([SHM_ATTACH, SHM_MAPPED, SHM_DETACH], [1, 2, 3])
  assert.equal(HELLO_FLAG_SHM, 0x8)
})

void test('SHM and SHM_REPLY payloads byte by byte', () => {
  const request = new Uint8Array(20).fill(0xee)
  encodeShmRequestInto(request, 4, {
    cmd: SHM_ATTACH,
    sqEntries: 256,
    cqEntries: 128,
    frameCount: 4096,
  })
  const expected = naive()
    .at(0)
    .raw(1, 0, 0, 0)
    .at(4)
    .u32le(256)
    .at(8)
    .u32le(128)
    .at(12)
    .u32le(4096)
    .done(16)
  assert.deepEqual(request.subarray(4), expected)
  assert.deepEqual(decodeShmRequest(expected, 0, 16), {
    cmd: 1,
    sqEntries: 256,
    cqEntries: 128,
    frameCount: 4096,
  })
  const reply = new Uint8Array(12)
  encodeShmReplyInto(reply, 0, { rc: -28, pid: 4242, fd: 17 })
  assert.deepEqual(reply, naive().s32le(-28).u32le(4242).u32le(17).done(12))
  assert.deepEqual(decodeShmReply(reply, 0, 12), { rc: -28, pid: 4242, fd: 17 })
})

void test('a malformed SHM payload decodes to null', () => {
  const good = naive().raw(2, 0, 0, 0).zeros(12).done(16)
  assert.notEqual(decodeShmRequest(good, 0, 16), null)
  assert.equal(decodeShmRequest(good, 0, 15), null, 'short')
  for (const at of [1, 2, 3]) {
    const bad = good.slice()
    bad[at] = 1
    assert.equal(decodeShmRequest(bad, 0, 16), null, `reserved byte ${at}`)
  }
  for (const cmd of [0, 4, 255]) {
    const bad = good.slice()
    bad[0] = cmd
    assert.equal(decodeShmRequest(bad, 0, 16), null, `cmd ${cmd}`)
  }
  assert.equal(decodeShmReply(new Uint8Array(16), 0, 16), null)
})
