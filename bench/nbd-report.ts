/**
 * What `npm run bench:nbd` produces: medians, ratios to nbdkit in the same run, the goals, the
 * console table, the markdown section for bench/results.md and the SVG chart
 * (bench/nbd-ratios.svg, drawn here the way bench/peers/report.ts draws its chart).
 */
import type { FioCase, FioResult } from './nbd-fio.js'
import { GUEST_CONFIGS, type GuestConfig, type GuestTrial } from './nbd-guest.js'
import type { NbdServerKind } from '../test/helpers/nbd-servers.js'

export const FIO_SERVERS: readonly NbdServerKind[] = ['tmem', 'nbdkit', 'qemu-nbd']

export interface FioRow {
  spec: FioCase
  trials: Partial<Record<NbdServerKind, FioResult[]>>
}

export interface NbdReport {
  date: string
  commit: string
  node: string
  cpu: string
  load: string
  versions: string[]
  settings: string
  fio: FioRow[]
  guest: GuestTrial[]
}

export interface Goal {
  text: string
  measured: string
  met: boolean | null
}

export function median(values: number[]): number | null {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b)
  if (sorted.length === 0) return null
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

export function fioMedian(
  row: FioRow,
  server: NbdServerKind,
  pick: (r: FioResult) => number,
): number | null {
  return median((row.trials[server] ?? []).map(pick))
}

export function fioRatio(row: FioRow, server: NbdServerKind): number | null {
  const ours = fioMedian(row, server, (r) => r.iops)
  const theirs = fioMedian(row, 'nbdkit', (r) => r.iops)
  return ours === null || theirs === null || theirs === 0 ? null : ours / theirs
}

export function guestMedian(
  trials: GuestTrial[],
  id: GuestConfig['id'],
  pick: (t: GuestTrial) => number | null,
): number | null {
  return median(
    trials
      .filter((t) => t.config === id && t.ok)
      .map(pick)
      .filter((v): v is number => v !== null),
  )
}

/** Wall time of `id` over nbdkit's (lower is better). */
export function guestTimeRatio(trials: GuestTrial[], id: GuestConfig['id']): number | null {
  const ours = guestMedian(trials, id, (t) => t.wallMs)
  const theirs = guestMedian(trials, 'nbdkit', (t) => t.wallMs)
  return ours === null || theirs === null ? null : ours / theirs
}

const fmtRatio = (r: number | null): string => (r === null ? 'n/a' : `${r.toFixed(2)}x`)
const fmtNum = (v: number | null, digits = 0): string =>
  v === null
    ? '-'
    : v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

export function evaluateGoals(report: NbdReport): Goal[] {
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
  for (const row of report.fio) {
    const target = row.spec.iodepth === 1 ? 0.9 : 1.0
    const r = fioRatio(row, 'tmem')
    check(
      `${row.spec.label}: >= ${target.toFixed(1)}x nbdkit memory`,
      r,
      (v) => v >= target,
      fmtRatio(r),
    )
  }
  for (const id of ['tmem', 'tmem-zstd'] as const) {
    const r = guestTimeRatio(report.guest, id)
    check(`guest swap wall time (${id}): <= 1.1x nbdkit memory`, r, (v) => v <= 1.1, fmtRatio(r))
  }
  const held = guestMedian(report.guest, 'tmem-zstd', (t) => t.heldPerPage)
  check(
    'guest swap pages held with zstd: <= 1,600 bytes each',
    held,
    (v) => v <= 1600,
    `${fmtNum(held)} B`,
  )
  return goals
}

function table(lines: string[][]): string {
  const widths = (lines[0] ?? []).map((_, i) =>
    Math.max(...lines.map((line) => (line[i] ?? '').length)),
  )
  const out = lines.map((line) =>
    line
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join('  '),
  )
  out.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '))
  return out.join('\n')
}

function fioLines(report: NbdReport, bold: (s: string) => string): string[][] {
  const header = [
    'case',
    ...FIO_SERVERS.flatMap((s) => [`${s} IOPS`, 'MiB/s', 'p50 us', 'p99 us']),
    'tmem/nbdkit',
    'qemu-nbd/nbdkit',
  ]
  const rows = report.fio.map((row) => [
    row.spec.label,
    ...FIO_SERVERS.flatMap((s) => [
      fmtNum(fioMedian(row, s, (r) => r.iops)),
      fmtNum(
        fioMedian(row, s, (r) => r.mibPerSecond),
        1,
      ),
      fmtNum(
        fioMedian(row, s, (r) => r.p50us),
        1,
      ),
      fmtNum(
        fioMedian(row, s, (r) => r.p99us),
        1,
      ),
    ]),
    bold(fmtRatio(fioRatio(row, 'tmem'))),
    fmtRatio(fioRatio(row, 'qemu-nbd')),
  ])
  return [header, ...rows]
}

