/**
 * Runs the built `tmem` command (dist/src/cli/tmem.js) as a child process for the CLI
 * integration tests and collects its exit code, stdout and stderr. The child gets this
 * process's environment without any TMEM_* variable (so a developer's or CI's settings cannot
 * leak in), plus TMEM_CONTROL_SOCKET when a control socket is given, plus `env`.
 */
import { spawn } from 'node:child_process'
import { TMEM_BIN } from './daemon.js'
import { CLI_HANG_GUARD_MS } from './hang.js'

export interface CliResult {
  /** Exit code, or the signal name if the child was killed. */
  code: number | string
  stdout: string
  stderr: string
}

export interface RunOptions {
  /** The daemon's control socket, passed as TMEM_CONTROL_SOCKET. */
  controlPath?: string
  env?: NodeJS.ProcessEnv
  /** Kill the child after this long (a hung CLI fails its test instead of the whole run). */
  killAfterMs?: number
}

export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env))
    if (!key.startsWith('TMEM_')) env[key] = value
  return { ...env, ...extra }
}

export function runTmem(args: string[], options: RunOptions = {}): Promise<CliResult> {
  const extra: NodeJS.ProcessEnv = { ...options.env }
  if (options.controlPath !== undefined) extra['TMEM_CONTROL_SOCKET'] = options.controlPath
  const child = spawn(process.execPath, [TMEM_BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: cleanEnv(extra),
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text))
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text))
  const killer = setTimeout(() => child.kill('SIGKILL'), options.killAfterMs ?? CLI_HANG_GUARD_MS)
  return new Promise((resolve) => {
    child.once('close', (code, signal) => {
      clearTimeout(killer)
      resolve({ code: code ?? signal ?? 'unknown', stdout, stderr })
    })
  })
}
