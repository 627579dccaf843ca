/**
 * Daemon configuration: parsing of sizes, durations and loopback addresses, and the embedded
 * defaults (where the sockets go, how much memory). Invalid input throws RangeError with a
 * sentence; the CLI turns that into a usage error.
 */
import { totalmem } from 'node:os'
import { join } from 'node:path'
import { PAGE_SIZE } from '../abi/constants.js'

export interface TcpAddress {
  host: string
  port: number
}

const SIZE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
}

/**
 * Parses a byte size: `2G`, `512M`, `64MiB`, `1.5g`, `4096`. Units are binary (K = 1024);
 * `B`, `iB` and `b` suffixes are accepted. The result is rounded down to whole pages.
 */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(text)
  if (match === null) {
    throw new RangeError(
      `Size ${JSON.stringify(text)} is not a number with an optional K, M, G or T`,
    )
  }
  const unit = SIZE_UNITS[(match[2] ?? '').toLowerCase()] ?? 1
  const bytes = Math.floor(Number(match[1]) * unit)
  const pages = Math.floor(bytes / PAGE_SIZE)
  if (pages < 1) throw new RangeError(`Size ${JSON.stringify(text)} is less than one page (4096)`)
  return pages * PAGE_SIZE
}

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  '': 1000,
  m: 60_000,
  h: 3_600_000,
}

/** Parses a duration in milliseconds: `30s`, `500ms`, `2m`, `1h`, `0`; a bare number is seconds. */
export function parseDuration(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i.exec(text)
  if (match === null) {
    throw new RangeError(`Duration ${JSON.stringify(text)} is not a number with ms, s, m or h`)
  }
  const unit = DURATION_UNITS[(match[2] ?? '').toLowerCase()] ?? 1000
  const ms = Math.round(Number(match[1]) * unit)
  if (ms > 0xffffffff) throw new RangeError(`Duration ${JSON.stringify(text)} is too long`)
  return ms
}

/** True for 127.0.0.0/8, ::1 and localhost. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true
  const parts = host.split('.')
  if (parts.length !== 4 || parts[0] !== '127') return false
  return parts.every((part) => /^\d{1,3}$/.test(part) && Number(part) <= 255)
}

/**
 * Parses `HOST:PORT` (`127.0.0.1:7300`, `[::1]:7300`, `localhost:0`). Only loopback hosts are
 * accepted: the daemon serves memory, not a network. Port 0 asks the system for a free port.
 */
export function parseLoopbackAddress(text: string): TcpAddress {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text.trim())
  if (match === null) {
    throw new RangeError(`Address ${JSON.stringify(text)} is not HOST:PORT`)
  }
  const host = match[1] ?? match[2] ?? ''
  const port = Number(match[3])
  if (port > 65535) throw new RangeError(`Port ${port} is above 65535`)
  if (!isLoopbackHost(host)) {
    throw new RangeError(`Host ${host} is not a loopback address (127.0.0.0/8, ::1, localhost)`)
  }
  return { host, port }
}

/** Formats an address as `host:port` (IPv6 in brackets). */
export function formatAddress(address: TcpAddress): string {
  return address.host.includes(':')
    ? `[${address.host}]:${address.port}`
    : `${address.host}:${address.port}`
}

/** `$XDG_RUNTIME_DIR/tmem`, else `/tmp/tmem-<uid>`: where the sockets and token go. */
export function defaultRuntimeDir(env: NodeJS.ProcessEnv = process.env): string {
  const runtime = env['XDG_RUNTIME_DIR']
  if (runtime !== undefined && runtime !== '') return join(runtime, 'tmem')
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0
  return join('/tmp', `tmem-${uid}`)
}

export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(defaultRuntimeDir(env), 'tmem.sock')
}

export function defaultControlSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(defaultRuntimeDir(env), 'control.sock')
}

export function defaultTokenFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(defaultRuntimeDir(env), 'control.token')
}

/** Default budget: a quarter of RAM, at most 1 GiB, in whole pages. */
export const DEFAULT_MEMORY_BYTES_MAX = 1024 ** 3

export function defaultMemoryBytes(totalBytes: number = totalmem()): number {
  const share = Math.min(Math.floor(totalBytes / 4), DEFAULT_MEMORY_BYTES_MAX)
  return Math.max(PAGE_SIZE, Math.floor(share / PAGE_SIZE) * PAGE_SIZE)
}
