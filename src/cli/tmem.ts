#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * The `tmem` command. Each verb registers itself from the COMMANDS table below: `daemon` runs
 * the host; the xl-style verbs (list, freeze, thaw, destroy, flush, set, shared-auth,
 * freeable) are added to the same table, each in its own file under src/cli/, built on the
 * control client (`connectControl`).
 *
 * Exit codes (src/cli/exit.ts): 0 ok, 1 the op failed, 2 usage, 3 daemon unreachable.
 */
import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Command, CommanderError } from 'commander'
import { registerDaemonCommand } from './daemon.js'
import { registerExportCommand } from './export.js'
import { EXIT_UNREACHABLE, EXIT_USAGE, exitCodeOf, messageOf } from './exit.js'
import { registerFlushCommand, registerFreeableCommand } from './flush.js'
import { registerDestroyCommand, registerFreezeCommand, registerThawCommand } from './freeze.js'
import { registerListCommand } from './list.js'
import { registerMigrateCommand } from './migrate.js'
import { registerRestoreCommand, registerSaveCommand } from './save.js'
import { registerSetCommand } from './set.js'
import { registerSharedAuthCommand } from './shared-auth.js'
import { packageVersion } from './version.js'

/** One verb: adds its subcommand (options, help, action) to the program. */
export interface CommandSpec {
  name: string
  register: (program: Command) => void
}

/**
 * Every verb of `tmem`, in help order. Add new verbs here. The control verbs share
 * src/cli/args.ts (where the daemon is, `withControl`, exit 3) and src/cli/clients.ts
 * (`[-a | CLIENT]`, names to ids, failure messages); `save`, `restore` and `migrate` go after
 * `freeable`, built the same way on src/migrate/.
 */
export const COMMANDS: readonly CommandSpec[] = [
  { name: 'daemon', register: registerDaemonCommand },
  { name: 'list', register: registerListCommand },
  { name: 'freeze', register: registerFreezeCommand },
  { name: 'thaw', register: registerThawCommand },
  { name: 'destroy', register: registerDestroyCommand },
  { name: 'flush', register: registerFlushCommand },
  { name: 'set', register: registerSetCommand },
  { name: 'shared-auth', register: registerSharedAuthCommand },
  { name: 'freeable', register: registerFreeableCommand },
  { name: 'save', register: registerSaveCommand },
  { name: 'restore', register: registerRestoreCommand },
  { name: 'migrate', register: registerMigrateCommand },
  { name: 'export', register: registerExportCommand },
]

export function buildProgram(): Command {
  const program = new Command('tmem')
    .description('Transcendent Memory (tmem) host and control tool')
    .version(packageVersion(), '-V, --version', 'print the version of tmem')
    .showHelpAfterError()
    .exitOverride()
  for (const command of COMMANDS) command.register(program)
  return program
}

/** Runs `tmem` with `argv` (as process.argv) and resolves with the exit code. */
export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram()
  try {
    await program.parseAsync(argv)
    return typeof process.exitCode === 'number' ? process.exitCode : 0
  } catch (error) {
    return exitCodeFor(error)
  }
}

/** Maps an error to the exit code (cli/exit.ts, docs/errors.md) and prints its message. */
export function exitCodeFor(error: unknown): number {
  if (error instanceof CommanderError) {
    // Commander printed the message already; help and version exit 0.
    return error.exitCode === 0 ? 0 : EXIT_USAGE
  }
  process.stderr.write(`tmem: ${messageOf(error)}\n`)
  return exitCodeOf(error)
}

/** True when this file is the process entry (not imported by a test or another verb). */
function isEntry(): boolean {
  const entry = process.argv[1]
  if (entry === undefined) return false
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url))
  } catch {
    return false
  }
}

if (isEntry()) {
  // A reader that closes early (`tmem list -l | head`) is not an error: stop quietly.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0)
    throw error
  })
  const code = await main()
  if (code !== 0) process.exitCode = code
  // A daemon that accepted but never answered can leave a socket holding the event loop: exit
  // anyway once everything else is done (the timer does not keep the process alive itself).
  if (code === EXIT_UNREACHABLE) setTimeout(() => process.exit(code), 100).unref()
}
