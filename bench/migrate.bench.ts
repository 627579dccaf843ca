/**
 * `npm run bench:migrate`: save and live-migration throughput for 1 GiB of persistent pages
 * between two daemon processes on loopback (Unix sockets), and the frozen window, with and
 * without a concurrent writer. Goals (issue 5): >= 1 GB/s, frozen window <= 100 ms. Appends
 * a section to bench/results.md.
 *
 *   MIB=256 npm run bench:migrate      a smaller client (default 1024 MiB)
 *   PROFILE=1 npm run bench:migrate    also CPU-profile the migrating process (bench/profiles/)
 *                                      and both daemons (bench/profiles/daemons/)
 *
 * Three processes share the machine: the source daemon, the target daemon and this one (the
 * control plane that relays the page batches, and the writer).
 */
import { execSync } from 'node:child_process'
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Session } from 'node:inspector/promises'
import { mkdirSync, writeFileSync } from 'node:fs'
import { connect, connectControl, type TmemClient } from '../src/client/mod.js'
import {
  migrateClient,
  networkChannel,
  restoreClient,
  saveClient,
  saveClientToFile,
  type MigrateResult,
} from '../src/migrate/mod.js'
import { startDaemon, type DaemonHandle } from '../test/helpers/daemon.js'

const PAGE = 4096
const MIB = Number(process.env['MIB'] ?? 1024)
const PAGES = (MIB * 1024 * 1024) / PAGE
const PROFILE = process.env['PROFILE'] === '1'

function fillPage(target: Uint8Array, seed: number): void {
  const view = new DataView(target.buffer, target.byteOffset, PAGE)
  let x = (seed * 2654435761) >>> 0
  for (let i = 0; i < PAGE; i += 4) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    view.setUint32(i, x >>> 0, true)
  }
}

async function fill(client: TmemClient, pool: number, pages: number): Promise<void> {
  const page = new Uint8Array(PAGE)
  let inFlight: Promise<boolean>[] = []
  for (let i = 0; i < pages; i++) {
    fillPage(page, i + 1)
    inFlight.push(client.put(pool, Math.floor(i / 512), i % 512, page))
    if (inFlight.length >= 256) {
      await Promise.all(inFlight)
      inFlight = []
    }
  }
  await Promise.all(inFlight)
}

/** A writer replacing and adding pages in a 64 MiB working set, `lanes` sequential loops. */
function startWriter(
  client: TmemClient,
  pool: number,
  lanes: number,
): { stop: () => Promise<{ ops: number; efrozen: number; maxLatencyMs: number }> } {
  let stop = false
  let ops = 0
  let efrozen = 0
  let maxLatencyMs = 0
  const loops = Array.from({ length: lanes }, async (_, lane) => {
    const page = new Uint8Array(PAGE)
    let step = 0
    while (!stop) {
      step++
      fillPage(page, lane * 1_000_000 + step)
      const started = performance.now()
      try {
        await client.put(pool, 100_000 + lane, (step * 7919) % 4096, page)
      } catch (error) {
        if ((error as { code?: string }).code !== 'EFROZEN') throw error
        efrozen++
      }
      maxLatencyMs = Math.max(maxLatencyMs, performance.now() - started)
      ops++
    }
  })
  return {
    stop: async () => {
      stop = true
      await Promise.all(loops)
      return { ops, efrozen, maxLatencyMs }
    },
  }
}

async function profiled<T>(name: string, run: () => Promise<T>): Promise<T> {
  if (!PROFILE) return run()
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.start')
  try {
    return await run()
  } finally {
    const { profile } = await session.post('Profiler.stop')
    mkdirSync('bench/profiles', { recursive: true })
    writeFileSync(`bench/profiles/${name}.cpuprofile`, JSON.stringify(profile))
    session.disconnect()
  }
}

const gbps = (bytes: number, ms: number): string => `${(bytes / (ms / 1000) / 1e9).toFixed(2)} GB/s`

/** CPU time (user + system) of a process so far, in ms, from /proc (Linux); null elsewhere. */
function cpuMs(pid: number | undefined): number | null {
  if (pid === undefined) return null
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 10
  } catch {
    return null
  }
}

/**
 * CPU spent by the source daemon, the target daemon and this process (the relay) while `run`
 * runs. The machine is shared (other benchmarks may run), so besides the wall-clock rate the
 * table shows the rate per CPU-second of the busiest process: what the pipeline would do
 * with a core per process.
 */
