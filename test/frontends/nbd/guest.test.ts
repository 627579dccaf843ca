/**
 * A real Linux guest swaps into tmem: QEMU (TCG) boots Debian's kernel with a busybox
 * initramfs, puts its swap on a tmem NBD export with compression on, and runs a memory test
 * over twice its RAM. The oracles are the guest's own: the memory test's error count, the
 * kernel's log, /proc/swaps and /proc/vmstat; the daemon's listing must agree with them (no
 * fewer pages than the guest could not keep in RAM, no more than it wrote out) and show the
 * pages held compressed.
 *
 * Skips, saying why, only where qemu-system-x86_64, a static busybox or Debian's kernel package
 * cannot be had, or where this build has no NBD server.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runTmem } from '../../helpers/cli.js'
import { buildMemtest, findGuestKernel } from '../../helpers/guest-kernel.js'
import {
  initramfsFile,
  parseGuestConsole,
  qemuAvailable,
  runGuest,
  staticBusybox,
  type GuestRun,
} from '../../helpers/guest.js'
import { type NbdServer, startTmemExport, tmemNbdAvailable } from '../../helpers/nbd-servers.js'

const MIB = 1024 * 1024
const PAGE = 4096
const GUEST_RAM_MIB = 192
const MEMTEST_MIB = 2 * GUEST_RAM_MIB
const EXPORT_BYTES = 512 * MIB
/** One deadline on the whole boot and run (about a minute alone on an idle machine). */
const GUEST_DEADLINE_MS = 420_000

async function skipReason(): Promise<string | null> {
  const qemu = await qemuAvailable()
  if (qemu !== true) return qemu
  const busybox = staticBusybox()
  if (busybox !== true) return busybox
  const nbd = await tmemNbdAvailable()
  if (nbd !== true) return nbd
  const kernel = findGuestKernel()
  return typeof kernel === 'string' ? kernel : null
}

const skip = await skipReason()
if (skip !== null) console.log(`# guest swap test skipped: ${skip}`)

interface PoolJson {
  persistent: boolean
  pages: number
}
interface ClientJson {
  name: string | null
  compress: boolean
  compressedPages: number
  compressedBytes: number
  pools: PoolJson[]
}
interface HostJson {
  framesUsed: number
  persistentPages: number
  clients: ClientJson[]
}

void describe(
  'a Linux guest swapping into a tmem NBD export',
  { skip: skip ?? false, timeout: GUEST_DEADLINE_MS + 60_000 },
  () => {
    let server: NbdServer
    let dir: string
    let run: GuestRun

    before(async () => {
      const kernel = findGuestKernel()
      if (typeof kernel === 'string') throw new Error(kernel)
      dir = mkdtempSync(join(tmpdir(), 'tmem-guest-'))
      const initramfs = initramfsFile(kernel, buildMemtest(), MEMTEST_MIB, dir)
      server = await startTmemExport({
        exportName: 'swap',
        sizeBytes: EXPORT_BYTES,
        compress: true,
        swap: true,
      })
      run = await runGuest({
        kernel,
        initramfs,
        drive: server.uri,
        memoryMiB: GUEST_RAM_MIB,
        deadlineMs: GUEST_DEADLINE_MS,
      })
    })

    after(async () => {
      await server?.stop()
      if (dir) rmSync(dir, { recursive: true, force: true })
    })

    void test('the guest booted, swapped on the whole export and saw no error', () => {
      const report = parseGuestConsole(run.console)
      const context = `\n--- guest console ---\n${run.console}`
      assert.equal(
        run.timedOut,
        false,
        `the guest did not finish within ${GUEST_DEADLINE_MS} ms${context}`,
      )
      assert.ok(report.done, `the guest never reached the end of its script${context}`)
      assert.equal(
        report.swapKiB,
        EXPORT_BYTES / 1024 - PAGE / 1024,
        `swap size is the export less the header page${context}`,
      )
      assert.deepEqual(report.memtest, { pass: true, mib: MEMTEST_MIB, errors: 0 }, context)
      assert.equal(report.dmesgErrors, 0, context)
      assert.ok(report.memTotalKiB !== null && report.memTotalKiB < GUEST_RAM_MIB * 1024, context)
    })

    void test('tmem list shows the swapped pages in the export pool, compressed', async () => {
      const report = parseGuestConsole(run.console)
      assert.ok(
        report.memTotalKiB !== null && report.pswpout !== null && report.filledUsedKiB !== null,
        run.console,
      )
      const listed = await runTmem(['list', 'nbd:swap', '--json'], {
        controlPath: server.daemon?.controlPath ?? '',
        killAfterMs: 20_000,
      })
      assert.equal(listed.code, 0, listed.stderr)
      const host = JSON.parse(listed.stdout) as HostJson
      const client = host.clients.find((candidate) => candidate.name === 'nbd:swap')
      assert.ok(client, listed.stdout)
      const pool = client.pools.find((candidate) => candidate.persistent)
      assert.ok(pool, 'the export has a persistent pool')
      // The memory test cannot fit in the guest's RAM: at least the excess went out to swap.
      const mustSwap = (MEMTEST_MIB * MIB - report.memTotalKiB * 1024) / PAGE
      assert.ok(
        pool.pages >= mustSwap,
        `pool holds ${pool.pages} pages, the guest must have swapped ${mustSwap}`,
      )
      // Every slot in use at the peak was written by the end, bar writes still being queued then.
      assert.ok(
        pool.pages >= report.filledUsedKiB / 4 - 256,
        `pool holds ${pool.pages} pages, swap in use at the peak was ${report.filledUsedKiB} KiB`,
      )
      // No page the guest never wrote: swap writes plus mkswap's header page.
      assert.ok(
        pool.pages <= report.pswpout + 1,
        `pool holds ${pool.pages} pages, the guest wrote ${report.pswpout}`,
      )
      assert.ok(client.compress, 'compression is on for the export')
      assert.ok(
        client.compressedPages > pool.pages / 2,
        `${client.compressedPages} of ${pool.pages} pages compressed`,
      )
      // The test pattern zstd-compresses to under 500 bytes a page: well under a page held each.
      const heldPerPage = (host.framesUsed * PAGE) / host.persistentPages
      assert.ok(heldPerPage < PAGE / 2, `${heldPerPage.toFixed(0)} bytes held per swapped page`)
    })
  },
)
