/**
 * NBD servers for the guest test and the NBD benchmark, each on a Unix socket in a fresh
 * temporary directory and each reached through the same URI form
 * (`nbd+unix:///NAME?socket=PATH`): tmem's daemon with one export, `nbdkit memory`, and
 * `qemu-nbd` serving a raw file in /dev/shm. Readiness is an event, never a sleep: the tmem
 * daemon prints its ready line; nbdkit and qemu-nbd write their pid file once they listen, and
 * we watch the directory for it. Every wait has a deadline.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  truncateSync,
  watch,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runTmem } from './cli.js'
import { type DaemonHandle, startDaemon } from './daemon.js'

export type NbdServerKind = 'tmem' | 'nbdkit' | 'qemu-nbd'

export interface NbdServer {
  kind: NbdServerKind
  /** The URI QEMU and fio take. */
  uri: string
  socketPath: string
  exportName: string
  /** The tmem daemon behind a `tmem` server (null for the others). */
  daemon: DaemonHandle | null
  /** The server's process id (for its CPU time in /proc). */
  pid: number
  stop: () => Promise<void>
}

export interface NbdServerOptions {
  exportName: string
  sizeBytes: number
  /** tmem only: compress the export's pages (`tmem set nbd:NAME -p 1`). */
  compress?: boolean
  /** tmem only: declare the export a swap device (`mode=swap`). */
  swap?: boolean
  /** tmem only: the daemon's memory budget (defaults to the export size plus 64 MiB). */
  memoryBytes?: number
}

const READY_DEADLINE_MS = 20_000

function uriFor(exportName: string, socketPath: string): string {
  return `nbd+unix:///${exportName}?socket=${socketPath}`
}

/** Resolves once the pid file `path` holds a pid; rejects if `child` exits first or the deadline passes. */
async function waitForFile(
  path: string,
  child: ChildProcess,
  what: string,
  stderr: () => string,
): Promise<void> {
  let watcher: ReturnType<typeof watch> | null = null
  let timer: NodeJS.Timeout | null = null
  try {
    await new Promise<void>((resolve, reject) => {
      // Ready once the pid file holds the pid: it can exist empty for a moment.
      const check = (): void => {
        if (existsSync(path) && /^\d+\s*$/.test(readFileSync(path, 'utf8'))) resolve()
      }
      watcher = watch(join(path, '..'), check)
      timer = setTimeout(
        () => reject(new Error(`${what} not ready within ${READY_DEADLINE_MS} ms: ${stderr()}`)),
        READY_DEADLINE_MS,
      )
      child.once('exit', (code, signal) =>
        reject(new Error(`${what} exited (${code ?? signal}) before ready: ${stderr()}`)),
      )
      child.once('error', (error) => reject(new Error(`${what} cannot start: ${error.message}`)))
      check()
    })
  } finally {
    ;(watcher as ReturnType<typeof watch> | null)?.close()
    if (timer) clearTimeout(timer)
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
  await exited
  clearTimeout(timer)
}

/** Starts an external server whose readiness is its pid file. */
async function startExternal(
  kind: NbdServerKind,
  options: NbdServerOptions,
  command: (dir: string, socketPath: string, pidFile: string) => [string, string[]],
): Promise<NbdServer> {
  const dir = mkdtempSync(join(tmpdir(), `${kind}-`))
  const socketPath = join(dir, 's.sock')
  const pidFile = join(dir, 'server.pid')
  const [file, args] = command(dir, socketPath, pidFile)
  const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (text: string) => (stderr += text))
  try {
    await waitForFile(pidFile, child, kind, () => stderr)
  } catch (error) {
    await stopChild(child)
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
  return {
    kind,
    uri: uriFor(options.exportName, socketPath),
    socketPath,
    exportName: options.exportName,
    daemon: null,
    pid: Number(readFileSync(pidFile, 'utf8').trim()),
    stop: async () => {
      await stopChild(child)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** `nbdkit memory SIZE` in the foreground, ended with us if we die. */
export function startNbdkitMemory(options: NbdServerOptions): Promise<NbdServer> {
  return startExternal('nbdkit', options, (_dir, socketPath, pidFile) => [
    'nbdkit',
    [
      '--exit-with-parent',
      '--unix',
      socketPath,
      '--pidfile',
      pidFile,
      '--exportname',
      options.exportName,
      'memory',
      String(options.sizeBytes),
    ],
  ])
}

/** `qemu-nbd` serving a sparse raw file in /dev/shm (tmpfs: memory, like the others). */
export async function startQemuNbd(options: NbdServerOptions): Promise<NbdServer> {
  const shm = existsSync('/dev/shm') ? '/dev/shm' : tmpdir()
  const imageDir = mkdtempSync(join(shm, 'qemu-nbd-'))
  const image = join(imageDir, 'disk.raw')
  closeSync(openSync(image, 'w'))
  truncateSync(image, options.sizeBytes)
  const server = await startExternal('qemu-nbd', options, (_dir, socketPath, pidFile) => [
    'qemu-nbd',
    [
      '--socket',
      socketPath,
      '--pid-file',
      pidFile,
      '--export-name',
      options.exportName,
      '--format',
      'raw',
      '--persistent',
      '--shared',
      '16',
      '--cache',
      'writeback',
      '--aio',
      'threads',
      image,
    ],
  ]).catch((error: unknown) => {
    rmSync(imageDir, { recursive: true, force: true })
    throw error
  })
  const stop = server.stop
  server.stop = async () => {
    await stop()
    rmSync(imageDir, { recursive: true, force: true })
  }
  return server
}

/** Whether the built daemon has an NBD server at all (a string says why not). */
export async function tmemNbdAvailable(): Promise<true | string> {
  const help = await runTmem(['daemon', '--help'], { killAfterMs: 20_000 })
  return help.stdout.includes('--nbd-socket')
    ? true
    : 'this build of `tmem daemon` has no --nbd-socket (the NBD server is not merged)'
}

/** tmem's daemon with one export `nbd:NAME` on its NBD socket. */
export async function startTmemExport(options: NbdServerOptions): Promise<NbdServer> {
  const memory = options.memoryBytes ?? options.sizeBytes + 64 * 1024 * 1024
  const dir = mkdtempSync(join(tmpdir(), 'tmem-nbd-'))
  const socketPath = join(dir, 'nbd.sock')
  const handle = await startDaemon({
    args: [
      '--memory',
      `${Math.ceil(memory / 1024 / 1024)}M`,
      '--nbd-socket',
      socketPath,
      '--export',
      `name=${options.exportName},size=${options.sizeBytes}${options.swap ? ',mode=swap' : ''}`,
    ],
  })
  if (options.compress) {
    const set = await runTmem(['set', `nbd:${options.exportName}`, '-p', '1'], {
      controlPath: handle.controlPath,
      killAfterMs: 20_000,
    })
    if (set.code !== 0) {
      await handle.kill()
      throw new Error(`tmem set nbd:${options.exportName} -p 1 failed (${set.code}): ${set.stderr}`)
    }
  }
  return {
    kind: 'tmem',
    uri: uriFor(options.exportName, socketPath),
    socketPath,
    exportName: options.exportName,
    daemon: handle,
    pid: handle.process.pid ?? 0,
    stop: async () => {
      await handle.stop()
      rmSync(handle.dir, { recursive: true, force: true })
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export function startNbdServer(kind: NbdServerKind, options: NbdServerOptions): Promise<NbdServer> {
  if (kind === 'tmem') return startTmemExport(options)
  if (kind === 'nbdkit') return startNbdkitMemory(options)
  return startQemuNbd(options)
}
