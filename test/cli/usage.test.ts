/**
 * `tmem` without a daemon: every verb's `--help` (exit 0, with examples), usage errors (exit 2,
 * before any connection is tried), and an unreachable daemon (exit 3): no socket, a refused TCP
 * port, a missing token file, a stopped daemon, and one that accepts but never answers.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { type Server, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runTmem } from '../helpers/cli.js'
import { startDaemon } from '../helpers/daemon.js'
import { HANG_GUARD_MS } from '../helpers/hang.js'

const VERBS = ['list', 'freeze', 'thaw', 'destroy', 'flush', 'set', 'shared-auth', 'freeable']
const UUID = '11223344-5566-7788-99aa-bbccddeeff00'

void describe('tmem usage and reachability', { timeout: HANG_GUARD_MS }, () => {
  let dir: string
  let missing: string

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'tmem-cli-'))
    missing = join(dir, 'no-daemon.sock')
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  void test('every verb has --help with examples, and tmem --help lists them', async () => {
    const results = await Promise.all([
      ...VERBS.map((verb) => runTmem([verb, '--help'])),
      runTmem(['--help']),
    ])
    VERBS.forEach((verb, i) => {
      const result = results[i]!
      assert.equal(result.code, 0, `${verb}: ${result.stderr}`)
      assert.match(result.stdout, new RegExp(`^Usage: tmem ${verb} `), verb)
      assert.match(result.stdout, /Examples:\n {2}\$ tmem /, verb)
      assert.match(result.stdout, /--control-socket <path>/, verb)
      assert.match(result.stdout, /Exit codes: 0 /, verb)
    })
    const top = results[VERBS.length]!
    for (const verb of VERBS)
      assert.match(top.stdout, new RegExp(`\\n {2}${verb} `), `tmem --help lists ${verb}`)
    assert.match(results[VERBS.indexOf('destroy')]!.stdout, /only thaws/)
    assert.match(results[VERBS.indexOf('shared-auth')]!.stdout, /1 = authorise, 0 = revoke/)
  })

  void test('tmem --version and -V print the version of package.json', async () => {
    const pkg = new URL('../../../package.json', import.meta.url)
    const { version } = JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }
    for (const flag of ['--version', '-V']) {
      const result = await runTmem([flag])
      assert.equal(result.code, 0, result.stderr)
      assert.equal(result.stdout, `${version}\n`)
    }
  })

  void test('usage errors exit 2 without touching the daemon', async () => {
    const cases: [string[], RegExp][] = [
      [['freeze'], /Name a client/],
      [['thaw', '-a', '3'], /not both/],
      [['destroy', '65535'], /out of range/],
      [['set', '1'], /at least one of -w/],
      [['set', '1', '-w', 'heavy'], /argument 'heavy' is invalid/],
      [['set', '1', '-c', '-5'], /invalid|unknown option/],
      [['set', '1', '-p', 'maybe'], /Expected 0 or 1/],
      [['flush'], /required option '--kb <n>'/],
      [['flush', '--kb', '1', '7'], /too many arguments/],
      [['shared-auth', '1', '-u', 'not-a-uuid', '-A', '1'], /UUID must be/],
      [['shared-auth', '1', '-u', UUID, '-A', '2'], /-A takes 1 .* or 0/],
      [['shared-auth', '1', '-A', '1'], /required option '-u, --uuid <uuid>'/],
      [['list', '-l', '--json'], /not both/],
      [['list', '--timeout', 'soon'], /Duration "soon"/],
      [['list', '--control-listen', '10.0.0.1:7301'], /not a loopback address/],
      [['list', '--control-socket', 'none'], /No control endpoint/],
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['daemon', '--busy-poll', '5000'], /--busy-poll is at most 1000 microseconds/],
      [['daemon', '--busy-poll', 'soon'], /--busy-poll must be a whole number of microseconds/],
      [
        ['daemon', '--remote', 'redis-cluster://127.0.0.1:1', '--remote-turn-budget', '1.5'],
        /--remote-turn-budget must be a whole number of microseconds, not "1.5"/,
      ],
      [
        ['daemon', '--remote', 'redis-cluster://127.0.0.1:1', '--remote-turn-budget', '2000000'],
        /--remote-turn-budget is at most 1000000 microseconds/,
      ],
    ]
    // With a control socket that does not exist: a usage check that ran after connecting would
    // exit 3 instead of 2.
    const results = await Promise.all(
      cases.map(([args]) => runTmem(args, { controlPath: missing })),
    )
    cases.forEach(([args, message], i) => {
      const result = results[i]!
      assert.equal(result.code, 2, `${args.join(' ')}: exit ${result.code} ${result.stderr}`)
      assert.match(result.stderr, message, args.join(' '))
      assert.equal(result.stdout, '', args.join(' '))
    })
  })

  void test('an unreachable daemon exits 3', async () => {
    const hung: Server = createServer(() => undefined).unref()
    const hungPath = join(dir, 'hung.sock')
    await new Promise<void>((resolve) => hung.listen(hungPath, resolve))
    try {
      // A daemon that ran and is gone: its socket path no longer answers. (Its exit code is the
      // daemon tests' business: SIGTERM right after "ready" can beat its signal handlers.)
      const stopped = await startDaemon()
      const stoppedPath = stopped.controlPath
      await stopped.stop()
      const results = await Promise.all([
        runTmem(['list'], { controlPath: missing }),
        runTmem(['freeze', '-a', '--control-socket', stoppedPath]),
        runTmem([
          'freeable',
          '--control-listen',
          '127.0.0.1:1',
          '--token-file',
          join(dir, 'no.token'),
        ]),
        runTmem(['list', '--control-socket', hungPath, '--timeout', '300ms']),
      ])
      const [noSocket, gone, noToken, silent] = results
      for (const result of results) {
        assert.equal(result.code, 3, result.stderr)
        assert.equal(result.stdout, '')
      }
      assert.match(
        noSocket.stderr,
        new RegExp(`^tmem: Cannot reach the tmem daemon at unix:${missing}: .*ENOENT`),
      )
      assert.match(
        gone.stderr,
        /^tmem: Cannot reach the tmem daemon at unix:.*(ENOENT|ECONNREFUSED)/,
      )
      assert.match(
        noToken.stderr,
        /^tmem: Cannot read the control token file .*no\.token \(ENOENT\)/,
      )
      assert.match(
        silent.stderr,
        /^tmem: The daemon at unix:.*hung\.sock did not answer within 300 ms/,
      )
    } finally {
      hung.close()
    }
  })
})
