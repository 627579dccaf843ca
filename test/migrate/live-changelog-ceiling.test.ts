/**
 * The change log's ceiling through a real migration between two daemon processes (issue 13,
 * item 2). Just before the first change round drains the source's log, the client (through
 * the client library, on the source) writes: with a 4 KiB ceiling the log's list holds 13
 * entries and its dirty set 20 pages.
 *
 * - 300 writes to 5 pages: far past the list, so the log coalesces; the migration succeeds and
 *   every page is on the target with its last bytes (the oracle is a Map of the last write).
 * - 60 writes to 60 distinct pages: past even the dirty set; the migration fails with
 *   EMIGRATE whose causeCode is ECHANGELOG, rolled back: the client is still on the source,
 *   not migrating, every page there, its puts working, and the target has no such client.
 *
 * The writes happen at an event of the migration (its first SAVE_GET_CHANGES request), not
 * at a time, so the outcome does not depend on the machine's speed.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { TMEMC_SAVE_GET_CHANGES } from '../../src/abi/constants.js'
import type { TmemOp } from '../../src/abi/types.js'
import { connect, connectControl, type TmemClient } from '../../src/client/mod.js'
import type { TmemControlClient } from '../../src/client/control.js'
import { MigrationError, migrateClient } from '../../src/migrate/mod.js'
import { HANG_GUARD_MS, page, daemonPair } from './live-helpers.js'

const CEILING_BYTES = 4096

/** The source's control connection, running `before` once ahead of the first change drain. */
function hookFirstDrain(control: TmemControlClient, before: () => Promise<void>): void {
  const original = control.controlWith.bind(control)
  let done = false
  control.controlWith = (async (op: TmemOp, ...rest: unknown[]) => {
    if (!done && 'ctrl' in op && op.ctrl.subop === TMEMC_SAVE_GET_CHANGES) {
      done = true
      await before()
    }
    return (original as (...args: unknown[]) => Promise<unknown>)(op, ...rest)
  }) as typeof control.controlWith
}

/** A client with 100 persistent pages; `model` holds the tag last put per index. */
async function client(
  path: string,
  name: string,
): Promise<[TmemClient, number, Map<number, number>]> {
  const guest = await connect({ path }, { name })
  const pool = await guest.newPool({ persistent: true })
  const model = new Map<number, number>()
  for (let i = 0; i < 100; i++) {
    await guest.put(pool, 1, i, page(i))
    model.set(i, i)
  }
  return [guest, pool, model]
}

async function checkPages(
  guest: TmemClient,
  pool: number,
  model: Map<number, number>,
): Promise<void> {
  for (const [index, tag] of model)
    assert.deepEqual(await guest.get(pool, 1, index), page(tag), `page ${index}`)
}

void test(
  'a tiny change-log ceiling: writes coalesce and every last write arrives',
  { timeout: HANG_GUARD_MS },
  async () => {
    const [a, b] = await daemonPair()
    try {
      const [guest, pool, model] = await client(a.socketPath, 'hot-1')
      const source = await connectControl({ path: a.controlPath })
      let tag = 1000
      hookFirstDrain(source, async () => {
        for (let i = 0; i < 300; i++) {
          const index = i % 5
          await guest.put(pool, 1, index, page(++tag))
          model.set(index, tag)
        }
      })
      const moved = new Promise<string>((resolve) => guest.once('moved', resolve))
      const result = await migrateClient({
        source,
        target: { path: b.controlPath },
        client: 'hot-1',
        changeLogBytesMax: CEILING_BYTES,
      })
      assert.equal(result.name, 'hot-1')
      assert.equal(await moved, `unix:${b.socketPath}`)
      await checkPages(guest, pool, model)
      await source.close()
      await guest.close()
    } finally {
      await Promise.all([a.stop(), b.stop()])
    }
  },
)

void test(
  'past the ceiling: ECHANGELOG, rolled back, the client runs on at the source',
  { timeout: HANG_GUARD_MS },
  async () => {
    const [a, b] = await daemonPair()
    try {
      const [guest, pool, model] = await client(a.socketPath, 'wide-1')
      const source = await connectControl({ path: a.controlPath })
      hookFirstDrain(source, async () => {
        for (let i = 0; i < 60; i++) {
          await guest.put(pool, 1, i, page(5000 + i))
          model.set(i, 5000 + i)
        }
      })
      const failed = await migrateClient({
        source,
        target: { path: b.controlPath },
        client: 'wide-1',
        changeLogBytesMax: CEILING_BYTES,
      }).then(
        () => assert.fail('the migration should have failed'),
        (error: unknown) => error,
      )
      assert.ok(failed instanceof MigrationError, String(failed))
      assert.equal(failed.code, 'EMIGRATE')
      assert.equal(failed.causeCode, 'ECHANGELOG')
      assert.equal(failed.sourceIntact, true)
      assert.match(failed.message, /change log/)
      assert.equal(guest.address, `unix:${a.socketPath}`, 'the client did not move')
      await checkPages(guest, pool, model)
      await guest.put(pool, 1, 500, page(500))
      assert.deepEqual(await guest.get(pool, 1, 500), page(500))
      const here = await source.statsPage({ form: 'name', name: 'wide-1' })
      assert.equal(here.host.clients[0]?.liveMigrating, false)
      const target = await connectControl({ path: b.controlPath })
      const there = await target.statsPage({ form: 'name', name: 'wide-1' })
      assert.deepEqual([there.sessions.length, there.host.clients.length], [0, 0])
      await target.close()
      await source.close()
      await guest.close()
    } finally {
      await Promise.all([a.stop(), b.stop()])
    }
  },
)
