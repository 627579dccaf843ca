/**
 * The daemon's Node flags (src/cli/node-flags.ts): every place that starts node for a daemon
 * gives the same ones (the `tmem` command's first line, `npm start`), the young-generation
 * bound really holds V8's young generation at 2 MiB a semi-space, node takes them all, and the
 * daemon's hint fires only when one was given nowhere.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { DAEMON_NODE_FLAGS, heapFlagsHint } from '../../src/cli/node-flags.js'
import { TMEM_BIN } from '../helpers/daemon.js'

const PACKAGE = new URL('../../../package.json', import.meta.url)

void describe('daemon node flags', () => {
  void test('the flags are those of docs/daemon.md: 2 MiB semi-spaces', () => {
    assert.deepEqual([...DAEMON_NODE_FLAGS], ['--max-semi-space-size=2'])
  })

  void test('node takes them (an unknown V8 flag would stop the daemon at start)', () => {
    const out = spawnSync(process.execPath, [...DAEMON_NODE_FLAGS, '-e', 'process.exit(7)'])
    assert.equal(out.status, 7, String(out.stderr))
  })

  void test('the tmem command starts node with them (its first line)', () => {
    const first = readFileSync(TMEM_BIN, 'utf8').split('\n')[0]
    assert.equal(first, `#!/usr/bin/env -S node ${DAEMON_NODE_FLAGS.join(' ')}`)
  })

  void test('npm start starts node with them', () => {
    const scripts = (
      JSON.parse(readFileSync(PACKAGE, 'utf8')) as { scripts: Record<string, string> }
    ).scripts
    assert.equal(
      scripts['start'],
      `node ${DAEMON_NODE_FLAGS.join(' ')} dist/src/cli/tmem.js daemon`,
    )
  })

  void test('with them, the young generation stays at 2 MiB a semi-space under churn', () => {
    // Allocate far more short-lived objects than 16 MiB, then read the new space's size:
    // two semi-spaces (4 MiB) with the flag, where an unbounded one grows past that.
    const script =
      "const v8 = require('node:v8'); let keep = [];" +
      'for (let i = 0; i < 2e6; i++) { keep.push({ i }); if (keep.length > 4096) keep = [] }' +
      "const s = v8.getHeapSpaceStatistics().find((x) => x.space_name === 'new_space');" +
      'process.stdout.write(String(s.space_size))'
    const run = (flags: readonly string[]): number => {
      const out = spawnSync(process.execPath, [...flags, '-e', script], { encoding: 'utf8' })
      assert.equal(out.status, 0, out.stderr)
      return Number(out.stdout)
    }
    assert.ok(run(DAEMON_NODE_FLAGS) <= 4 * 1024 * 1024)
    assert.ok(run([]) > 4 * 1024 * 1024)
  })

  void test('the hint is empty when every flag is on the command line or in NODE_OPTIONS', () => {
    assert.equal(heapFlagsHint(['--max-semi-space-size=2'], ''), '')
    assert.equal(heapFlagsHint(['--cpu-prof', '--max_semi_space_size=8'], ''), '')
    assert.equal(heapFlagsHint([], '--max-old-space-size=512 --max-semi-space-size=2'), '')
  })

  void test('the hint names the missing flag and how to give it', () => {
    const hint = heapFlagsHint(['--cpu-prof', '--max-semi-space=2'], '--max-old-space-size=512')
    assert.match(hint, /without --max-semi-space-size=2:/)
    assert.match(hint, /give node --max-semi-space-size=2 before the script/)
  })
})
