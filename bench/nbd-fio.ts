/**
 * fio against an NBD URI (`ioengine=nbd`, libnbd inside fio: one connection, `iodepth`
 * requests in flight): the cases of the NBD benchmark, one run of a case, and the fill that
 * writes the whole export first so reads find data everywhere.
 */
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'

export interface FioCase {
  id: string
  label: string
  rw: 'randread' | 'randwrite' | 'read' | 'write'
  bs: string
  iodepth: number
}

export const FIO_CASES: readonly FioCase[] = [
  { id: 'rr4k-1', label: '4 KiB random read, depth 1', rw: 'randread', bs: '4k', iodepth: 1 },
  { id: 'rw4k-1', label: '4 KiB random write, depth 1', rw: 'randwrite', bs: '4k', iodepth: 1 },
  { id: 'rr4k-16', label: '4 KiB random read, depth 16', rw: 'randread', bs: '4k', iodepth: 16 },
  { id: 'rw4k-16', label: '4 KiB random write, depth 16', rw: 'randwrite', bs: '4k', iodepth: 16 },
  { id: 'sr64k', label: '64 KiB sequential read, depth 16', rw: 'read', bs: '64k', iodepth: 16 },
  { id: 'sw64k', label: '64 KiB sequential write, depth 16', rw: 'write', bs: '64k', iodepth: 16 },
]

export interface FioResult {
  iops: number
  mibPerSecond: number
  p50us: number
  p99us: number
  /** The server's CPU time (user + system, all threads) per request, ramp included. */
  serverCpuUs: number
  /** fio's own CPU time per request (its usr_cpu + sys_cpu over the timed part). */
  clientCpuUs: number
}

/** A process's user + system CPU seconds from /proc (NaN when it cannot be read). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // Fields 14 and 15 of stat(5) (utime, stime) are 12 and 13 after the command name.
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return NaN
  }
}

interface FioSide {
  io_bytes: number
  iops: number
  bw_bytes: number
  clat_ns: { percentile?: Record<string, number> }
}

function fio(args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'fio',
      args,
      { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`fio ${args.join(' ')} failed: ${error.message}\n${stderr}`))
        else resolve(stdout)
      },
    )
  })
}

/** Writes the whole export once, 1 MiB at a time. */
export async function fillExport(uri: string): Promise<void> {
  await fio(
    [
      '--name=fill',
      '--ioengine=nbd',
      `--uri=${uri}`,
      '--rw=write',
      '--bs=1M',
      '--iodepth=8',
      '--output-format=terse',
    ],
    300_000,
  )
}

/** One timed run of `spec`; `runtimeS` after a one-second ramp; `pid` is the server's. */
export async function runFio(
  uri: string,
  spec: FioCase,
  runtimeS: number,
  pid: number,
): Promise<FioResult> {
  const cpuBefore = cpuSeconds(pid)
  const out = await fio(
    [
      '--name=bench',
      '--ioengine=nbd',
      `--uri=${uri}`,
      `--rw=${spec.rw}`,
      `--bs=${spec.bs}`,
      `--iodepth=${spec.iodepth}`,
      '--time_based',
      `--runtime=${runtimeS}`,
      '--ramp_time=1',
      '--randrepeat=0',
      '--output-format=json',
    ],
    (runtimeS + 60) * 1000,
  )
  const serverCpu = cpuSeconds(pid) - cpuBefore
  const json = JSON.parse(out.slice(out.indexOf('{'))) as {
    jobs: { error: number; read: FioSide; write: FioSide; usr_cpu: number; sys_cpu: number }[]
  }
  const job = json.jobs[0]
  if (!job) throw new Error(`fio printed no job: ${out}`)
  if (job.error !== 0) throw new Error(`fio job error ${job.error}`)
  const side = spec.rw === 'randread' || spec.rw === 'read' ? job.read : job.write
  const percentile = side.clat_ns.percentile ?? {}
  return {
    iops: side.iops,
    mibPerSecond: side.bw_bytes / 1048576,
    p50us: (percentile['50.000000'] ?? NaN) / 1000,
    p99us: (percentile['99.000000'] ?? NaN) / 1000,
    // The ramp second runs at about the timed rate: requests ~ IOPS x (ramp + runtime).
    serverCpuUs: (serverCpu * 1e6) / (side.iops * (runtimeS + 1)),
    clientCpuUs: (((job.usr_cpu + job.sys_cpu) / 100) * 1e6) / side.iops,
  }
}

export async function fioVersion(): Promise<string> {
  return (await fio(['--version'], 10_000)).trim()
}