/** CPU time per request, medians: each server's, and fio's own beside each server. */
function cpuLines(report: NbdReport): string[][] {
  const header = [
    'case (CPU us per request)',
    ...FIO_SERVERS.map((s) => `${s} server`),
    ...FIO_SERVERS.map((s) => `fio with ${s}`),
    'tmem server / nbdkit server',
  ]
  const rows = report.fio.map((row) => {
    const ours = fioMedian(row, 'tmem', (r) => r.serverCpuUs)
    const theirs = fioMedian(row, 'nbdkit', (r) => r.serverCpuUs)
    return [
      row.spec.label,
      ...FIO_SERVERS.map((s) =>
        fmtNum(
          fioMedian(row, s, (r) => r.serverCpuUs),
          1,
        ),
      ),
      ...FIO_SERVERS.map((s) =>
        fmtNum(
          fioMedian(row, s, (r) => r.clientCpuUs),
          1,
        ),
      ),
      ours === null || theirs === null || theirs === 0 ? '-' : fmtRatio(ours / theirs),
    ]
  })
  return [header, ...rows]
}

function guestLines(report: NbdReport): string[][] {
  const header = [
    'guest swap onto',
    'runs ok',
    'wall s',
    'memtest s',
    'server CPU s',
    'pswpout',
    'pool pages',
    'B held/page',
    'zstd B/page',
    'wall / nbdkit',
  ]
  const rows = GUEST_CONFIGS.map((config) => {
    const trials = report.guest.filter((t) => t.config === config.id)
    const m = (pick: (t: GuestTrial) => number | null, digits = 0): string =>
      fmtNum(guestMedian(report.guest, config.id, pick), digits)
    return [
      config.label,
      `${trials.filter((t) => t.ok).length}/${trials.length}`,
      m((t) => t.wallMs / 1000, 1),
      m((t) => t.memtestSeconds, 1),
      m((t) => t.serverCpuSeconds, 1),
      m((t) => t.pswpout),
      m((t) => t.pages),
      m((t) => t.heldPerPage),
      m((t) => t.compressedPerPage),
      config.id === 'nbdkit' ? '1.00x' : fmtRatio(guestTimeRatio(report.guest, config.id)),
    ]
  })
  return [header, ...rows]
}

export function consoleReport(report: NbdReport): string {
  const goals = evaluateGoals(report).map(
    (g) => `  [${g.met === null ? '?' : g.met ? 'x' : ' '}] ${g.text}: ${g.measured}`,
  )
  const guest = report.guest.length > 0 ? [table(guestLines(report)), ''] : []
  return [
    table(fioLines(report, (s) => s)),
    '',
    table(cpuLines(report)),
    '',
    ...guest,
    'goals:',
    ...goals,
  ].join('\n')
}

function markdownTable(lines: string[][]): string[] {
  const [header, ...rows] = lines
  if (!header) return []
  return [
    `| ${header.join(' | ')} |`,
    `|---|${header
      .slice(1)
      .map(() => '--:')
      .join('|')}|`,
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ]
}

