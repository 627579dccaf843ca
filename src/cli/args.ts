/**
 * What every control verb of `tmem` shares: the options that say where the daemon's control
 * endpoint is (the same flags and environment variables as `tmem daemon`, so that with
 * defaults `tmem list` finds a default `npm start` daemon), the connection with its timeout and
 * exit code 3, and the number parsers behind `--kb`, `-w`, `-c`.
 *
 * Which endpoint, in this order (the command line beats the environment, a socket beats TCP):
 * `--control-socket`, `--control-listen`, `TMEM_CONTROL_SOCKET`, `TMEM_CONTROL_LISTEN`, then
 * the default socket. `none` (the daemon's "no socket") skips the socket.
 */
import { readFileSync } from 'node:fs'
import { type Command, InvalidArgumentError, Option } from 'commander'
import { connectControl, type ControlTarget, type TmemControlClient } from '../client/control.js'
import { TmemConnectionError } from '../client/errors.js'
import {
  defaultControlSocketPath,
  defaultTokenFile,
  formatAddress,
  parseDuration,
  parseLoopbackAddress,
} from '../server/config.js'
import { UnreachableError, UsageError } from './exit.js'

/** Options added by addControlOptions, as commander hands them to an action. */
export interface ControlCliOptions {
  controlSocket?: string
  controlListen?: string
  tokenFile?: string
  timeout: string
}

/** How long a verb waits for the daemon (connect, hello and its ops) before exit 3. */
export const DEFAULT_TIMEOUT = '10s'

/** The name control connections give in their hello, for the daemon's logs. */
export const CONTROL_CLIENT_NAME = 'tmem-cli'

/** Adds `--control-socket`, `--control-listen`, `--token-file` and `--timeout` to a verb. */
export function addControlOptions(command: Command): Command {
  return command
    .addOption(
      new Option(
        '--control-socket <path>',
        `the daemon's control socket (default: ${defaultControlSocketPath()})`,
      ).env('TMEM_CONTROL_SOCKET'),
    )
    .addOption(
      new Option(
        '--control-listen <host:port>',
        'reach the control endpoint over loopback TCP instead',
      ).env('TMEM_CONTROL_LISTEN'),
    )
    .addOption(
      new Option(
        '--token-file <path>',
        `control token for TCP (default: ${defaultTokenFile()})`,
      ).env('TMEM_TOKEN_FILE'),
    )
    .addOption(
      new Option('--timeout <duration>', 'give up on a daemon that does not answer (exit 3)')
        .env('TMEM_TIMEOUT')
        .default(DEFAULT_TIMEOUT),
    )
}

/** Where the daemon's control endpoint is, from the verb's options (see the module comment). */
export function resolveControlTarget(
  command: Command,
  env: NodeJS.ProcessEnv = process.env,
): ControlTarget {
  const options = command.opts<ControlCliOptions>()
  const socket = options.controlSocket
  const listen = options.controlListen === '' ? undefined : options.controlListen
  const socketFrom = command.getOptionValueSource('controlSocket')
  const listenFrom = command.getOptionValueSource('controlListen')
  if (socketFrom === 'cli' && listenFrom === 'cli' && socket !== 'none' && listen !== undefined) {
    throw new UsageError('Give --control-socket or --control-listen, not both')
  }
  const usable = socket !== undefined && socket !== 'none' && socket !== ''
  const socketFirst = usable && (socketFrom === 'cli' || listenFrom !== 'cli')
  if (socketFirst) return { path: socket }
  if (listen !== undefined) {
    const address = usageOf(() => parseLoopbackAddress(listen))
    if (address.port === 0)
      throw new UsageError(`Control address ${listen} has port 0: give the port the daemon printed`)
    return { ...address, tokenFile: options.tokenFile ?? defaultTokenFile(env) }
  }
  if (socket === 'none' || socket === '') {
    throw new UsageError(
      'No control endpoint: the control socket is "none" and no --control-listen was given',
    )
  }
  return { path: defaultControlSocketPath(env) }
}

/** `unix:/path` or `tcp:host:port`, as the daemon prints its addresses. */
export function describeTarget(target: ControlTarget): string {
  return 'path' in target ? `unix:${target.path}` : `tcp:${formatAddress(target)}`
}

/**
 * Connects to the control endpoint, runs `run`, closes. Connection failures, a missing token
 * file and a daemon that does not answer within `--timeout` become an UnreachableError (exit 3).
 */
export async function withControl<T>(
  command: Command,
  run: (control: TmemControlClient) => Promise<T>,
): Promise<T> {
  const target = resolveControlTarget(command)
  const timeoutMs = usageOf(() => parseDuration(command.opts<ControlCliOptions>().timeout))
  const where = describeTarget(target)
  return within(timeoutMs, where, session(target, where, run, 0))
}

/**
 * Like `withControl`, for a verb whose length grows with the host (listing every client):
 * `--timeout` bounds the hello and each request (`run` gets `ask`, which bounds one), not
 * the whole verb.
 */
