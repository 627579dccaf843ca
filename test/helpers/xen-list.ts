/**
 * A tiny TMEMC_LIST reader written the way Xen's `xen-tmem-list-parse` reads the text (spec
 * §5.7), independent of the engine's renderer: a line is dispatched on its first character when
 * the second is `=`; a key is found by a substring search for its two letters, and counts only
 * if the next character is `:` (else the value is 0); values are unsigned decimal, U0/U1 hex;
 * missing keys read as 0.
 */

export interface XenLine {
  tag: string
  text: string
}

/** Lines that Xen's parser would look at (`X=` with X one of G S C P T). */
export function xenLines(text: string): XenLine[] {
  return text
    .split('\n')
    .filter((line) => line.length >= 2 && line[1] === '=' && 'GSCPT'.includes(line[0] ?? ''))
    .map((line) => ({ tag: line[0] ?? '', text: line }))
}

/** The value of a two-letter key, as Xen's `parse()` finds it: first occurrence, then ':'. */
export function xenValue(line: string, key: string, hex = false): bigint {
  const at = line.indexOf(key)
  if (at < 0 || line[at + 2] !== ':') return 0n
  const digits = (hex ? /^[0-9a-f]*/i : /^\d*/).exec(line.slice(at + 3))?.[0] ?? ''
  if (digits === '') return 0n
  return BigInt(hex ? `0x${digits}` : digits)
}

/** Number form of xenValue for counters that fit. */
export function xenNumber(line: string, key: string): number {
  return Number(xenValue(line, key))
}

/** Every `SC:` entry of an S= line, in order (the sharers). */
export function xenSharers(line: string): number[] {
  return [...line.matchAll(/(?:^|,)SC:(\d+)/g)].map((match) => Number(match[1]))
}
