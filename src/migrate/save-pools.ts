/**
 * The pool plan of a save (`save.ts`): before any byte is written, each pool slot's flags
 * (version bits set to the v1 stream's), persistent page count and UUID, read with the
 * SAVE_GET_POOL_* subops. A pool with pages other than 4096 bytes fails the save.
 */
import {
  PAGE_SIZE,
  TMEM_POOL_PAGESIZE_MASK,
  TMEM_POOL_PAGESIZE_SHIFT,
  TMEM_POOL_PERSIST,
  TMEM_POOL_VERSION_MASK,
  TMEM_POOL_VERSION_SHIFT,
  TMEM_SPEC_VERSION,
  TMEMC_SAVE_GET_POOL_FLAGS,
  TMEMC_SAVE_GET_POOL_NPAGES,
  TMEMC_SAVE_GET_POOL_UUID,
  rcName,
} from '../abi/constants.js'
import type { Ctrl } from './channel.js'
import { SaveError } from '../errors/mod.js'

export interface PoolPlan {
  poolId: number
  flags: number
  pages: number
  uuid: Uint8Array
}

/** Flags, page count and UUID of every pool slot, before any byte is written. */
export async function planPools(ctrl: Ctrl, cliId: number, maxPools: number): Promise<PoolPlan[]> {
  const plans: PoolPlan[] = []
  for (let poolId = 0; poolId < maxPools; poolId++) {
    const rawFlags = await ctrl.run(TMEMC_SAVE_GET_POOL_FLAGS, poolId)
    if (rawFlags === -1) continue
    const hostFlags = rawFlags >>> 0
    const pageSizeField = (hostFlags >>> TMEM_POOL_PAGESIZE_SHIFT) & TMEM_POOL_PAGESIZE_MASK
    if (pageSizeField !== 0) {
      throw new SaveError(
        'ESAVE',
        { cliId, step: 'TMEMC_SAVE_GET_POOL_FLAGS', rc: rawFlags, poolId },
        `pool ${poolId} has ${PAGE_SIZE << pageSizeField}-byte pages; only ${PAGE_SIZE} are supported`,
      )
    }
    const flags =
      ((hostFlags & ~(TMEM_POOL_VERSION_MASK << TMEM_POOL_VERSION_SHIFT)) |
        (TMEM_SPEC_VERSION << TMEM_POOL_VERSION_SHIFT)) >>>
      0
    let pages = 0
    if ((flags & TMEM_POOL_PERSIST) !== 0) {
      const rc = await ctrl.run(TMEMC_SAVE_GET_POOL_NPAGES, poolId)
      if (rc < 0) {
        throw new SaveError(
          'ESAVE',
          { cliId, step: 'TMEMC_SAVE_GET_POOL_NPAGES', rc, poolId },
          `TMEMC_SAVE_GET_POOL_NPAGES returned ${rc} for pool ${poolId}`,
        )
      }
      pages = rc
    }
    const uuid = new Uint8Array(16)
    const rc = await ctrl.run(TMEMC_SAVE_GET_POOL_UUID, poolId, 16, 0, uuid)
    if (rc < 0) {
      throw new SaveError(
        'ESAVE',
        { cliId, step: 'TMEMC_SAVE_GET_POOL_UUID', rc, poolId },
        `TMEMC_SAVE_GET_POOL_UUID returned ${rcName(rc)} (${rc}) for pool ${poolId}`,
      )
    }
    plans.push({ poolId, flags, pages, uuid })
  }
  return plans
}
