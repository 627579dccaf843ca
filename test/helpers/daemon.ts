/**
 * Starts a real daemon process for integration tests: `node dist/src/cli/tmem.js daemon` on
 * temporary Unix sockets with 64 MiB, waits for its "ready" line, and parses where it listens
 * from the summary it prints on stdout. Its stderr (JSON logs) is kept for assertions and for
 * failure messages. `stop()` sends SIGTERM and waits; `kill()` is SIGKILL.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DAEMON_NODE_FLAGS } from '../../src/cli/node-flags.js'

/** dist/src/cli/tmem.js, found from this compiled file (dist/test/helpers/daemon.js). */
export const TMEM_BIN = fileURLToPath(new URL('../../src/cli/tmem.js', import.meta.url))

export interface DaemonHandle {
  process: ChildProcess
  dir: string
  socketPath: string
  controlPath: string
  /** Loopback TCP addresses when asked for with --listen / --control-listen / --metrics. */
  tcpPort: number | null
  controlTcpPort: number | null
  metricsPort: number | null
  tokenFile: string | null
  stdout(): string
  stderr(): string
  /** The JSON log lines so far. */
  logs(): Record<string, unknown>[]
  /** Resolves with the exit code (or signal name) when the process ends. */
  exited: Promise<number | string>
  stop(): Promise<number | string>
  kill(): Promise<number | string>
}

export interface StartOptions {
  /** Extra command line arguments, after the socket and memory ones. */
  args?: string[]
  /** Node options before the script (`--cpu-prof`, which NODE_OPTIONS does not take). */
  nodeArgs?: string[]
  env?: NodeJS.ProcessEnv
}

/** Spawns the daemon and resolves once it printed its ready line. */
export async function startDaemon(options: StartOptions = {}): Promise<DaemonHandle> {
  const dir = mkdtempSync(join(tmpdir(), 'tmemd-'))
  const socketPath = join(dir, 'c.sock')
  const controlPath = join(dir, 'k.sock')
  const args = [
    ...DAEMON_NODE_FLAGS,
    ...(options.nodeArgs ?? []),
    TMEM_BIN,
    'daemon',
    '--socket',
    socketPath,
    '--control-socket',
    controlPath,
    '--memory',
    '64M',
    ...(options.args ?? []),
  ]
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  })
  let out = ''
  let err = ''
  child.stdout?.setEncoding('utf8').on('data', (text: string) => (out += text))
  child.stderr?.setEncoding('utf8').on('data', (text: string) => (err += text))
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'))
  })
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (out.includes('tmem daemon ready')) {
        child.stdout?.off('data', check)
        resolve()
      }
    }
    child.stdout?.on('data', check)
    void exited.then((code) =>
      reject(new Error(`Daemon exited (${code}) before ready:\n${out}\n${err}`)),
    )
  })
  const port = (label: RegExp): number | null => {
    const match = label.exec(out)
    return match === null ? null : Number(match[1])
  }
  const handle: DaemonHandle = {
    process: child,
    dir,
    socketPath,
    controlPath,
    tcpPort: port(/clients {2}tcp:[^\s]*:(\d+)/),
    controlTcpPort: port(/control {2}tcp:[^\s]*:(\d+)/),
    metricsPort: port(/metrics {2}http:\/\/[^\s]*:(\d+)\//),
    tokenFile: /\(token in ([^)]+)\)/.exec(out)?.[1] ?? null,
    stdout: () => out,
    stderr: () => err,
    logs: () =>
      err
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    exited,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      const code = await exited
      rmSync(dir, { recursive: true, force: true })
      return code
    },
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      const code = await exited
      rmSync(dir, { recursive: true, force: true })
      return code
    },
  }
  return handle
}

/** Polls `probe` until it returns true (no time limit of its own: the test's timeout bounds it). */
export async function waitFor(
  probe: () => boolean | Promise<boolean>,
  pauseMs = 20,
): Promise<void> {
  while (!(await probe())) await new Promise((resolve) => setTimeout(resolve, pauseMs))
}
