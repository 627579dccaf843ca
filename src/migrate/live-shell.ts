/**
 * The shell (docs/migration.md, "Phases"): SAVE_BEGIN(TMEM_SAVE_PRECOPY) on the source (the
 * client keeps running, every persistent change is logged), then on the target an empty
 * client of the same kind: RESTORE_BEGIN (v0: SESSION CREATE), compression, weight, cap, and
 * every pool 1:1 (TMEM_AUTH + TMEM_RESTORE_NEW). Pools made later are copied by `syncPools`.
 */
import {
  MAX_POOLS_PER_DOMAIN,
  TMEM_AUTH,
  TMEM_CLIENT_COMPRESS,
  TMEM_CLIENT_FROZEN,
  TMEM_POOL_PERSIST,
  TMEM_POOL_SHARED,
  TMEM_RESTORE_NEW,
  TMEM_SAVE_PRECOPY,
  TMEMC_RESTORE_BEGIN,
  TMEMC_SAVE_BEGIN,
  TMEMC_SAVE_GET_CLIENT_CAP,
  TMEMC_SAVE_GET_CLIENT_FLAGS,
  TMEMC_SAVE_GET_CLIENT_WEIGHT,
  TMEMC_SAVE_GET_POOL_FLAGS,
  TMEMC_SAVE_GET_POOL_NPAGES,
  TMEMC_SAVE_GET_POOL_UUID,
  TMEMC_SET_CAP,
  TMEMC_SET_COMPRESS,
  TMEMC_SET_WEIGHT,
} from '../abi/constants.js'
import { controlOp } from '../abi/codec.js'
import { MigrationStepError } from '../errors/mod.js'
import {
  SESSION_CREATE,
  SESSION_ENOENT,
  SESSION_FREE_ID,
  SESSION_LOOKUP,
  emptySession,
} from '../protocol/session-frame.js'
import { copyRemotePolicy } from './live-remote.js'
import type { Migration } from './live-state.js'

export async function shell(m: Migration): Promise<void> {
  // arg2: the change log's ceiling in KiB (0: the source daemon's default).
  const logKiB = Math.min(Math.ceil((m.options.changeLogBytesMax ?? 0) / 1024), 0xffffffff)
  const begun = await m.ctrl('source', TMEMC_SAVE_BEGIN, m.sourceId, 0, TMEM_SAVE_PRECOPY, logKiB)
  m.saveBegun = begun === 1
  const flags = m.saveBegun ? await m.ctrl('source', TMEMC_SAVE_GET_CLIENT_FLAGS, m.sourceId) : 0
  const weight = m.saveBegun ? await m.ctrl('source', TMEMC_SAVE_GET_CLIENT_WEIGHT, m.sourceId) : 0
  const cap = m.saveBegun ? await m.ctrl('source', TMEMC_SAVE_GET_CLIENT_CAP, m.sourceId) : 0
  m.clientFlags = flags
  m.wasFrozen = flags >= 0 && (flags & TMEM_CLIENT_FROZEN) !== 0
  m.targetId = await pickTargetId(m)
  await createTargetClient(m)
  if (m.saveBegun) {
    await setOnTarget(
      m,
      TMEMC_SET_COMPRESS,
      (flags & TMEM_CLIENT_COMPRESS) !== 0 ? 1 : 0,
      'SET_COMPRESS',
    )
    await setOnTarget(m, TMEMC_SET_WEIGHT, weight === -2 ? 0xffffffff : weight >>> 0, 'SET_WEIGHT')
    if (cap >= 0 && cap <= 100) await setOnTarget(m, TMEMC_SET_CAP, cap, 'SET_CAP')
    await copyRemotePolicy(m)
  }
  await syncPools(m)
  for (const pool of m.pools.values()) m.pagesTotal += pool.pages
  m.report(false)
}

/** RESTORE_BEGIN of the client on the target (v0: SESSION CREATE). */
async function createTargetClient(m: Migration): Promise<void> {
  if (m.plan.abi === 1) {
    const rc = await m.ctrl('target', TMEMC_RESTORE_BEGIN, m.targetId)
    if (rc !== 1)
      throw new MigrationStepError('target', 'RESTORE_BEGIN', rc, `client ${m.targetId}`)
  } else {
    const reply = await m.session('target', {
      ...emptySession(SESSION_CREATE),
      clientId: m.targetId,
      abi: 0,
    })
    if (reply.rc !== m.targetId)
      throw new MigrationStepError('target', 'SESSION CREATE', reply.rc, `v0 client ${m.targetId}`)
  }
  m.targetCreated = true
}

