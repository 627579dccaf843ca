// Rewrites citations of the old behavioural spec in comments under src/ ("spec §4.3",
// "§10 item 14", "D5") to the heading of docs/semantics.md that now holds that design, e.g.
// `docs/semantics.md "Eviction"`. Comments only: the TypeScript parser finds the comment
// ranges, so strings and code are never touched. Idempotent: the rewritten form contains no
// citation. Every target heading is checked against docs/semantics.md.
//
// Usage: node tools/cite-map.mjs [--check] [dir-or-file ...]   (default: src)
//   --check  rewrite nothing; list the citations left (exit 1 if any is in a comment).
// Citations inside strings (help text, error messages) are listed as notes, never changed.
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import ts from 'typescript'

const DOC = 'docs/semantics.md'

/** Spec section number -> heading of docs/semantics.md. */
const SECTIONS = {
  1: 'Data model',
  1.1: 'Data model',
  1.2: 'Limits',
  1.3: 'Pool kinds',
  1.4: 'Limits',
  1.5: 'Data model',
  1.6: 'Host options',
  2: 'The ABI',
  2.1: 'Commands',
  2.2: 'Control subops',
  2.3: 'Pool flags',
  2.4: 'Client flags',
  2.5: 'Return codes',
  2.6: 'Op layout',
  2.7: 'Op layout',
  2.8: 'Op layout',
  2.9: 'ABI versions',
  '2.10': 'Decision: guest frames',
  3: 'Guest commands',
  '3.0': 'Dispatch',
  3.1: 'New pool',
  3.2: 'Destroy pool',
  3.3: 'Put',
  '3.3.1': 'Duplicate put',
  3.4: 'Get',
  3.5: 'Flush page',
  3.6: 'Flush object',
  3.7: 'Legacy commands',
  3.8: 'Return codes',
  4: 'Memory',
  4.1: 'Memory',
  4.2: 'LRU order',
  4.3: 'Eviction',
  4.4: 'Minimum reserve',
  4.5: 'Flush and freeable memory',
  4.6: 'Memory',
  4.7: 'Space savers',
  4.8: 'Memory',
  5: 'Control subops',
  5.1: 'Control subops',
  5.2: 'Control subops',
  5.3: 'Freeze and thaw',
  5.4: 'Client settings',
  5.5: 'Flush and freeable memory',
  5.6: 'Shared-pool authorisation',
  5.7: 'LIST',
  5.8: 'Control subops',
  6: 'Save and restore',
  6.1: 'Save subops',
  6.2: 'Save stream',
  6.3: 'Live save',
  6.4: 'Restore',
  6.5: 'ABI versions',
  7: 'Statistics',
  7.1: 'Statistics',
  7.2: 'Statistics',
  7.3: 'Statistics',
  7.4: 'Statistics',
  8: 'Pool kinds',
  8.1: 'Pool kinds',
  8.2: 'Pool kinds',
  8.3: 'Pool kinds',
  8.4: 'Pool kinds',
  9: 'Decision: baseline',
  10: 'Where we differ from Xen and why',
}

/** A range whose ends alone would say too little. */
const RANGES = { '3.3-3.7': ['Guest commands'] }

/** Spec §10 (ambiguities) item -> heading. */
const ITEMS = {
  1: 'Decision: eviction quota',
  2: 'Decision: cap',
  3: 'Control subops',
  4: 'Destroy pool',
  5: 'Decision: dying pools and ownership',
  6: 'LIST',
  7: 'Decision: LIST format',
  8: 'Decision: save stream fixes',
  9: 'Decision: dying pools and ownership',
  10: 'New pool',
  11: 'Decision: get with a bad frame',
  12: 'Live save',
  13: 'Restore',
  14: 'Save stream',
  15: 'Limits',
  16: 'Shared-pool authorisation',
  17: 'Shared-pool authorisation',
  18: 'Get',
  19: 'Flush page',
  20: 'Restore',
  21: 'Decision: legacy and unknown commands',
  22: 'Decision: destroy during migration',
  23: 'Statistics',
  24: 'Decision: eviction quota',
  25: 'LIST',
  26: 'Freeze and thaw',
  27: 'New pool',
  28: 'Pool flags',
  29: 'Decision: who is who',
  30: 'Legacy commands',
}

/** Spec section 0 decisions D1..D15 -> heading. */
const DECISIONS = {
  1: 'Decision: baseline',
  2: 'Decision: who is who',
  3: 'Decision: v0 clients',
  4: 'Decision: save stream fixes',
  5: 'Decision: eviction quota',
  6: 'Decision: cap',
  7: 'Decision: shared pools',
  8: 'Decision: legacy and unknown commands',
  9: 'Decision: dying pools and ownership',
  10: 'Decision: destroy during migration',
  11: 'Decision: get with a bad frame',
  12: 'Decision: memory budget',
  13: 'Decision: compression',
  14: 'Decision: LIST format',
  15: 'Decision: guest frames',
}

