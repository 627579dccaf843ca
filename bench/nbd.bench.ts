/**
 * `npm run bench:nbd`: tmem's NBD export against `nbdkit memory` and `qemu-nbd` (a raw file in
 * /dev/shm), same fio jobs in the same run (ioengine=nbd over a Unix socket: 4 KiB random read
 * and write at depth 1 and 16, 64 KiB sequential at depth 16), each server's export written
 * once first so reads find data; then a Linux guest (QEMU TCG) swapping 384 MiB through
 * 192 MiB of RAM onto nbdkit memory, tmem, and tmem with zstd. Trials are interleaved across
 * servers; medians of RUNS trials, ratios to nbdkit of the same run. Appends a section to
 * bench/results.md and writes bench/nbd-ratios.svg.
 *
 * Environment: RUNS (3), GUEST_RUNS (RUNS), FIO_SECONDS (5), GUEST=0 skips the guest, FIO=0 skips fio,
 * CASES=rr4k-1,sw64k,... runs only those fio cases, NO_APPEND=1 writes neither results.md nor
 * the chart.
 */
import { execFileSync } from 'node:child_process'
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { fileURLToPath } from 'node:url'
import { FIO_CASES, fillExport, fioVersion, runFio } from './nbd-fio.js'
import {
  GUEST_CONFIGS,
  type GuestTrial,
  disposeGuest,
  guestTrial,
  prepareGuest,
} from './nbd-guest.js'
import {
  FIO_SERVERS,
  type FioRow,
  type NbdReport,
  consoleReport,
  markdownSection,
  ratioSvg,
} from './nbd-report.js'
import { type NbdServer, startNbdServer } from '../test/helpers/nbd-servers.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const RUNS = Number(process.env['RUNS'] ?? 3)
/** Guest trials (each about two minutes per configuration). */
const GUEST_RUNS = Number(process.env['GUEST_RUNS'] ?? RUNS)
const FIO_SECONDS = Number(process.env['FIO_SECONDS'] ?? 5)
const FIO_EXPORT_BYTES = 256 * 1024 * 1024

function log(text: string): void {
  process.stderr.write(`${text}\n`)
}

function load(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
}

function tryRun(file: string, args: string[]): string {
  try {
    return execFileSync(file, args, {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim()
  } catch {
    return 'unknown'
  }
}

async function fioPart(): Promise<FioRow[]> {
  const only = process.env['CASES']?.split(',') ?? null
  const rows: FioRow[] = FIO_CASES.filter((spec) => only === null || only.includes(spec.id)).map(
    (spec) => ({ spec, trials: {} }),
  )
  const servers: NbdServer[] = []
  try {
    for (const kind of FIO_SERVERS) {
      const server = await startNbdServer(kind, {
        exportName: 'bench',
        sizeBytes: FIO_EXPORT_BYTES,
      }).catch((error: unknown) => {
        log(`fio: ${kind} not benchmarked: ${(error as Error).message.split('\n')[0]}`)
        return null
      })
      if (server === null) continue
      servers.push(server)
      await fillExport(server.uri)
      log(`fio: ${kind} started and filled`)
    }
    for (let trial = 1; trial <= RUNS; trial++) {
      for (const row of rows) {
        for (const server of servers) {
          const result = await runFio(server.uri, row.spec, FIO_SECONDS, server.pid)
          ;(row.trials[server.kind] ??= []).push(result)
          log(
            `fio ${trial}/${RUNS} ${row.spec.id} ${server.kind}: ${Math.round(result.iops)} IOPS, p50 ${result.p50us.toFixed(1)} us, server CPU ${result.serverCpuUs.toFixed(1)} us/request`,
          )
        }
      }
    }
  } finally {
    for (const server of servers) await server.stop()
  }
  return rows
}

async function guestPart(): Promise<GuestTrial[]> {
  const setup = prepareGuest()
  if (typeof setup === 'string') {
    log(`guest: skipped, ${setup}`)
    return []
  }
  const trials: GuestTrial[] = []
  try {
    for (let trial = 1; trial <= GUEST_RUNS; trial++) {
      for (const config of GUEST_CONFIGS) {
        const result = await guestTrial(setup, config)
        trials.push(result)
        log(
          `guest ${trial}/${GUEST_RUNS} ${config.id}: ${result.ok ? 'ok' : 'FAILED'} ${(result.wallMs / 1000).toFixed(1)} s` +
            (result.heldPerPage === null
              ? ''
              : `, ${result.pages} pages, ${Math.round(result.heldPerPage)} B held/page`) +
            (result.problem === null ? '' : `\n${result.problem}`),
        )
      }
    }
  } finally {
    disposeGuest(setup)
  }
  return trials
}

async function main(): Promise<void> {
  const loadBefore = load()
  // The commit measured is the one checked out when the run starts (dist/ was built from it).
  const commit = process.env['BENCH_COMMIT'] ?? tryRun('git', ['rev-parse', '--short', 'HEAD'])
  log(
    `bench:nbd: ${RUNS} runs, fio ${FIO_SECONDS} s per job; load average ${loadBefore}; ${cpus().length} CPUs`,
  )
  const fio = process.env['FIO'] === '0' ? [] : await fioPart()
  const guest = process.env['GUEST'] === '0' ? [] : await guestPart()
  const report: NbdReport = {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    commit,
    node: process.version,
    cpu: `${cpus()[0]?.model ?? 'unknown'} x ${cpus().length}`,
    load: `${loadBefore} before, ${load()} after`,
    versions: [
      await fioVersion(),
      tryRun('nbdkit', ['--version']),
      tryRun('qemu-nbd', ['--version']).split('\n')[0] ?? '',
      tryRun('qemu-system-x86_64', ['--version']).split('\n')[0] ?? '',
    ],
    settings:
      `fio: ${FIO_SECONDS} s per job after 1 s ramp, one connection, 256 MiB export written once before; ` +
      `${RUNS} trials each, interleaved; guest: ${GUEST_RUNS} trial(s) each, 192 MiB RAM, 384 MiB memory test, 512 MiB swap export, ` +
      'wall time is QEMU start to exit (boot, mkswap, test, poweroff)',
    fio,
    guest,
  }
  console.log(consoleReport(report))
  if (process.env['NO_APPEND'] !== '1') {
    writeFileSync(`${ROOT}/bench/nbd-ratios.svg`, ratioSvg(report))
    appendFileSync(
      `${ROOT}/bench/results.md`,
      `\n${markdownSection(report, process.env['NOTES'] ?? '')}`,
    )
    log('appended to bench/results.md, wrote bench/nbd-ratios.svg')
  }
}

await main()
