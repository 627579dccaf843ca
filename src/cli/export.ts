/**
 * `tmem export add SPEC`, `tmem export remove NAME [--force]`, `tmem export list [--json]`:
 * the NBD exports of a running daemon (docs/nbd.md, "Managing exports"), through the control
 * endpoint's export commands. The daemon must serve NBD (`--nbd-socket` or `--nbd-listen`).
 *
 * An export added here is the same as one given with `--export` at start: a tmem client
 * `nbd:NAME`. Removing it destroys that client and its pages; an export with NBD connections
 * open is refused unless `--force`, which closes them.
 */
import { resolve } from 'node:path'
import type { Command } from 'commander'
import type { ExportInfo, TmemControlClient } from '../client/control.js'
import { TmemError } from '../errors/mod.js'
import { parseExportSpec } from '../frontends/nbd/spec.js'
import { formatBytes } from '../util/units.js'
import { addControlOptions, usageOf, withControl } from './args.js'
import { OpFailedError } from './exit.js'

const COMMON_HELP = `
The daemon is found as for every control verb (see tmem list --help); it must serve NBD
(tmem daemon --nbd-socket PATH or --nbd-listen HOST:PORT).
Exit codes: 0 done, 1 refused (EEXIST name taken, ENOENT no such export, EBUSY export in
use, EIO the backing file or the tmem client could not be opened, ENOSYS no NBD server),
2 usage (a bad SPEC: name, size, mode), 3 daemon unreachable.`

export function registerExportCommand(program: Command): void {
  const command = program
    .command('export')
    .description('Add, remove and list the NBD exports of a running daemon (docs/nbd.md)')
  addControlOptions(
    command
      .command('add')
      .description('Add an NBD export: a new tmem client nbd:NAME')
      .argument(
        '<spec>',
        'name=NAME,size=SIZE[,mode=swap|cache][,backing=FILE][,shared=UUID][,readonly]',
      ),
  )
    .addHelpText(
      'after',
      `
SPEC is what tmem daemon --export takes. A relative backing FILE is made absolute here.

Examples:
  $ tmem export add name=vm2-swap,size=2G
  added export vm2-swap: swap 2 GiB, tmem client nbd:vm2-swap (id 3)
  $ tmem export add name=base,size=10G,mode=cache,backing=/images/base.raw
${COMMON_HELP}`,
    )
    .action(async (spec: string, _options: unknown, self: Command) => {
      const text = absoluteBacking(spec)
      usageOf(() => parseExportSpec(text))
      const info = await withControl(self, (control) => run(control, (c) => c.exportAdd(text)))
      process.stdout.write(
        `added export ${info.name}: ${info.mode} ${formatBytes(info.size)}, ` +
          `tmem client nbd:${info.name} (id ${info.client})\n`,
      )
    })
  addControlOptions(
    command
      .command('remove')
      .description('Remove an NBD export: its tmem client and pages are destroyed')
      .argument('<name>', 'the export')
      .option('-f, --force', 'close its NBD connections too (a guest using it loses the disk)'),
  )
    .addHelpText(
      'after',
      `
An export with NBD connections open is refused (EBUSY) unless --force.

Examples:
  $ tmem export remove vm2-swap
  removed export vm2-swap: 1,204 pages destroyed
${COMMON_HELP}`,
    )
    .action(async (name: string, options: { force?: boolean }, self: Command) => {
      const force = options.force === true
      const info = await withControl(self, (control) =>
        run(control, (c) => c.exportRemove(name, force)),
      )
      const closed = info.connections > 0 ? `, ${info.connections} connection(s) closed` : ''
      process.stdout.write(
        `removed export ${info.name}: ${info.pages.toLocaleString('en-US')} pages destroyed${closed}\n`,
      )
    })
  addControlOptions(
    command
      .command('list')
      .description('List the NBD exports: size, mode, backing file, connections, pages')
      .option('--json', 'print the exports as JSON'),
  )
    .addHelpText(
      'after',
      `
Columns: NAME, SIZE, MODE (swap or cache; ro when readonly), BACKING (the file, or -),
CONN (NBD connections open), PAGES (pages tmem holds for it now), CLIENT (tmem client id).
${COMMON_HELP}`,
    )
    .action(async (options: { json?: boolean }, self: Command) => {
      const list = await withControl(self, (control) => run(control, (c) => c.exportList()))
      process.stdout.write(
        options.json === true ? `${JSON.stringify(list, null, 2)}\n` : table(list),
      )
    })
}

/** Runs one export call, turning the daemon's refusal into an OpFailedError (exit 1). */
async function run<T>(
  control: TmemControlClient,
  call: (control: TmemControlClient) => Promise<T>,
): Promise<T> {
  try {
    return await call(control)
  } catch (error) {
    if (!(error instanceof TmemError) || error.errno === undefined) throw error
    const message =
      error.code === 'ENOSYS'
        ? 'This daemon serves no NBD exports: start it with --nbd-socket or --nbd-listen'
        : error.message
    throw new OpFailedError(`${message} (${error.code})`, error.code, error.errno)
  }
}

/** `backing=FILE` made absolute: the daemon's working directory is not ours. */
export function absoluteBacking(spec: string): string {
  return spec
    .split(',')
    .map((part) =>
      part.startsWith('backing=') && part.length > 8 ? `backing=${resolve(part.slice(8))}` : part,
    )
    .join(',')
}

/** The `tmem export list` table. */
export function table(list: readonly ExportInfo[]): string {
  if (list.length === 0) return 'no exports\n'
  const rows = list.map((info) => [
    info.name,
    formatBytes(info.size),
    info.mode + (info.readOnly ? ',ro' : '') + (info.lost ? ',lost' : ''),
    info.backing ?? '-',
    String(info.connections),
    String(info.pages),
    String(info.client),
  ])
  const header = ['NAME', 'SIZE', 'MODE', 'BACKING', 'CONN', 'PAGES', 'CLIENT']
  const widths = header.map((title, i) =>
    Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)),
  )
  const right = new Set([1, 4, 5, 6])
  const line = (cells: string[]): string =>
    cells
      .map((cell, i) =>
        right.has(i) ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0),
      )
      .join('  ')
      .trimEnd()
  return `${[header, ...rows].map(line).join('\n')}\n`
}