const NUM = String.raw`\d+(?:\.\d+)*`
const CITE = String.raw`§${NUM}(?:-${NUM})?(?: item \d+)?|\bD\d{1,2}\b`
// One group: an optional "spec ", then citations joined by ", ", " and ", " with " or "; ".
// "STYLE §5.6" cites the style guide, not the spec: left alone.
const GROUP = new RegExp(
  String.raw`(?<!STYLE )(?:spec )?(?:${CITE})(?:(?:, | and | with |; )(?:${CITE}))*`,
  'g',
)
const ONE = new RegExp(CITE, 'g')

function headingsOf(path) {
  const set = new Set()
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^#{2,4} (.+)$/.exec(line)
    if (m !== null) set.add(m[1].trim())
  }
  return set
}

/** Headings for one citation token, or throws for one the tables do not know. */
function headingsFor(token) {
  let m = /^D(\d+)$/.exec(token)
  if (m !== null) return one(DECISIONS[m[1]], token)
  m = /^§10 item (\d+)$/.exec(token)
  if (m !== null) return one(ITEMS[m[1]], token)
  m = new RegExp(String.raw`^§(${NUM})(?:-(${NUM}))?$`).exec(token)
  if (m === null) throw new Error(`cite-map: cannot read citation "${token}"`)
  if (m[2] === undefined) return one(SECTIONS[m[1]], token)
  const range = `${m[1]}-${m[2]}`
  if (RANGES[range] !== undefined) return RANGES[range]
  return [...one(SECTIONS[m[1]], token), ...one(SECTIONS[m[2]], token)]
}

function one(heading, token) {
  if (heading === undefined) throw new Error(`cite-map: no semantics.md section for "${token}"`)
  return [heading]
}

function rewriteGroup(group) {
  const headings = []
  for (const token of group.match(ONE)) {
    for (const h of headingsFor(token)) if (!headings.includes(h)) headings.push(h)
  }
  return `${DOC} ${headings.map((h) => `"${h}"`).join(', ')}`
}

/** Every comment range of a TypeScript source, in order, without duplicates. */
function commentRanges(text, fileName) {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true)
  const seen = new Map()
  const add = (ranges) => {
    for (const r of ranges ?? []) seen.set(r.pos, r.end)
  }
  const visit = (node) => {
    add(ts.getLeadingCommentRanges(text, node.getFullStart()))
    add(ts.getTrailingCommentRanges(text, node.getEnd()))
    for (const child of node.getChildren(source)) visit(child)
  }
  visit(source)
  return [...seen.entries()].sort((a, b) => a[0] - b[0]).map(([pos, end]) => ({ pos, end }))
}

function lineOf(text, pos) {
  let line = 1
  for (let i = 0; i < pos; i++) if (text.charCodeAt(i) === 10) line++
  return line
}

function walk(path, out) {
  if (statSync(path).isDirectory()) {
    for (const name of readdirSync(path).sort()) walk(join(path, name), out)
  } else if (/\.(ts|mts|cts)$/.test(path)) {
    out.push(path)
  }
  return out
}

const args = process.argv.slice(2)
const check = args.includes('--check')
const roots = args.filter((a) => a !== '--check')
const files = (roots.length === 0 ? ['src'] : roots).flatMap((root) => walk(root, []))
const known = headingsOf(DOC)
for (const table of [SECTIONS, ITEMS, DECISIONS, ...Object.values(RANGES).map((r) => ({ ...r }))]) {
  for (const heading of Object.values(table)) {
    if (!known.has(heading)) throw new Error(`cite-map: "${heading}" is not a heading of ${DOC}`)
  }
}

let left = 0
let changed = 0
let rewritten = 0
for (const file of files) {
  const text = readFileSync(file, 'utf8')
  const ranges = commentRanges(text, file)
  let out = ''
  let at = 0
  for (const { pos, end } of ranges) {
    const comment = text.slice(pos, end)
    out += text.slice(at, pos)
    if (check) {
      for (const m of comment.matchAll(GROUP)) {
        console.log(`${file}:${lineOf(text, pos + m.index)}: ${m[0]}`)
        left++
      }
      out += comment
    } else {
      out += comment.replace(GROUP, (group) => {
        rewritten++
        return rewriteGroup(group)
      })
    }
    at = end
  }
  out += text.slice(at)
  // Citations outside comments (strings) are reported, never rewritten.
  const inComments = (i) => ranges.some((r) => r.pos <= i && i < r.end)
  for (const m of text.matchAll(GROUP)) {
    if (!inComments(m.index))
      console.log(`${file}:${lineOf(text, m.index)}: (not a comment, left as is) ${m[0]}`)
  }
  if (!check && out !== text) {
    writeFileSync(file, out)
    changed++
  }
}
if (check) {
  console.log(`cite-map: ${left} citation(s) left in comments`)
  process.exit(left === 0 ? 0 : 1)
}
console.log(`cite-map: ${rewritten} citation group(s) rewritten in ${changed} file(s)`)
