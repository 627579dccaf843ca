/**
 * `tmem migrate CLIENT --to ADDRESS`: live migration of a running client to another daemon
 * (docs/migration.md). The source is the daemon the control options name (as for every
 * control verb); the target is ADDRESS, its control socket path or loopback host:port (then
 * with --to-token-file). Progress on stderr; the summary (pages, bytes, rate, frozen window) on
 * stdout. A refusal before anything moved (unreachable target, a name the target already has,
 * an ABI it does not serve, an unknown client) exits 1, or 3 for an unreachable daemon; a
 * failure part-way is rolled back (the client keeps running on the source) and exits 1.
 */
import type { Command } from 'commander'
import type { ControlTarget } from '../client/control.js'
import { migrateClient, type MigrateProgress } from '../migrate/live.js'
import { parseDuration, parseLoopbackAddress, parseSize } from '../server/config.js'
import { parseClientAddress } from '../protocol/session-frame.js'
import { addControlOptions, usageOf, withControl } from './args.js'
import { parseClientArg } from './clients.js'
import { UsageError } from './exit.js'
import { progressReporter } from './progress.js'
import { formatBytes, formatRate } from '../util/units.js'
import { helpTimeoutNone, noTimeoutByDefault } from './save.js'

interface MigrateCliOptions {
  to?: string
  toTokenFile?: string
  clientAddress?: string
  /** False with --no-push. */
  push?: boolean
  quiet?: boolean
  requestTimeout?: string
  changeLogMax?: string
}

/** `--to`: a path (has a `/`, or is not host:port) or a loopback `host:port`. */
export function parseTargetAddress(address: string, tokenFile: string | undefined): ControlTarget {
  if (address === '') throw new UsageError('--to is empty')
  const looksTcp = !address.includes('/') && /:\d+$/.test(address)
  if (!looksTcp) {
    if (tokenFile !== undefined)
      throw new UsageError('--to-token-file goes with a host:port target, not a socket path')
    return { path: address }
  }
  const tcp = usageOf(() => parseLoopbackAddress(address))
  if (tcp.port === 0)
    throw new UsageError(`Target ${address} has port 0: give the port the target daemon printed`)
  if (tokenFile === undefined)
    throw new UsageError(
      "A host:port target needs --to-token-file (the target daemon's control token file)",
    )
  return { host: tcp.host, port: tcp.port, tokenFile }
}

export function registerMigrateCommand(program: Command): void {
  const command = program
    .command('migrate')
    .description('Move a running client to another daemon (live migration)')
    .argument('<client>', 'client id (a number) or client name, on the source daemon')
    .requiredOption(
      '--to <address>',
      "the target daemon's control socket path, or loopback host:port",
    )
    .option('--to-token-file <path>', "the target's control token file (host:port targets)")
    .option(
      '--client-address <address>',
      'where clients reach the target (unix:/path or tcp:host:port); default: what it reports',
    )
    .option(
      '--no-push',
      'relay every page through this command instead of letting the source daemon send the pre-copy to the target itself',
    )
    .option(
      '--request-timeout <duration>',
      'longest wait for any one answer from either daemon (0: none)',
      '30s',
    )
    .option(
      '--change-log-max <size>',
      "most memory the source's change log of the client may hold during pre-copy (default: 64M)",
    )
    .option('-q, --quiet', 'no progress on stderr')
  helpTimeoutNone(addControlOptions(command))
    .addHelpText(
      'after',
      `
The client keeps working while its persistent pages are copied; pages it puts, replaces or
flushes meanwhile are copied again or flushed on the target. Then a short frozen window
(new puts get EFROZEN) sends the rest and switches over: the client's connection is told
where it moved and the client library reconnects there by itself. The source copy is then
destroyed. Ephemeral pools move empty (as in Xen).

Refused before anything moves, with the reason: an unreachable target (exit 3), a client
the source does not have, a target that already has a client of that name, a v0 client to a
target without --accept-v0 (exit 1). If the migration fails part-way (the target dies), the
client keeps running on the source with all its pages (exit 1).

Examples:
  $ tmem migrate web-1 --to /run/user/1000/tmem-b/control.sock
  precopy: 262144/262144 pages, 1.01 GiB, 1.10 GB/s
  migrated client 1 (web-1) to unix:/run/user/1000/tmem-b/tmem.sock as client 1: 262150 records, 1.01 GiB in 1.0 s (1.08 GB/s), 2 rounds, frozen 4.1 ms
  $ tmem migrate 7 --to 127.0.0.1:7001 --to-token-file /run/tmem-b/control.token

The source daemon sends the pre-copy straight to the target's control endpoint (SESSION
PUSH), so it must reach --to as given (same machine, same socket path). When it cannot, the
pages are relayed through this command; --no-push always relays.

The source daemon is found as for every control verb: --control-socket, --control-listen
with --token-file, or TMEM_CONTROL_SOCKET / TMEM_CONTROL_LISTEN / TMEM_TOKEN_FILE.
--timeout bounds the whole migration (default: none). --request-timeout (default 30s) bounds
each request to either daemon: when a daemon stops answering (killed, stopped, hung), the
migration fails with ETIMEDOUT and rolls back within three request timeouts (the request
that got no answer, then the rollback's requests, each bounded alike: 90 s with the
default); the client keeps running on the source.
--change-log-max bounds the memory the source daemon spends on the client's changes during
pre-copy (default 64M): past it each page is kept once however often it changes, and if even
that does not fit, the migration fails (ECHANGELOG) and rolls back, the client running on.
Exit codes: 0 migrated, 1 refused or failed (rolled back), 2 usage, 3 a daemon unreachable.`,
    )
    .action(migrateAction)
}

