/**
 * What a run produces: the console table, the markdown section appended to bench/results.md,
 * and the SVG chart of the ratios (drawn here, no chart library).
 */
import type { Summary } from './load.js'
import type { ServerKind } from './servers.js'

export const PEERS: readonly ServerKind[] = ['redis', 'memcached']
export const SERVERS: readonly ServerKind[] = ['tmem', 'tmem-shm', 'redis', 'memcached']
/** The two ways to reach tmem; ratios to the peers are shown for both. */
export const OURS: readonly ServerKind[] = ['tmem', 'tmem-shm']

export interface CaseSpec {
  id: string
  label: string
  connections: number
  /** Requests in flight per connection. */
  depth: number
  /** Pages per request: 1, or a batch (MSET/MGET, memcached quiet ms/mg, putMany/getMany). */
  batch: number
}

/**
 * The batch cases (`b`) keep as many pages in flight as their single-op twins, in one request
 * per connection: ops/s there are pages per second, and CPU per op is per page.
 */
export const CASES: readonly CaseSpec[] = [
  { id: '1x1', label: '1 conn, unpipelined', connections: 1, depth: 1, batch: 1 },
  { id: '1x64', label: '1 conn x 64 in flight', connections: 1, depth: 64, batch: 1 },
  { id: '8x16', label: '8 conns x 16 in flight', connections: 8, depth: 16, batch: 1 },
  { id: '1x64b', label: '1 conn x batches of 64', connections: 1, depth: 1, batch: 64 },
  { id: '8x16b', label: '8 conns x batches of 16', connections: 8, depth: 1, batch: 16 },
]

/** The single-op case a batch case stands beside (same pages in flight), for its goals. */
function twinOf(id: string): string {
  return id.endsWith('b') ? id.slice(0, -1) : id
}

export interface RedisBenchmarkFigure {
  rps: number
  p50ms: number
  p99ms: number
}

export interface Row {
  spec: CaseSpec
  op: 'put' | 'get'
  cells: Partial<Record<ServerKind, Summary>>
  redisBenchmark?: RedisBenchmarkFigure
}

export interface MemoryResult {
  server: ServerKind
  pages: number
  baselineRss: number
  halfRss: number
  fullRss: number
  /** (RSS after all pages - RSS before) / pages - 4096: the issue's measure. */
  perPage: number
  /** Least-squares slope of RSS over the four quarter points, minus 4096: a page's marginal cost. */
  slopePerPage: number
}

export interface Goal {
  text: string
  measured: string
  met: boolean | null
}

export interface RunReport {
  date: string
  commit: string
  node: string
  cpu: string
  loadBefore: string
  loadAfter: string
  settings: string
  corpus: string
  servers: { kind: ServerKind; version: string; command: string; driver: string }[]
  missing: string[]
  rows: Row[]
  memory: MemoryResult[]
  goals: Goal[]
  redisBenchmarkNote: string
}

export function ratio(row: Row, peer: ServerKind, us: ServerKind = 'tmem'): number | null {
  const ours = row.cells[us]?.opsPerSecond
  const theirs = row.cells[peer]?.opsPerSecond
  return ours === undefined || theirs === undefined || theirs === 0 ? null : ours / theirs
}

export function evaluateGoals(rows: Row[], memory: MemoryResult[]): Goal[] {
  const goals: Goal[] = []
  const check = (
    text: string,
    value: number | null,
    ok: (v: number) => boolean,
    shown: string,
  ): void => {
    goals.push({
      text,
      measured: value === null ? 'n/a' : shown,
      met: value === null ? null : ok(value),
    })
  }
  for (const row of rows) {
    const id = twinOf(row.spec.id)
    const name = `${row.spec.id} ${row.op}`
    if (row.cells.tmem === undefined) {
      // tmem over a socket not measured (--only): its goals are not shown.
    } else if (id === '1x64') {
      const r = ratio(row, 'redis')
      check(`${name}: >= 3x Redis`, r, (v) => v >= 3, fmtRatio(r))
    } else if (id === '8x16') {
      for (const peer of PEERS) {
        const r = ratio(row, peer)
        check(`${name}: >= 1.3x ${peer}`, r, (v) => v >= 1.3, fmtRatio(r))
      }
    } else if (id === '1x1') {
      const r = ratio(row, 'redis')
      check(`${name}: >= 0.9x Redis`, r, (v) => v >= 0.9, fmtRatio(r))
      const p99 = row.cells.tmem?.p99us ?? null
      check(`${name}: tmem p99 <= 200 us`, p99, (v) => v <= 200, `${fmtUs(p99)} us`)
    }
    shmGoals(row, check)
  }
  const mem = memory.find((m) => m.server === 'tmem')
  if (mem !== undefined) {
    check(
      'memory: <= 64 B per page beyond 4096',
      mem.perPage,
      (v) => v <= 64,
      `${Math.round(mem.perPage)} B`,
    )
  }
  return goals
}

