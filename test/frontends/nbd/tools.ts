/**
 * Running the real NBD clients (qemu-io, qemu-img, nbdinfo, nbdcopy, fio) against a daemon the
 * test started. Each tool is found once; a test that needs a missing one is skipped with the
 * Debian package that brings it.
 */
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'

const PACKAGES: Readonly<Record<string, string>> = {
  'qemu-io': 'qemu-utils',
  'qemu-img': 'qemu-utils',
  nbdinfo: 'libnbd-bin',
  nbdcopy: 'libnbd-bin',
  fio: 'fio',
}

const found = new Map<string, boolean>()

function has(tool: string): boolean {
  let ok = found.get(tool)
  if (ok === undefined) {
    ok = spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0
    found.set(tool, ok)
  }
  return ok
}

/** false when every tool is there, else the skip message naming what to install. */
export function missing(...tools: string[]): string | false {
  const absent = tools.filter((tool) => !has(tool))
  if (absent.length === 0) return false
  const packages = [...new Set(absent.map((tool) => PACKAGES[tool] ?? tool))]
  return `${absent.join(', ')} not installed (apt-get install ${packages.join(' ')})`
}

export interface Run {
  status: number | null
  stdout: string
  stderr: string
}

/** Runs a tool to its end (bounded by `timeoutMs`). */
export function run(tool: string, args: string[], timeoutMs = 60_000): Run {
  const result = spawnSync(tool, args, {
    encoding: 'utf8',
    timeout: timeoutMs,
    maxBuffer: 64 * 1024 * 1024,
  })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

/** Runs a tool and fails with its output unless it exits 0. */
export function ok(tool: string, args: string[], timeoutMs = 60_000): Run {
  const result = run(tool, args, timeoutMs)
  if (result.status !== 0) {
    throw new Error(
      `${tool} ${args.join(' ')} exited ${result.status}\n${result.stdout}\n${result.stderr}`,
    )
  }
  return result
}

export function uri(socketPath: string, name: string): string {
  return `nbd+unix:///${name}?socket=${socketPath}`
}

/** An image of `mib` MiB: random MiBs, with the MiBs listed in `zeroMiBs` left zero. */
export function makeImage(path: string, mib: number, zeroMiBs: number[] = []): Buffer {
  const image = Buffer.alloc(mib * 1024 * 1024)
  for (let i = 0; i < mib; i++) {
    if (!zeroMiBs.includes(i)) randomBytes(1024 * 1024).copy(image, i * 1024 * 1024)
  }
  writeFileSync(path, image)
  return image
}

export interface MapEntry {
  offset: number
  length: number
  type: number
}

/** `nbdinfo --map --json`: the base:allocation extents. */
export function nbdMap(target: string): MapEntry[] {
  return JSON.parse(ok('nbdinfo', ['--map', '--json', target]).stdout) as MapEntry[]
}
