/**
 * Progress lines on stderr for the long verbs (save, restore, migrate): pages, bytes and rate.
 * On a terminal one line is rewritten in place; otherwise a line is printed at most once a
 * second, plus the last one, so logs stay short.
 */
import { formatBytes, formatRate } from '../util/units.js'

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

/** A reporter for `--progress`-style output; `quiet` prints nothing. */
export function progressReporter(
  quiet: boolean,
  stream: NodeJS.WriteStream = process.stderr,
): {
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
      const text = `${line.phase}: ${line.pages}${total} pages, ${formatBytes(line.bytes, 'figures')}, ${formatRate(line.bytesPerSecond)}${extra}`
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
