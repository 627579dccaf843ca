/**
 * A real Redis Cluster on loopback for the remote tier's tests: six `redis-server` processes
 * (3 masters, 3 replicas) on free ports in a temporary directory, joined by
 * `redis-cli --cluster create --cluster-replicas 1 --cluster-yes`. `stop()` kills them all
 * and removes the directory. Without redis-server (or redis-cli) `startCluster` returns null
 * and the tests skip, saying so.
 *
 * Waiting: the helpers wait for conditions the servers report (a "Ready to accept" line,
 * `cluster_state:ok`, a new master for a killed one's slots), polling CLUSTER INFO between
 * tries; nothing waits a fixed time.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface ClusterNode {
  port: number
  process: ChildProcess
  exited: Promise<void>
}

export interface TestCluster {
  nodes: ClusterNode[]
  /** `redis-cluster://127.0.0.1:P1,...` for --remote. */
  url: string
  /** Runs redis-cli against a node; stdout. */
  cli(port: number, ...args: string[]): Promise<string>
  /** Kills the master serving `key`'s slot and waits until a replica has taken over. */
  failMasterOf(key: string): Promise<number>
  /** Kills every node. */
  stop(): Promise<void>
}

/** Why the cluster tests cannot run here, or null when they can. */
export function clusterUnavailable(): string | null {
  for (const tool of ['redis-server', 'redis-cli']) {
    const found = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' })
    if (found.status !== 0)
      return `${tool} not found (Debian: apt-get install redis-server redis-tools)`
  }
  return null
}

export async function startCluster(): Promise<TestCluster | null> {
  if (clusterUnavailable() !== null) return null
  const dir = mkdtempSync(join(tmpdir(), 'tmem-redis-'))
  let nodes: ClusterNode[]
  try {
    nodes = await startNodes(dir, 6)
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
  const ports = nodes.map((node) => node.port)
  const cli = async (port: number, ...args: string[]): Promise<string> =>
    (await run('redis-cli', ['-p', String(port), ...args], { timeout: 20_000 })).stdout
  const stop = async (): Promise<void> => {
    for (const node of nodes) node.process.kill('SIGKILL')
    await Promise.all(nodes.map((node) => node.exited))
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    await run(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...ports.map((port) => `127.0.0.1:${port}`),
        '--cluster-replicas',
        '1',
        '--cluster-yes',
      ],
      { timeout: 60_000 },
    )
    for (const port of ports)
      await until(async () => (await cli(port, 'cluster', 'info')).includes('cluster_state:ok'))
    // A replica answers WAIT only once its first sync is done: wait for every link to be up.
    for (const port of ports)
      await until(async () => replicaInSync(await cli(port, 'info', 'replication')))
  } catch (error) {
    await stop()
    throw error
  }
  const failMasterOf = async (key: string): Promise<number> => {
    const slot = Number((await cli(ports[0]!, 'cluster', 'keyslot', key)).trim())
    const owner = await slotMaster(cli, ports[0]!, slot)
    const node = nodes.find((n) => n.port === owner)!
    node.process.kill('SIGKILL')
    await node.exited
    const alive = ports.filter((port) => port !== owner)
    await until(async () => {
      const master = await slotMaster(cli, alive[0]!, slot)
      const info = await cli(alive[0]!, 'cluster', 'info')
      return master !== owner && master !== -1 && info.includes('cluster_state:ok')
    })
    return owner
  }
  return {
    nodes,
    url: `redis-cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
    cli,
    failMasterOf,
    stop,
  }
}

/** The port of the master serving `slot`, as node `port` sees it (-1 if none). */
async function slotMaster(
  cli: (port: number, ...args: string[]) => Promise<string>,
  port: number,
  slot: number,
): Promise<number> {
  const lines = (await cli(port, 'cluster', 'nodes')).split('\n')
  for (const line of lines) {
    const fields = line.trim().split(' ')
    if (fields.length < 9 || !fields[2]!.includes('master') || fields[2]!.includes('fail')) continue
    const nodePort = Number(/:(\d+)@/.exec(fields[1]!)?.[1] ?? -1)
    for (const range of fields.slice(8)) {
      const [from, to] = range.split('-').map(Number)
      if (from !== undefined && slot >= from && slot <= (to ?? from)) return nodePort
    }
  }
  return -1
}

/** True for a master, or for a replica whose link to its master is up. */
function replicaInSync(info: string): boolean {
  return !info.includes('role:slave') || info.includes('master_link_status:up')
}

async function startNode(dir: string, port: number): Promise<ClusterNode> {
  const nodeDir = join(dir, String(port))
  mkdirSync(nodeDir)
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      nodeDir,
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      'nodes.conf',
      '--cluster-node-timeout',
      '1000',
      '--appendonly',
      'no',
      '--save',
      '',
      '--protected-mode',
      'no',
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  )
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  await new Promise<void>((resolve, reject) => {
    let out = ''
    child.stdout?.setEncoding('utf8').on('data', (text: string) => {
      out += text
      if (out.includes('Ready to accept connections')) resolve()
    })
    void exited.then(() => reject(new Error(`redis-server on ${port} exited: ${out}`)))
  })
  child.stdout?.resume()
  return { port, process: child, exited }
}

/**
 * Starts `count` servers on free ports. A port found free can be taken before its server
 * binds it (another test's server or client, running at the same time): then every server of
 * that try is stopped and the next try uses other ports.
 */
async function startNodes(dir: string, count: number): Promise<ClusterNode[]> {
  for (let attempt = 1; ; attempt++) {
    const ports = await freePorts(count)
    const started = await Promise.allSettled(ports.map((port) => startNode(dir, port)))
    const nodes = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
    if (nodes.length === count) return nodes
    for (const node of nodes) node.process.kill('SIGKILL')
    await Promise.all(nodes.map((node) => node.exited))
    for (const port of ports) rmSync(join(dir, String(port)), { recursive: true, force: true })
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (attempt === START_ATTEMPTS) throw failed?.reason
  }
}

const START_ATTEMPTS = 4

/**
 * Ports P free for Redis and its cluster bus (P + 10000), both below Linux's default range
 * of ephemeral ports (32768 and up), so that no client socket of a concurrent test takes one.
 */
async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = []
  while (ports.length < count) {
    const port = 10000 + Math.floor(Math.random() * 12000)
    if (ports.includes(port)) continue
    if ((await isFree(port)) && (await isFree(port + 10000))) ports.push(port)
  }
  return ports
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/** Retries `check` until it holds (at most `tries` times, 100 ms apart). */
export async function until(check: () => Promise<boolean>, tries = 300): Promise<void> {
  for (let i = 0; i < tries; i++) {
    try {
      if (await check()) return
    } catch {
      // not yet
    }
    await sleep(100)
  }
  throw new Error('Condition not reached')
}
