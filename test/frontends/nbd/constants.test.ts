/**
 * The NBD code table (src/frontends/nbd/constants.ts) against numbers transcribed separately
 * from the NBD project's doc/proto.md, and, where libnbd's development header is installed
 * (Debian libnbd-dev), against its LIBNBD_* constants compiled by a real C compiler.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as nbd from '../../../src/frontends/nbd/constants.js'

/** proto.md, transcribed by hand: name -> value. */
const PROTO_MD: Record<string, number> = {
  NBD_FLAG_FIXED_NEWSTYLE: 1,
  NBD_FLAG_NO_ZEROES: 2,
  NBD_FLAG_C_FIXED_NEWSTYLE: 1,
  NBD_FLAG_C_NO_ZEROES: 2,
  NBD_OPT_EXPORT_NAME: 1,
  NBD_OPT_ABORT: 2,
  NBD_OPT_LIST: 3,
  NBD_OPT_PEEK_EXPORT: 4,
  NBD_OPT_STARTTLS: 5,
  NBD_OPT_INFO: 6,
  NBD_OPT_GO: 7,
  NBD_OPT_STRUCTURED_REPLY: 8,
  NBD_OPT_LIST_META_CONTEXT: 9,
  NBD_OPT_SET_META_CONTEXT: 10,
  NBD_OPT_EXTENDED_HEADERS: 11,
  NBD_REP_ACK: 1,
  NBD_REP_SERVER: 2,
  NBD_REP_INFO: 3,
  NBD_REP_META_CONTEXT: 4,
  NBD_REP_ERR_UNSUP: 2 ** 31 + 1,
  NBD_REP_ERR_POLICY: 2 ** 31 + 2,
  NBD_REP_ERR_INVALID: 2 ** 31 + 3,
  NBD_REP_ERR_PLATFORM: 2 ** 31 + 4,
  NBD_REP_ERR_TLS_REQD: 2 ** 31 + 5,
  NBD_REP_ERR_UNKNOWN: 2 ** 31 + 6,
  NBD_REP_ERR_SHUTDOWN: 2 ** 31 + 7,
  NBD_REP_ERR_BLOCK_SIZE_REQD: 2 ** 31 + 8,
  NBD_REP_ERR_TOO_BIG: 2 ** 31 + 9,
  NBD_INFO_EXPORT: 0,
  NBD_INFO_NAME: 1,
  NBD_INFO_DESCRIPTION: 2,
  NBD_INFO_BLOCK_SIZE: 3,
  NBD_FLAG_HAS_FLAGS: 0x1,
  NBD_FLAG_READ_ONLY: 0x2,
  NBD_FLAG_SEND_FLUSH: 0x4,
  NBD_FLAG_SEND_FUA: 0x8,
  NBD_FLAG_ROTATIONAL: 0x10,
  NBD_FLAG_SEND_TRIM: 0x20,
  NBD_FLAG_SEND_WRITE_ZEROES: 0x40,
  NBD_FLAG_SEND_DF: 0x80,
  NBD_FLAG_CAN_MULTI_CONN: 0x100,
  NBD_FLAG_SEND_RESIZE: 0x200,
  NBD_FLAG_SEND_CACHE: 0x400,
  NBD_FLAG_SEND_FAST_ZERO: 0x800,
  NBD_REQUEST_MAGIC: 0x25609513,
  NBD_SIMPLE_REPLY_MAGIC: 0x67446698,
  NBD_STRUCTURED_REPLY_MAGIC: 0x668e33ef,
  NBD_CMD_READ: 0,
  NBD_CMD_WRITE: 1,
  NBD_CMD_DISC: 2,
  NBD_CMD_FLUSH: 3,
  NBD_CMD_TRIM: 4,
  NBD_CMD_CACHE: 5,
  NBD_CMD_WRITE_ZEROES: 6,
  NBD_CMD_BLOCK_STATUS: 7,
  NBD_CMD_RESIZE: 8,
  NBD_CMD_FLAG_FUA: 1,
  NBD_CMD_FLAG_NO_HOLE: 2,
  NBD_CMD_FLAG_DF: 4,
  NBD_CMD_FLAG_REQ_ONE: 8,
  NBD_CMD_FLAG_FAST_ZERO: 16,
  NBD_REPLY_FLAG_DONE: 1,
  NBD_REPLY_TYPE_NONE: 0,
  NBD_REPLY_TYPE_OFFSET_DATA: 1,
  NBD_REPLY_TYPE_OFFSET_HOLE: 2,
  NBD_REPLY_TYPE_BLOCK_STATUS: 5,
  NBD_REPLY_TYPE_ERROR: 32769,
  NBD_REPLY_TYPE_ERROR_OFFSET: 32770,
  NBD_EPERM: 1,
  NBD_EIO: 5,
  NBD_ENOMEM: 12,
  NBD_EINVAL: 22,
  NBD_ENOSPC: 28,
  NBD_EOVERFLOW: 75,
  NBD_ENOTSUP: 95,
  NBD_ESHUTDOWN: 108,
  NBD_STATE_HOLE: 1,
  NBD_STATE_ZERO: 2,
}

