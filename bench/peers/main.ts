/**
 * `npm run bench:peers`: tmem side by side with Redis and memcached, on this machine, in one
 * run. See bench/README.md for what it measures and how to read it.
 *
 * Shape: all servers are started at once (each on 127.0.0.1, a free port, persistence off),
 * loaded with 200,000 pages for the memory figure, then driven case by case with the same
 * pages, key space, connection counts and pipeline depths. Trials of a case alternate between
 * the servers (and rotate which goes first), so a change of machine load during the run hits
 * them all alike; the figures are medians of the trials. Bounded: a fixed number of timed
 * trials, a watchdog that stops every server it started and exits, and nothing left running.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { type Corpus, buildCorpus, keyOrder } from './corpus.js'
import { type Conn, type Driver, type PeerClients, driverFor } from './drivers.js'
import { type Op, type TrialResult, Workload, preload, summarize, trial } from './load.js'
import { categories, topFrames } from './profile.js'
import {
  CASES,
  type CaseSpec,
  type MemoryResult,
  type RedisBenchmarkFigure,
  type Row,
  type RunReport,
  SERVERS,
  consoleTable,
  evaluateGoals,
  markdownSection,
  ratioSvg,
} from './report.js'
import {
  HOST,
  INSTALL_HINT,
  type RunningServer,
  type ServerKind,
  rssBytes,
  sleep,
  startServer,
  stopAll,
  which,
} from './servers.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

const { values: args } = parseArgs({
  options: {
    trials: { type: 'string', default: '7' },
    'trial-ms': { type: 'string', default: '700' },
    'warmup-ms': { type: 'string', default: '300' },
    keys: { type: 'string', default: '100000' },
    'memory-pages': { type: 'string', default: '200000' },
    'corpus-pages': { type: 'string', default: '8192' },
    cases: { type: 'string', default: CASES.map((c) => c.id).join(',') },
    only: { type: 'string', default: SERVERS.join(',') },
    'peer-clients': { type: 'string', default: 'raw' },
    profile: { type: 'string' },
    'no-profile': { type: 'boolean', default: false },
    'no-append': { type: 'boolean', default: false },
    'no-memory': { type: 'boolean', default: false },
    'no-redis-benchmark': { type: 'boolean', default: false },
    results: { type: 'string', default: join(ROOT, 'bench', 'results.md') },
    svg: { type: 'string', default: join(ROOT, 'bench', 'peers-ratios.svg') },
    quick: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})

if (args.help) {
  console.log(`Usage: npm run bench:peers -- [options]
  --trials N             timed trials per case and server (default 7; the median is reported)
  --trial-ms MS          length of a trial (default 700)
  --warmup-ms MS         untimed warm-up before each case and op (default 300)
  --keys N               key space (default 100000)
  --memory-pages N       pages loaded for the memory figure (default 200000)
  --cases LIST           1x1,1x64,8x16,1x64b,8x16b (default all; b: batches of 64 or 16 pages
                         per request: MSET/MGET, memcached quiet ms/mg + mn, tmem putMany/getMany)
  --only LIST            tmem,redis,memcached (default all that are installed)
  --peer-clients raw|npm load generators for Redis/memcached (default raw; npm = ioredis + memjs)
  --profile DIR          keep the tmem daemon's CPU profile (node --cpu-prof, always taken) in DIR
  --no-profile           run the daemon without the profiler
  --no-memory            skip the memory figure
  --no-redis-benchmark   skip the redis-benchmark reference
  --no-append            do not append to bench/results.md nor write the chart
  --results PATH, --svg PATH   where the markdown section and the chart go
  --quick                1 short trial, 20,000 memory pages: a smoke test, not for the record`)
  process.exit(0)
}

const quick = args.quick
const trials = quick ? 1 : positive(args.trials, 'trials')
const trialMs = quick ? 400 : positive(args['trial-ms'], 'trial-ms')
const warmupMs = quick ? 100 : positive(args['warmup-ms'], 'warmup-ms')
const keyCount = positive(args.keys, 'keys')
const memoryPages = quick ? 20_000 : positive(args['memory-pages'], 'memory-pages')
const corpusPages = positive(args['corpus-pages'], 'corpus-pages')
const peerClients = args['peer-clients'] as PeerClients
if (peerClients !== 'raw' && peerClients !== 'npm') fail('--peer-clients is raw or npm')
const caseIds = args.cases.split(',').map((s) => s.trim())
const cases = CASES.filter((c) => caseIds.includes(c.id))
if (cases.length !== caseIds.length) fail(`--cases takes ${CASES.map((c) => c.id).join(',')}`)
const wanted = args.only.split(',').map((s) => s.trim()) as ServerKind[]
if (wanted.some((k) => !SERVERS.includes(k))) fail(`--only takes ${SERVERS.join(',')}`)
const keepProfile = args.profile !== undefined
const profileDir = args['no-profile']
  ? undefined
  : (args.profile ?? mkdtempSync(join(tmpdir(), 'tmem-peers-prof-')))
const append = !args['no-append']

const WATCHDOG_MS = 10 * 60 * 1000
const watchdog = setTimeout(() => {
  console.error('bench:peers: watchdog: the run took over 10 minutes; stopping the servers')
  stopAll()
  process.exit(3)
}, WATCHDOG_MS)
process.on('exit', stopAll)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    stopAll()
    process.exit(130)
  })
}

function positive(text: string, name: string): number {
  const value = Number(text)
  if (!Number.isInteger(value) || value <= 0) fail(`--${name} must be a positive integer`)
  return value
}

function fail(message: string): never {
  console.error(`bench:peers: ${message}`)
  process.exit(2)
}

function log(message: string): void {
  process.stderr.write(`${message}\n`)
}

interface Contender {
  server: RunningServer
  driver: Driver
}

async function main(): Promise<void> {
  const binaries: Record<ServerKind, string> = {
    tmem: process.execPath,
    'tmem-shm': process.execPath,
    redis: 'redis-server',
    memcached: 'memcached',
  }
  const missing = wanted.filter(
    (kind) => binaries[kind] !== process.execPath && which(binaries[kind]) === null,
  )
  if (missing.length > 0) {
    log(
      `bench:peers: ${missing.map((k) => binaries[k]).join(' and ')} not found; benchmarking without ` +
        `${missing.join(' and ')}. To compare, install them (Debian/Ubuntu, as root):\n  ${INSTALL_HINT}`,
    )
  }
  const kinds = wanted.filter((kind) => !missing.includes(kind))
  if (!kinds.includes('tmem') && !kinds.includes('tmem-shm'))
    fail('tmem or tmem-shm must be among --only')
  const loadBefore = loadAverage()
  log(`bench:peers: load average ${loadBefore}; ${cpus().length} CPUs`)

  const corpus = buildCorpus(corpusPages)
  log(`bench:peers: ${corpus.describe}`)
  const order = keyOrder(keyCount, 0x5eed)

  const contenders: Contender[] = []
  for (const kind of kinds) {
    const server = await startServer(kind)
    contenders.push({ server, driver: driverFor(kind, server.port, peerClients, server.path) })
    log(`bench:peers: ${kind} pid ${server.pid} on ${HOST}:${server.port} (${server.version})`)
  }

  const memory: MemoryResult[] = []
  if (!args['no-memory']) {
    for (const { server, driver } of contenders) {
      memory.push(await memoryPhase(server, driver, corpus))
      const m = memory[memory.length - 1]!
      log(`bench:peers: memory ${server.kind}: ${Math.round(m.perPage)} B/page beyond 4096`)
    }
  }

  const rows: Row[] = []
  for (const spec of cases) rows.push(...(await runCase(spec, contenders, order, corpus)))

  const redis = contenders.find((c) => c.server.kind === 'redis')
  const useRedisBenchmark =
    redis !== undefined && !args['no-redis-benchmark'] && which('redis-benchmark') !== null
  if (useRedisBenchmark) {
    // redis-benchmark has no batch of the same shape (its MSET sets 10 small keys).
    for (const spec of cases.filter((c) => c.batch === 1).reverse()) {
      const figures = redisBenchmark(redis.server.port, spec)
      for (const row of rows) {
        if (row.spec.id !== spec.id) continue
        const figure = figures[row.op === 'put' ? 'SET' : 'GET']
        if (figure !== undefined) row.redisBenchmark = figure
      }
    }
  } else if (redis !== undefined && !args['no-redis-benchmark']) {
    log(
      'bench:peers: redis-benchmark not found (Debian: apt-get install -y redis-tools); no reference figures',
    )
  }

  for (const { server } of contenders) await server.stop()

  // The profile is taken in a pass of its own, after the measurement: the sampling profiler
  // costs the daemon about 1 us of CPU per operation, which the measured figures must not carry.
  let profilePath: string | null = null
  if (profileDir !== undefined && kinds.includes('tmem')) {
    mkdirSync(profileDir, { recursive: true })
    log('bench:peers: profile pass: a fresh tmem daemon under node --cpu-prof, each case once')
    const server = await startServer('tmem', { cpuProfileDir: profileDir })
    const profiled: Contender = { server, driver: driverFor('tmem', server.port, peerClients) }
    for (const spec of cases) await runCase(spec, [profiled], order, corpus, 1)
    await server.stop()
    profilePath = newestProfile(profileDir)
  }
  clearTimeout(watchdog)

  const report: RunReport = {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    commit: gitCommit(),
    node: process.version,
    cpu: `${cpus()[0]?.model ?? 'unknown'} x ${cpus().length}`,
    loadBefore,
    loadAfter: loadAverage(),
    settings:
      `${trials} trials of ${trialMs} ms per case, op and server (median reported), ${warmupMs} ms warm-up; ` +
      `${keyCount.toLocaleString('en-US')} keys, 4096-byte values; all servers on ${HOST} TCP; the load generator ` +
      `is one Node process on the same 2-core machine; every get is checked byte for byte`,
    corpus: corpus.describe,
    servers: contenders.map(({ server, driver }) => ({
      kind: server.kind,
      version: server.version,
      command: server.command,
      driver: driver.label,
    })),
    missing,
    rows,
    memory,
    goals: evaluateGoals(rows, memory),
    redisBenchmarkNote:
      'its own C client, one thread, `-d 4096 -r 100000 -c <conns> -P <depth>`; its GET keys are ' +
      'random, so some miss',
  }

  const table = consoleTable(report)
  console.log(`\n${table}\n`)
  const bad = rows.flatMap((row) =>
    Object.entries(row.cells)
      .filter(([, s]) => s.badReads > 0)
      .map(([k, s]) => `${k} ${row.spec.id} ${row.op}: ${s.badReads}`),
  )
  if (bad.length > 0) log(`bench:peers: reads that did not return the page: ${bad.join('; ')}`)

  let profileNotes = ''
  if (profilePath !== null) {
    profileNotes = profileSummary(profilePath, report)
    console.log(profileNotes)
  }
  if (profileDir !== undefined && !keepProfile) rmSync(profileDir, { recursive: true, force: true })

  // A partial run (--no-append, usually some cases only) leaves the chart of the last full one.
  if (append && !quick) {
    writeFileSync(args.svg, ratioSvg(report))
    log(`bench:peers: chart written to ${args.svg}`)
  }
  if (append && !quick) {
    if (!existsSync(args.results)) {
      writeFileSync(
        args.results,
        '# Benchmark results\n\nRuns are appended by the benchmarks (`npm run bench:peers`, ...); newest last.\n\n',
      )
    }
    appendFileSync(args.results, `\n${markdownSection(report, profileNotes)}`)
    log(`bench:peers: appended to ${args.results}`)
  }
  if (bad.length > 0) process.exitCode = 1
}

/**
 * Loads `memoryPages` pages into a fresh server over one connection, 64 in flight, reading RSS
 * when empty and after each quarter. The figure of the issue is (RSS loaded - RSS empty) /
 * pages - 4096; the marginal cost is the least-squares slope over the four loaded points, which
 * leaves out one-time growth (a runtime's heap, hash tables touched at random).
 */
