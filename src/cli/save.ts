/**
 * `tmem save CLIENT FILE [--live]` and `tmem restore CLIENT FILE`: a client's tmem state to and
 * from a file in the Xen v1 save stream (docs/save-restore.md), over the daemon's control
 * connection. Both show progress on stderr (pages, bytes, rate).
 *
 * save: the file appears only once the whole stream is written. `--live` is the Xen live save:
 * the client keeps running and the pages it removes during the save are written as the -6
 * invalidation section. A client with no pools has nothing to save (exit 1, no file).
 *
 * restore: CLIENT is the name the restored client gets (the daemon gives it a free client id
 * and binds the name with a secret, printed, that a client process uses to take it over), or a
 * client id (restored under that id, without a name, as Xen restores a domain's pages). A bad
 * stream changes nothing; a restore the daemon refuses part-way is undone completely.
 */
import type { Command } from 'commander'
import type { TmemControlClient } from '../client/control.js'
import { networkChannel } from '../migrate/net.js'
import { SaveRestoreError } from '../errors/mod.js'
import { restoreClient } from '../migrate/restore.js'
import { saveClientToSink } from '../migrate/save.js'
import { openFileSink, writableFileSink } from '../migrate/sink.js'
import {
  DigestMismatchError,
  digestingSink,
  digestPath,
  verifyDigest,
  writeDigest,
} from '../migrate/digest.js'
import type { Progress } from '../migrate/progress.js'
import {
  BIND_HOLD,
  SESSION_BIND,
  SESSION_DESTROY,
  SESSION_FREE_ID,
  SESSION_LOOKUP,
  emptySession,
} from '../protocol/session-frame.js'
import { parseSecret } from '../client/client.js'
import { addControlOptions, withControl } from './args.js'
import { clientLabel, parseClientArg, selectClient } from './clients.js'
import { OpFailedError, UsageError } from './exit.js'
import { progressReporter } from './progress.js'
import { formatBytes, formatRate } from '../util/units.js'

const CONNECTION_HELP = `
The daemon is found as for every control verb: --control-socket, --control-listen with
--token-file, or TMEM_CONTROL_SOCKET / TMEM_CONTROL_LISTEN / TMEM_TOKEN_FILE (see tmem list --help).
--timeout bounds the whole operation (default: none for save, restore and migrate).
Exit codes: 0 done, 1 the operation failed (the message says why), 2 usage, 3 daemon unreachable.`

interface SaveCliOptions {
  live?: boolean
  quiet?: boolean
}

interface RestoreCliOptions {
  secret?: string
  quiet?: boolean
  verify?: boolean
}

/** Long verbs have no overall timeout unless --timeout is given. */
export function noTimeoutByDefault(command: Command): void {
  if (command.getOptionValueSource('timeout') === 'default')
    command.setOptionValueWithSource('timeout', '0', 'default')
}

/** Makes `--help` of a long verb say what it does: --timeout defaults to none, not 10s. */
export function helpTimeoutNone(command: Command): Command {
  command.options.find((option) => option.long === '--timeout')?.default('0', 'none')
  command.setOptionValueWithSource('timeout', '0', 'default')
  return command
}

/** A save/restore progress report as a stderr line. */
function reportProgress(
  reporter: ReturnType<typeof progressReporter>,
): (progress: Progress) => void {
  return (progress) => {
    reporter.report({
      phase: progress.phase,
      pages: progress.pages,
      pagesTotal: progress.pagesTotal,
      bytes: progress.bytes,
      bytesPerSecond: progress.bytesPerSecond,
      done: progress.done,
    })
  }
}

/** A library error as an exit-1 failure with its code. */
function failed(verb: string, error: unknown): unknown {
  if (error instanceof SaveRestoreError)
    return new OpFailedError(`${verb} failed: ${error.message}`, error.code)
  return error
}

