/**
 * SESSION PUSH between two daemon processes (docs/migration.md, "Push"), driven by hand the
 * way the migrator drives it: SAVE_BEGIN (pre-copy) on the source, a restore shell on the
 * target, then PUSH requests. The oracles are page counts the test put itself, the target's
 * engine statistics, and the bytes read back after a migration; the refusals are checked
 * against the rcs docs/protocol.md lists.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, connectControl, type TmemControlClient } from '../../src/client/mod.js'
import { MigrationError, migrateClient } from '../../src/migrate/mod.js'
import {
  TMEM_CONTROL,
  TMEM_POOL_PERSIST,
  TMEM_POOL_VERSION_SHIFT,
  TMEM_RESTORE_NEW,
  TMEM_SAVE_PRECOPY,
  TMEMC_RESTORE_BEGIN,
  TMEMC_SAVE_BEGIN,
} from '../../src/abi/constants.js'
import type { TmemOp } from '../../src/abi/types.js'
import {
  SESSION_PUSH,
  emptySession,
  type SessionMessage,
} from '../../src/protocol/session-frame.js'
import type { DaemonHandle } from '../helpers/daemon.js'
import {
  type CuttingRelay,
  HANG_GUARD_MS,
  PAGE,
  Writer,
  checkAgainstModel,
  cuttingRelay,
  daemonPair,
  fill,
  page,
} from './live-helpers.js'

// Return codes as docs/protocol.md lists them for PUSH, retyped here on purpose.
const EINVAL = -22
const ENOENT = -2
const ECONNREFUSED = -111
const EIO = -5

function ctrl(subop: number, cliId: number, poolId = 0, arg1 = 0): TmemOp {
  return {
    cmd: TMEM_CONTROL,
    poolId,
    ctrl: { subop, cliId, arg1, arg2: 0, oid: [0n, 0n, 0n], buf: 0n },
  }
}

interface Setup {
  a: DaemonHandle
  b: DaemonHandle
  source: TmemControlClient
  target: TmemControlClient
  sourceId: number
  targetId: number
  close(): Promise<void>
}

/** `pages` persistent pages in pool 0 of a client on A, pre-copy begun; a restore shell on B. */
async function setup(pages: number, memory = '64M'): Promise<Setup> {
  const args = ['--memory', memory]
  const [a, b] = await daemonPair({ args })
  try {
    return await prepare(a, b, pages)
  } catch (error) {
    await Promise.all([a.stop(), b.stop()]) // a failed setup must not leave daemons running
    throw error
  }
}

async function prepare(a: DaemonHandle, b: DaemonHandle, pages: number): Promise<Setup> {
  const client = await connect({ path: a.socketPath }, { name: 'pushed' })
  const pool = await client.newPool({ persistent: true })
  const puts: Promise<boolean>[] = []
  for (let i = 0; i < pages; i++) {
    puts.push(client.put(pool, Math.floor(i / 100), i % 100, page(i)))
    if (puts.length >= 64) await Promise.all(puts.splice(0))
  }
  await Promise.all(puts)
  const source = await connectControl({ path: a.controlPath })
  const target = await connectControl({ path: b.controlPath })
  const sourceId = client.clientId
  assert.equal((await source.control(ctrl(TMEMC_SAVE_BEGIN, sourceId, 0, TMEM_SAVE_PRECOPY))).rc, 1)
  const targetId = 9
  assert.equal((await target.control(ctrl(TMEMC_RESTORE_BEGIN, targetId))).rc, 1)
  const flags = (TMEM_POOL_PERSIST | (1 << TMEM_POOL_VERSION_SHIFT)) >>> 0
  const created = await target.control({
    cmd: TMEM_RESTORE_NEW,
    poolId: 0,
    creat: { uuid: [0n, 0n], flags, arg1: targetId },
  })
  assert.equal(created.rc, 0)
  return {
    a,
    b,
    source,
    target,
    sourceId,
    targetId,
    async close() {
      await source.close().catch(() => undefined)
      await target.close().catch(() => undefined)
      await client.close().catch(() => undefined)
      await Promise.all([a.stop(), b.stop()])
    },
  }
}