type Check = (text: string, value: number | null, ok: (v: number) => boolean, shown: string) => void

/**
 * Issue 12's goals for the shared-memory path: 64 in flight on one connection (single ops or a
 * batch) >= 3x Redis and >= 0.5 M ops/s; 8 connections >= 2x both peers; the daemon at
 * <= 1.5 us of CPU per op whenever ops are pipelined or batched.
 */
function shmGoals(row: Row, check: Check): void {
  const cell = row.cells['tmem-shm']
  if (cell === undefined) return
  const id = twinOf(row.spec.id)
  const name = `tmem-shm ${row.spec.id} ${row.op}`
  if (id === '1x64') {
    const r = ratio(row, 'redis', 'tmem-shm')
    check(`${name}: >= 3x Redis`, r, (v) => v >= 3, fmtRatio(r))
    const rate = cell.opsPerSecond
    check(`${name}: >= 0.5 M ops/s`, rate, (v) => v >= 500_000, `${fmtOps(rate)}/s`)
  } else if (id === '8x16') {
    for (const peer of PEERS) {
      const r = ratio(row, peer, 'tmem-shm')
      check(`${name}: >= 2x ${peer}`, r, (v) => v >= 2, fmtRatio(r))
    }
  }
  if (id !== '1x1') {
    const cpu = Number.isFinite(cell.serverCpuUs) ? cell.serverCpuUs : null
    check(`${name}: daemon CPU <= 1.5 us/op`, cpu, (v) => v <= 1.5, `${fmtUs(cpu)} us`)
  }
}

function fmtRatio(r: number | null): string {
  return r === null ? 'n/a' : `${r.toFixed(2)}x`
}

function fmtUs(us: number | null | undefined): string {
  if (us === null || us === undefined || Number.isNaN(us)) return '-'
  return us >= 100 ? Math.round(us).toString() : us.toFixed(us >= 10 ? 1 : 2)
}

function fmtOps(ops: number | undefined): string {
  if (ops === undefined) return '-'
  return Math.round(ops).toLocaleString('en-US')
}

function fmtBytes(bytes: number): string {
  return `${Math.round(bytes).toLocaleString('en-US')}`
}

function pad(text: string, width: number, right = false): string {
  return right ? text.padStart(width) : text.padEnd(width)
}

/** The (ours, peer) pairs whose ratio the tables show, e.g. tmem-shm/redis. */
function ratioPairs(present: readonly ServerKind[]): [ServerKind, ServerKind][] {
  const peers = PEERS.filter((p) => present.includes(p))
  return OURS.filter((us) => present.includes(us)).flatMap((us) =>
    peers.map((peer): [ServerKind, ServerKind] => [us, peer]),
  )
}

