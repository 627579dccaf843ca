/** The package's version, as `tmem --version` and the daemon's first line print it. */
import { readFileSync } from 'node:fs'

/** The `version` of package.json (two levels above dist/src/cli), or '?' when unreadable. */
export function packageVersion(): string {
  try {
    const text = readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')
    return (JSON.parse(text) as { version?: string }).version ?? '?'
  } catch {
    return '?'
  }
}