function push(s: Setup, fields: Partial<SessionMessage>): Promise<number> {
  return s.source
    .session({
      ...emptySession(SESSION_PUSH),
      clientId: s.sourceId,
      flags: 0,
      graceMs: 1000,
      address: `unix:${s.b.controlPath}`,
      peerId: s.targetId,
      ...fields,
    })
    .then((reply) => reply.rc)
}

async function persistentPages(control: TmemControlClient): Promise<number> {
  return ((await control.stats()).host as { persistentPages: number }).persistentPages
}

void test(
  'PUSH sends at most the pages asked for, from the save cursor on, and says how many',
  { timeout: HANG_GUARD_MS },
  async () => {
    const s = await setup(700)
    try {
      assert.equal(await push(s, { graceMs: 300 }), 300)
      assert.equal(await persistentPages(s.target), 300)
      // The cursor moved on: the next request sends the rest and stops short (the list ended).
      assert.equal(await push(s, { graceMs: 1000 }), 400)
      assert.equal(await persistentPages(s.target), 700)
      assert.equal(await push(s, { graceMs: 1000 }), 0)
      assert.equal(await persistentPages(s.source), 700, 'the source keeps its pages')
      const daemon = (await s.source.stats()).daemon as unknown as { pushedPages: number }
      assert.equal(daemon.pushedPages, 700)
    } finally {
      await s.close()
    }
  },
)

void test(
  'PUSH refusals: bad fields, unknown client, unreachable target, target without the client',
  { timeout: HANG_GUARD_MS },
  async () => {
    const s = await setup(50)
    try {
      assert.equal(await push(s, { peerId: 0 }), EINVAL, 'no peer id')
      assert.equal(await push(s, { flags: 16 }), EINVAL, 'pool out of range')
      assert.equal(await push(s, { graceMs: 0 }), EINVAL, 'no pages asked')
      assert.equal(
        await push(s, { address: 'carrier-pigeon:somewhere' }),
        EINVAL,
        'address not unix: or tcp:',
      )
      assert.equal(await push(s, { clientId: 77 }), ENOENT, 'no such client on the source')
      assert.equal(await push(s, { address: `unix:${s.b.controlPath}.missing` }), ECONNREFUSED)
      assert.equal(await persistentPages(s.target), 0, 'nothing was sent by a refused PUSH')
      // The target has no client 8: it refuses the batch, and the push says so.
      assert.equal(await push(s, { peerId: 8 }), EIO)
      assert.equal(await persistentPages(s.target), 0)
      assert.equal(await persistentPages(s.source), 50)
      // The peer id field is refused on any other command, as a reserved field.
      const lookup = await s.source.session({ ...emptySession(1), name: 'pushed', peerId: 3 })
      assert.equal(lookup.rc, EINVAL)
    } finally {
      await s.close()
    }
  },
)

void test(
  'PUSH to a target killed part-way fails with EIO and the source keeps every page',
  { timeout: HANG_GUARD_MS },
  async (t) => {
    const s = await setup(3000)
    // The PUSH reaches B through a relay that passes its first megabyte (a quarter of the
    // pages) and then kills B: the push is cut part-way by its own bytes, not by a timer.
    let relay: CuttingRelay | null = null
    try {
      relay = await cuttingRelay(s.a.dir, s.b.controlPath, 1 << 20, () =>
        s.b.process.kill('SIGKILL'),
      )
      const rc = await push(s, { graceMs: 3000, address: `unix:${relay.path}` })
      t.diagnostic(`PUSH returned ${rc}`)
      assert.ok(relay.cut, 'the relay cut the push part-way')
      assert.equal(rc, EIO)
      assert.equal(await persistentPages(s.source), 3000)
    } finally {
      await relay?.close()
      await s.close()
    }
  },
)

