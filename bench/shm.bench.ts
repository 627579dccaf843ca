/**
 * `npm run bench:shm`: one daemon, one client on its Unix socket, the same puts and gets sent
 * over the socket and over a shared-memory region (issue 12), through the client library as a
 * user calls it. Bounded: a fixed page count and trial count; the daemon is stopped at the end.
 *
 * Cases, each for both transports: single `put`/`get` calls with `depth` promises in flight,
 * and `putMany`/`getMany` batches of `batch` pages. Each figure is the median of `trials`
 * trials (transports alternate within a trial so a change of machine load hits both alike),
 * after one warm-up trial that is not recorded (BENCH_SHM_WARMUP=0 leaves it out).
 * With BENCH_SHM_SMOKE=1 it runs one small trial (used to check that the bench still runs).
 *
 * Beside the rates it reports CPU per op, the median over the trials: the daemon's (all its
 * threads, from /proc, so Linux only) and the load generator's (process.cpuUsage).
 * BENCH_SHM_CASES=<substring> runs only the cases whose name contains it, BENCH_SHM_ONLY=shm
 * (or socket) one transport, and BENCH_SHM_PROF=<dir> starts the daemon with
 * `node --cpu-prof --cpu-prof-dir=<dir>` (profile the generator with `node --cpu-prof` itself),
 * and BENCH_SHM_NODE_ARGS adds node flags to the daemon's (`--perf-basic-prof` for `perf`).
 * The daemon's pid is printed (on stderr) so that `perf record -p` can follow it.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DAEMON_NODE_FLAGS } from '../src/cli/node-flags.js'
import { connect, type TmemClient } from '../src/client/client.js'

const SMOKE = process.env['BENCH_SHM_SMOKE'] === '1'
const PAGES = SMOKE ? 2000 : 40000
const TRIALS = SMOKE ? 1 : Number(process.env['BENCH_SHM_TRIALS'] ?? 5)
const WARMUP = !SMOKE && process.env['BENCH_SHM_WARMUP'] !== '0'
const CASES = process.env['BENCH_SHM_CASES'] ?? ''
const ONLY = process.env['BENCH_SHM_ONLY'] ?? ''
const PROF = process.env['BENCH_SHM_PROF'] ?? ''
const NODE_ARGS = (process.env['BENCH_SHM_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '')
const DEPTH = 64
const UNPIPELINED = PAGES / 10
const BATCH = 256
const TMEM = fileURLToPath(new URL('../src/cli/tmem.js', import.meta.url))

interface Daemon {
  socket: string
  /** The daemon's CPU time so far, in microseconds. */
  cpu: () => number
  stop: () => Promise<void>
}

/**
 * A process's CPU time so far in microseconds: the sum of its threads' run time from
 * /proc/<pid>/task/<tid>/schedstat (nanoseconds; the clock ticks of /proc/<pid>/stat were too
 * coarse for a trial of 80 ms), or from /proc/<pid>/stat where schedstat is missing.
 */
function threadsCpu(pid: number): number {
  try {
    let ns = 0
    for (const tid of readdirSync(`/proc/${pid}/task`))
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0])
    return ns / 1000
  } catch {
    // utime and stime are fields 14 and 15, after the command name in parentheses.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100
  }
}