void test('every code in the table matches proto.md, and every proto.md code is in the table', () => {
  const table = nbd as unknown as Record<string, unknown>
  for (const [name, value] of Object.entries(PROTO_MD)) {
    assert.equal(table[name], value, name)
  }
  const codes = Object.keys(table).filter((name) =>
    /^NBD_((OPT|REP|INFO|FLAG|CMD|REPLY|STATE)_|E[A-Z]+$)/.test(name),
  )
  for (const name of codes) {
    if (name === 'NBD_REP_MAGIC_HI' || name === 'NBD_REP_MAGIC_LO' || name === 'NBD_REP_FLAG_ERROR')
      continue
    assert.ok(name in PROTO_MD, `${name} has no transcribed value`)
  }
})

void test('the magics spell NBDMAGIC and IHAVEOPT, and the option reply magic is 0x3e889045565a9', () => {
  const word = (hi: number, lo: number): string =>
    Buffer.from(
      [hi, lo].flatMap((v) => [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255]),
    ).toString('latin1')
  assert.equal(word(nbd.NBD_MAGIC_HI, nbd.NBD_MAGIC_LO), 'NBDMAGIC')
  assert.equal(word(nbd.NBD_IHAVEOPT_HI, nbd.NBD_IHAVEOPT_LO), 'IHAVEOPT')
  assert.equal(
    BigInt(nbd.NBD_REP_MAGIC_HI) * 2n ** 32n + BigInt(nbd.NBD_REP_MAGIC_LO),
    0x3e889045565a9n,
  )
  assert.equal(nbd.NBD_META_BASE_ALLOCATION, 'base:allocation')
})

const HEADER = '/usr/include/libnbd.h'
const compiler = ['cc', 'gcc'].find((cc) => spawnSync(cc, ['--version']).status === 0)
const skip = !existsSync(HEADER)
  ? `libnbd's header ${HEADER} is not installed (apt-get install libnbd-dev)`
  : compiler === undefined
    ? 'no C compiler (cc or gcc)'
    : false

void test('libnbd.h agrees on the flags, states and the base:allocation name', { skip }, () => {
  const pairs: [string, number][] = [
    ['LIBNBD_CMD_FLAG_FUA', nbd.NBD_CMD_FLAG_FUA],
    ['LIBNBD_CMD_FLAG_NO_HOLE', nbd.NBD_CMD_FLAG_NO_HOLE],
    ['LIBNBD_CMD_FLAG_DF', nbd.NBD_CMD_FLAG_DF],
    ['LIBNBD_CMD_FLAG_REQ_ONE', nbd.NBD_CMD_FLAG_REQ_ONE],
    ['LIBNBD_CMD_FLAG_FAST_ZERO', nbd.NBD_CMD_FLAG_FAST_ZERO],
    ['LIBNBD_HANDSHAKE_FLAG_FIXED_NEWSTYLE', nbd.NBD_FLAG_FIXED_NEWSTYLE],
    ['LIBNBD_HANDSHAKE_FLAG_NO_ZEROES', nbd.NBD_FLAG_NO_ZEROES],
    ['LIBNBD_STATE_HOLE', nbd.NBD_STATE_HOLE],
    ['LIBNBD_STATE_ZERO', nbd.NBD_STATE_ZERO],
  ]
  const dir = mkdtempSync(join(tmpdir(), 'nbd-h-'))
  try {
    const lines = pairs.map(([name]) => `  printf("${name} %u\\n", (unsigned)${name});`)
    const source =
      `#include <stdio.h>\n#include <libnbd.h>\nint main(void) {\n${lines.join('\n')}\n` +
      '  printf("BASE %s\\n", LIBNBD_CONTEXT_BASE_ALLOCATION);\n  return 0;\n}\n'
    writeFileSync(join(dir, 'c.c'), source)
    const built = spawnSync(compiler ?? 'cc', ['-o', join(dir, 'c'), join(dir, 'c.c')], {
      encoding: 'utf8',
    })
    assert.equal(built.status, 0, built.stderr)
    const run = spawnSync(join(dir, 'c'), { encoding: 'utf8' })
    const printed = new Map(
      run.stdout
        .trim()
        .split('\n')
        .map((line) => line.split(' ') as [string, string]),
    )
    for (const [name, value] of pairs) assert.equal(printed.get(name), String(value), name)
    assert.equal(printed.get('BASE'), nbd.NBD_META_BASE_ALLOCATION)
    assert.equal(printed.size, pairs.length + 1)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