export function registerSaveCommand(program: Command): void {
  const command = program
    .command('save')
    .description("Save a client's tmem state to FILE (the Xen v1 save stream)")
    .argument('<client>', 'client id (a number) or client name')
    .argument(
      '<file>',
      'where to write the stream: a file (written atomically), a FIFO or device, or - for stdout',
    )
    .option(
      '--live',
      'Xen live save: the client keeps running; pages it removes meanwhile go in the -6 section',
    )
    .option('-q, --quiet', 'no progress on stderr')
  helpTimeoutNone(addControlOptions(command))
    .addHelpText(
      'after',
      `
Every persistent page is written exactly once; ephemeral pools are recorded empty, as in
Xen. The client is frozen during a plain save and gets its state back afterwards.

FILE keeps its kind: a regular file (or a new one) appears only when the whole stream is
written (a temporary file beside it is renamed over it); a FIFO or character device is
written in place; a symlink's target is written and the link kept; - writes to stdout (the
summary line then goes to stderr). A directory or socket is refused. Beside a file, the save
writes FILE.sha256 (the stream's SHA-256, sha256sum format) for tmem restore --verify.

Examples:
  $ tmem save web-1 /var/lib/tmem/web-1.tmem
  save: 262144/262144 pages, 1.01 GiB, 1.20 GB/s
  saved client 1 (web-1): 2 pools, 262144 pages, 1.01 GiB to /var/lib/tmem/web-1.tmem in 0.9 s (1.20 GB/s)
` + CONNECTION_HELP,
    )
    .action(async (client: string, file: string, options: SaveCliOptions, self: Command) => {
      const arg = parseClientArg(undefined, client)
      if (file === '') throw new UsageError('The file name is empty')
      noTimeoutByDefault(self)
      const reporter = progressReporter(options.quiet === true)
      const line = await withControl(self, async (control) => {
        const { selection } = await selectClient(control, arg, 'save')
        const opened = file === '-' ? writableFileSink(process.stdout) : await openFileSink(file)
        // A file gets a SHA-256 sidecar (our extension); a FIFO, device or stdout does not.
        const hashed = opened.streaming ? null : digestingSink(opened)
        const result = await saveClientToSink(
          networkChannel(control),
          selection.cliId,
          hashed?.file ?? opened,
          {
            live: options.live === true,
            onProgress: reportProgress(reporter),
          },
        ).catch((error: unknown) => {
          throw failed('save', error)
        })
        reporter.end()
        if (!result.saved) {
          throw new OpFailedError(
            `save failed: ${selection.label} has no tmem pools, so there is nothing to save (no file written)`,
            'ENOTMEM',
          )
        }
        const digest =
          hashed === null ? '' : `, SHA-256 in ${await writeDigest(file, hashed.hex())}`
        const seconds = result.elapsedMs / 1000
        const invalidations =
          result.invalidations === null ? '' : `, ${result.invalidations} invalidations`
        return (
          `saved ${selection.label}: ${result.pools} pools, ${result.pages} pages${invalidations}, ` +
          `${formatBytes(result.bytes, 'figures')} to ${file} in ${seconds.toFixed(1)} s (${formatRate(result.bytes / Math.max(seconds, 1e-6))})${digest}`
        )
      })
      ;(file === '-' ? process.stderr : process.stdout).write(`${line}\n`)
    })
}

