// Runs every compiled test file under dist/test with node:test.
// Helpers never run as tests: only files ending in .test.js are passed.
// Usage: node tools/run-tests.mjs [substring-filter ...]
//
// Two passes. The first runs every file, two at a time. The second runs the files that count
// garbage collections (no-alloc.test.js) alone, on a machine no other test is loading: a busy
// core delays the optimising compiler, and code that waits for it boxes numbers on the heap,
// which those tests would take for allocation by the code under test.
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) walk(path, out)
    else if (name.endsWith('.test.js')) out.push(path)
  }
  return out
}

const filters = process.argv.slice(2)
const files = walk('dist/test', [])
  .filter((file) => filters.length === 0 || filters.some((f) => file.includes(f)))
  .sort()
if (files.length === 0) {
  console.error('run-tests: no test files matched')
  process.exit(1)
}
const alone = files.filter((file) => file.endsWith('no-alloc.test.js'))
const together = files.filter((file) => !alone.includes(file))

function run(list, concurrency) {
  if (list.length === 0) return 0
  const result = spawnSync(
    process.execPath,
    ['--expose-gc', '--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...list],
    { stdio: 'inherit' },
  )
  return result.status ?? 1
}

const first = run(together, 2)
if (alone.length > 0)
  console.log(`\nrun-tests: ${alone.length} allocation test file(s), one at a time`)
const second = run(alone, 1)
process.exit(first !== 0 ? first : second)
