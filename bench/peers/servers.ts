/**
 * The three servers, each started on 127.0.0.1 on a port the kernel says is free, with
 * persistence off, and stopped by its own PID. Nothing here touches any other address or port,
 * and nothing is installed: a missing binary is reported with the command that installs it.
 *
 * Every child is remembered; `stopAll` (called on exit, SIGINT, SIGTERM and by the watchdog)
 * signals those PIDs and no others.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer, connect as netConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DAEMON_NODE_FLAGS } from '../../src/cli/node-flags.js'

/** `tmem-shm`: the same daemon, its client on the Unix socket with a shared-memory region. */
export type ServerKind = 'tmem' | 'tmem-shm' | 'redis' | 'memcached'

export const HOST = '127.0.0.1'
export const INSTALL_HINT = 'apt-get install -y redis-server redis-tools memcached'

/** dist/src/cli/tmem.js, from this compiled file (dist/bench/peers/servers.js). */
const TMEM_BIN = fileURLToPath(new URL('../../src/cli/tmem.js', import.meta.url))

export interface RunningServer {
  kind: ServerKind
  pid: number
  port: number
  /** tmem-shm: the daemon's Unix socket, which its clients use. */
  path?: string
  /** The command line, for the report. */
  command: string
  /** The server's version line. */
  version: string
  stop(): Promise<void>
}

export interface ServerOptions {
  /** tmem: write a V8 CPU profile of the daemon into this directory (node --cpu-prof). */
  cpuProfileDir?: string
}

const children = new Set<ChildProcess>()

/** Sends SIGKILL to every server this process started and has not yet stopped. */
export function stopAll(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL')
      } catch {
        // Already gone.
      }
    }
  }
  children.clear()
}

/** The path of a binary on PATH, or null. */
export function which(binary: string): string | null {
  const result = spawnSync('sh', ['-c', `command -v ${binary}`], { encoding: 'utf8' })
  const path = result.stdout.trim()
  return result.status === 0 && path !== '' ? path : null
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, HOST, () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

export async function startServer(
  kind: ServerKind,
  options: ServerOptions = {},
): Promise<RunningServer> {
  const port = await freePort()
  const scratch = mkdtempSync(join(tmpdir(), `tmem-peers-${kind}-`))
  let binary: string
  let args: string[]
  let version: string
  switch (kind) {
    case 'tmem':
    case 'tmem-shm':
      binary = process.execPath
      args = [
        ...(options.cpuProfileDir === undefined
          ? []
          : ['--cpu-prof', '--cpu-prof-dir', options.cpuProfileDir]),
        ...DAEMON_NODE_FLAGS,
        // For A/B runs of node flags (a later flag wins: `--max-semi-space-size=16`).
        ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter((word) => word !== ''),
        TMEM_BIN,
        'daemon',
        '--socket',
        kind === 'tmem' ? 'none' : join(scratch, 'tmem.sock'),
        '--control-socket',
        'none',
        // tmem-shm listens on TCP too, only so that readiness is checked as for the others.
        '--listen',
        `${HOST}:${port}`,
        // Enough for the 200,000-page memory case, no density options: plain storage.
        '--memory',
        '1G',
        '--grace',
        '0',
        '--log-level',
        'warn',
        // For A/B runs of daemon options (e.g. `--busy-poll 0`); empty by default.
        ...(process.env.BENCH_TMEM_ARGS ?? '').split(' ').filter((word) => word !== ''),
      ]
      version = `tmem ${readVersion()} on Node ${process.version}`
      break
    case 'redis':
      binary = 'redis-server'
      args = [
        '--port',
        String(port),
        '--bind',
        HOST,
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        scratch,
        '--daemonize',
        'no',
        '--loglevel',
        'warning',
      ]
      version = firstLine(spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout)
      break
    case 'memcached':
      binary = 'memcached'
      args = [
        '-l',
        HOST,
        '-p',
        String(port),
        '-U',
        '0', // no UDP
        '-m',
        '2048', // MB: 200,000 pages with their item headers fit with room to spare
        '-I',
        '1m',
        '-t',
        '4', // memcached's default thread count, stated
        ...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []),
      ]
      version = firstLine(spawnSync('memcached', ['-V'], { encoding: 'utf8' }).stdout)
      break
  }
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: scratch })
  children.add(child)
  let output = ''
  child.stdout?.setEncoding('utf8').on('data', (text: string) => (output += text))
  child.stderr?.setEncoding('utf8').on('data', (text: string) => (output += text))
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const pid = child.pid
  if (pid === undefined) throw new Error(`Could not start ${binary}`)
  const deadline = Date.now() + 10_000
  while (!(await canConnect(port))) {
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      stopChild(child)
      throw new Error(`${kind} did not start on ${HOST}:${port}:\n${output}`)
    }
    await sleep(25)
  }
  return {
    kind,
    pid,
    port,
    ...(kind === 'tmem-shm' ? { path: join(scratch, 'tmem.sock') } : {}),
    command: [
      binary === process.execPath ? 'node' : binary,
      ...args.map((a) => (a === '' ? "''" : a)),
    ]
      .join(' ')
      .replace(TMEM_BIN, 'dist/src/cli/tmem.js'),
    version,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      const killer = setTimeout(() => stopChild(child), 5000)
      await exited
      clearTimeout(killer)
      children.delete(child)
      rmSync(scratch, { recursive: true, force: true })
    },
  }
}

function stopChild(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: HOST, port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** Resident memory of a process in bytes (VmRSS of /proc/<pid>/status). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const match = /VmRSS:\s+(\d+) kB/.exec(status)
  if (match === null) throw new Error(`No VmRSS for ${pid}`)
  return Number(match[1]) * 1024
}

const TICKS_PER_SECOND =
  Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100

/** CPU time of a process (all threads, user + system) in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND
}

function readVersion(): string {
  try {
    const pkg = JSON.parse(
      readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8'),
    ) as { version?: string }
    return pkg.version ?? '?'
  } catch {
    return '?'
  }
}

function firstLine(text: string | null): string {
  return (text ?? '').split('\n')[0]?.trim() ?? ''
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