async function memoryPhase(
  server: RunningServer,
  driver: Driver,
  corpus: Corpus,
): Promise<MemoryResult> {
  const conn = await driver.open(0)
  await sleep(300)
  const baselineRss = rssBytes(server.pid)
  const points: [number, number][] = []
  for (let quarter = 1; quarter <= 4; quarter++) {
    const to = Math.floor((memoryPages * quarter) / 4)
    await loadRange(conn, corpus, points.length === 0 ? 0 : points[points.length - 1]![0], to)
    await sleep(400)
    points.push([to, rssBytes(server.pid)])
  }
  await conn.close()
  const fullRss = points[3]![1]
  const meanX = points.reduce((sum, [x]) => sum + x, 0) / points.length
  const meanY = points.reduce((sum, [, y]) => sum + y, 0) / points.length
  const slope =
    points.reduce((sum, [x, y]) => sum + (x - meanX) * (y - meanY), 0) /
    points.reduce((sum, [x]) => sum + (x - meanX) ** 2, 0)
  return {
    server: server.kind,
    pages: memoryPages,
    baselineRss,
    halfRss: points[1]![1],
    fullRss,
    perPage: (fullRss - baselineRss) / memoryPages - 4096,
    slopePerPage: slope - 4096,
  }
}

async function loadRange(conn: Conn, corpus: Corpus, from: number, to: number): Promise<void> {
  let next = from
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < to) {
        const key = next++
        await conn.put(key, corpus.page(key))
      }
    }),
  )
}

