/**
 * The daemon's remote tier options and wiring (docs/remote.md): `--remote
 * redis-cluster://HOST:PORT[,...]` puts a `RemoteTier` between the daemon and the engine.
 * The tier's connection starts in the background: a cluster that does not answer within the
 * deadline is logged and reported down, and the daemon serves local memory meanwhile.
 */
import { randomBytes } from 'node:crypto'
import { Option } from 'commander'
import type { Logger } from 'pino'
import type { Host } from '../engine/host.js'
import { parseDuration } from '../server/config.js'
import {
  parsePolicy,
  parseRemoteUrl,
  RemoteStore,
  RemoteTier,
  type SeedNode,
  TURN_BUDGET_MS,
} from '../remote/mod.js'
import { wholeNumberOption } from './args.js'
import { UsageError } from './exit.js'

export interface RemoteCliOptions {
  remote?: string
  remoteDurability?: string
  remotePolicy?: string
  remoteTimeout?: string
  remoteQueue?: string
  remoteHostId?: string
  remoteTurnBudget?: string
}

export interface RemoteConfig {
  seeds: SeedNode[]
  replicas: number
  defaultPolicy: number
  timeoutMs: number
  queueMax: number
  hostId: string
  turnBudgetMs: number
}

export function remoteOptions(): Option[] {
  return [
    new Option(
      '--remote <url>',
      'remote tier on Redis Cluster: redis-cluster://HOST:PORT[,HOST:PORT...] (docs/remote.md)',
    ).env('TMEM_REMOTE'),
    new Option('--remote-durability <level>', 'persistent pages acked by: primary or replica')
      .env('TMEM_REMOTE_DURABILITY')
      .default('primary'),
    new Option('--remote-policy <policy>', "new clients' remote policy: off, ephemeral, all")
      .env('TMEM_REMOTE_POLICY')
      .default('all'),
    new Option('--remote-timeout <duration>', 'deadline of every remote call')
      .env('TMEM_REMOTE_TIMEOUT')
      .default('500ms'),
    new Option('--remote-queue <pages>', 'evicted pages waiting to be sent; more are dropped')
      .env('TMEM_REMOTE_QUEUE')
      .default('4096'),
    new Option(
      '--remote-host-id <id>',
      "this daemon's namespace in the cluster (default: random per start)",
    ).env('TMEM_REMOTE_HOST_ID'),
    new Option(
      '--remote-turn-budget <us>',
      'remote work per event-loop turn before the rest waits for the next (µs; 0: the least)',
    )
      .env('TMEM_REMOTE_TURN_BUDGET')
      .default(String(TURN_BUDGET_MS * 1000)),
  ]
}

/** The tier's configuration, or null without --remote. */
export function resolveRemoteOptions(options: RemoteCliOptions): RemoteConfig | null {
  if (options.remote === undefined || options.remote === '') return null
  let seeds: SeedNode[]
  let timeoutMs: number
  try {
    seeds = parseRemoteUrl(options.remote)
    timeoutMs = parseDuration(options.remoteTimeout ?? '500ms')
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
  const durability = options.remoteDurability ?? 'primary'
  if (durability !== 'primary' && durability !== 'replica')
    throw new UsageError('--remote-durability must be primary or replica')
  const defaultPolicy = parsePolicy(options.remotePolicy ?? 'all')
  if (defaultPolicy < 0) throw new UsageError('--remote-policy must be off, ephemeral or all')
  const queueMax = wholeNumberOption(
    options.remoteQueue ?? '4096',
    '--remote-queue',
    'pages',
    0,
    2 ** 31,
  )
  if (timeoutMs < 1) throw new UsageError('--remote-timeout must be longer than 0')
  const hostId = options.remoteHostId ?? randomBytes(6).toString('hex')
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(hostId))
    throw new UsageError('--remote-host-id: 1 to 64 letters, digits, "_", "." or "-"')
  const replicas = durability === 'replica' ? 1 : 0
  const budgetUs = wholeNumberOption(
    options.remoteTurnBudget ?? String(TURN_BUDGET_MS * 1000),
    '--remote-turn-budget',
    'microseconds',
    0,
    1_000_000,
  )
  const turnBudgetMs = budgetUs / 1000
  return { seeds, replicas, defaultPolicy, timeoutMs, queueMax, hostId, turnBudgetMs }
}

/** Connects (waiting at most a few deadlines) and wraps the host. */
export async function startRemoteTier(
  host: Host,
  config: RemoteConfig,
  log: Logger,
): Promise<RemoteTier> {
  const store = new RemoteStore({
    seeds: config.seeds,
    timeoutMs: config.timeoutMs,
    turnBudgetMs: config.turnBudgetMs,
    log,
  })
  const up = await store.ready(config.timeoutMs * 4)
  log.info(
    { seeds: config.seeds, hostId: config.hostId, up },
    up ? 'remote tier on Redis Cluster' : 'remote tier: cluster unreachable, local memory only',
  )
  return new RemoteTier(host, { ...config, store, log })
}
