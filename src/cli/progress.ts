/**
 * Progress lines on stderr for the long verbs (save, restore, migrate): pages, bytes and rate.
 * On a terminal one line is rewritten in place; otherwise a line is printed at most once a
 * second, plus the last one, so logs stay short.
 */

export interface ProgressLine {
  /** `save`, `restore`, `precopy`, ... */
  phase: string
  pages: number
  pagesTotal: number | null
  bytes: number
  bytesPerSecond: number
  done: boolean
  /** Anything else worth showing (`round 2`). */
  extra?: string
}

/** 1536 -> `1.5 KiB`, 1073741824 -> `1.00 GiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value >= 100 ? 0 : value >= 10 ? 1 : 2)} ${units[unit]}`
}

/** Bytes per second as `123 MB/s` (decimal, as throughput usually is). */
export function formatRate(bytesPerSecond: number): string {
  if (bytesPerSecond >= 1e9) return `${(bytesPerSecond / 1e9).toFixed(2)} GB/s`
  if (bytesPerSecond >= 1e6) return `${(bytesPerSecond / 1e6).toFixed(0)} MB/s`
  return `${(bytesPerSecond / 1e3).toFixed(0)} kB/s`
}

/** A reporter for `--progress`-style output; `quiet` prints nothing. */
export function progressReporter(quiet: boolean, stream: NodeJS.WriteStream = process.stderr): {
  report: (line: ProgressLine) => void
  end: () => void
} {
  const tty = stream.isTTY === true
  let lastPrint = 0
  let open = false
  return {
    report(line) {
      if (quiet) return
      const now = Date.now()
      if (!line.done && !tty && now - lastPrint < 1000) return
      if (!line.done && tty && now - lastPrint < 100) return
      lastPrint = now
      const total = line.pagesTotal === null ? '' : `/${line.pagesTotal}`
      const extra = line.extra === undefined ? '' : `, ${line.extra}`
      const text = `${line.phase}: ${line.pages}${total} pages, ${formatBytes(line.bytes)}, ${formatRate(line.bytesPerSecond)}${extra}`
      if (tty) {
        stream.write(`\r\x1b[K${text}`)
        open = true
        if (line.done) {
          stream.write('\n')
          open = false
        }
      } else {
        stream.write(`${text}\n`)
      }
    },
    end() {
      if (open) stream.write('\n')
      open = false
    },
  }
}
