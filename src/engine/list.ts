/**
 * TMEMC_LIST text (docs/semantics.md "LIST", "Decision: LIST format"): the exact Xen format, every line well formed. Lines are
 * tagged `G=`, `S=`, `C=`, `P=`, `T=`; items are `key:value`, comma separated; the long form
 * appends a second group. A line is emitted only if it fits in the room left in the caller's
 * buffer (with its NUL); a line that does not fit ends its section. Radix-tree node counts
 * (`Nc`, `Nm`) are always 0: this engine indexes pages in a hash table, not radix trees.
 */
import { CLI_ID_NULL } from '../abi/constants.js'
import type { Core } from './core.js'
import { type Client, type Pool, TIME_TAGS } from './model.js'

export function renderList(core: Core, cliId: number, long: boolean, capacity: number): string {
  const out = new LineSink(capacity)
  if (cliId === CLI_ID_NULL) {
    out.add(globalLine(core, long))
    for (const pool of core.pools.shared) {
      if (pool !== null && !out.add(sharedLine(pool, long))) break
    }
    for (const client of core.clientOrder) clientLines(out, client, long)
    out.add(timeLine(core))
  } else {
    const client = core.clientsById[cliId]
    if (client !== undefined) clientLines(out, client, long)
  }
  return out.text
}

/**
 * TMEMC_LIST_PAGE (tmem's own, docs/abi.md): the LIST text of the clients with an id from
 * `first` up, in id order, whole clients only (a C= line with all its P= lines), as many as fit
 * in `capacity` bytes with the NUL. `head` begins the page with the G= and S= lines; the page
 * that reaches the last client ends with the T= line (room for it is kept on every page).
 * `next` is the id to ask for next, CLI_ID_NULL when there are no more clients. Costs the
 * clients listed plus the ids skipped between them, never the whole host.
 */
export function renderListPage(
  core: Core,
  first: number,
  long: boolean,
  head: boolean,
  capacity: number,
): { text: string; next: number } {
  const tail = timeLine(core)
  const out = new LineSink(capacity - tail.length)
  if (head) {
    if (!out.add(globalLine(core, long))) return { text: '', next: first }
    for (const pool of core.pools.shared) {
      if (pool !== null && !out.add(sharedLine(pool, long))) break
    }
  }
  const byId = core.clientsById
  const end = Math.min(byId.length, CLI_ID_NULL)
  let id = first
  for (; id < end; id++) {
    const client = byId[id]
    if (client === undefined) continue
    const before = out.text
    if (!clientLines(out, client, long)) {
      out.text = before
      return { text: out.text, next: id }
    }
  }
  return { text: out.text + tail, next: CLI_ID_NULL }
}

class LineSink {
  text = ''
  readonly #capacity: number

  constructor(capacity: number) {
    this.#capacity = capacity
  }

  /** Appends a line if it fits with its NUL; returns false when it does not. */
  add(line: string): boolean {
    if (line.length >= this.#capacity - this.text.length) return false
    this.text += line
    return true
  }
}

function join(short: string, longGroup: string, long: boolean): string {
  return long ? `${short},${longGroup}\n` : `${short}\n`
}

function globalLine(core: Core, long: boolean): string {
  const c = core.counters
  const frames = core.frames
  const short =
    `G=Tt:${c.totalOps},Te:${c.erroredOps},Cf:${c.failedCopies},Af:${c.failedSubpageAllocs},` +
    `Pf:${c.failedPageAllocs},Ta:${frames.freeList},Lm:0,Et:${c.evicted},Ea:${c.evictAttempts},` +
    `Rt:${c.relinquished},Ra:${c.relinquishAttempts},Rx:${c.relinquishEvictsMax},Fp:0`
  const longGroup =
    `Ec:${c.ephemeralCount},Em:${c.ephemeralMax},Oc:${c.objectCount},Om:${c.objectMax},` +
    `Nc:0,Nm:0,Pc:${c.pageCount},Pm:${c.pageMax},Fc:${frames.used},Fm:${frames.usedMax},` +
    `Sc:${c.contentCount},Sm:${c.contentMax},Ep:${c.goodEphemeralPuts},Gd:${c.dedupPuts},` +
    `Zt:${c.tzeBytes},Gz:${c.compressedBytes}`
  return join(short, longGroup, long)
}

function poolType(pool: Pool): string {
  return (pool.persistent ? 'P' : 'E') + (pool.shared ? 'S' : 'P')
}

function poolGroup(pool: Pool): string {
  return (
    `Pc:${pool.pageCount},Pm:${pool.pageMax},Oc:${pool.objectCount},Om:${pool.objectMax},` +
    `Nc:0,Nm:0,ps:${pool.goodPuts},pt:${pool.puts},pd:${pool.dupPutsFlushed},` +
    `pr:${pool.dupPutsReplaced},px:${pool.noMemoryPuts},gs:${pool.foundGets},gt:${pool.gets},` +
    `fs:${pool.flushesFound},ft:${pool.flushes},os:${pool.flushObjectsFound},ot:${pool.flushObjects}`
  )
}

function sharedLine(pool: Pool, long: boolean): string {
  const sharers = pool.sharers.map((client) => `,SC:${client.id}`).join('')
  const short =
    `S=SI:${pool.sharedSlot},PT:${pool.persistent ? 'P' : 'E'}S,` +
    `U0:${pool.uuidLo.toString(16)},U1:${pool.uuidHi.toString(16)}${sharers}`
  return join(short, poolGroup(pool), long)
}

/** Adds the client's C= line and its P= lines; false when one of them did not fit. */
function clientLines(out: LineSink, client: Client, long: boolean): boolean {
  const short =
    `C=CI:${client.id},ww:${client.weight | 0},ca:${client.cap},co:${client.compress ? 1 : 0},` +
    `fr:${client.frozen ? 1 : 0},Tc:${Math.round(client.cycles)},Ge:${client.succEphemeralGets},` +
    `Pp:${client.succPersistentPuts},Gp:${client.succPersistentGets}`
  const longGroup =
    `Ec:${client.ephemeralCount},Em:${client.ephemeralMax},cp:${client.compressedPages},` +
    `cb:${client.compressedBytes},cn:${client.compressPoor},cm:${client.compressNoMemory}`
  if (!out.add(join(short, longGroup, long))) return false
  for (const pool of client.pools) {
    if (pool === null) continue
    const uuid = pool.shared
      ? `U0:${pool.uuidLo.toString(16)},U1:${pool.uuidHi.toString(16)}`
      : 'U0:0,U1:0'
    const line = join(
      `P=CI:${client.id},PI:${pool.poolId},PT:${poolType(pool)},${uuid}`,
      poolGroup(pool),
      long,
    )
    if (!out.add(line)) return false
  }
  return true
}

function timeLine(core: Core): string {
  const t = core.times
  const items = TIME_TAGS.map((tag, i) => {
    const count = t.count[i]!
    return (
      `${tag}n:${count},${tag}t:${Math.round(t.total[i]!)},` +
      `${tag}x:${Math.round(t.max[i]!)},${tag}m:${Math.round(t.min[i]!)}`
    )
  })
  return `T=${items.join(',')}\n`
}