/** The action of `tmem migrate`: checks the arguments, migrates, prints the summary. */
async function migrateAction(
  client: string,
  options: MigrateCliOptions,
  self: Command,
): Promise<void> {
  const arg = parseClientArg(undefined, client)
  const target = parseTargetAddress(options.to ?? '', options.toTokenFile)
  if (options.clientAddress !== undefined && parseClientAddress(options.clientAddress) === null) {
    throw new UsageError('--client-address must be unix:/path or tcp:host:port')
  }
  const requestTimeoutMs = usageOf(() => parseDuration(options.requestTimeout ?? '30s'))
  const changeLog = options.changeLogMax
  const changeLogBytesMax =
    changeLog === undefined ? undefined : usageOf(() => parseSize(changeLog))
  noTimeoutByDefault(self)
  const reporter = progressReporter(options.quiet === true)
  const line = await withControl(self, async (source) => {
    try {
      const result = await migrateClient({
        source,
        target,
        client: arg.kind === 'id' ? arg.id : arg.kind === 'name' ? arg.name : '',
        ...(options.clientAddress === undefined
          ? {}
          : { targetClientAddress: options.clientAddress }),
        push: options.push !== false,
        requestTimeoutMs,
        ...(changeLogBytesMax === undefined ? {} : { changeLogBytesMax }),
        onProgress: (progress: MigrateProgress) =>
          reporter.report({
            phase: progress.phase,
            pages: progress.pages,
            pagesTotal: progress.phase === 'precopy' ? progress.pagesTotal : null,
            bytes: progress.bytes,
            bytesPerSecond: progress.bytesPerSecond,
            done: progress.done,
            ...(progress.round > 0 ? { extra: `round ${progress.round}` } : {}),
          }),
      })
      reporter.end()
      const label =
        result.name === null
          ? `client ${result.sourceId}`
          : `client ${result.sourceId} (${result.name})`
      const where = result.address === '' ? 'the target' : result.address
      const notice =
        result.name === null
          ? ''
          : result.notified
            ? ''
            : '; the client was not connected: it is redirected when it reconnects'
      return (
        `migrated ${label} to ${where} as client ${result.targetId}: ${result.pages} records, ${formatBytes(result.bytes, 'figures')} ` +
        `in ${(result.elapsedMs / 1000).toFixed(1)} s (${formatRate(result.bytesPerSecond)}), ${result.rounds} rounds, ` +
        `frozen ${result.frozenWindowMs.toFixed(1)} ms, ${result.pushedPages > 0 ? `${result.pushedPages} pages pushed by the source` : 'relayed'}${notice}`
      )
    } catch (error) {
      reporter.end()
      // A MigrationError maps to its exit code in exitCodeOf (EUNREACHABLE 3, else 1).
      throw error
    }
  })
  process.stdout.write(`${line}\n`)
}