async function startDaemon(dir: string): Promise<Daemon> {
  const socket = join(dir, 'c.sock')
  const child = spawn(
    process.execPath,
    [
      ...(PROF === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${PROF}`]),
      ...DAEMON_NODE_FLAGS,
      ...NODE_ARGS,
      TMEM,
      'daemon',
      '--socket',
      socket,
      '--control-socket',
      join(dir, 'k.sock'),
      '--memory',
      '512M',
      '--log-level',
      'error',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  await new Promise<void>((resolve, reject) => {
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      out += text
      if (out.includes('tmem daemon ready')) resolve()
    })
    child.once('exit', (code) => reject(new Error(`daemon exited (${code})`)))
  })
  const pid = child.pid!
  if (NODE_ARGS.length > 0) console.error(`daemon pid ${pid}`)
  return {
    socket,
    cpu: () => threadsCpu(pid),
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve())
        child.kill('SIGTERM')
      }),
  }
}

const pages: Uint8Array[] = Array.from({ length: 64 }, (_, i) => new Uint8Array(4096).fill(i + 1))

/** Single calls with `depth` in flight; returns ops per second. */
async function inFlight(
  client: TmemClient,
  pool: number,
  get: boolean,
  depth: number,
  count: number,
): Promise<number> {
  const started = performance.now()
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++
      if (get) await client.get(pool, i >> 8, i & 255)
      else await client.put(pool, i >> 8, i & 255, pages[i & 63]!)
    }
  }
  await Promise.all(Array.from({ length: depth }, worker))
  return count / ((performance.now() - started) / 1000)
}

const singles = (client: TmemClient, pool: number, get: boolean): Promise<number> =>
  inFlight(client, pool, get, DEPTH, PAGES)

/** One call at a time (its rate is 1 / latency), over a tenth of the pages. */
const unpipelined = (client: TmemClient, pool: number, get: boolean): Promise<number> =>
  inFlight(client, pool, get, 1, UNPIPELINED)

/** Batches of `BATCH`; returns pages per second. */
async function batches(client: TmemClient, pool: number, get: boolean): Promise<number> {
  const started = performance.now()
  for (let first = 0; first < PAGES; first += BATCH) {
    const keys = Array.from({ length: Math.min(BATCH, PAGES - first) }, (_, j) => {
      const i = first + j
      return { oid: i >> 8, index: i & 255, page: pages[i & 63]! }
    })
    if (get) await client.getMany(pool, keys)
    else await client.putMany(pool, keys)
  }
  return PAGES / ((performance.now() - started) / 1000)
}

type Transport = 'socket' | 'shm'

/** One case on one transport: rates, CPU per op (each a trial's), kicks summed over trials. */
interface Cell {
  rate: number[]
  daemonCpu: number[]
  clientCpu: number[]
  kicks: number[]
}

const freshCell = (): Cell => ({ rate: [], daemonCpu: [], clientCpu: [], kicks: [0, 0, 0] })

/** Runs one trial of `ops` ops and records its rate, CPU per op and kicks in `cell`. */
async function measure(
  cell: Cell,
  daemon: Daemon,
  client: TmemClient,
  ops: number,
  run: () => Promise<number>,
): Promise<void> {
  const daemonBefore = daemon.cpu()
  const clientBefore = process.cpuUsage()
  const countersBefore = client.sharedMemory.counters
  cell.rate.push(await run())
  const used = process.cpuUsage(clientBefore)
  cell.daemonCpu.push((daemon.cpu() - daemonBefore) / ops)
  cell.clientCpu.push((used.user + used.system) / ops)
  const counters = client.sharedMemory.counters
  // Builds before the counters (A/B runs against an old build) have none: zeros.
  if (counters !== undefined && countersBefore !== undefined) {
    cell.kicks[0]! += counters.kicksSent - countersBefore.kicksSent
    cell.kicks[1]! += counters.kicksReceived - countersBefore.kicksReceived
    cell.kicks[2]! += counters.ringFull - countersBefore.ringFull
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? 0
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tmem-shm-bench-'))
  const daemon = await startDaemon(dir)
  try {
    const clients = {
      socket: await connect({ path: daemon.socket }, { name: 'bench-socket', sharedMemory: false }),
      shm: await connect(
        { path: daemon.socket },
        { name: 'bench-shm', sharedMemory: { entries: 256, frames: 256 } },
      ),
    }
    if (!clients.shm.sharedMemory.active)
      throw new Error(`shared memory ${clients.shm.sharedMemory.reason}`)
    const pools = {
      socket: await clients.socket.newPool({ persistent: true }),
      shm: await clients.shm.newPool({ persistent: true }),
    }
    const cases = [
      ['put, 64 in flight', singles, false, PAGES],
      ['get, 64 in flight', singles, true, PAGES],
      ['put, 1 in flight', unpipelined, false, UNPIPELINED],
      ['get, 1 in flight', unpipelined, true, UNPIPELINED],
      ['putMany x 256', batches, false, PAGES],
      ['getMany x 256', batches, true, PAGES],
    ] as const
    const results: Record<string, Record<Transport, Cell>> = {}
    const chosen = cases.filter(([name]) => name.includes(CASES))
    // Trial -1 is a warm-up, not recorded: the first pass through a case compiles the daemon's
    // and the client's hot paths (it cost twice the CPU per op of the later ones).
    for (let trial = WARMUP ? -1 : 0; trial < TRIALS; trial++) {
      for (const [name, run, get, ops] of chosen) {
        const cell = (results[name] ??= { socket: freshCell(), shm: freshCell() })
        const order = trial % 2 === 0 ? (['socket', 'shm'] as const) : (['shm', 'socket'] as const)
        for (const transport of order) {
          if (ONLY !== '' && ONLY !== transport) continue
          const target = trial < 0 ? freshCell() : cell[transport]
          await measure(target, daemon, clients[transport], ops, () =>
            run(clients[transport], pools[transport], get),
          )
        }
      }
    }
    console.log(
      `tmem shared memory vs socket, ${PAGES} pages x ${TRIALS} trials${WARMUP ? ' after a warm-up trial' : ''}, Node ${process.version}, ${cpus()[0]?.model ?? '?'} (${cpus().length} cores)`,
    )
    console.log(
      '| case | socket (ops/s) | shm (ops/s) | shm / socket | daemon CPU us/op socket / shm | client CPU us/op socket / shm | shm kicks to / from daemon, ring full, per 1000 ops |',
    )
    console.log('|---|---|---|---|---|---|---|')
    for (const [name, , , ops] of chosen) {
      const cell = results[name]!
      const socket = median(cell.socket.rate)
      const shm = median(cell.shm.rate)
      const cpu = (values: number[]): string => median(values).toFixed(2)
      const kicks = cell.shm.kicks.map((k) => ((k * 1000) / (ops * TRIALS)).toFixed(2))
      console.log(
        `| ${name} | ${Math.round(socket / 1000)} k | ${Math.round(shm / 1000)} k | ${(shm / socket).toFixed(2)} | ${cpu(cell.socket.daemonCpu)} / ${cpu(cell.shm.daemonCpu)} | ${cpu(cell.socket.clientCpu)} / ${cpu(cell.shm.clientCpu)} | ${kicks.join(' / ')} |`,
      )
    }
    await clients.socket.close()
    await clients.shm.close()
  } finally {
    await daemon.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

void main()
