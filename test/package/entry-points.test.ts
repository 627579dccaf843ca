/**
 * The package's entry points, imported by the package's own name (self-reference through
 * package.json `exports`) in a child node process, as an application would.
 *
 * What each entry loads is read from the module graph itself: a `module.register` hook
 * appends every URL it resolves or loads to a file (synchronously, so the list is whole once
 * the import has settled), and the child adds the CommonJS files in `require.cache` and the
 * built-ins in `process.moduleLoadList` (a `require()` inside a CommonJS package does not pass
 * the hooks on Node 20). The `tmem/client` entry must load no codec (zstd-napi, lz4,
 * node:zlib), no logger (pino) and no metrics (prom-client); the `tmem` entry, which loads
 * the engine and the daemon, is the check that the detector sees them at all.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { fileURLToPath, pathToFileURL } from 'node:url'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

const HOOKS = `
import { appendFileSync } from 'node:fs'
let log = ''
export function initialize(data) { log = data.log }
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context)
  appendFileSync(log, result.url + '\\n')
  return result
}
export async function load(url, context, next) {
  appendFileSync(log, url + '\\n')
  return next(url, context)
}
`

const REGISTER = `
import { register } from 'node:module'
register(process.env.TMEM_TEST_HOOKS, import.meta.url, { data: { log: process.env.TMEM_TEST_LOG } })
`

const CHILD = `
import { createRequire } from 'node:module'
const entry = await import(process.env.TMEM_TEST_ENTRY)
const require = createRequire(import.meta.url)
process.stdout.write(JSON.stringify({
  exports: Object.keys(entry),
  cjs: Object.keys(require.cache),
  builtins: process.moduleLoadList ?? [],
}))
`

interface Loaded {
  exports: string[]
  /** Every module URL, file path and built-in name the import loaded. */
  modules: string[]
}

function load(entry: string): Loaded {
  const dir = mkdtempSync(join(tmpdir(), 'tmem-entry-'))
  try {
    const hooks = join(dir, 'hooks.mjs')
    const register = join(dir, 'register.mjs')
    const log = join(dir, 'loaded.txt')
    writeFileSync(hooks, HOOKS)
    writeFileSync(register, REGISTER)
    writeFileSync(log, '')
    const child = spawnSync(
      process.execPath,
      ['--import', pathToFileURL(register).href, '--input-type=module', '-e', CHILD],
      {
        cwd: ROOT,
        encoding: 'utf8',
        env: {
          ...process.env,
          TMEM_TEST_ENTRY: entry,
          TMEM_TEST_HOOKS: pathToFileURL(hooks).href,
          TMEM_TEST_LOG: log,
        },
        timeout: 30_000,
      },
    )
    assert.equal(child.status, 0, `importing ${entry} failed:\n${child.stderr}`)
    const report = JSON.parse(child.stdout) as {
      exports: string[]
      cjs: string[]
      builtins: string[]
    }
    const hooked = readFileSync(log, 'utf8')
      .split('\n')
      .filter((line) => line !== '')
    return { exports: report.exports, modules: [...hooked, ...report.cjs, ...report.builtins] }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** What the client entry must not load, each with how it shows in the module list. */
const HEAVY: [string, RegExp][] = [
  ['zstd-napi', /[\\/]node_modules[\\/]zstd-napi[\\/]/],
  ['lz4', /[\\/]node_modules[\\/]lz4[\\/]/],
  ['node:zlib', /^(node:zlib|NativeModule zlib)$/],
  ['pino', /[\\/]node_modules[\\/]pino[\\/]/],
  ['prom-client', /[\\/]node_modules[\\/]prom-client[\\/]/],
]

function heavyIn(modules: string[]): string[] {
  return HEAVY.filter(([, pattern]) => modules.some((module) => pattern.test(module))).map(
    ([name]) => name,
  )
}

/** The names the README imports from 'tmem'. */
function readmeImports(): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const names = [...readme.matchAll(/import \{([^}]*)\} from 'tmem'/g)].flatMap((match) =>
    (match[1] ?? '')
      .split(',')
      .map((name) => name.trim())
      .filter((name) => name !== ''),
  )
  return [...new Set(names)]
}

void test('tmem/client loads the client library and no codec, logger or metrics module', () => {
  const loaded = load('tmem/client')
  assert.ok(
    loaded.modules.some((module) => module.endsWith('/dist/src/client/mod.js')),
    'the self-reference reached the client entry',
  )
  for (const name of [
    'connect',
    'connectControl',
    'TmemClient',
    'TmemControlClient',
    'TmemError',
    'TmemConnectionError',
    'TmemProtocolError',
  ]) {
    assert.ok(loaded.exports.includes(name), `tmem/client exports ${name}`)
  }
  assert.deepEqual(heavyIn(loaded.modules), [])
  assert.ok(
    !loaded.modules.some((module) => /\/dist\/src\/(engine|server|migrate|cli)\//.test(module)),
    'only client, protocol, abi and util code',
  )
})

void test('tmem (".") still exports what the README imports, and the detector sees what it loads', () => {
  const names = readmeImports()
  assert.ok(
    names.includes('connect') && names.includes('Host'),
    `the README's imports were found: ${names.join(', ')}`,
  )
  const loaded = load('tmem')
  for (const name of names) assert.ok(loaded.exports.includes(name), `tmem exports ${name}`)
  const heavy = heavyIn(loaded.modules)
  assert.ok(
    heavy.includes('node:zlib') && heavy.includes('prom-client'),
    `the engine and the daemon were seen loading: ${heavy.join(', ')}`,
  )
})

void test('tmem/engine and tmem/daemon export the host and the daemon', () => {
  const engine = load('tmem/engine')
  for (const name of ['Host', 'abi', 'GuestClient', 'TmemError'])
    assert.ok(engine.exports.includes(name), `tmem/engine exports ${name}`)
  const daemon = load('tmem/daemon')
  for (const name of ['Daemon', 'parseSize', 'parseLoopbackAddress'])
    assert.ok(daemon.exports.includes(name), `tmem/daemon exports ${name}`)
})
