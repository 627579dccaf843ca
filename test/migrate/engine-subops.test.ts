/**
 * Engine fixes found while building save/restore, pinned at the subop level.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ctrl, newHost } from './helpers.js'

const RESTORE_BEGIN = 30

void test('RESTORE_BEGIN with cli_id 0xFFFF ("all clients") creates no client and returns -1', () => {
  const host = newHost()
  assert.equal(host.control(ctrl(RESTORE_BEGIN, 0xffff)), -1)
  assert.equal(host.control(ctrl(RESTORE_BEGIN, 0xffffffff)), -1)
  assert.deepEqual(host.clientIds(), [])
  // An ordinary id still works, once.
  assert.equal(host.control(ctrl(RESTORE_BEGIN, 0xfffe)), 1)
  assert.equal(host.control(ctrl(RESTORE_BEGIN, 0xfffe)), -1)
  assert.deepEqual(host.clientIds(), [0xfffe])
})