void test(
  'migration with push and with the relay both move every page; push did the pre-copy',
  { timeout: HANG_GUARD_MS },
  async () => {
    for (const mode of [true, false]) {
      const [a, b] = await daemonPair()
      try {
        const client = await connect({ path: a.socketPath }, { name: `mode-${mode}` })
        const pools = [
          await client.newPool({ persistent: true }),
          await client.newPool({ persistent: true }),
        ]
        const writer = new Writer(client, pools)
        await fill(writer, 2500)
        writer.start(2)
        const result = await migrateClient({
          source: { path: a.controlPath },
          target: { path: b.controlPath },
          client: `mode-${mode}`,
          push: mode,
        })
        await writer.stop()
        assert.deepEqual(writer.errors, [])
        if (mode) assert.ok(result.pushedPages >= 2500, `${result.pushedPages} pages pushed`)
        else assert.equal(result.pushedPages, 0)
        assert.equal(client.address, `unix:${b.socketPath}`)
        await checkAgainstModel(client, writer)
        await client.close()
      } finally {
        await Promise.all([a.stop(), b.stop()])
      }
    }
  },
)

void test(
  'a target given as a connection object is relayed (the source cannot be told where it is)',
  { timeout: HANG_GUARD_MS },
  async () => {
    const [a, b] = await daemonPair()
    try {
      const client = await connect({ path: a.socketPath }, { name: 'relayed' })
      const pool = await client.newPool({ persistent: true })
      for (let i = 0; i < 40; i++) await client.put(pool, 1, i, page(i))
      const target = await connectControl({ path: b.controlPath })
      const result = await migrateClient({
        source: { path: a.controlPath },
        target,
        client: 'relayed',
      })
      assert.equal(result.pushedPages, 0)
      assert.equal(result.pages, 40)
      for (let i = 0; i < 40; i += 13) assert.deepEqual(await client.get(pool, 1, i), page(i))
      assert.equal(PAGE, 4096)
      await target.close()
      await client.close()
    } finally {
      await Promise.all([a.stop(), b.stop()])
    }
  },
)

void test(
  'a migration whose PUSH fails part-way rolls back: the source keeps every page and runs on',
  { timeout: HANG_GUARD_MS },
  async () => {
    const [a, b] = await daemonPair()
    // The target is reached through a relay that kills it once one connection (the source's
    // PUSH; the migrator's own control traffic is a few kilobytes) has carried a megabyte.
    let relay: CuttingRelay | null = null
    try {
      relay = await cuttingRelay(a.dir, b.controlPath, 1 << 20, () => b.process.kill('SIGKILL'))
      const client = await connect({ path: a.socketPath }, { name: 'kept' })
      const pools = [await client.newPool({ persistent: true })]
      const writer = new Writer(client, pools)
      await fill(writer, 3000)
      const phases: string[] = []
      const error = await migrateClient({
        source: { path: a.controlPath },
        target: { path: relay.path },
        client: 'kept',
        onProgress: (progress) => phases.push(progress.phase),
        progressIntervalMs: 0,
      }).then(
        () => null,
        (caught: unknown) => caught,
      )
      assert.ok(relay.cut, 'the relay cut the push part-way')
      assert.ok(error instanceof MigrationError, `got ${String(error)}`)
      assert.equal(error.code, 'EMIGRATE')
      assert.equal(error.phase, 'precopy')
      assert.match(error.message, /PUSH of pool 0/)
      assert.equal(error.sourceIntact, true)
      assert.ok(!phases.includes('changes'), `phases ${phases.join(', ')}`)
      assert.equal(client.address, `unix:${a.socketPath}`)
      await checkAgainstModel(client, writer)
      await writer.put({ pool: pools[0]!, oid: 5, index: 5 })
      await client.close()
    } finally {
      await relay?.close()
      await Promise.all([a.stop(), b.stop()])
    }
  },
)
