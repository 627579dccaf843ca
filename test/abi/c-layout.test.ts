/**
 * Cross-checks src/abi/layout.ts against a real C compiler: tools/abi-layout.c declares
 * struct tmem_op (v1, v0) and struct tmem_handle (v1, v0) as spec §2.6-2.8 does, prints every
 * offsetof and sizeof, and this test compares each printed line with the TypeScript tables,
 * in both directions (nothing printed goes unchecked, nothing expected goes unprinted).
 * Without `cc` or `gcc` the test is skipped with a visible reason.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  HANDLE_INDEX,
  HANDLE_OID,
  HANDLE_POOL_ID,
  OP_CMD,
  OP_CREAT_ARG1,
  OP_CREAT_FLAGS,
  OP_CREAT_UUID0,
  OP_CREAT_UUID1,
  OP_CTRL_ARG1,
  OP_CTRL_ARG2,
  OP_CTRL_CLI_ID,
  OP_CTRL_SUBOP,
  OP_LAYOUT_V0,
  OP_LAYOUT_V1,
  OP_POOL_ID,
  TMEM_HANDLE_BYTES_V0,
  TMEM_HANDLE_BYTES_V1,
  TMEM_OP_BYTES_V0,
  TMEM_OP_BYTES_V1,
  type OpLayout,
} from '../../src/abi/layout.js'

// dist/test/abi/ -> repository root.
const SOURCE = fileURLToPath(new URL('../../../tools/abi-layout.c', import.meta.url))

/** `name -> "offset size"`, the shape of the C program's lines. */
type Table = Record<string, string>

function opTable(tag: string, layout: OpLayout, bytes: number): Table {
  const v0 = layout.oidWords === 1
  const oidBytes = 8 * layout.oidWords
  return {
    [tag]: `0 ${bytes}`,
    [`${tag}.cmd`]: `${OP_CMD} 4`,
    [`${tag}.pool_id`]: `${OP_POOL_ID} 4`,
    [`${tag}.u`]: `${OP_POOL_ID + 4} ${bytes - OP_POOL_ID - 4}`,
    [`${tag}.u.creat.uuid`]: `${OP_CREAT_UUID0} 16`,
    [`${tag}.u.creat.flags`]: `${OP_CREAT_FLAGS} 4`,
    [`${tag}.u.creat.arg1`]: `${OP_CREAT_ARG1} 4`,
    [`${tag}.u.ctrl.subop`]: `${OP_CTRL_SUBOP} 4`,
    [`${tag}.u.ctrl.cli_id`]: `${OP_CTRL_CLI_ID} 4`,
    [`${tag}.u.ctrl.arg1`]: `${OP_CTRL_ARG1} 4`,
    [`${tag}.u.ctrl.arg2`]: `${OP_CTRL_ARG2} 4`,
    [`${tag}.u.ctrl.${v0 ? 'arg3' : 'oid'}`]: `${layout.ctrlOid} ${oidBytes}`,
    [`${tag}.u.ctrl.buf`]: `${layout.ctrlBuf} 8`,
    [`${tag}.u.gen.${v0 ? 'object' : 'oid'}`]: `${layout.genOid} ${oidBytes}`,
    [`${tag}.u.gen.index`]: `${layout.genIndex} 4`,
    [`${tag}.u.gen.tmem_offset`]: `${layout.genTmemOffset} 4`,
    [`${tag}.u.gen.pfn_offset`]: `${layout.genPfnOffset} 4`,
    [`${tag}.u.gen.len`]: `${layout.genLen} 4`,
    [`${tag}.u.gen.cmfn`]: `${layout.genCmfn} 8`,
  }
}

function handleTable(tag: string, oidWords: number, bytes: number): Table {
  return {
    [tag]: `0 ${bytes}`,
    [`${tag}.pool_id`]: `${HANDLE_POOL_ID} 4`,
    [`${tag}.index`]: `${HANDLE_INDEX} 4`,
    [`${tag}.oid`]: `${HANDLE_OID} ${8 * oidWords}`,
  }
}

const EXPECTED: Table = {
  ...opTable('op_v1', OP_LAYOUT_V1, TMEM_OP_BYTES_V1),
  ...opTable('op_v0', OP_LAYOUT_V0, TMEM_OP_BYTES_V0),
  ...handleTable('handle_v1', 3, TMEM_HANDLE_BYTES_V1),
  ...handleTable('handle_v0', 1, TMEM_HANDLE_BYTES_V0),
}

function findCompiler(): string | null {
  for (const name of ['cc', 'gcc']) {
    const probe = spawnSync(name, ['--version'], { stdio: 'ignore' })
    if (probe.error === undefined && probe.status === 0) return name
  }
  return null
}

function parseTable(output: string): Table {
  const table: Table = {}
  for (const line of output.split('\n')) {
    if (line.trim() === '') continue
    const match = /^(\S+) (\d+) (\d+)$/.exec(line)
    assert.ok(match !== null, `unexpected line from abi-layout: ${JSON.stringify(line)}`)
    const [, name = '', offset = '', size = ''] = match
    assert.equal(table[name], undefined, `abi-layout printed ${name} twice`)
    table[name] = `${offset} ${size}`
  }
  return table
}

void test('the tables agree with themselves where C has one field for two', () => {
  // C declares uuid[2] as one member; the TS table names both words.
  assert.equal(OP_CREAT_UUID1, OP_CREAT_UUID0 + 8)
  assert.equal(OP_LAYOUT_V1.bytes, TMEM_OP_BYTES_V1)
  assert.equal(OP_LAYOUT_V0.bytes, TMEM_OP_BYTES_V0)
})

void test('a C compiler lays out tmem_op and tmem_handle as src/abi/layout.ts says', (t) => {
  const compiler = findCompiler()
  if (compiler === null) {
    t.skip('no C compiler: layout not cross-checked')
    return
  }
  const dir = mkdtempSync(join(tmpdir(), 'tmem-abi-layout-'))
  try {
    const program = join(dir, 'abi-layout')
    execFileSync(compiler, ['-std=c99', '-Wall', '-Wextra', '-o', program, SOURCE], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const printed = parseTable(execFileSync(program, { encoding: 'utf8' }))
    t.diagnostic(`${compiler} printed ${Object.keys(printed).length} layout facts`)
    assert.deepEqual(printed, EXPECTED)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