async function runCase(
  spec: CaseSpec,
  contenders: Contender[],
  order: Uint32Array,
  corpus: Corpus,
  trialCount = trials,
): Promise<Row[]> {
  const sessions: { contender: Contender; conns: Conn[]; workload: Workload }[] = []
  for (const contender of contenders) {
    const conns: Conn[] = []
    for (let i = 0; i < spec.connections; i++) conns.push(await contender.driver.open(i))
    const workload = new Workload(order, spec.connections)
    await preload(conns, workload, corpus, Math.max(16, spec.depth))
    sessions.push({ contender, conns, workload })
  }
  const rows: Row[] = []
  for (const op of ['put', 'get'] as Op[]) {
    log(`bench:peers: ${spec.label}, ${op}`)
    const results = new Map<ServerKind, TrialResult[]>()
    for (const s of sessions) {
      await trial(s.conns, spec, op, s.workload, corpus, warmupMs, s.contender.server.pid)
      results.set(s.contender.server.kind, [])
    }
    // Unpipelined rates swing with where the scheduler puts the two processes (one core or
    // two): twice the trials, half as long, so each server sees the same mix of both.
    const rounds = spec.depth === 1 && spec.batch === 1 ? trialCount * 2 : trialCount
    const roundMs =
      spec.depth === 1 && spec.batch === 1 ? Math.max(100, Math.round(trialMs / 2)) : trialMs
    for (let t = 0; t < rounds; t++) {
      for (let i = 0; i < sessions.length; i++) {
        const s = sessions[(i + t) % sessions.length]!
        const result = await trial(
          s.conns,
          spec,
          op,
          s.workload,
          corpus,
          roundMs,
          s.contender.server.pid,
        )
        results.get(s.contender.server.kind)!.push(result)
      }
    }
    const row: Row = { spec, op, cells: {} }
    for (const [kind, list] of results) {
      row.cells[kind] = summarize(list)
      log(`  ${kind.padEnd(10)} ${row.cells[kind].trials.join(' / ')} ops/s`)
    }
    rows.push(row)
  }
  for (const s of sessions) for (const conn of s.conns) await conn.close()
  return rows
}

