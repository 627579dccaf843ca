/**
 * Compares the engine's internal state with the plain model of model-host.ts, for the
 * model-based tests. Reads engine internals (client table, pool records, store columns,
 * frames), never changes them. Two depths:
 *  - `compareStructure` (cheap, after every step): the same clients, freeze flags and caps;
 *    the same pool in every slot (one engine pool per model pool, so sharing matches), the
 *    same kind, owner, share list and shared-pool table; persistent page counts equal and
 *    ephemeral page counts never above the model's.
 *  - `compareContents` (every few steps and at the end): every page the engine holds, loaded
 *    through its payload decoder, is a page the model holds, byte for byte, and in shared pools every object's last client
 *    matches. Together with the structure check this says the engine holds a subset of the
 *    model (exactly the model for persistent pools) and never stale or foreign bytes.
 * Throws ModelMismatch with a sentence on the first difference.
 */
import type { Host } from '../../src/engine/host.js'
import type { Pool } from '../../src/engine/model.js'
import { NONE } from '../../src/engine/store.js'
import { ModelMismatch, oidKey, type ModelHost, type ModelPool } from './model-host.js'

const PAGE_BYTES = 4096

function fail(message: string): never {
  throw new ModelMismatch(`engine state: ${message}`)
}

/** Pairs every model pool with its engine pool; throws when slots or sharing disagree. */
export function compareStructure(
  host: Host,
  model: ModelHost,
  clientIds: readonly number[],
): Map<ModelPool, Pool> {
  const pairs = new Map<ModelPool, Pool>()
  const engineSeen = new Map<Pool, ModelPool>()
  for (const id of clientIds) {
    const mine = model.clients.get(id)
    const theirs = host.core.clientsById[id]
    if ((mine === undefined) !== (theirs === undefined)) {
      fail(`client ${id} exists in the ${mine === undefined ? 'engine' : 'model'} only`)
    }
    if (mine === undefined || theirs === undefined) continue
    if (mine.frozen !== theirs.frozen)
      fail(`client ${id} frozen ${theirs.frozen}, model ${mine.frozen}`)
    if (mine.cap !== theirs.cap) fail(`client ${id} cap ${theirs.cap}, model ${mine.cap}`)
    for (let slot = 0; slot < mine.pools.length; slot++) {
      const a = mine.pools[slot] ?? null
      const b = theirs.pools[slot] ?? null
      if ((a === null) !== (b === null))
        fail(
          `client ${id} slot ${slot}: model ${a === null ? 'empty' : 'pool'}, engine ${b === null ? 'empty' : 'pool'}`,
        )
      if (a === null || b === null) continue
      const paired = pairs.get(a)
      if (paired !== undefined && paired !== b) fail(`model pool ${a.serial} is two engine pools`)
      const back = engineSeen.get(b)
      if (back !== undefined && back !== a) fail(`engine pool ${b.gid} is two model pools`)
      pairs.set(a, b)
      engineSeen.set(b, a)
    }
  }
  for (const [mine, theirs] of pairs) comparePool(mine, theirs)
  const engineShared = host.core.pools.shared.filter((pool): pool is Pool => pool !== null)
  const modelShared = model.sharedTable.filter((pool): pool is ModelPool => pool !== null)
  if (engineShared.length !== modelShared.length) {
    fail(`${engineShared.length} shared pools in the host table, model ${modelShared.length}`)
  }
  return pairs
}

function comparePool(mine: ModelPool, theirs: Pool): void {
  const name = `pool ${mine.serial} (${mine.kind})`
  if (mine.persistent !== theirs.persistent || mine.shared !== theirs.shared) {
    fail(
      `${name} is ${theirs.persistent ? 'persistent' : 'ephemeral'} ${theirs.shared ? 'shared' : 'private'} in the engine`,
    )
  }
  if (mine.owner !== theirs.owner.id) fail(`${name} owner ${theirs.owner.id}, model ${mine.owner}`)
  if (mine.shared) {
    const sharers = theirs.sharers.map((client) => client.id).join(',')
    if (sharers !== mine.sharers.join(','))
      fail(`${name} sharers [${sharers}], model [${mine.sharers.join(',')}]`)
  }
  if (mine.persistent && theirs.pageCount !== mine.pageCount) {
    fail(`${name} holds ${theirs.pageCount} pages, model ${mine.pageCount}`)
  }
  if (theirs.pageCount > mine.pageCount)
    fail(`${name} holds ${theirs.pageCount} pages, more than the model's ${mine.pageCount}`)
}

/** Every engine page is a model page with the same bytes (see the module comment). */
export function compareContents(host: Host, pairs: Map<ModelPool, Pool>): void {
  const store = host.core.store
  const loaded = new Uint8Array(PAGE_BYTES)
  for (const [mine, theirs] of pairs) {
    const name = `pool ${mine.serial} (${mine.kind})`
    for (let object = theirs.objects[0]!; object !== NONE; object = store.objectPoolNext[object]!) {
      const base = object * 6
      const words = store.objectOid
      const oid = [0, 1, 2].map(
        (i) => BigInt(words[base + 2 * i]!) | (BigInt(words[base + 2 * i + 1]!) << 32n),
      )
      const key = oidKey([oid[0]!, oid[1]!, oid[2]!])
      const modelObject = mine.objects.get(key)
      if (modelObject === undefined) fail(`${name} holds object ${key}, which the model does not`)
      if (mine.shared && store.objectLastClient[object] !== modelObject.lastClient) {
        fail(
          `${name} object ${key} last client ${store.objectLastClient[object]}, model ${modelObject.lastClient}`,
        )
      }
      for (let slot = store.objectChain[object]!; slot !== NONE; slot = store.chainNext[slot]!) {
        const index = store.slotIndex(slot)
        const page = modelObject.pages.get(index)
        if (page === undefined) fail(`${name} holds ${key}/${index}, which the model does not`)
        // Through the engine's own loader: the payload may be compressed, trimmed or shared.
        if (!host.core.loadInto(slot, loaded, 0))
          fail(`${name} page ${key}/${index} fails its check`)
        if (Buffer.compare(loaded, page) !== 0) {
          fail(`${name} page ${key}/${index} holds other bytes than the model`)
        }
      }
    }
  }
}
