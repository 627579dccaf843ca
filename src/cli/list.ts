/**
 * `tmem list [-l] [--xen] [--json] [-a | CLIENT]` (xl tmem-list).
 *
 * - `-l` prints the exact Xen TMEMC_LIST text, long form (docs/semantics.md "LIST"), as `xl tmem-list -l` did,
 *   so Xen's `xen-tmem-list-parse` and scripts written for it read it unchanged.
 * - `--xen` without `-l` prints the short form (what `xl tmem-list` printed).
 * - plain `list` prints a readable summary and tables (list-table.ts) from the daemon's STATS.
 * - `--json` prints `host.stats()` (clients named) for scripts.
 *
 * Without `-a` or CLIENT, list shows every client, a page at a time (list-pages.ts: each
 * reply holds whole clients and stays under `--page-size`), printed as the pages come, so it
 * works at 65,535 clients. One client is one request. For one client's LIST text the buffer
 * starts at 256 KiB (xl used 32 KiB) and grows to the 1 MiB the protocol allows when the text
 * comes close to filling it: LIST drops lines that do not fit rather than failing.
 */
import { type Command, InvalidArgumentError } from 'commander'
import { CONTROL_DATA_BYTES_MAX } from '../protocol/frame.js'
import { STATS_PAGE_BYTES_DEFAULT } from '../protocol/stats.js'
import { LIST_BUFFER_BYTES, type TmemControlClient } from '../client/control.js'
import { TmemOpError } from '../errors/mod.js'
import { addControlOptions, parseU32, withControl, withControlPerRequest } from './args.js'
import { writeJsonPages, writeTablePages, writeXenPages } from './list-pages.js'
import {
  addClientSelection,
  type ClientSelection,
  engineClient,
  opFailed,
  parseClientArg,
  selectClient,
} from './clients.js'
import { UsageError } from './exit.js'
import { listJson, listTable } from './list-table.js'

interface ListOptions {
  all?: boolean
  long?: boolean
  xen?: boolean
  json?: boolean
  pageSize?: number
}

/** Bytes per reply when listing every client (the daemon's default page). */
const PAGE_BYTES_DEFAULT = STATS_PAGE_BYTES_DEFAULT

/** A LIST line is formatted in a 1024-byte scratch buffer (docs/semantics.md "LIST"): no line is longer. */
const LIST_LINE_BYTES_MAX = 1024

export function registerListCommand(program: Command): void {
  const command = program
    .command('list')
    .description(
      'List clients and pools: a readable table, the Xen LIST text (-l), or JSON (--json)',
    )
  addClientSelection(command, 'every client (the default)')
    .option('-l, --long', 'the exact Xen TMEMC_LIST text, long form (xl tmem-list -l)')
    .option('--xen', 'the Xen TMEMC_LIST text; short form unless -l (xl tmem-list)')
    .option('--json', 'host.stats() as JSON, each client with its name, for scripts')
    .option(
      '--page-size <bytes>',
      'largest reply when listing every client, in bytes (default 262144; at most 1 MiB)',
      parsePageSize,
    )
  addControlOptions(command)
    .addHelpText('after', LIST_HELP)
    .action(async (client: string | undefined, options: ListOptions, self: Command) => {
      const arg = parseClientArg(options.all, client, { kind: 'all' })
      const xen = options.long === true || options.xen === true
      if (xen && options.json === true) throw new UsageError('Give -l/--xen or --json, not both')
      const write = (text: string): void => void process.stdout.write(text)
      const pageBytes = options.pageSize ?? PAGE_BYTES_DEFAULT
      if (arg.kind === 'all') {
        // As long as the host is big: --timeout bounds each page's request, not the listing.
        await withControlPerRequest(self, async (control, ask) => {
          if (xen) await writeXenPages(control, options.long === true, pageBytes, write, ask)
          else if (options.json === true) await writeJsonPages(control, pageBytes, write, ask)
          else await writeTablePages(control, pageBytes, write, ask)
        })
        return
      }
      await withControl(self, async (control) => {
        const { selection, stats } = await selectClient(control, arg, 'list')
        if (xen) {
          write(await listText(control, selection, options.long === true))
          return
        }
        if (engineClient(stats, selection.cliId) === undefined)
          throw opFailed('list', -1, selection, stats)
        write(
          options.json === true
            ? `${JSON.stringify(listJson(stats, selection.cliId), null, 2)}\n`
            : listTable(stats, selection.cliId),
        )
      })
    })
}

function parsePageSize(text: string): number {
  const bytes = parseU32(text)
  if (bytes < 1 || bytes > CONTROL_DATA_BYTES_MAX)
    throw new InvalidArgumentError(`Give 1 to ${CONTROL_DATA_BYTES_MAX} bytes`)
  return bytes
}

/** TMEMC_LIST with a buffer that grows until the text cannot have been cut. */
async function listText(
  control: TmemControlClient,
  selection: ClientSelection,
  long: boolean,
): Promise<string> {
  let bytes = LIST_BUFFER_BYTES
  for (;;) {
    let text: string
    try {
      text = await control.list(selection.cliId, long, bytes)
    } catch (error) {
      if (error instanceof TmemOpError && error.errno < 0) {
        const id = selection.cliId
        throw opFailed('list', error.errno, selection, await control.statsPage({ form: 'id', id }))
      }
      throw error
    }
    if (text.length + LIST_LINE_BYTES_MAX < bytes || bytes >= CONTROL_DATA_BYTES_MAX) return text
    bytes = Math.min(bytes * 4, CONTROL_DATA_BYTES_MAX)
  }
}

const LIST_HELP = `
Forms:
  tmem list            summary of the host, a client table and a pool table
  tmem list -l         the Xen LIST text, long form: G= S= C= P= T= lines (spec 5.7)
  tmem list --xen      the Xen LIST text, short form
  tmem list --json     the engine's stats as JSON (clients carry their name)
CLIENT is a client id or the name the client gave (tmem list shows both). For one
client, -l prints only its C= and P= lines, as Xen does.

Where the daemon is (the same options and variables as tmem daemon, so the defaults
find a default npm start daemon):
  --control-socket PATH            TMEM_CONTROL_SOCKET (default above)
  --control-listen HOST:PORT       TMEM_CONTROL_LISTEN, with --token-file / TMEM_TOKEN_FILE
The command line wins over the environment; given the same way, a socket wins over
TCP. "none" (as for the daemon) means no socket.

Examples:
  $ tmem list
  $ tmem list -l
  G=Tt:12,Te:0,Cf:0,Af:0,Pf:0,Ta:0,Lm:0,Et:0,Ea:0,Rt:0,Ra:0,Rx:0,Fp:0,Ec:2,...
  C=CI:1,ww:0,ca:0,co:0,fr:0,Tc:81230,Ge:1,Pp:1,Gp:0,Ec:2,Em:2,cp:0,cb:0,cn:0,cm:0
  P=CI:1,PI:0,PT:EP,U0:0,U1:0,Pc:2,Pm:2,Oc:1,Om:1,Nc:0,Nm:0,ps:2,pt:2,...
  $ tmem list web-1 --json | jq '.clients[0].ephemeralPages'
  $ tmem list --control-listen 127.0.0.1:7301 --token-file /run/user/1000/tmem/control.token

Exit codes: 0 listed, 1 failed (unknown client: EPERM (-1)), 2 usage, 3 daemon unreachable.`