export async function withControlPerRequest<T>(
  command: Command,
  run: (control: TmemControlClient, ask: <R>(request: Promise<R>) => Promise<R>) => Promise<T>,
): Promise<T> {
  const target = resolveControlTarget(command)
  const timeoutMs = usageOf(() => parseDuration(command.opts<ControlCliOptions>().timeout))
  const where = describeTarget(target)
  return session(
    target,
    where,
    (control) => run(control, (request) => within(timeoutMs, where, request)),
    timeoutMs,
  )
}

/** `work`, or an UnreachableError (ETIMEDOUT) once `timeoutMs` passed (0: no limit). */
async function within<T>(timeoutMs: number, where: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    if (timeoutMs === 0) return
    timer = setTimeout(() => reject(silent(where, timeoutMs)), timeoutMs)
  })
  try {
    return await Promise.race([work, expired])
  } finally {
    clearTimeout(timer)
  }
}

async function session<T>(
  target: ControlTarget,
  where: string,
  run: (control: TmemControlClient) => Promise<T>,
  helloTimeoutMs: number,
): Promise<T> {
  const resolved =
    'tokenFile' in target && target.tokenFile !== undefined
      ? { host: target.host, port: target.port, token: readToken(target.tokenFile) }
      : target
  let control: TmemControlClient
  try {
    control = await connectControl(resolved, {
      name: CONTROL_CLIENT_NAME,
      timeoutMs: helloTimeoutMs,
    })
  } catch (error) {
    if (error instanceof TmemConnectionError && error.code === 'ETIMEDOUT' && helloTimeoutMs > 0)
      throw silent(where, helloTimeoutMs)
    if (error instanceof TmemConnectionError) throw unreachable(error, where)
    throw error
  }
  let result: T
  try {
    result = await run(control)
  } catch (error) {
    // Dropped, not closed: a goodbye could wait for ever on a daemon that stopped answering.
    control.destroy()
    throw error
  }
  await control.close().catch(() => undefined)
  return result
}

/** A daemon that did not answer in time: unreachable (exit 3). */
function silent(where: string, timeoutMs: number): UnreachableError {
  return new UnreachableError(
    `The daemon at ${where} did not answer within ${timeoutMs} ms`,
    'ETIMEDOUT',
  )
}

function unreachable(error: TmemConnectionError, where: string): UnreachableError {
  const detail = error.message.replace(/^Cannot reach the tmem daemon: /, '')
  const code = detail.includes(error.code) ? '' : ` (${error.code})`
  const hint =
    error.code === 'ENOENT' || error.code === 'ECONNREFUSED' ? ': is it running (tmem daemon)?' : ''
  return new UnreachableError(
    `Cannot reach the tmem daemon at ${where}: ${detail}${code}${hint}`,
    error.code,
  )
}

function readToken(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim()
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'EIO'
    throw new UnreachableError(
      `Cannot read the control token file ${path} (${code}): is the daemon running with --control-listen?`,
      code,
    )
  }
}

/** Runs a parser, turning its RangeError into a usage error (exit 2). */
export function usageOf<T>(parse: () => T): T {
  try {
    return parse()
  } catch (error) {
    if (error instanceof RangeError) throw new UsageError(error.message)
    throw error
  }
}

/** Commander argument parser for a u32 (`--kb`, `-w`, `-c`): decimal or 0x hex. */
export function parseU32(text: string): number {
  const value = /^(?:\d+|0x[0-9a-f]+)$/i.test(text.trim()) ? Number(text.trim()) : Number.NaN
  if (!Number.isSafeInteger(value) || value > 0xffffffff) {
    throw new InvalidArgumentError('Expected an integer from 0 to 4294967295')
  }
  return value
}

/**
 * A daemon option's whole number from `min` to `max`, written in digits (`--busy-poll`,
 * `--remote-turn-budget`, `--remote-queue`); anything else is a usage error that names the
 * option and its unit.
 */
export function wholeNumberOption(
  text: string,
  name: string,
  unit: string,
  min: number,
  max: number,
): number {
  const digits = text.trim()
  if (!/^\d{1,15}$/.test(digits))
    throw new UsageError(`${name} must be a whole number of ${unit}, not "${text}"`)
  const value = Number(digits)
  if (value < min) throw new UsageError(`${name} is at least ${min} ${unit}`)
  if (value > max) throw new UsageError(`${name} is at most ${max} ${unit}`)
  return value
}

/** Commander argument parser for a switch: 0/1, on/off, true/false, yes/no. */
export function parseOnOff(text: string): boolean {
  const value = text.trim().toLowerCase()
  if (value === '1' || value === 'on' || value === 'true' || value === 'yes') return true
  if (value === '0' || value === 'off' || value === 'false' || value === 'no') return false
  throw new InvalidArgumentError('Expected 0 or 1 (also off/on)')
}