/** The table for the terminal. */
export function consoleTable(report: RunReport): string {
  const present = SERVERS.filter((s) => report.rows.some((row) => row.cells[s] !== undefined))
  const pairs = ratioPairs(present)
  const header = [
    'case',
    'op',
    ...present.flatMap((s) => [`${s} ops/s`, 'p50 us', 'p99 us', 'srv us/op', 'gen us/op']),
    ...pairs.map(([us, p]) => `${us}/${p}`),
  ]
  const lines = [header]
  for (const row of report.rows) {
    lines.push([
      row.spec.id,
      row.op,
      ...present.flatMap((s) => {
        const cell = row.cells[s]
        return [
          fmtOps(cell?.opsPerSecond),
          fmtUs(cell?.p50us),
          fmtUs(cell?.p99us),
          fmtUs(cell?.serverCpuUs),
          fmtUs(cell?.clientCpuUs),
        ]
      }),
      ...pairs.map(([us, p]) => fmtRatio(ratio(row, p, us))),
    ])
  }
  const widths = header.map((_, i) => Math.max(...lines.map((line) => (line[i] ?? '').length)))
  const out = lines.map((line) =>
    line.map((cell, i) => pad(cell, widths[i] ?? 0, i >= 2)).join('  '),
  )
  out.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '))
  const bench = report.rows.filter((row) => row.redisBenchmark !== undefined)
  if (bench.length > 0) {
    out.push('', 'redis-benchmark (C client, same cases, -d 4096), for reference:')
    for (const row of bench) {
      const b = row.redisBenchmark!
      out.push(
        `  ${pad(row.spec.id, 5)} ${pad(row.op === 'put' ? 'SET' : 'GET', 4)} ` +
          `${pad(fmtOps(b.rps), 10, true)} ops/s  p50 ${fmtUs(b.p50ms * 1000)} us  p99 ${fmtUs(b.p99ms * 1000)} us`,
      )
    }
  }
  if (report.memory.length > 0) {
    out.push('', 'memory, bytes of RSS per stored page beyond 4096 (200,000 pages):')
    for (const m of report.memory) {
      out.push(
        `  ${pad(m.server, 10)} ${pad(fmtBytes(m.perPage), 7, true)} B   ` +
          `(marginal, slope over 50k..200k: ${fmtBytes(m.slopePerPage)} B; RSS ${mib(m.baselineRss)} -> ${mib(m.fullRss)} MiB)`,
      )
    }
  }
  out.push('', 'goals:')
  for (const goal of report.goals) out.push(`  [${goalMark(goal)}] ${goal.text}: ${goal.measured}`)
  return out.join('\n')
}

function goalMark(goal: Goal): string {
  return goal.met === null ? '?' : goal.met ? 'x' : ' '
}

function mib(bytes: number): string {
  return (bytes / 1048576).toFixed(0)
}

