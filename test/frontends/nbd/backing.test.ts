/**
 * Exports with backing files, on a daemon with 16 MiB of tmem, driven by real clients:
 * - a cache export keeps reading its file's true bytes while another export fills the host
 *   and tmem drops every cached page, and its writes go through to the file;
 * - a swap export without a file answers ENOSPC once tmem is full and keeps what it had;
 * - a swap export with a file spills there instead, and reads it back;
 * - two cache exports sharing a pool by UUID see each other's writes.
 * The oracle is the image the test wrote (read straight from disk) and qemu-io's read -P.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type DaemonHandle, TMEM_BIN, startDaemon } from '../../helpers/daemon.js'
import { makeImage, missing, ok, run, uri } from './tools.js'

const MiB = 1024 * 1024

let daemon: DaemonHandle
let dir: string
let socket: string
let cacheImage: Buffer
let sharedImage: Buffer

interface ClientStats {
  name: string
  ephemeralPages: number
}

function clients(): ClientStats[] {
  const result = ok(process.execPath, [
    TMEM_BIN,
    'list',
    '--json',
    '--control-socket',
    daemon.controlPath,
  ])
  return (JSON.parse(result.stdout) as { clients: ClientStats[] }).clients
}

function client(name: string): ClientStats {
  const found = clients().find((c) => c.name === name)
  assert.ok(found !== undefined, `tmem list shows ${name}`)
  return found
}

const skip = missing('qemu-io', 'nbdcopy')

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nbd-backing-'))
  socket = join(dir, 'nbd.sock')
  cacheImage = makeImage(join(dir, 'cache.img'), 8)
  sharedImage = makeImage(join(dir, 'shared.img'), 4)
  const uuid = '11223344-5566-7788-99aa-bbccddeeff00'
  daemon = await startDaemon({
    args: [
      '--memory',
      '16M',
      '--log-level',
      'warn',
      '--nbd-socket',
      socket,
      '--export',
      `name=cache,size=8M,mode=cache,backing=${join(dir, 'cache.img')}`,
      '--export',
      'name=nospc,size=32M',
      '--export',
      `name=spill,size=16M,backing=${join(dir, 'spill.img')}`,
      '--export',
      `name=sh1,size=4M,mode=cache,backing=${join(dir, 'shared.img')},shared=${uuid}`,
      '--export',
      `name=sh2,size=4M,mode=cache,backing=${join(dir, 'shared.img')},shared=${uuid}`,
    ],
  })
})

after(async () => {
  await daemon.stop()
  rmSync(dir, { recursive: true, force: true })
})

function copyOut(name: string): Buffer {
  const out = join(dir, `${name}-out.img`)
  ok('nbdcopy', [uri(socket, name), out])
  return readFileSync(out)
}

function io(name: string, ...commands: string[]): ReturnType<typeof run> {
  return run('qemu-io', [
    '-f',
    'raw',
    ...commands.flatMap((command) => ['-c', command]),
    uri(socket, name),
  ])
}

void describe(
  'exports with backing files under memory pressure',
  { skip, timeout: 120_000 },
  () => {
    void test('a cache export reads its file, and fills tmem with it', () => {
      assert.ok(copyOut('cache').equals(cacheImage))
      assert.ok(client('nbd:cache').ephemeralPages > 1000, 'the reads were cached')
    })

    void test('a swap export without a file: ENOSPC when tmem is full, earlier pages intact', () => {
      const first = io('nospc', 'write -P 0x22 0 1M')
      assert.equal(first.status, 0, first.stderr)
      const full = io('nospc', 'write -P 0x11 4M 24M')
      assert.match(full.stdout + full.stderr, /No space left on device/)
      const check = io('nospc', 'read -P 0x22 0 1M')
      assert.equal(check.status, 0)
      assert.doesNotMatch(check.stdout, /fail/i)
    })

    void test('tmem dropped the cached pages, and the cache export still reads the file', () => {
      assert.ok(
        client('nbd:cache').ephemeralPages < 100,
        'the persistent pages pushed the cache out',
      )
      assert.ok(copyOut('cache').equals(cacheImage))
    })

    void test('cache writes go through to the file', () => {
      const write = io('cache', 'write -P 0x44 1M 64K', 'write -P 0x45 3000 100')
      assert.equal(write.status, 0, write.stderr)
      const file = readFileSync(join(dir, 'cache.img'))
      cacheImage.fill(0x44, MiB, MiB + 64 * 1024)
      cacheImage.fill(0x45, 3000, 3100)
      assert.ok(file.equals(cacheImage), 'the file holds the writes')
      assert.ok(copyOut('cache').equals(cacheImage))
    })

    void test('a swap export with a file spills there when tmem is full, and reads it back', () => {
      const write = io('spill', 'write -P 0x33 0 12M', 'write -P 0x34 5000 3')
      assert.equal(write.status, 0, write.stdout + write.stderr)
      const read = io(
        'spill',
        'read -P 0x33 0 5000',
        'read -P 0x34 5000 3',
        'read -P 0x33 5003 12577725',
        'read -P 0 12M 4M',
      )
      assert.equal(read.status, 0)
      assert.doesNotMatch(read.stdout + read.stderr, /fail/i)
      assert.ok(statSync(join(dir, 'spill.img')).size > 8 * MiB, 'most of it went to the file')
    })

    void test("two cache exports on one shared pool see each other's writes", () => {
      assert.ok(copyOut('sh1').equals(sharedImage))
      const write = io('sh1', 'write -P 0x55 8K 8K')
      assert.equal(write.status, 0)
      sharedImage.fill(0x55, 8192, 16384)
      assert.ok(copyOut('sh2').equals(sharedImage))
      const names = clients().map((c) => c.name)
      assert.ok(names.includes('nbd:sh1') && names.includes('nbd:sh2'))
    })
  },
)
