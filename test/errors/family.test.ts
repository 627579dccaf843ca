/**
 * The error family (docs/errors.md): one root class with a stable `code` and an optional
 * `errno`, the same classes in every layer, the CLI exit code each maps to, and a page of docs
 * that names every code. Expected numbers and codes are retyped from the spec's errno table
 * (§2.5), docs/protocol.md and docs/errors.md, not taken from the code.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { HELLO_ERROR_CODES } from '../../src/protocol/hello.js'
import { OpFailedError, UnreachableError, UsageError, exitCodeOf } from '../../src/cli/exit.js'
import {
  MigrationError,
  MigrationStepError,
  RestoreError,
  SaveError,
  SaveRestoreError,
  SaveStreamError,
  TmemConnectionError,
  TmemError,
  TmemOpError,
  TmemProtocolError,
} from '../../src/index.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

void test('an op error names the errno; a connection error has none (no fake errno 0)', () => {
  const frozen = new TmemOpError(-1000, 4) // TMEM_PUT_PAGE is command 4
  assert.ok(frozen instanceof TmemError)
  assert.equal(frozen.code, 'EFROZEN')
  assert.equal(frozen.errno, -1000)
  assert.equal(frozen.cmd, 'TMEM_PUT_PAGE')
  const reset = new TmemConnectionError('ECONNRESET', 'dropped')
  assert.ok(reset instanceof TmemError)
  assert.equal(reset.code, 'ECONNRESET')
  assert.equal(reset.errno, undefined)
  const proto = new TmemProtocolError('bad frame')
  assert.equal(proto.code, 'EPROTO')
  assert.equal(proto.errno, undefined)
})

void test('save, restore and migration errors are TmemErrors; the stream error keeps its offset', () => {
  const stream = new SaveStreamError('ETRUNCATED', { offset: 1234, poolId: 3 }, 'cut short')
  assert.ok(stream instanceof SaveRestoreError && stream instanceof TmemError)
  assert.equal(stream.offset, 1234)
  assert.equal(stream.poolId, 3)
  const restore = new RestoreError(
    'ERESTORE',
    { cliId: 1, step: 'TMEMC_RESTORE_PUT_PAGE', rc: -12, cleanup: 'destroyed' },
    'no room',
  )
  assert.ok(restore instanceof SaveRestoreError)
  assert.equal(restore.errno, -12)
  const save = new SaveError('ESAVE', { cliId: 1, step: 'SAVE_BEGIN' }, 'refused')
  assert.equal(save.errno, undefined)
  const migration = new MigrationError('EMIGRATE', 'precopy', 'failed', {
    cause: new MigrationStepError('target', 'RESTORE_PAGES', -12),
  })
  assert.ok(migration instanceof TmemError)
  assert.equal(migration.causeCode, 'ENOMEM')
  assert.equal(migration.errno, -12)
})

void test('a refused migration step names the errno, SESSION rcs included', () => {
  // Linux errno values the SESSION requests use (docs/protocol.md).
  const cases: [number, string][] = [
    [-12, 'ENOMEM'],
    [-5, 'EIO'],
    [-111, 'ECONNREFUSED'],
    [-2, 'ENOENT'],
    [-17, 'EEXIST'],
    [-22, 'EINVAL'],
  ]
  for (const [rc, code] of cases) {
    const error = new MigrationStepError('target', 'STEP', rc)
    assert.equal(error.code, code)
    assert.equal(error.errno, rc)
    assert.match(error.message, new RegExp(`${code} \\(${rc}\\)`))
  }
  assert.equal(new MigrationStepError('target', 'TMEM_RESTORE_NEW', 3).code, 'EBADREPLY')
  assert.equal(new MigrationStepError('source', 'SAVE_GET_CHANGES', 'EDRAIN').code, 'EDRAIN')
})

void test('each error maps to the exit code docs/errors.md gives it', () => {
  const cases: [unknown, number][] = [
    [new UsageError('bad'), 2],
    [new UnreachableError('gone', 'ENOENT'), 3],
    [new TmemConnectionError('ETIMEDOUT', 'slow'), 3],
    [new TmemProtocolError('bad'), 1],
    [new TmemOpError(-1, 2), 1],
    [new OpFailedError('no', 'ENOCLIENT'), 1],
    [new SaveStreamError('EBADMARKER', { offset: 0 }, 'no'), 1],
    [new MigrationError('EUNREACHABLE', 'preflight', 'gone'), 3],
    [new MigrationError('EMIGRATE', 'frozen', 'failed'), 1],
    [new Error('other'), 1],
  ]
  for (const [error, exit] of cases) assert.equal(exitCodeOf(error), exit, String(error))
})

void test('docs/errors.md names every code', () => {
  const page = readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8')
  const codes = [
    // errno names, spec §2.5
    'EPERM',
    'ENOMEM',
    'EFAULT',
    'ENODEV',
    'EINVAL',
    'ENOSPC',
    'ENOSYS',
    'EFROZEN',
    'EEMPTY',
    // connection
    'ECONNRESET',
    'ECLOSED',
    'ETIMEDOUT',
    'ECONNREFUSED',
    'EPROTO',
    ...HELLO_ERROR_CODES.filter((code) => code !== 'OK'),
    // save and restore
    'ETRUNCATED',
    'EBADMARKER',
    'EBADVERSION',
    'EBADHEADER',
    'EBADPOOL',
    'EBADPAGE',
    'EBADINV',
    'EEXIST',
    'ERESTORE',
    'EALLONESOID',
    'ESAVE',
    // migration
    'EUNREACHABLE',
    'ENOCLIENT',
    'EABI',
    'ENOTSUPP',
    'EMIGRATE',
    'EBADREPLY',
    'EDRAIN',
    'EIO',
    // CLI
    'EUSAGE',
    'ENOTMEM',
    'EBIND',
  ]
  for (const code of codes)
    assert.ok(page.includes(`\`${code}\``), `docs/errors.md does not name ${code}`)
})