/** redis-benchmark's SET and GET figures for a case (its CSV output). */
function redisBenchmark(
  port: number,
  spec: CaseSpec,
): Partial<Record<'SET' | 'GET', RedisBenchmarkFigure>> {
  const requests = quick ? 5000 : spec.depth === 1 ? 40_000 : 300_000
  const result = spawnSync(
    'redis-benchmark',
    [
      '-h',
      HOST,
      '-p',
      String(port),
      '-t',
      'set,get',
      '-d',
      '4096',
      '-r',
      String(keyCount),
      '-n',
      String(requests),
      '-c',
      String(spec.connections),
      '-P',
      String(spec.depth),
      '--csv',
    ],
    { encoding: 'utf8', timeout: 60_000 },
  )
  const figures: Partial<Record<'SET' | 'GET', RedisBenchmarkFigure>> = {}
  const lines = (result.stdout ?? '')
    .trim()
    .split('\n')
    .map((line) => line.split(',').map((f) => f.replace(/"/g, '')))
  const header = lines[0] ?? []
  const col = (name: string): number => header.indexOf(name)
  for (const fields of lines.slice(1)) {
    const test = fields[0]
    if (test !== 'SET' && test !== 'GET') continue
    figures[test] = {
      rps: Number(fields[col('rps')]),
      p50ms: Number(fields[col('p50_latency_ms')]),
      p99ms: Number(fields[col('p99_latency_ms')]),
    }
  }
  log(
    `bench:peers: redis-benchmark ${spec.id}: SET ${Math.round(figures.SET?.rps ?? 0)}/s GET ${Math.round(figures.GET?.rps ?? 0)}/s`,
  )
  return figures
}

function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')
  } catch {
    return 'unknown'
  }
}

function gitCommit(): string {
  // Set when the run is made from an export of a commit (no .git beside it).
  const given = process.env.BENCH_COMMIT
  if (given !== undefined && given !== '') return given
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: ROOT,
      encoding: 'utf8',
    }).trim()
  } catch {
    return 'unknown'
  }
}