/** The section appended to bench/results.md. */
export function markdownSection(report: RunReport, notes: string): string {
  const present = SERVERS.filter((s) => report.rows.some((row) => row.cells[s] !== undefined))
  const pairs = ratioPairs(present)
  const lines: string[] = []
  lines.push(`### Peers: tmem vs Redis vs memcached (${report.date})`, '')
  lines.push(`- commit \`${report.commit}\`, Node ${report.node}, CPU ${report.cpu}`)
  lines.push(`- load average before/after: ${report.loadBefore} / ${report.loadAfter}`)
  lines.push(`- ${report.settings}`)
  lines.push(`- pages: ${report.corpus}`)
  for (const server of report.servers) {
    lines.push(
      `- ${server.kind}: ${server.version}; load from ${server.driver}; \`${server.command}\``,
    )
  }
  if (report.missing.length > 0)
    lines.push(`- not benchmarked (not installed): ${report.missing.join(', ')}`)
  lines.push('')
  lines.push(
    `| case | op | ${present.map((s) => `${s} ops/s | p50 us | p99 us | srv CPU us/op`).join(' | ')} | ` +
      `${pairs.map(([us, p]) => `${us}/${p}`).join(' | ')} |`,
  )
  lines.push(
    `|---|---|${present.map(() => '--:|--:|--:|--:').join('|')}|${pairs.map(() => '--:').join('|')}|`,
  )
  for (const row of report.rows) {
    lines.push(
      `| ${row.spec.label} | ${row.op} | ` +
        present
          .map((s) => {
            const c = row.cells[s]
            return `${fmtOps(c?.opsPerSecond)} | ${fmtUs(c?.p50us)} | ${fmtUs(c?.p99us)} | ${fmtUs(c?.serverCpuUs)}`
          })
          .join(' | ') +
        ` | ${pairs.map(([us, p]) => `**${fmtRatio(ratio(row, p, us))}**`).join(' | ')} |`,
    )
  }
  const bench = report.rows.filter((row) => row.redisBenchmark !== undefined)
  if (bench.length > 0) {
    lines.push('', `redis-benchmark for reference (${report.redisBenchmarkNote}):`, '')
    lines.push('| case | op | ops/s | p50 us | p99 us |', '|---|---|--:|--:|--:|')
    for (const row of bench) {
      const b = row.redisBenchmark!
      lines.push(
        `| ${row.spec.label} | ${row.op === 'put' ? 'SET' : 'GET'} | ${fmtOps(b.rps)} | ` +
          `${fmtUs(b.p50ms * 1000)} | ${fmtUs(b.p99ms * 1000)} |`,
      )
    }
  }
  if (report.memory.length > 0) {
    lines.push(
      '',
      'Memory: RSS (VmRSS) per stored page beyond 4096 bytes, 200,000 pages loaded into a fresh server:',
      '',
    )
    lines.push(
      '| server | B/page beyond 4096 | marginal (slope 50k..200k) | RSS empty | RSS loaded |',
      '|---|--:|--:|--:|--:|',
    )
    for (const m of report.memory) {
      lines.push(
        `| ${m.server} | ${fmtBytes(m.perPage)} | ${fmtBytes(m.slopePerPage)} | ${mib(m.baselineRss)} MiB | ${mib(m.fullRss)} MiB |`,
      )
    }
  }
  lines.push('', 'Goals (same run):', '')
  for (const goal of report.goals) {
    lines.push(
      `- ${goal.met === null ? 'not measured' : goal.met ? 'met' : '**missed**'}: ${goal.text} (measured ${goal.measured})`,
    )
  }
  lines.push('', '<details><summary>ops/s of every trial, in the order run</summary>', '')
  for (const row of report.rows) {
    const cells = present.map((s) => `${s} ${row.cells[s]?.trials.join(' / ') ?? '-'}`).join('; ')
    lines.push(`- ${row.spec.label}, ${row.op}: ${cells}`)
  }
  lines.push('', '</details>')
  if (notes.trim() !== '') lines.push('', notes.trim())
  lines.push('')
  return lines.join('\n')
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

const COLORS: Record<string, string> = {
  redis: '#d62728',
  memcached: '#1f77b4',
  tmem: '#2ca02c',
  'tmem-shm': '#9467bd',
}

/** A horizontal bar chart of tmem/peer throughput ratios, and the memory overhead per page. */
export function ratioSvg(report: RunReport): string {
  const peers = PEERS.filter((p) => report.rows.some((row) => row.cells[p] !== undefined))
  const goalsFor = (row: Row, peer: ServerKind): number | null => {
    const id = twinOf(row.spec.id)
    if (id === '1x64') return peer === 'redis' ? 3 : null
    if (id === '8x16') return 1.3
    if (id === '1x1') return peer === 'redis' ? 0.9 : null
    return null
  }
  const ratios = report.rows.flatMap((row) => peers.map((p) => ratio(row, p) ?? 0))
  const xMax = Math.max(3.5, Math.ceil(Math.max(0, ...ratios) * 2 + 0.5) / 2)
  const width = 820
  const left = 190
  const right = 40
  const plot = width - left - right
  const barH = 14
  const rowH = peers.length * (barH + 3) + 12
  const top = 62
  const chartH = report.rows.length * rowH
  const x = (v: number): number => left + (Math.min(v, xMax) / xMax) * plot
  const parts: string[] = []
  parts.push(
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">` +
      `tmem throughput relative to Redis and memcached (higher is better)</text>`,
  )
  parts.push(
    `<text x="${width / 2}" y="40" text-anchor="middle" font-size="11" fill="#555">` +
      escapeXml(
        `${report.date} · ${report.commit} · Node ${report.node} · ${report.cpu} · 4 KiB pages, loopback TCP`,
      ) +
      '</text>',
  )
  // Grid.
  for (let v = 0; v <= xMax + 1e-9; v += 0.5) {
    const gx = x(v)
    parts.push(
      `<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${top + chartH}" stroke="${v === 1 ? '#000' : '#ddd'}" ` +
        `stroke-width="${v === 1 ? 1.5 : 1}"${v === 1 ? ' stroke-dasharray="4 3"' : ''}/>`,
    )
    if (Number.isInteger(v)) {
      parts.push(
        `<text x="${gx}" y="${top + chartH + 14}" text-anchor="middle" font-size="11">${v}x</text>`,
      )
    }
  }
  report.rows.forEach((row, r) => {
    const y0 = top + r * rowH
    parts.push(
      `<text x="${left - 8}" y="${y0 + rowH / 2 + 2}" text-anchor="end" font-size="12">` +
        escapeXml(`${row.spec.label}, ${row.op}`) +
        '</text>',
    )
    peers.forEach((peer, p) => {
      const value = ratio(row, peer)
      const y = y0 + 4 + p * (barH + 3)
      if (value === null) return
      parts.push(
        `<rect x="${left}" y="${y}" width="${Math.max(1, x(value) - left)}" height="${barH}" fill="${COLORS[peer]}" opacity="0.85"/>`,
      )
      parts.push(
        `<text x="${Math.min(x(value), left + plot - 30) + 4}" y="${y + barH - 3}" font-size="11" ` +
          `stroke="#fff" stroke-width="3" paint-order="stroke">${value.toFixed(2)}x</text>`,
      )
      const goal = goalsFor(row, peer)
      if (goal !== null) {
        const gx = x(goal)
        parts.push(
          `<line x1="${gx}" y1="${y - 1}" x2="${gx}" y2="${y + barH + 1}" stroke="#000" stroke-width="3"/>`,
        )
      }
    })
  })
  // Legend.
  const legendY = top + chartH + 30
  let lx = left
  for (const peer of peers) {
    parts.push(
      `<rect x="${lx}" y="${legendY - 10}" width="12" height="12" fill="${COLORS[peer]}" opacity="0.85"/>`,
    )
    parts.push(`<text x="${lx + 16}" y="${legendY}" font-size="12">tmem / ${peer}</text>`)
    lx += 150
  }
  parts.push(
    `<line x1="${lx}" y1="${legendY - 11}" x2="${lx}" y2="${legendY + 2}" stroke="#000" stroke-width="3"/>`,
  )
  parts.push(`<text x="${lx + 6}" y="${legendY}" font-size="12">goal</text>`)
  parts.push(
    `<line x1="${lx + 50}" y1="${legendY - 4}" x2="${lx + 70}" y2="${legendY - 4}" stroke="#000" stroke-dasharray="4 3"/>`,
  )
  parts.push(`<text x="${lx + 74}" y="${legendY}" font-size="12">parity</text>`)
  // Memory panel.
  let height = legendY + 16
  if (report.memory.length > 0) {
    const memTop = legendY + 40
    parts.push(
      `<text x="${width / 2}" y="${memTop}" text-anchor="middle" font-size="14" font-weight="bold">` +
        'Memory per stored page beyond 4096 bytes (RSS, 200,000 pages; lower is better)</text>',
    )
    const memMax = Math.max(64, ...report.memory.map((m) => m.perPage)) * 1.1
    const mx = (v: number): number => left + (Math.max(0, v) / memMax) * plot
    report.memory.forEach((m, i) => {
      const y = memTop + 14 + i * 22
      parts.push(
        `<text x="${left - 8}" y="${y + 12}" text-anchor="end" font-size="12">${m.server}</text>`,
      )
      parts.push(
        `<rect x="${left}" y="${y}" width="${Math.max(1, mx(m.perPage) - left)}" height="16" fill="${COLORS[m.server]}" opacity="0.85"/>`,
      )
      parts.push(
        `<text x="${Math.min(mx(m.perPage), left + plot - 40) + 4}" y="${y + 12}" font-size="11">${Math.round(m.perPage)} B</text>`,
      )
    })
    const gx = mx(64)
    const yEnd = memTop + 14 + report.memory.length * 22
    parts.push(
      `<line x1="${gx}" y1="${memTop + 8}" x2="${gx}" y2="${yEnd}" stroke="#000" stroke-width="2" stroke-dasharray="4 3"/>`,
    )
    parts.push(`<text x="${gx + 4}" y="${yEnd + 12}" font-size="11">goal 64 B</text>`)
    height = yEnd + 24
  }
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="Helvetica, Arial, sans-serif">\n<rect width="100%" height="100%" fill="#fff"/>\n${parts.join('\n')}\n</svg>\n`
  )
}