export function markdownSection(report: NbdReport, notes: string): string {
  const lines = [`### NBD: tmem vs nbdkit memory vs qemu-nbd (${report.date})`, '']
  lines.push(
    `- commit \`${report.commit}\`, Node ${report.node}, CPU ${report.cpu}, load average ${report.load}`,
  )
  for (const version of report.versions) lines.push(`- ${version}`)
  lines.push(`- ${report.settings}`, '')
  lines.push(...markdownTable(fioLines(report, (s) => `**${s}**`)), '')
  lines.push(...markdownTable(cpuLines(report)), '')
  if (report.guest.length > 0) lines.push(...markdownTable(guestLines(report)), '')
  lines.push('Goals (same run):', '')
  for (const g of evaluateGoals(report))
    lines.push(
      `- ${g.met === null ? 'not measured' : g.met ? 'met' : '**missed**'}: ${g.text} (measured ${g.measured})`,
    )
  lines.push('', '<details><summary>every trial, in the order run</summary>', '')
  for (const row of report.fio) {
    lines.push(
      `- ${row.spec.label}, IOPS: ${FIO_SERVERS.map((s) => `${s} ${(row.trials[s] ?? []).map((r) => fmtNum(r.iops)).join(' / ')}`).join('; ')}`,
    )
  }
  for (const t of report.guest) {
    lines.push(
      `- guest on ${t.config}: ${t.ok ? 'ok' : 'FAILED'}, wall ${fmtNum(t.wallMs / 1000, 1)} s, memtest ${fmtNum(t.memtestSeconds, 1)} s` +
        (t.pages === null
          ? ''
          : `, ${fmtNum(t.pages)} pages, ${fmtNum(t.heldPerPage)} B held/page`),
    )
  }
  lines.push('', '</details>')
  if (notes.trim() !== '') lines.push('', notes.trim())
  lines.push('')
  return lines.join('\n')
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

interface Bar {
  label: string
  value: number | null
  color: string
  goal: number | null
}

function chartBars(report: NbdReport): { label: string; bars: Bar[] }[] {
  const groups = report.fio.map((row) => ({
    label: row.spec.label,
    bars: [
      {
        label: 'tmem',
        value: fioRatio(row, 'tmem'),
        color: '#2ca02c',
        goal: row.spec.iodepth === 1 ? 0.9 : 1.0,
      },
      { label: 'qemu-nbd', value: fioRatio(row, 'qemu-nbd'), color: '#1f77b4', goal: null },
    ],
  }))
  // Wall time is lower-is-better: drawn as nbdkit's time over ours so that longer bars stay better.
  const speed = (id: GuestConfig['id']): number | null => {
    const r = guestTimeRatio(report.guest, id)
    return r === null || r === 0 ? null : 1 / r
  }
  groups.push({
    label: 'guest swap (speed)',
    bars: [
      { label: 'tmem', value: speed('tmem'), color: '#2ca02c', goal: 1 / 1.1 },
      { label: 'tmem, zstd', value: speed('tmem-zstd'), color: '#98df8a', goal: 1 / 1.1 },
    ],
  })
  return groups
}

/** Horizontal bars: each server's IOPS (or guest speed) over nbdkit memory's, goals as ticks. */
export function ratioSvg(report: NbdReport): string {
  const groups = chartBars(report)
  const values = groups.flatMap((g) => g.bars.map((b) => b.value ?? 0))
  const xMax = Math.max(1.5, Math.ceil(Math.max(...values) * 4 + 0.5) / 4)
  const width = 820
  const left = 230
  const plot = width - left - 40
  const barH = 14
  const rowH = 2 * (barH + 3) + 12
  const top = 62
  const chartH = groups.length * rowH
  const x = (v: number): number => left + (Math.min(v, xMax) / xMax) * plot
  const parts: string[] = []
  parts.push(
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">` +
      'NBD throughput relative to nbdkit memory (higher is better)</text>',
  )
  parts.push(
    `<text x="${width / 2}" y="40" text-anchor="middle" font-size="11" fill="#555">` +
      escapeXml(
        `${report.date} · ${report.commit} · Node ${report.node} · fio ioengine=nbd over a Unix socket; guest: QEMU TCG`,
      ) +
      '</text>',
  )
  for (let v = 0; v <= xMax + 1e-9; v += 0.25) {
    const gx = x(v)
    const one = Math.abs(v - 1) < 1e-9
    parts.push(
      `<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${top + chartH}" stroke="${one ? '#000' : '#ddd'}" ` +
        `stroke-width="${one ? 1.5 : 1}"${one ? ' stroke-dasharray="4 3"' : ''}/>`,
    )
    if (Math.abs(v * 2 - Math.round(v * 2)) < 1e-9) {
      parts.push(
        `<text x="${gx}" y="${top + chartH + 14}" text-anchor="middle" font-size="11">${v}x</text>`,
      )
    }
  }
  groups.forEach((group, r) => {
    const y0 = top + r * rowH
    parts.push(
      `<text x="${left - 8}" y="${y0 + rowH / 2 + 2}" text-anchor="end" font-size="12">${escapeXml(group.label)}</text>`,
    )
    group.bars.forEach((bar, b) => {
      const y = y0 + 4 + b * (barH + 3)
      if (bar.value === null) return
      parts.push(
        `<rect x="${left}" y="${y}" width="${Math.max(1, x(bar.value) - left)}" height="${barH}" fill="${bar.color}" opacity="0.85"/>`,
      )
      parts.push(
        `<text x="${Math.min(x(bar.value), left + plot - 90) + 4}" y="${y + barH - 3}" font-size="11" ` +
          `stroke="#fff" stroke-width="3" paint-order="stroke">${escapeXml(`${bar.label} ${bar.value.toFixed(2)}x`)}</text>`,
      )
      if (bar.goal !== null) {
        const gx = x(bar.goal)
        parts.push(
          `<line x1="${gx}" y1="${y - 1}" x2="${gx}" y2="${y + barH + 1}" stroke="#000" stroke-width="3"/>`,
        )
      }
    })
  })
  const legendY = top + chartH + 34
  parts.push(
    `<line x1="${left}" y1="${legendY - 11}" x2="${left}" y2="${legendY + 2}" stroke="#000" stroke-width="3"/>`,
  )
  parts.push(
    `<text x="${left + 8}" y="${legendY}" font-size="12">goal: fio 0.9x at depth 1, 1.0x otherwise; guest swap speed = nbdkit's wall time / ours, goal 1/1.1</text>`,
  )
  const height = legendY + 16
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="sans-serif">\n<rect width="100%" height="100%" fill="#fff"/>\n${parts.join('\n')}\n</svg>\n`
  )
}