async function withCpu<T>(
  source: DaemonHandle,
  target: DaemonHandle | null,
  run: () => Promise<T>,
): Promise<{ value: T; cpu: string; busiestMs: number }> {
  const sourceBefore = cpuMs(source.process.pid)
  const targetBefore = target === null ? null : cpuMs(target.process.pid)
  const self = process.cpuUsage()
  const value = await run()
  const relay = process.cpuUsage(self)
  const relayMs = (relay.user + relay.system) / 1000
  const sourceAfter = cpuMs(source.process.pid)
  const targetAfter = target === null ? null : cpuMs(target.process.pid)
  const sourceMs = sourceBefore === null || sourceAfter === null ? null : sourceAfter - sourceBefore
  const targetMs = targetBefore === null || targetAfter === null ? null : targetAfter - targetBefore
  const parts = [
    `source ${sourceMs ?? '?'}`,
    ...(target === null ? [] : [`target ${targetMs ?? '?'}`]),
    `relay ${relayMs.toFixed(0)}`,
  ]
  return {
    value,
    cpu: parts.join(', '),
    busiestMs: Math.max(sourceMs ?? 0, targetMs ?? 0, relayMs),
  }
}

function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  } catch {
    return '?'
  }
}

async function main(): Promise<void> {
  const memory = `${MIB + 256}M`
  // PROFILE=1: the daemons write their own CPU profiles when they exit (they cover the fill too).
  const nodeArgs = PROFILE ? ['--cpu-prof', '--cpu-prof-dir=bench/profiles/daemons'] : []
  const [a, b] = await Promise.all([
    startDaemon({ args: ['--memory', memory, '--log-level', 'warn'], nodeArgs }),
    startDaemon({ args: ['--memory', memory, '--log-level', 'warn'], nodeArgs }),
  ])
  const daemons: DaemonHandle[] = [a, b]
  const dir = mkdtempSync(join(tmpdir(), 'tmem-bench-'))
  const lines: string[] = []
  const log = (line: string): void => {
    console.log(line)
    lines.push(line)
  }
  try {
    log(`load average at start: ${loadAverage()}`)
    const client = await connect({ path: a.socketPath }, { name: 'bench' })
    const pool = await client.newPool({ persistent: true })
    let started = performance.now()
    await fill(client, pool, PAGES)
    log(
      `fill: ${PAGES} pages (${MIB} MiB) put through the client library in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    )

    // Save: the stream into a discarding sink (wire + stream writer), then into a file.
    const control = await connectControl({ path: a.controlPath })
    let streamed = 0
    started = performance.now()
    const save = await withCpu(a, null, () =>
      profiled('save', () =>
        saveClient(networkChannel(control), client.clientId, (chunk) => {
          streamed += chunk.length
        }),
      ),
    )
    const toNull = save.value
    const saveMs = performance.now() - started
    log(
      `| save, stream discarded | ${toNull.pages} | ${(streamed / 1e9).toFixed(2)} GB | ${(saveMs / 1000).toFixed(2)} s | ${gbps(streamed, saveMs)} | | ${save.cpu} | ${gbps(streamed, save.busiestMs)} |`,
    )
    const file = join(dir, 'client.tmem')
    started = performance.now()
    const toFile = await saveClientToFile(networkChannel(control), client.clientId, file)
    const fileMs = performance.now() - started
    log(
      `| save to a file (${tmpdir()}) | ${toFile.pages} | ${(toFile.bytes / 1e9).toFixed(2)} GB | ${(fileMs / 1000).toFixed(2)} s | ${gbps(toFile.bytes, fileMs)} | | | |`,
    )
    await control.close()

    // Migrate A -> B, the client idle.
    const idleRun = await withCpu(a, b, () =>
      profiled('migrate-idle', () =>
        migrateClient({
          source: { path: a.controlPath },
          target: { path: b.controlPath },
          client: 'bench',
        }),
      ),
    )
    const idle: MigrateResult = idleRun.value
    log(
      `| migrate A->B (target memory touched for the first time), client idle | ${idle.pages} | ${(idle.bytes / 1e9).toFixed(2)} GB | ${(idle.elapsedMs / 1000).toFixed(2)} s | ${gbps(idle.bytes, idle.elapsedMs)} | ${idle.frozenWindowMs.toFixed(1)} ms (${idle.frozenPages} records), ${idle.rounds} rounds | ${idleRun.cpu} | ${gbps(idle.bytes, idleRun.busiestMs)} |`,
    )
    if (client.address !== `unix:${b.socketPath}`) throw new Error('the client did not follow')

    // Migrate B -> A back, with a writer replacing pages all along.
    const writer = startWriter(client, pool, 4)
    await new Promise((resolve) => setTimeout(resolve, 200))
    const busyRun = await withCpu(b, a, () =>
      profiled('migrate-writer', () =>
        migrateClient({
          source: { path: b.controlPath },
          target: { path: a.controlPath },
          client: 'bench',
        }),
      ),
    )
    const busy = busyRun.value
    await new Promise((resolve) => setTimeout(resolve, 200))
    const written = await writer.stop()
    log(
      `| migrate B->A, 4-lane writer | ${busy.pages} | ${(busy.bytes / 1e9).toFixed(2)} GB | ${(busy.elapsedMs / 1000).toFixed(2)} s | ${gbps(busy.bytes, busy.elapsedMs)} | ${busy.frozenWindowMs.toFixed(1)} ms (${busy.frozenPages} records), ${busy.rounds} rounds; writer ${written.ops} puts, ${written.efrozen} EFROZEN, slowest put ${written.maxLatencyMs.toFixed(1)} ms | ${busyRun.cpu} (relay includes the writer) | ${gbps(busy.bytes, busyRun.busiestMs)} |`,
    )
    if (client.address !== `unix:${a.socketPath}`) throw new Error('the client did not follow back')

    // Migrate A -> B again, the client idle: both daemons' memory is touched by now.
    const warmRun = await withCpu(a, b, () =>
      migrateClient({
        source: { path: a.controlPath },
        target: { path: b.controlPath },
        client: 'bench',
      }),
    )
    const warm = warmRun.value
    log(
      `| migrate A->B again (target memory touched before), client idle | ${warm.pages} | ${(warm.bytes / 1e9).toFixed(2)} GB | ${(warm.elapsedMs / 1000).toFixed(2)} s | ${gbps(warm.bytes, warm.elapsedMs)} | ${warm.frozenWindowMs.toFixed(1)} ms (${warm.frozenPages} records), ${warm.rounds} rounds | ${warmRun.cpu} | ${gbps(warm.bytes, warmRun.busiestMs)} |`,
    )

    // The same, every page relayed through this process (push: false), for comparison.
    const relayRun = await withCpu(b, a, () =>
      migrateClient({
        source: { path: b.controlPath },
        target: { path: a.controlPath },
        client: 'bench',
        push: false,
      }),
    )
    const relay = relayRun.value
    log(
      `| migrate B->A again, relayed through this process (push off), client idle | ${relay.pages} | ${(relay.bytes / 1e9).toFixed(2)} GB | ${(relay.elapsedMs / 1000).toFixed(2)} s | ${gbps(relay.bytes, relay.elapsedMs)} | ${relay.frozenWindowMs.toFixed(1)} ms (${relay.frozenPages} records), ${relay.rounds} rounds | ${relayRun.cpu} | ${gbps(relay.bytes, relayRun.busiestMs)} |`,
    )

    // Restore the saved file into B (whose memory is warm by now) as a new client, then drop it.
    const controlB = await connectControl({ path: b.controlPath })
    const channel = networkChannel(controlB)
    started = performance.now()
    const restoreRun = await withCpu(b, null, () => restoreClient(channel, 4000, file))
    const restoreMs = performance.now() - started
    log(
      `| restore the file into B (batched RESTORE_PAGES) | ${restoreRun.value.pages} | ${(toFile.bytes / 1e9).toFixed(2)} GB | ${(restoreMs / 1000).toFixed(2)} s | ${gbps(toFile.bytes, restoreMs)} | | ${restoreRun.cpu.replace('source', 'daemon')} | ${gbps(toFile.bytes, restoreRun.busiestMs)} |`,
    )
    await channel.destroyClient(4000)
    await controlB.close()
    rmSync(file, { force: true })
    await client.close()
  } finally {
    await Promise.all(daemons.map((daemon) => daemon.stop()))
    rmSync(dir, { recursive: true, force: true })
  }

  let commit = 'unknown'
  try {
    commit = execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim()
  } catch {
    // Not a checkout.
  }
  const cpu = `${cpus()[0]?.model ?? 'unknown CPU'} (${cpus().length} cores)`
  const date = new Date().toISOString().slice(0, 16).replace('T', ' ')
  const section = [
    '',
    `### Save and live migration, ${date} UTC`,
    '',
    `- commit ${commit}, Node ${process.version}, ${cpu}`,
    `- ${MIB} MiB of persistent pages (random bytes) in one pool; two daemon processes on Unix sockets; the source daemon pushes the pre-copy straight to the target (SESSION PUSH, 1 MiB RESTORE_PAGES frames, 4 in flight) unless the row says relayed; this process drives the migration, relays the change rounds and runs the writer`,
    '- goals: save and migrate >= 1 GB/s, frozen window <= 100 ms',
    `- ${lines.find((line) => line.startsWith('load average')) ?? ''} (the machine is shared; "CPU ms" is each process's user+system time during the run, "rate/busiest CPU" the bytes per CPU-second of the busiest process)`,
    '',
    '| what | records | bytes | time | rate | frozen window | CPU ms | rate/busiest CPU |',
    '|---|---|---|---|---|---|---|---|',
    ...lines.filter((line) => line.startsWith('|')),
    '',
  ].join('\n')
  appendFileSync('bench/results.md', section)
  console.log(`appended to bench/results.md`)
}

await main()
