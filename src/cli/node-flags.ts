/**
 * The Node flags the daemon is meant to run with, and the check that it does.
 *
 * `--max-semi-space-size=2` bounds V8's young generation at 2 MiB a semi-space (Node 20 lets
 * it grow to 16 MiB under a steady allocation rate). The daemon's page paths allocate nothing,
 * but the remote tier does (ioredis commands, promises, key strings: a few KiB per remote
 * page), and a young generation of 32 MiB is swept through the caches at every scavenge: with
 * 2 MiB the daemon's CPU per remote put and get fell by about a quarter (bench/results.md,
 * 2026-12-07 22:15-22:50), while the shared-memory and socket paths did not move.
 *
 * V8 sizes its heap when the process starts (`v8.setFlagsFromString` later has no effect on
 * it), so the flag is given where node is started: the `tmem` command's first line
 * (`#!/usr/bin/env -S node ...`), `npm start`, and the benches and tests that spawn a daemon
 * (they use `DAEMON_NODE_FLAGS`). A test checks that those places agree.
 */

/** What node is started with for a daemon, before the script. */
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2']

/**
 * '' when this process was started with the young-generation bound (on the command line or
 * in NODE_OPTIONS), else a hint saying how to give it.
 */
export function youngGenerationHint(
  execArgv: readonly string[] = process.execArgv,
  nodeOptions: string = process.env['NODE_OPTIONS'] ?? '',
): string {
  const given = [...execArgv, ...nodeOptions.split(/\s+/)].some(
    (flag) => flag.startsWith('--max-semi-space-size') || flag.startsWith('--max_semi_space_size'),
  )
  if (given) return ''
  return (
    `node was started without ${DAEMON_NODE_FLAGS.join(' ')}: the remote tier costs more CPU ` +
    `per page (start the daemon with the tmem command, npm start, or ` +
    `NODE_OPTIONS=${DAEMON_NODE_FLAGS.join(' ')})`
  )
}
