/**
 * The README's code examples run as written: every ```js block is extracted, its
 * `from 'tmem'` import pointed at the built package entry, and executed as a module. The
 * client example gets a real daemon's socket in place of the example path. A block that
 * throws fails the test, so the README cannot drift from the API.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { startDaemon } from '../helpers/daemon.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const ENTRY = new URL('../../src/index.js', import.meta.url).href

function jsBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/```js\n([\s\S]*?)```/g)].map((match) => match[1] ?? '')
}

function run(code: string): { status: number | null; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tmem-readme-'))
  const file = join(dir, 'example.mjs')
  writeFileSync(file, code.replaceAll("from 'tmem'", `from '${ENTRY}'`))
  const child = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 30_000 })
  return { status: child.status, stderr: child.stderr }
}

void test('every js example in the README runs', async () => {
  const blocks = jsBlocks(readFileSync(join(ROOT, 'README.md'), 'utf8'))
  assert.ok(blocks.length >= 2, 'the README has its examples')
  const daemon = await startDaemon()
  try {
    for (const block of blocks) {
      const code = block.replace(
        /\{ path: '[^']*' \}/,
        `{ path: ${JSON.stringify(daemon.socketPath)} }`,
      )
      const result = run(code)
      assert.equal(result.status, 0, `README example failed:\n${block}\n${result.stderr}`)
    }
  } finally {
    await daemon.stop()
  }
})
