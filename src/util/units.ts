/**
 * Byte counts and rates for people to read. One home for every rendering the CLI and the
 * daemon print, so a size reads the same wherever it appears.
 */

const BINARY_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

/**
 * A byte count in binary units. `short` (sizes, the default) keeps whole numbers whole and
 * gives others one decimal: `64 MiB`, `1.5 GiB`. `figures` (amounts that move, as in
 * progress lines) always shows three significant figures: `1.00 GiB`, `12.3 MiB`, `512 KiB`.
 */
export function formatBytes(bytes: number, style: 'short' | 'figures' = 'short'): string {
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < BINARY_UNITS.length - 1) {
    value /= 1024
    unit++
  }
  const name = BINARY_UNITS[unit] ?? 'B'
  if (unit === 0) return `${value} B`
  if (style === 'figures') return `${value.toFixed(value >= 100 ? 0 : value >= 10 ? 1 : 2)} ${name}`
  return `${Number.isInteger(value) ? String(value) : value.toFixed(1)} ${name}`
}

/** Bytes per second as `123 MB/s` (decimal, as throughput usually is). */
export function formatRate(bytesPerSecond: number): string {
  if (bytesPerSecond >= 1e9) return `${(bytesPerSecond / 1e9).toFixed(2)} GB/s`
  if (bytesPerSecond >= 1e6) return `${(bytesPerSecond / 1e6).toFixed(0)} MB/s`
  return `${(bytesPerSecond / 1e3).toFixed(0)} kB/s`
}
