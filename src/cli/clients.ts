/**
 * `[-a | CLIENT]`, as the xl verbs take it: `-a` is every client (cli_id 0xFFFF); CLIENT is a
 * client id (digits: Xen's domain id) or a client name (`web-1`). The daemon keeps the names
 * (its sessions, in STATS); the engine only knows ids, so a name is looked up in STATS and the
 * op is sent with the id. Also: failure messages that say why an id was refused.
 */
import type { Command } from 'commander'
import { CLI_ID_NULL, rcName } from '../abi/constants.js'
import type { TmemControlClient } from '../client/control.js'
import type { ClientStats, DaemonStats, HostStats } from '../protocol/stats.js'
import { OpFailedError, UsageError } from './exit.js'

/** What the command line asked for, before the daemon was asked anything. */
export type ClientArg =
  { kind: 'all' } | { kind: 'id'; id: number } | { kind: 'name'; name: string }

/** A resolved selection: the cli_id to send and how to name it in messages. */
export interface ClientSelection {
  cliId: number
  /** `all clients`, `client 3 (web-1)`, `client 7`. */
  label: string
  /** The session name, when the daemon knows one. */
  name: string | null
}

/** Adds `-a, --all` and the optional CLIENT argument. */
export function addClientSelection(command: Command, allHelp = 'every client'): Command {
  return command
    .option('-a, --all', allHelp)
    .argument('[client]', 'client id (a number) or client name')
}

/**
 * Checks `-a` against CLIENT: exactly one of them (or none, giving `fallback`). A number is an
 * id (0..65534; 65535 is how the ABI says "all", so it must be spelled -a).
 */
export function parseClientArg(
  all: boolean | undefined,
  client: string | undefined,
  fallback?: ClientArg,
): ClientArg {
  if (all === true && client !== undefined) throw new UsageError('Give -a or a client, not both')
  if (all === true) return { kind: 'all' }
  if (client === undefined) {
    if (fallback !== undefined) return fallback
    throw new UsageError('Name a client (an id or a name) or give -a for all clients')
  }
  if (/^\d+$/.test(client)) {
    const id = Number(client)
    if (id >= CLI_ID_NULL)
      throw new UsageError(`Client id ${client} is out of range (0-65534; -a means all)`)
    return { kind: 'id', id }
  }
  if (client === '') throw new UsageError('The client name is empty')
  return { kind: 'name', name: client }
}

/** Resolves a ClientArg against the daemon's sessions. An unknown name fails (exit 1). */
export function resolveClient(arg: ClientArg, stats: DaemonStats, verb: string): ClientSelection {
  if (arg.kind === 'all') return { cliId: CLI_ID_NULL, label: 'all clients', name: null }
  if (arg.kind === 'id') {
    const name = stats.sessions.find((session) => session.id === arg.id)?.name ?? null
    return { cliId: arg.id, label: clientLabel(arg.id, name), name }
  }
  const session = stats.sessions.find((candidate) => candidate.name === arg.name)
  if (session === undefined) {
    const known = stats.sessions.map((candidate) => candidate.name)
    const shown = known.slice(0, KNOWN_NAMES_SHOWN).join(', ')
    throw new OpFailedError(
      `${verb} failed: no client named ${JSON.stringify(arg.name)}` +
        (known.length === 0
          ? ' (the daemon has no named clients)'
          : ` (known: ${shown}${known.length > KNOWN_NAMES_SHOWN ? ', ...' : ''})`),
      'ENOCLIENT',
    )
  }
  return { cliId: session.id, label: clientLabel(session.id, session.name), name: session.name }
}

/** Names listed when a name is not found (from the first page of clients). */
const KNOWN_NAMES_SHOWN = 10
/** The page of clients whose names are offered when a name is not found. */
const KNOWN_NAMES_PAGE_BYTES = 64 * 1024

/**
 * Asks the daemon about the selected client only (a paged STATS request: one client by id or
 * by name, so it works at any number of clients) and resolves the selection. For `-a`, the
 * reply holds the daemon's section and the first client only.
 */
export async function selectClient(
  control: TmemControlClient,
  arg: ClientArg,
  verb: string,
): Promise<{ selection: ClientSelection; stats: DaemonStats }> {
  const stats = await control.statsPage(
    arg.kind === 'id'
      ? { form: 'id', id: arg.id }
      : arg.kind === 'name'
        ? { form: 'name', name: arg.name }
        : { form: 'page', first: 0, maxBytes: 1 },
  )
  if (arg.kind === 'name' && !stats.sessions.some((session) => session.name === arg.name)) {
    // Not found: say so, with some of the names the daemon does know.
    resolveClient(
      arg,
      await control.statsPage({ form: 'page', first: 0, maxBytes: KNOWN_NAMES_PAGE_BYTES }),
      verb,
    )
  }
  return { selection: resolveClient(arg, stats, verb), stats }
}

export function clientLabel(id: number, name: string | null): string {
  return name === null ? `client ${id}` : `client ${id} (${name})`
}

/** The engine's stats from a STATS reply (checked when the reply was decoded). */
export function hostStats(stats: DaemonStats): HostStats {
  return stats.host
}

export function engineClient(stats: DaemonStats, id: number): ClientStats | undefined {
  return hostStats(stats).clients.find((client) => client.id === id)
}

/**
 * The error for a control op that returned `rc < 0`: `<verb> failed: EPERM (-1)`, followed by
 * a hint when the reason is visible in STATS (no such client in the engine).
 */
export function opFailed(
  verb: string,
  rc: number,
  selection: ClientSelection,
  stats: DaemonStats,
): OpFailedError {
  let hint = ''
  if (selection.cliId !== CLI_ID_NULL && engineClient(stats, selection.cliId) === undefined) {
    hint =
      selection.name === null
        ? `: the host has no tmem client ${selection.cliId}`
        : `: ${selection.label} has made no tmem call yet, so the host has no tmem client for it`
  }
  return new OpFailedError(`${verb} failed: ${rcName(rc)} (${rc})${hint}`, rcName(rc), rc)
}

/** A TMEM_CONTROL op for `subop` on `cliId`. */
