/**
 * The SHA-256 sidecar (our extension, docs/save-restore.md): `tmem save` writes FILE.sha256
 * in sha256sum format, and `tmem restore --verify` refuses a file with one byte flipped inside
 * a page (which the Xen stream itself cannot notice) before the daemon changes. The expected
 * digest is computed here with node:crypto over the file's bytes.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, type TmemClient } from '../../src/client/client.js'
import { verifyDigest } from '../../src/migrate/mod.js'
import { runTmem } from '../helpers/cli.js'
import { type DaemonHandle, startDaemon } from '../helpers/daemon.js'

/** Offset of the first page's data in a one-pool stream: header 32, pool record 28, page record head 28 (§6.2). */
const FIRST_PAGE_DATA = 32 + 28 + 28

void describe('save digest sidecar', { timeout: 60_000 }, () => {
  let daemon: DaemonHandle
  let client: TmemClient
  let dir: string
  before(async () => {
    daemon = await startDaemon()
    dir = await mkdtemp(join(tmpdir(), 'tmem-digest-'))
    client = await connect({ path: daemon.socketPath }, { name: 'digested' })
    const pool = await client.newPool({ persistent: true })
    for (let i = 0; i < 4; i++) await client.put(pool, 1, i, new Uint8Array(4096).fill(i + 1))
  })
  after(async () => {
    await client.close()
    await daemon.stop()
    await rm(dir, { recursive: true, force: true })
  })

  void test('save writes FILE.sha256; restore --verify accepts the file as saved', async () => {
    const file = join(dir, 'ok.tmem')
    const saved = await runTmem(['save', '-q', 'digested', file], {
      controlPath: daemon.controlPath,
    })
    assert.equal(saved.code, 0, saved.stderr)
    const bytes = await readFile(file)
    const hex = createHash('sha256').update(bytes).digest('hex')
    assert.equal(await readFile(`${file}.sha256`, 'utf8'), `${hex}  ok.tmem\n`)
    assert.deepEqual(await verifyDigest(file), { status: 'ok', hex })
    const restored = await runTmem(['restore', '-q', '--verify', 'digested-copy', file], {
      controlPath: daemon.controlPath,
    })
    assert.equal(restored.code, 0, restored.stderr)
  })

  void test('a byte flipped inside a page: restore --verify fails and restores nothing', async () => {
    const file = join(dir, 'flipped.tmem')
    assert.equal(
      (await runTmem(['save', '-q', 'digested', file], { controlPath: daemon.controlPath })).code,
      0,
    )
    const bytes = await readFile(file)
    bytes[FIRST_PAGE_DATA + 100]! ^= 0x01
    await writeFile(file, bytes)
    const refused = await runTmem(['restore', '-q', '--verify', 'flipped-copy', file], {
      controlPath: daemon.controlPath,
    })
    assert.equal(refused.code, 1)
    assert.match(refused.stderr, /does not match .*flipped\.tmem\.sha256/)
    const listed = await runTmem(['list', 'flipped-copy'], { controlPath: daemon.controlPath })
    assert.notEqual(listed.code, 0, 'no client was restored')
  })

  void test('--verify without a sidecar says so and restores', async () => {
    const file = join(dir, 'bare.tmem')
    assert.equal(
      (await runTmem(['save', '-q', 'digested', file], { controlPath: daemon.controlPath })).code,
      0,
    )
    await rm(`${file}.sha256`)
    const restored = await runTmem(['restore', '-q', '--verify', 'bare-copy', file], {
      controlPath: daemon.controlPath,
    })
    assert.equal(restored.code, 0, restored.stderr)
    assert.match(restored.stderr, /no .*bare\.tmem\.sha256 .*unchecked/)
  })
})
