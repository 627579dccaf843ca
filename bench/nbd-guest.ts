/**
 * The guest half of the NBD benchmark: the same Linux guest as test/frontends/nbd/guest.test.ts
 * (192 MiB, memory test over 384 MiB, swap on a 512 MiB export) booted against a fresh server
 * each trial, timed from QEMU's start to its exit and by the guest's clock around the memory
 * test. For tmem, the daemon's listing afterwards gives the bytes it holds per swapped page.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runTmem } from '../test/helpers/cli.js'
import { buildMemtest, findGuestKernel, type GuestKernel } from '../test/helpers/guest-kernel.js'
import { initramfsFile, parseGuestConsole, runGuest } from '../test/helpers/guest.js'
import { type NbdServerKind, startNbdServer } from '../test/helpers/nbd-servers.js'
import { cpuSeconds } from './nbd-fio.js'

export const GUEST_RAM_MIB = 192
export const MEMTEST_MIB = 384
const EXPORT_BYTES = 512 * 1024 * 1024
const DEADLINE_MS = 600_000

export interface GuestConfig {
  id: 'nbdkit' | 'tmem' | 'tmem-zstd'
  label: string
  server: NbdServerKind
  compress: boolean
}

export const GUEST_CONFIGS: readonly GuestConfig[] = [
  { id: 'nbdkit', label: 'nbdkit memory', server: 'nbdkit', compress: false },
  { id: 'tmem', label: 'tmem', server: 'tmem', compress: false },
  { id: 'tmem-zstd', label: 'tmem, zstd on', server: 'tmem', compress: true },
]

export interface GuestTrial {
  config: GuestConfig['id']
  wallMs: number
  memtestSeconds: number | null
  ok: boolean
  /** What went wrong, when not ok. */
  problem: string | null
  pswpout: number | null
  pswpin: number | null
  /** tmem only: pages in the export's pool, bytes of frames held per page, compressed bytes per compressed page. */
  pages: number | null
  heldPerPage: number | null
  compressedPerPage: number | null
  /** The server's CPU seconds (user + system) over the guest's run. */
  serverCpuSeconds: number
}

export interface GuestSetup {
  kernel: GuestKernel
  initramfs: string
  dir: string
}

export function prepareGuest(): GuestSetup | string {
  const kernel = findGuestKernel()
  if (typeof kernel === 'string') return kernel
  const dir = mkdtempSync(join(tmpdir(), 'nbd-bench-guest-'))
  return { kernel, initramfs: initramfsFile(kernel, buildMemtest(), MEMTEST_MIB, dir), dir }
}

export function disposeGuest(setup: GuestSetup): void {
  rmSync(setup.dir, { recursive: true, force: true })
}

interface ListJson {
  framesUsed: number
  persistentPages: number
  clients: {
    name: string | null
    compressedPages: number
    compressedBytes: number
    pools: { persistent: boolean; pages: number }[]
  }[]
}

async function tmemHeld(
  controlPath: string,
  exportName: string,
): Promise<Pick<GuestTrial, 'pages' | 'heldPerPage' | 'compressedPerPage'>> {
  const listed = await runTmem(['list', `nbd:${exportName}`, '--json'], {
    controlPath,
    killAfterMs: 20_000,
  })
  if (listed.code !== 0) throw new Error(`tmem list failed: ${listed.stderr}`)
  const host = JSON.parse(listed.stdout) as ListJson
  const client = host.clients.find((candidate) => candidate.name === `nbd:${exportName}`)
  const pages = client?.pools.find((pool) => pool.persistent)?.pages ?? 0
  return {
    pages,
    heldPerPage: pages === 0 ? null : (host.framesUsed * 4096) / host.persistentPages,
    compressedPerPage:
      client && client.compressedPages > 0 ? client.compressedBytes / client.compressedPages : null,
  }
}

export async function guestTrial(setup: GuestSetup, config: GuestConfig): Promise<GuestTrial> {
  const server = await startNbdServer(config.server, {
    exportName: 'swap',
    sizeBytes: EXPORT_BYTES,
    compress: config.compress,
    swap: true,
  })
  try {
    const cpuBefore = cpuSeconds(server.pid)
    const run = await runGuest({
      kernel: setup.kernel,
      initramfs: setup.initramfs,
      drive: server.uri,
      memoryMiB: GUEST_RAM_MIB,
      deadlineMs: DEADLINE_MS,
    })
    const serverCpuSeconds = cpuSeconds(server.pid) - cpuBefore
    const report = parseGuestConsole(run.console)
    const ok =
      !run.timedOut && report.done && report.memtest?.errors === 0 && report.dmesgErrors === 0
    const held = server.daemon
      ? await tmemHeld(server.daemon.controlPath, 'swap')
      : { pages: null, heldPerPage: null, compressedPerPage: null }
    return {
      config: config.id,
      wallMs: run.wallMs,
      memtestSeconds: run.memtestSeconds,
      ok,
      problem: ok
        ? null
        : run.console
            .split('\n')
            .filter((line) => /GUEST|MEMTEST|error/i.test(line))
            .slice(-12)
            .join('\n'),
      pswpout: report.pswpout,
      pswpin: report.pswpin,
      serverCpuSeconds,
      ...held,
    }
  } finally {
    await server.stop()
  }
}
