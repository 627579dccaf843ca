/**
 * The Node flags the daemon is meant to run with, and the check that it does.
 *
 * `--max-semi-space-size=2` bounds V8's young generation at 2 MiB a semi-space (Node 20 lets
 * it grow to 16 MiB under a steady allocation rate). The daemon's page paths allocate nothing,
 * but the remote tier does (ioredis commands, promises, key strings: a few KiB per remote
 * page): with 2 MiB the daemon's CPU per remote put and get fell by a third and two fifths,
 * while the shared-memory and socket paths did not move (bench/results.md, 2026-12-07
 * 22:15-22:53). A larger old-generation growth factor (`--heap-growing-percent=300`) was
 * tried for the turns that major collections push past 5 ms and did not shorten them.
 *
 * V8 sizes its heap when the process starts (`v8.setFlagsFromString` later has no effect on
 * it), so the flags are given where node is started: the `tmem` command's first line
 * (`#!/usr/bin/env -S node ...`), `npm start`, and the benches and tests that spawn a daemon
 * (they use `DAEMON_NODE_FLAGS`). A test checks that those places agree.
 */

/** What node is started with for a daemon, before the script. */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2']

/** The name of a flag (`--max-semi-space-size`), underscores read as dashes, as node does. */
function flagName(flag: string): string {
  return flag.split('=')[0]!.replaceAll('_', '-')
}

/**
 * '' when this process was started with every one of `DAEMON_NODE_FLAGS` (any value, on the
 * command line or in NODE_OPTIONS), else a hint naming the missing ones and how to give them.
 */
export function heapFlagsHint(
  execArgv: readonly string[] = process.execArgv,
  nodeOptions: string = process.env['NODE_OPTIONS'] ?? '',
): string {
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)].map(flagName))
  const missing = DAEMON_NODE_FLAGS.filter((flag) => !given.has(flagName(flag)))
  if (missing.length === 0) return ''
  return (
    `node was started without ${missing.join(' ')}: the remote tier costs more CPU per page ` +
    `(start the daemon with the tmem command or npm start, or give node ` +
    `${DAEMON_NODE_FLAGS.join(' ')} before the script; docs/daemon.md "Node flags")`
  )
}