/** A client setting on the target (SET_COMPRESS, SET_WEIGHT, SET_CAP, FREEZE). */
export async function setOnTarget(
  m: Migration,
  subop: number,
  value: number,
  step: string,
): Promise<void> {
  await m.ctrlOk('target', subop, step, m.targetId, 0, value)
}

/** The source id when the target has no client with it, else a free one. */
async function pickTargetId(m: Migration): Promise<number> {
  const there = await m.session('target', { ...emptySession(SESSION_LOOKUP), clientId: m.sourceId })
  if (there.rc === SESSION_ENOENT) return m.sourceId
  const free = await m.session('target', emptySession(SESSION_FREE_ID))
  if (free.rc <= 0)
    throw new MigrationStepError(
      'target',
      'SESSION FREE_ID',
      free.rc,
      'the target has no free client id',
    )
  return free.rc
}

/** Creates on the target every pool the source has and the target does not yet. */
export async function syncPools(m: Migration): Promise<void> {
  const slots = Array.from({ length: MAX_POOLS_PER_DOMAIN }, (_, slot) => slot).filter(
    (slot) => !m.pools.has(slot),
  )
  const flags = await Promise.all(
    slots.map((slot) => m.ctrl('source', TMEMC_SAVE_GET_POOL_FLAGS, m.sourceId, slot)),
  )
  for (let i = 0; i < slots.length; i++) {
    if (flags[i] !== -1) await copyPool(m, slots[i]!, flags[i]!)
  }
}

/** Makes pool `slot` (with the source's `poolFlags`) on the target and checks it came out so. */
async function copyPool(m: Migration, slot: number, poolFlags: number): Promise<void> {
  const persistent = (poolFlags & TMEM_POOL_PERSIST) !== 0
  const shared = (poolFlags & TMEM_POOL_SHARED) !== 0
  const uuid = await poolUuid(m, slot)
  const pages = persistent
    ? Math.max(0, await m.ctrl('source', TMEMC_SAVE_GET_POOL_NPAGES, m.sourceId, slot))
    : 0
  const hex = `0x${(poolFlags >>> 0).toString(16)}`
  if (shared) {
    const auth = await m.op('target', {
      cmd: TMEM_AUTH,
      poolId: 0,
      creat: { uuid, flags: 1, arg1: m.targetId },
    })
    if (auth.rc < 0)
      throw new MigrationStepError('target', 'TMEM_AUTH', auth.rc, `shared pool ${slot}`)
  }
  const created = await m.op('target', {
    cmd: TMEM_RESTORE_NEW,
    poolId: slot,
    creat: { uuid, flags: poolFlags >>> 0, arg1: m.targetId },
  })
  if (created.rc !== slot)
    throw new MigrationStepError(
      'target',
      'TMEM_RESTORE_NEW',
      created.rc,
      `pool ${slot}, flags ${hex}`,
    )
  const check = await m.ctrl('target', TMEMC_SAVE_GET_POOL_FLAGS, m.targetId, slot)
  const kind = TMEM_POOL_PERSIST | TMEM_POOL_SHARED
  if (check < 0 || (check & kind) !== (poolFlags & kind)) {
    throw new MigrationStepError(
      'target',
      'SAVE_GET_POOL_FLAGS',
      check,
      `pool ${slot} came back with flags 0x${(check >>> 0).toString(16)} instead of ${hex}`,
    )
  }
  m.pools.set(slot, { slot, flags: poolFlags, uuid, persistent, shared, pages })
}

async function poolUuid(m: Migration, slot: number): Promise<[bigint, bigint]> {
  const { rc, data } = await m.op(
    'source',
    controlOp(TMEMC_SAVE_GET_POOL_UUID, m.sourceId, slot),
    null,
    16,
  )
  if (rc < 0) throw new MigrationStepError('source', 'SAVE_GET_POOL_UUID', rc, `pool ${slot}`)
  const view = Buffer.from(data.buffer, data.byteOffset, 16)
  return [view.readBigUInt64LE(0), view.readBigUInt64LE(8)]
}
