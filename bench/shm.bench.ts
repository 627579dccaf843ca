/**
 * `npm run bench:shm`: one daemon, one client on its Unix socket, the same puts and gets sent
 * over the socket and over a shared-memory region (issue 12), through the client library as a
 * user calls it. Bounded: a fixed page count and trial count; the daemon is stopped at the end.
 *
 * Cases, each for both transports: single `put`/`get` calls with `depth` promises in flight,
 * and `putMany`/`getMany` batches of `batch` pages. Each figure is the median of `trials`
 * trials (transports alternate within a trial so a change of machine load hits both alike).
 * With BENCH_SHM_SMOKE=1 it runs one small trial (used to check that the bench still runs).
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { connect, type TmemClient } from '../src/client/client.js'

const SMOKE = process.env['BENCH_SHM_SMOKE'] === '1'
const PAGES = SMOKE ? 2000 : 40000
const TRIALS = SMOKE ? 1 : 5
const DEPTH = 64
const BATCH = 256
const TMEM = fileURLToPath(new URL('../src/cli/tmem.js', import.meta.url))

async function startDaemon(dir: string): Promise<{ socket: string; stop: () => Promise<void> }> {
  const socket = join(dir, 'c.sock')
  const child = spawn(
    process.execPath,
    [
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
  return {
    socket,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve())
        child.kill('SIGTERM')
      }),
  }
}

const pages: Uint8Array[] = Array.from({ length: 64 }, (_, i) => new Uint8Array(4096).fill(i + 1))

/** Single calls with `DEPTH` in flight; returns ops per second. */
async function singles(client: TmemClient, pool: number, get: boolean): Promise<number> {
  const started = performance.now()
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < PAGES) {
      const i = next++
      if (get) await client.get(pool, i >> 8, i & 255)
      else await client.put(pool, i >> 8, i & 255, pages[i & 63]!)
    }
  }
  await Promise.all(Array.from({ length: DEPTH }, worker))
  return PAGES / ((performance.now() - started) / 1000)
}

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
      ['put, 64 in flight', singles, false],
      ['get, 64 in flight', singles, true],
      ['putMany x 256', batches, false],
      ['getMany x 256', batches, true],
    ] as const
    const results: Record<string, { socket: number[]; shm: number[] }> = {}
    for (let trial = 0; trial < TRIALS; trial++) {
      for (const [name, run, get] of cases) {
        const cell = (results[name] ??= { socket: [], shm: [] })
        const order = trial % 2 === 0 ? (['socket', 'shm'] as const) : (['shm', 'socket'] as const)
        for (const transport of order)
          cell[transport].push(await run(clients[transport], pools[transport], get))
      }
    }
    console.log(
      `tmem shared memory vs socket, ${PAGES} pages x ${TRIALS} trials, Node ${process.version}, ${cpus()[0]?.model ?? '?'} (${cpus().length} cores)`,
    )
    console.log('| case | socket (ops/s) | shm (ops/s) | shm / socket |')
    console.log('|---|---|---|---|')
    for (const [name] of cases) {
      const cell = results[name]!
      const socket = median(cell.socket)
      const shm = median(cell.shm)
      console.log(
        `| ${name} | ${Math.round(socket / 1000)} k | ${Math.round(shm / 1000)} k | ${(shm / socket).toFixed(2)} |`,
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
