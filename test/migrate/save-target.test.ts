/**
 * What a save does to the node already at its path: a regular file (or nothing) is replaced
 * atomically, a FIFO or character device is written in place and stays what it was, a symlink
 * is followed and kept, a directory is refused. The expected bytes are the stream of the same
 * client saved to memory; the expected length comes from the spec's record sizes (§6.2).
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { constants, createReadStream } from 'node:fs'
import {
  lstat,
  mkdir,
  mkdtemp,
  open,
  readFile,
  readdir,
  readlink,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import {
  hostChannel,
  saveClientToFile,
  saveClientToSink,
  writableFileSink,
} from '../../src/migrate/mod.js'
import { F, Guest, newHost, page, saveBytes } from './helpers.js'

const PAGES = 5
/** Header 32, one pool record 28, page records 28 + 4096, end word 4 (spec §6.2). */
const STREAM_BYTES = 32 + 28 + PAGES * (28 + 4096) + 4

async function withDir(run: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tmem-target-'))
  try {
    await run(dir)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

function sourceHost(): ReturnType<typeof newHost> {
  const host = newHost()
  const guest = new Guest(host, 2)
  guest.newPool(F.PRIVATE_PERS)
  for (let i = 0; i < PAGES; i++) guest.put(0, [9n, 0n, 0n], i, page(i))
  return host
}

/** Makes a device node like /dev/null (1,3) or /dev/full (1,7); false when not allowed (not root). */
function mknod(path: string, minor: number): boolean {
  try {
    execFileSync('mknod', [path, 'c', '1', String(minor)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

void describe('save targets keep their kind', () => {
  void test('a symlink to a file: the target gets the stream, the link stays a link', () =>
    withDir(async (dir) => {
      const host = sourceHost()
      await mkdir(join(dir, 'store'))
      await writeFile(join(dir, 'store', 'real.tmem'), 'old contents')
      await symlink('store/real.tmem', join(dir, 'link.tmem'))
      const saved = await saveClientToFile(hostChannel(host), 2, join(dir, 'link.tmem'))
      assert.equal(saved.bytes, STREAM_BYTES)
      assert.ok((await lstat(join(dir, 'link.tmem'))).isSymbolicLink())
      assert.equal(await readlink(join(dir, 'link.tmem')), 'store/real.tmem')
      assert.deepEqual(
        new Uint8Array(await readFile(join(dir, 'store', 'real.tmem'))),
        await saveBytes(host, 2),
      )
      assert.deepEqual((await readdir(join(dir, 'store'))).sort(), ['real.tmem'])
    }))

  void test('a dangling symlink: its target is created, the link stays a link', () =>
    withDir(async (dir) => {
      const host = sourceHost()
      await mkdir(join(dir, 'store'))
      await symlink('store/new.tmem', join(dir, 'link.tmem'))
      await saveClientToFile(hostChannel(host), 2, join(dir, 'link.tmem'))
      assert.ok((await lstat(join(dir, 'link.tmem'))).isSymbolicLink())
      assert.ok((await lstat(join(dir, 'store', 'new.tmem'))).isFile())
      assert.equal((await readFile(join(dir, 'store', 'new.tmem'))).length, STREAM_BYTES)
    }))

  void test('a FIFO is streamed into and stays a FIFO', () =>
    withDir(async (dir) => {
      const host = sourceHost()
      const fifo = join(dir, 'pipe')
      execFileSync('mkfifo', [fifo])
      // Held open read-write so that neither side's open blocks, and so that closing it ends the
      // reader even if the save wrote somewhere else.
      const holder = await open(fifo, constants.O_RDWR)
      const chunks: Buffer[] = []
      const reader = createReadStream(fifo)
      reader.on('data', (chunk) => chunks.push(chunk as Buffer))
      const ended = new Promise<void>((resolve, reject) =>
        reader.once('end', () => resolve()).once('error', reject),
      )
      try {
        const saved = await saveClientToFile(hostChannel(host), 2, fifo)
        assert.equal(saved.bytes, STREAM_BYTES)
        assert.ok((await lstat(fifo)).isFIFO())
      } finally {
        await holder.close()
        await ended
      }
      assert.deepEqual(new Uint8Array(Buffer.concat(chunks)), await saveBytes(host, 2))
      assert.deepEqual(await readdir(dir), ['pipe'])
    }))

  void test('a character device is written in place: a null device accepts, a full one fails the save', (t) =>
    withDir(async (dir) => {
      const nul = join(dir, 'null')
      const full = join(dir, 'full')
      if (!mknod(nul, 3) || !mknod(full, 7)) {
        t.skip('mknod is not allowed here')
        return
      }
      const host = sourceHost()
      assert.equal((await saveClientToFile(hostChannel(host), 2, nul)).bytes, STREAM_BYTES)
      await assert.rejects(saveClientToFile(hostChannel(host), 2, full), { code: 'ENOSPC' })
      assert.ok((await lstat(nul)).isCharacterDevice())
      assert.ok((await lstat(full)).isCharacterDevice())
      assert.deepEqual((await readdir(dir)).sort(), ['full', 'null'])
    }))

  void test('a directory is refused and left alone', () =>
    withDir(async (dir) => {
      const host = sourceHost()
      await mkdir(join(dir, 'd'))
      await assert.rejects(saveClientToFile(hostChannel(host), 2, join(dir, 'd')), {
        code: 'EISDIR',
      })
      assert.ok((await lstat(join(dir, 'd'))).isDirectory())
      assert.deepEqual(await readdir(dir), ['d'])
    }))

  void test('a writable (stdout for `tmem save CLIENT -`) gets the whole stream', async () => {
    const host = sourceHost()
    const out = new PassThrough()
    const chunks: Buffer[] = []
    out.on('data', (chunk: Buffer) => chunks.push(chunk))
    const saved = await saveClientToSink(hostChannel(host), 2, writableFileSink(out))
    assert.equal(saved.bytes, STREAM_BYTES)
    assert.deepEqual(new Uint8Array(Buffer.concat(chunks)), await saveBytes(host, 2))
  })
})