/** Where the daemon's CPU went during the run: busy time by category, then the top frames. */
function profileSummary(path: string, report: RunReport): string {
  const { frames, idleShare, seconds } = topFrames(path, 40)
  const busy = frames.filter((frame) => frame.name !== '(idle)')
  const lines = [
    `Profile of the tmem daemon under this run's cases (a separate pass right after the measurement, ` +
      `each case once, so that the measured figures carry no profiler cost; \`node --cpu-prof\`, ${seconds.toFixed(0)} s, idle ` +
      `${(idleShare * 100).toFixed(0)} % of the samples). Busy time by category:`,
    '',
    ...categories(path).map((c) => `- ${(c.share * 100).toFixed(1)} % ${c.name}`),
    '',
    'Top frames by self time (share of busy time):',
    '',
    ...busy
      .slice(0, 15)
      .map(
        (f) =>
          `- ${((f.share / Math.max(1e-9, 1 - idleShare)) * 100).toFixed(1)} % \`${f.name}\`${f.where === '' ? '' : ` ${f.where}`}`,
      ),
  ]
  if (report.goals.some((goal) => goal.met === false)) {
    lines.unshift(
      'Some goals were missed; see the profile below for where the daemon spends its time.',
      '',
    )
  }
  return lines.join('\n')
}

function newestProfile(dir: string): string | null {
  const files = readdirSync(dir)
    .filter((name) => name.endsWith('.cpuprofile'))
    .map((name) => join(dir, name))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)
  return files[0] ?? null
}

main().catch((error: unknown) => {
  console.error(error)
  stopAll()
  process.exit(1)
})
