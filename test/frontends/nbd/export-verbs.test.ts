/**
 * `tmem export add|remove|list` against a real daemon that starts with an NBD socket and no
 * export. The oracles are tools this project did not write (nbdinfo lists what a client sees,
 * qemu-io's `read -P` checks bytes), the engine's own view through `tmem list`'s stats, and the
 * counts of pages the test wrote.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connectControl } from '../../../src/client/control.js'
import { TmemError } from '../../../src/errors/mod.js'
import { runTmem } from '../../helpers/cli.js'
import { type DaemonHandle, startDaemon } from '../../helpers/daemon.js'
import { openExport } from './naive.js'
import { missing, ok, uri } from './tools.js'

let daemon: DaemonHandle
let dir: string
let socket: string

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nbd-verbs-'))
  socket = join(dir, 'nbd.sock')
  daemon = await startDaemon({ args: ['--log-level', 'warn', '--nbd-socket', socket] })
})

after(async () => {
  await daemon.stop()
  rmSync(dir, { recursive: true, force: true })
})

function tmem(...args: string[]) {
  return runTmem(args, { controlPath: daemon.controlPath })
}

interface Listed {
  name: string
  size: number
  mode: string
  backing: string | null
  connections: number
  pages: number
  client: number
}

async function listed(): Promise<Listed[]> {
  const result = await tmem('export', 'list', '--json')
  assert.equal(result.code, 0, result.stderr)
  return JSON.parse(result.stdout) as Listed[]
}

/** Export names and sizes as nbdinfo --list sees them. */
function nbdinfoList(): Map<string, number> {
  const text = ok('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${socket}`]).stdout
  const parsed = JSON.parse(text) as { exports: { 'export-name': string; 'export-size': number }[] }
  return new Map(parsed.exports.map((e) => [e['export-name'], e['export-size']]))
}

/** Client names the engine has, from the daemon's stats. */
async function sessionNames(): Promise<string[]> {
  const control = await connectControl({ path: daemon.controlPath })
  try {
    return (await control.stats()).sessions.map((session) => session.name)
  } finally {
    await control.close()
  }
}

void describe('tmem export add|remove|list', { timeout: 60_000 }, () => {
  void test('a daemon with no exports lists none', async () => {
    const result = await tmem('export', 'list')
    assert.equal(result.code, 0, result.stderr)
    assert.equal(result.stdout, 'no exports\n')
  })

  void test(
    'an added export is served: nbdinfo lists it, qemu-io reads back what it wrote',
    {
      skip: missing('nbdinfo', 'qemu-io'),
    },
    async () => {
      const added = await tmem('export', 'add', 'name=vm1,size=4M')
      assert.equal(added.code, 0, added.stderr)
      assert.match(added.stdout, /^added export vm1: swap 4 MiB, tmem client nbd:vm1 \(id \d+\)\n$/)
      assert.equal(nbdinfoList().get('vm1'), 4 * 1024 * 1024)
      const target = uri(socket, 'vm1')
      ok('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 64k', '-c', 'write -P 0xa5 1M 4k', target])
      ok('qemu-io', ['-f', 'raw', '-c', 'read -P 0x5a 0 64k', '-c', 'read -P 0xa5 1M 4k', target])
      const [entry] = (await listed()).filter((e) => e.name === 'vm1')
      assert.ok(entry !== undefined)
      // 16 pages at 0 and one at 1 MiB; qemu-io has disconnected.
      assert.deepEqual(
        { size: entry.size, mode: entry.mode, backing: entry.backing, conns: entry.connections },
        { size: 4 * 1024 * 1024, mode: 'swap', backing: null, conns: 0 },
      )
      assert.equal(entry.pages, 17)
      assert.ok((await sessionNames()).includes('nbd:vm1'))
      const table = (await tmem('export', 'list')).stdout.split('\n')
      assert.match(table[0] ?? '', /^NAME\s+SIZE\s+MODE\s+BACKING\s+CONN\s+PAGES\s+CLIENT$/)
      assert.match(table[1] ?? '', /^vm1\s+4 MiB\s+swap\s+-\s+0\s+17\s+\d+$/)
    },
  )

  void test('bad requests are refused with a clear error and change nothing', async () => {
    const before = await listed()
    const duplicate = await tmem('export', 'add', 'name=vm1,size=1M')
    assert.equal(duplicate.code, 1)
    assert.match(duplicate.stderr, /Export vm1 already exists \(EEXIST\)/)
    const badSize = await tmem('export', 'add', 'name=vm2,size=12Q')
    assert.equal(badSize.code, 2)
    assert.match(badSize.stderr, /12Q/)
    const noFile = await tmem('export', 'add', `name=vm3,size=1M,mode=cache,backing=${dir}/none`)
    assert.equal(noFile.code, 1)
    assert.match(noFile.stderr, /vm3.*ENOENT.*\(EIO\)/)
    const unknown = await tmem('export', 'remove', 'nope')
    assert.equal(unknown.code, 1)
    assert.match(unknown.stderr, /No export nope \(ENOENT\)/)
    assert.deepEqual(await listed(), before)
    assert.ok(!(await sessionNames()).includes('nbd:vm3'))
  })

  void test('the client library names the errno', async () => {
    const control = await connectControl({ path: daemon.controlPath })
    try {
      await assert.rejects(control.exportAdd('name=vm1,size=1M'), (error: unknown) => {
        assert.ok(error instanceof TmemError)
        assert.equal(error.code, 'EEXIST')
        assert.equal(error.errno, -17)
        return true
      })
      await assert.rejects(control.command('no.such-command'), { code: 'ENOSYS' })
      await assert.rejects(control.exportRemove(''), { code: 'EINVAL' })
    } finally {
      await control.close()
    }
  })

  void test(
    'a cache export added at run time reads its file',
    { skip: missing('qemu-io') },
    async () => {
      const image = randomBytes(64 * 1024)
      const file = join(dir, 'base.img')
      writeFileSync(file, image)
      const added = await tmem('export', 'add', `name=base,size=64K,mode=cache,backing=${file}`)
      assert.equal(added.code, 0, added.stderr)
      const pattern = image[8192] ?? 0
      image.fill(pattern, 8192, 12288)
      writeFileSync(file, image)
      ok('qemu-io', ['-f', 'raw', '-c', `read -P ${pattern} 8k 4k`, uri(socket, 'base')])
      const [entry] = (await listed()).filter((e) => e.name === 'base')
      assert.equal(entry?.backing, file)
      assert.equal(entry?.mode, 'cache')
    },
  )

  void test(
    'remove refuses an export in use, --force closes it and destroys its pages',
    {
      skip: missing('nbdinfo', 'qemu-io'),
    },
    async () => {
      const conn = await openExport(socket, 'vm1', false)
      assert.equal((await listed()).find((e) => e.name === 'vm1')?.connections, 1)
      const busy = await tmem('export', 'remove', 'vm1')
      assert.equal(busy.code, 1)
      assert.match(busy.stderr, /in use by 1 NBD connection.*\(EBUSY\)/)
      assert.ok(nbdinfoList().has('vm1'))
      const removed = await tmem('export', 'remove', '--force', 'vm1')
      assert.equal(removed.code, 0, removed.stderr)
      assert.equal(
        removed.stdout,
        'removed export vm1: 17 pages destroyed, 1 connection(s) closed\n',
      )
      await conn.closed
      assert.ok(!nbdinfoList().has('vm1'))
      assert.ok(!(await sessionNames()).includes('nbd:vm1'))
      // The same name again is a new, empty disk: the old pages are gone, not found again.
      assert.equal((await tmem('export', 'add', 'name=vm1,size=4M')).code, 0)
      ok('qemu-io', [
        '-f',
        'raw',
        '-c',
        'read -P 0 0 64k',
        '-c',
        'read -P 0 1M 4k',
        uri(socket, 'vm1'),
      ])
      assert.equal((await listed()).find((e) => e.name === 'vm1')?.pages, 0)
    },
  )

  void test('a daemon without an NBD server says so', async () => {
    const plain = await startDaemon({ args: ['--log-level', 'warn'] })
    try {
      const result = await runTmem(['export', 'list'], { controlPath: plain.controlPath })
      assert.equal(result.code, 1)
      assert.match(result.stderr, /serves no NBD exports.*--nbd-socket.*\(ENOSYS\)/)
    } finally {
      await plain.stop()
    }
  })
})
