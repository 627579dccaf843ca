/**
 * `tmem list` of every client, a page at a time: the daemon answers each request with a page
 * of clients well under the 1 MiB frame limit (a paged STATS request, or TMEMC_LIST_PAGE for
 * the Xen text), and the pages are printed as they come, so the listing works at any number of
 * clients (65,535 at most) with memory for one page. Clients come in id order.
 */
import { CLI_ID_NULL } from '../abi/constants.js'
import type { TmemControlClient } from '../client/control.js'
import type { ClientStats, StatsPage } from '../protocol/stats.js'
import {
  Columns,
  clientHeader,
  clientRows,
  hasRemote,
  hostSummary,
  poolHeader,
  poolRows,
  shmSummary,
  totalsOf,
} from './list-table.js'

/** Where the text goes (stdout in the CLI). */
export type Write = (text: string) => void
/** Bounds one request to the daemon (`--timeout`, args.ts withControlPerRequest). */
export type Ask = <R>(request: Promise<R>) => Promise<R>

const unbounded: Ask = (request) => request

/** Each STATS page of the host in turn, from client id 0 up. */
async function* statsPages(
  control: TmemControlClient,
  pageBytes: number,
  ask: Ask,
): AsyncGenerator<StatsPage> {
  let first = 0
  for (;;) {
    const page = await ask(control.statsPage({ form: 'page', first, maxBytes: pageBytes }))
    yield page
    if (page.page.next < 0) return
    if (page.page.next <= first) throw new Error(`STATS page did not advance past ${first}`)
    first = page.page.next
  }
}

/**
 * The readable table: the host summary, the client table as pages come, then the pool table
 * (its rows kept as text, a string per page, until the client table is done).
 */
export async function writeTablePages(
  control: TmemControlClient,
  pageBytes: number,
  write: Write,
  ask: Ask = unbounded,
): Promise<void> {
  const clientColumns = new Columns()
  const poolColumns = new Columns()
  const poolLines: string[] = []
  let clients = 0
  let summary = true
  for await (const page of statsPages(control, pageBytes, ask)) {
    const remote = hasRemote(page.host)
    const rows = clientRows(page, page.host.clients, remote)
    const pools = poolRows(page.host.clients, remote)
    if (summary) {
      // The first page (first id 0) carries the host-wide sums.
      const totals = page.page.totals ?? totalsOf(page.host)
      const lines = [...hostSummary(page.host, totals), ...shmSummary(page.daemon.shm)]
      write(`${lines.join('\n')}\n\n`)
      summary = false
    }
    if (rows.length === 0) continue
    const header = clients === 0 ? [clientHeader(remote)] : []
    write(`${clientColumns.format([...header, ...rows]).join('\n')}\n`)
    const headers = poolLines.length === 0 ? [poolHeader(remote)] : []
    // One string per page: the pool table of 65,535 clients is a million rows.
    if (pools.length > 0) poolLines.push(poolColumns.format([...headers, ...pools]).join('\n'))
    clients += rows.length
  }
  if (clients === 0) write('no clients\n')
  else write(`\n${poolLines.length === 0 ? 'no pools' : poolLines.join('\n')}\n`)
}

/**
 * `--json`: the engine's stats with every client named, printed as JSON.stringify(…, null, 2)
 * would print the whole document, one page of clients at a time.
 */
export async function writeJsonPages(
  control: TmemControlClient,
  pageBytes: number,
  write: Write,
  ask: Ask = unbounded,
): Promise<void> {
  let clients = 0
  for await (const page of statsPages(control, pageBytes, ask)) {
    if (clients === 0) {
      const head = JSON.stringify({ ...page.host, clients: [] }, null, 2)
      write(head.slice(0, head.lastIndexOf('[') + 1))
    }
    for (const client of page.host.clients) {
      const named: ClientStats & { name: string | null } = {
        ...client,
        name: page.sessions.find((session) => session.id === client.id)?.name ?? null,
      }
      const text = JSON.stringify(named, null, 2).replace(/\n/g, '\n    ')
      write(`${clients === 0 ? '' : ','}\n    ${text}`)
      clients++
    }
  }
  write(clients === 0 ? ']\n}\n' : '\n  ]\n}\n')
}

/** The Xen LIST text (`-l`, `--xen`) of every client, by TMEMC_LIST_PAGE. */
export async function writeXenPages(
  control: TmemControlClient,
  long: boolean,
  pageBytes: number,
  write: Write,
  ask: Ask = unbounded,
): Promise<void> {
  let first = 0
  let head = true
  for (;;) {
    const page = await ask(control.listPage(first, long, head, pageBytes))
    write(page.text)
    if (page.next === CLI_ID_NULL) return
    if (page.next < first || (page.next === first && !head))
      throw new Error(`LIST page did not advance past ${first}`)
    first = page.next
    head = false
  }
}
