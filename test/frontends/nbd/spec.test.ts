/**
 * `--export` specs and the daemon's NBD options: what is accepted, what is refused with a
 * sentence (a usage error on the command line), and the 16 TiB bound that the u32 page index
 * sets.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseExportSpec } from '../../../src/frontends/nbd/mod.js'
import { resolveDaemonOptions } from '../../../src/cli/daemon.js'
import { UsageError } from '../../../src/cli/exit.js'

void test('export specs: defaults, every key, and the largest size', () => {
  assert.deepEqual(parseExportSpec('name=vm1-swap,size=4G'), {
    name: 'vm1-swap',
    size: 4 * 2 ** 30,
    mode: 'swap',
    backing: null,
    shared: null,
    sharedText: null,
    readOnly: false,
  })
  const cache = parseExportSpec(
    'name=c,size=10000,mode=cache,backing=/tmp/x,shared=11223344-5566-7788-99AA-bbccddeeff00,readonly',
  )
  assert.equal(cache.size, 8192, 'rounded down to whole pages')
  assert.equal(cache.mode, 'cache')
  assert.equal(cache.backing, '/tmp/x')
  assert.deepEqual(cache.shared, [0x99aabbccddeeff00n, 0x1122334455667788n])
  assert.equal(cache.readOnly, true)
  assert.equal(parseExportSpec('name=big,size=16T').size, 2 ** 32 * 4096)
})

void test('bad export specs are refused with a sentence', () => {
  const bad = [
    'size=1G', // no name
    'name=,size=1G',
    'name=a/b,size=1G',
    `name=${'x'.repeat(61)},size=1G`,
    'name=a', // no size
    'name=a,size=0',
    'name=a,size=17T',
    'name=a,size=1G,mode=ram',
    'name=a,size=1G,mode=cache', // cache needs a file
    'name=a,size=1G,shared=11223344-5566-7788-99aa-bbccddeeff00', // swap cannot share
    'name=a,size=1G,mode=cache,backing=/x,shared=nope',
    'name=a,size=1G,colour=blue',
    'name=a,size=1G,size=2G',
  ]
  for (const text of bad) assert.throws(() => parseExportSpec(text), RangeError, text)
})

const BASE = {
  grace: '30s',
  maxConnections: '1024',
  maxControlConnections: '16',
  logLevel: 'info',
  tcpHelloTimeout: '2s',
  maxClientsPerEndpoint: '2048',
  maxDetachedClients: '1024',
  frameIdleTimeout: '30s',
}

void test('daemon options: exports need a listener, a listener alone waits for tmem export add, TCP is loopback only', () => {
  const resolved = resolveDaemonOptions(
    { ...BASE, nbdListen: '127.0.0.1:0', export: ['name=a,size=1M', 'name=b,size=2M'] },
    {},
  )
  assert.deepEqual(resolved.nbd?.listen, { host: '127.0.0.1', port: 0 })
  assert.equal(resolved.nbd?.socketPath, null)
  assert.deepEqual(
    resolved.nbd?.exports.map((e) => e.name),
    ['a', 'b'],
  )
  assert.equal(resolveDaemonOptions({ ...BASE }, {}).nbd, null)
  // A listener with no export: exports come later through the control endpoint.
  assert.deepEqual(resolveDaemonOptions({ ...BASE, nbdSocket: '/tmp/n.sock' }, {}).nbd?.exports, [])
  const refused = [
    { ...BASE, nbdListen: '10.0.0.1:10809', export: ['name=a,size=1M'] },
    { ...BASE, nbdListen: '0.0.0.0:10809', export: ['name=a,size=1M'] },
    { ...BASE, export: ['name=a,size=1M'] },
    { ...BASE, nbdSocket: '/tmp/n.sock', export: ['name=a,size=1M', 'name=a,size=2M'] },
    { ...BASE, nbdSocket: '/tmp/n.sock', export: ['name=a'] },
  ]
  for (const options of refused) {
    assert.throws(() => resolveDaemonOptions(options, {}), UsageError, JSON.stringify(options))
  }
})
