/**
 * Preflight (docs/migration.md, "Refusals"): the source knows the client; the target answers,
 * speaks migration, serves the client's ABI and has no client of that name. Every refusal
 * here is a MigrationError with a code of its own, and nothing has changed anywhere.
 */
import {
  MAX_POOLS_PER_DOMAIN,
  TMEM_POOL_VERSION_MASK,
  TMEM_POOL_VERSION_SHIFT,
  TMEMC_SAVE_GET_POOL_FLAGS,
} from '../abi/constants.js'
import type { DaemonStats } from '../protocol/stats.js'
import { MigrationError } from '../errors/mod.js'
import {
  SESSION_LOOKUP,
  STATE_ENGINE,
  STATE_SESSION,
  STATE_TCP,
  emptySession,
} from '../protocol/session-frame.js'
import { type Migration, type MigrationPlan, errorText } from './live-state.js'

const NOTHING_MOVED = '; nothing was moved'

export async function preflight(m: Migration): Promise<MigrationPlan> {
  const wanted = m.options.client
  const lookup = await m.session(
    'source',
    typeof wanted === 'number'
      ? { ...emptySession(SESSION_LOOKUP), clientId: wanted }
      : { ...emptySession(SESSION_LOOKUP), name: wanted },
  )
  if (lookup.rc < 0 || (lookup.flags & (STATE_ENGINE | STATE_SESSION)) === 0) {
    throw refusal('ENOCLIENT', `the source has no client ${JSON.stringify(wanted)}`)
  }
  const hasSession = (lookup.flags & STATE_SESSION) !== 0
  m.sourceId = lookup.rc
  m.name = hasSession ? lookup.name : null
  const abi: 0 | 1 = hasSession ? (lookup.abi === 0 ? 0 : 1) : await engineAbi(m)
  const daemon = await targetDaemon(m)
  if (daemon['migration'] !== 1) {
    throw refusal(
      'ENOTSUPP',
      'the target daemon does not support live migration (no SESSION requests)',
    )
  }
  const abis = Array.isArray(daemon['abis']) ? (daemon['abis'] as unknown[]) : [1]
  if (!abis.includes(abi)) {
    throw refusal(
      'EABI',
      abi === 0
        ? 'the client speaks tmem ABI v0 and the target does not serve v0 (start it with --accept-v0)'
        : 'the client speaks tmem ABI v1 and the target does not serve v1',
    )
  }
  if (m.name !== null) {
    const there = await m.session('target', { ...emptySession(SESSION_LOOKUP), name: m.name })
    if (there.rc >= 0)
      throw refusal('EEXIST', `the target already has a client named ${m.name} (id ${there.rc})`)
  }
  const address =
    m.options.targetClientAddress ??
    pickAddress(daemon['clientAddresses'], (lookup.flags & STATE_TCP) !== 0)
  if (address === null && hasSession) {
    throw refusal('ENOTSUPP', 'the target daemon has no client endpoint the client could move to')
  }
  const graceMs = typeof daemon['graceMs'] === 'number' ? daemon['graceMs'] : 30_000
  return { abi, address: address ?? '', hasSession, targetGraceMs: graceMs }
}

function refusal(
  code: 'ENOCLIENT' | 'ENOTSUPP' | 'EABI' | 'EEXIST',
  problem: string,
): MigrationError {
  return new MigrationError(code, 'preflight', `Cannot migrate: ${problem}${NOTHING_MOVED}`)
}

/** The target's daemon counters; a target that does not answer is EUNREACHABLE. */
async function targetDaemon(m: Migration): Promise<Record<string, unknown>> {
  let stats: DaemonStats
  try {
    stats = await m.targetStats()
  } catch (error) {
    throw new MigrationError(
      'EUNREACHABLE',
      'preflight',
      `Cannot migrate: the target daemon does not answer (${errorText(error)})${NOTHING_MOVED}`,
      { cause: error },
    )
  }
  return stats.daemon
}

/** The ABI of an engine client with no session, from its pools' version bits. */
async function engineAbi(m: Migration): Promise<0 | 1> {
  for (let slot = 0; slot < MAX_POOLS_PER_DOMAIN; slot++) {
    const flags = await m.ctrl('source', TMEMC_SAVE_GET_POOL_FLAGS, m.sourceId, slot)
    if (flags === -1) continue
    return ((flags >>> TMEM_POOL_VERSION_SHIFT) & TMEM_POOL_VERSION_MASK) === 0 ? 0 : 1
  }
  return 1
}

/** The target address for the MOVED notice: the client's own transport when the target has it. */
function pickAddress(addresses: unknown, tcp: boolean): string | null {
  if (!Array.isArray(addresses)) return null
  const list = addresses.filter((entry): entry is string => typeof entry === 'string')
  const preferred = list.find((entry) => entry.startsWith(tcp ? 'tcp:' : 'unix:'))
  return preferred ?? list[0] ?? null
}
