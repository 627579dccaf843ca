/**
 * The shape of the house, checked on the source itself: every relative import in src/
 * (value and type imports, re-exports and dynamic imports alike) is read with a plain
 * regular expression, resolved to a file, and the resulting graph must have
 *
 * - no cycle between the folders of src/,
 * - no cycle among the files of src/engine,
 * - no edge that points up the layer order of tools/layers.json (lint says the same thing
 *   file by file; this test says it for the whole graph, including type-only imports).
 *
 * The oracle is the graph as the files spell it, not the compiler's module resolution.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, normalize, relative, sep } from 'node:path'

const SRC = 'src'
const RANKS = (
  JSON.parse(readFileSync('tools/layers.json', 'utf8')) as { ranks: Record<string, number> }
).ranks

function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) sourceFiles(path, out)
    else if (name.endsWith('.ts')) out.push(path)
  }
  return out
}

const IMPORT_RE =
  /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g

/** Relative imports of one file, resolved to paths under src/ ('.js' → '.ts'). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8')
  const out: string[] = []
  for (const match of text.matchAll(IMPORT_RE)) {
    const spec = match[1] ?? match[2]
    if (spec === undefined) continue
    out.push(normalize(join(dirname(file), spec.replace(/\.js$/, '.ts'))))
  }
  return out
}

/** The folder of src/ a file belongs to, or '' for the files at the top (index.ts, entries). */
function folderOf(file: string): string {
  const parts = relative(SRC, file).split(sep)
  if (parts.length === 1) return parts[0] === 'errors.ts' ? 'errors' : ''
  return parts[0] ?? ''
}

/** One cycle of the graph as a list of nodes, or null (depth-first search, iterative colours). */
function findCycle(graph: Map<string, Set<string>>): string[] | null {
  const colour = new Map<string, 1 | 2>()
  const stack: string[] = []
  const visit = (node: string): string[] | null => {
    colour.set(node, 1)
    stack.push(node)
    for (const next of graph.get(node) ?? []) {
      if (colour.get(next) === 1) return [...stack.slice(stack.indexOf(next)), next]
      if (colour.get(next) === undefined) {
        const found = visit(next)
        if (found) return found
      }
    }
    stack.pop()
    colour.set(node, 2)
    return null
  }
  for (const node of graph.keys()) {
    if (colour.get(node) === undefined) {
      const found = visit(node)
      if (found) return found
    }
  }
  return null
}

function addEdge(graph: Map<string, Set<string>>, from: string, to: string): void {
  let set = graph.get(from)
  if (!set) graph.set(from, (set = new Set()))
  set.add(to)
}

const files = sourceFiles(SRC)
const edges = files.flatMap((file) => importsOf(file).map((to) => ({ from: file, to })))

void test('the import scan sees the graph (sanity: it finds known edges)', () => {
  assert.ok(files.length > 40, `found only ${files.length} files under src/`)
  assert.ok(
    edges.some((e) => folderOf(e.from) === 'engine' && folderOf(e.to) === 'abi'),
    'expected the engine to import the abi',
  )
  assert.ok(
    edges.every((e) => files.includes(e.to)),
    `unresolved: ${edges
      .filter((e) => !files.includes(e.to))
      .map((e) => `${e.from} → ${e.to}`)
      .join(', ')}`,
  )
})

void test('no cycle between the folders of src/', () => {
  const graph = new Map<string, Set<string>>()
  for (const { from, to } of edges) {
    const a = folderOf(from)
    const b = folderOf(to)
    if (a !== b && a !== '') addEdge(graph, a, b)
  }
  assert.equal(findCycle(graph)?.join(' → ') ?? null, null)
})

void test('no cycle among the files of src/engine (type-only imports count)', () => {
  const graph = new Map<string, Set<string>>()
  for (const { from, to } of edges) {
    if (folderOf(from) === 'engine' && folderOf(to) === 'engine') addEdge(graph, from, to)
  }
  assert.equal(findCycle(graph)?.join(' → ') ?? null, null)
})

void test('every import points down the layers of tools/layers.json', () => {
  const wrong = edges.filter(({ from, to }) => {
    const a = folderOf(from)
    const b = folderOf(to)
    if (a === '' || a === b) return false
    const ra = RANKS[a]
    const rb = RANKS[b]
    return ra === undefined || rb === undefined || rb >= ra
  })
  assert.deepEqual(
    wrong.map((e) => `${e.from} → ${e.to}`),
    [],
  )
})

void test('the cycle finder finds a planted cycle and passes a chain', () => {
  const chain = new Map([
    ['a', new Set(['b'])],
    ['b', new Set(['c'])],
  ])
  assert.equal(findCycle(chain), null)
  chain.set('c', new Set(['a']))
  assert.deepEqual(findCycle(chain), ['a', 'b', 'c', 'a'])
})