export function registerRestoreCommand(program: Command): void {
  const command = program
    .command('restore')
    .description('Restore a client from FILE onto the daemon, creating it')
    .argument('<client>', 'the name the restored client gets, or a client id (no name)')
    .argument('<file>', 'a save stream (Xen v1, or v0 which is upgraded)')
    .option(
      '--secret <hex>',
      'the secret the client will use (64 hex digits); default: a new one, printed',
    )
    .option(
      '--verify',
      'check FILE against FILE.sha256 (written by tmem save) before restoring; a mismatch restores nothing',
    )
    .option('-q, --quiet', 'no progress on stderr')
  helpTimeoutNone(addControlOptions(command))
    .addHelpText(
      'after',
      `
With a name, the daemon picks a free client id, restores the stream there and binds the
name to it with a secret (--secret, or a new one printed on the last line). A client process
takes the restored client over with connect(..., { name, secret }); until then the restored
client is kept (no grace timer). With a client id, the client is restored under that id
without a name. The whole stream is checked before anything changes; a restore the daemon
refuses part-way is undone (the half-restored client is destroyed).

Examples:
  $ tmem restore web-1 /var/lib/tmem/web-1.tmem
  restore: 262144/262144 pages, 1.01 GiB, 250 MB/s
  restored client 3 (web-1): 2 pools, 262144 pages from a v1 stream in 4.3 s
  secret: 5f0c...e1
` + CONNECTION_HELP,
    )
    .action(async (client: string, file: string, options: RestoreCliOptions, self: Command) => {
      const arg = parseClientArg(undefined, client)
      let secret: Uint8Array | null = null
      if (options.secret !== undefined) {
        try {
          secret = parseSecret(options.secret)
        } catch {
          throw new UsageError('--secret must be 64 hex digits (32 bytes)')
        }
      }
      if (arg.kind === 'id' && secret !== null)
        throw new UsageError('--secret goes with a client name, not an id')
      noTimeoutByDefault(self)
      if (options.verify === true) await verifyBeforeRestore(file)
      const reporter = progressReporter(options.quiet === true)
      const lines = await withControl(self, (control) =>
        restore(
          control,
          arg.kind === 'name' ? arg.name : null,
          arg.kind === 'id' ? arg.id : null,
          file,
          secret,
          reporter,
        ),
      )
      process.stdout.write(lines)
    })
}

/** `--verify`: FILE against FILE.sha256, before the daemon is even contacted. */
async function verifyBeforeRestore(file: string): Promise<void> {
  try {
    const checked = await verifyDigest(file)
    if (checked.status === 'absent')
      process.stderr.write(`restore: no ${digestPath(file)} beside ${file}; restoring unchecked\n`)
  } catch (error) {
    if (error instanceof DigestMismatchError)
      throw new OpFailedError(`restore failed: ${error.message}`, error.code)
    throw error
  }
}

async function restore(
  control: TmemControlClient,
  name: string | null,
  id: number | null,
  file: string,
  secret: Uint8Array | null,
  reporter: ReturnType<typeof progressReporter>,
): Promise<string> {
  let cliId: number
  if (name !== null) {
    const existing = await control.session({ ...emptySession(SESSION_LOOKUP), name })
    if (existing.rc >= 0) {
      throw new OpFailedError(
        `restore failed: the daemon already has a client named ${name} (id ${existing.rc})`,
        'EEXIST',
      )
    }
    const free = await control.session(emptySession(SESSION_FREE_ID))
    if (free.rc <= 0)
      throw new OpFailedError('restore failed: the daemon has no free client id', 'ENOSPC')
    cliId = free.rc
  } else {
    cliId = id ?? 0
  }
  const channel = networkChannel(control)
  const result = await restoreClient(channel, cliId, file, {
    onProgress: (progress) => {
      if (progress.phase === 'restore') {
        reporter.report({
          phase: 'restore',
          pages: progress.pages,
          pagesTotal: progress.pagesTotal,
          bytes: progress.bytes,
          bytesPerSecond: progress.bytesPerSecond,
          done: progress.done,
        })
      }
    },
  }).catch((error: unknown) => {
    throw failed('restore', error)
  })
  reporter.end()
  const summary =
    `${result.pools} pools, ${result.pages} pages from a v${result.streamVersion} stream in ${(result.elapsedMs / 1000).toFixed(1)} s` +
    (result.invalidations > 0 ? ` (${result.invalidations} invalidations replayed)` : '') +
    (result.frozen ? ', frozen as saved' : '')
  if (name === null) return `restored ${clientLabel(cliId, null)}: ${summary}\n`
  const bound = await control.session({
    ...emptySession(SESSION_BIND),
    name,
    clientId: cliId,
    abi: 1,
    flags: BIND_HOLD,
    secret,
  })
  if (bound.rc !== cliId || bound.secret === null) {
    await control
      .session({ ...emptySession(SESSION_DESTROY), clientId: cliId })
      .catch(() => undefined)
    throw new OpFailedError(
      `restore failed: could not name client ${cliId} ${name} (rc ${bound.rc}); the restored client was destroyed again`,
      'EBIND',
      bound.rc,
    )
  }
  return `restored ${clientLabel(cliId, name)}: ${summary}\nsecret: ${Buffer.from(bound.secret).toString('hex')}\n`
}
