// Engine A/B in one process: `node tools/engine-ab.mjs <case> <pages> <reps> <dir>...`.
//
// Loads the built engine (dist/) of each worktree given, builds one host per worktree for the
// same case, and runs them and a bare slab-copy loop in turn, `reps` times, timing each run
// by the process's CPU time. One process and alternating runs put every contestant under the
// same load, which on a shared machine moves much less than between separate processes.
// Prints CPU ns per op (min and median over the runs) and each engine's rate as a share of
// the loop's (min against min).
//
// Cases: get (persistent, random order over `pages` live pages), put (persistent, duplicate
// puts over `pages` live pages), eph (ephemeral, half the pages fit, every put evicts), dedup
// (ephemeral with dedup, 256 distinct pages, duplicate puts), hot (one page got over and over:
// the per-op cost with everything in cache), dedup2 (the bench's dedup case: each run builds a
// fresh dedup host, untimed, then times two passes over `pages` keys of 256 distinct pages,
// new puts then duplicates; ns per put). Ops are aimed as bench/engine.bench.ts aims them
// (16 objects, index = offset >> 4).
//
// For get, put and hot a third contestant, `floor`, is the least any tmem store must do per
// op beside the loop's copy: read the ABI op's command, pool, 192-bit object id and index
// from its bytes, hash the seven key words, probe one open-addressing table, compare the key
// and copy the page with the engine's own native copy. No LRU, counters, timing, client or
// pool lookup: what it costs over the loop is the price of finding a page by its name.
// For eph the floor is a first-in-first-out evicting store (see evictFloorRun).
// `floor1` keeps the key inside the bucket (one cache miss per lookup, 64 B of table per
// page), `floor2` keeps the bucket to one word and the key in a row per slot (two misses).
const [kind, pagesText, repsText, ...dirs] = process.argv.slice(2)
if (kind === undefined || dirs.length === 0) {
  console.error(
    'usage: node tools/engine-ab.mjs get|put|eph|dedup|dedup2|hot <pages> <reps> <dir>...',
  )
  process.exit(2)
}
const PAGE = 4096
const pages = Number(pagesText)
const reps = Number(repsText)
const persistent = kind === 'get' || kind === 'put' || kind === 'hot'

const source = new Uint8Array(256 * PAGE)
let x = 0x9e3779b9
for (let i = 0; i < source.length; i += 4) {
  x ^= x << 13
  x ^= x >>> 17
  x ^= x << 5
  source[i] = x & 255
  source[i + 1] = (x >>> 8) & 255
}
const target = new Uint8Array(PAGE)

function writeU32(bytes, at, value) {
  bytes[at] = value & 255
  bytes[at + 1] = (value >>> 8) & 255
  bytes[at + 2] = (value >>> 16) & 255
  bytes[at + 3] = value >>> 24
}

async function engineRun(dir) {
  const { Host } = await import(`${dir}/dist/src/engine/host.js`)
  const { encodeOp, poolFlags } = await import(`${dir}/dist/src/abi/codec.js`)
  const C = await import(`${dir}/dist/src/abi/constants.js`)
  const { OP_LAYOUT_V1 } = await import(`${dir}/dist/src/abi/layout.js`)
  let host, put, get
  const setup = () => {
    host = new Host({
      pages: persistent ? pages : pages >> 1,
      reservePages: 0,
      dedup: kind === 'dedup' || kind === 'dedup2',
    })
    const creat = { uuid: [0n, 0n], flags: poolFlags({ persistent }), arg1: 0 }
    const newPool = encodeOp({ cmd: C.TMEM_NEW_POOL, poolId: 0, creat })
    const pool = host.opBytes(1, newPool, 0, 1, null, 0)
    const gen = { oid: [0n, 0n, 0n], index: 0, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n }
    put = encodeOp({ cmd: C.TMEM_PUT_PAGE, poolId: pool, gen })
    get = encodeOp({ cmd: C.TMEM_GET_PAGE, poolId: pool, gen })
  }
  setup()
  const aim = (op, offset) => {
    writeU32(op, OP_LAYOUT_V1.genOid, offset & 15)
    writeU32(op, OP_LAYOUT_V1.genIndex, offset >>> 4)
  }
  let base = 0
  const fill = (count) => {
    for (let i = 0; i < count; i++) {
      aim(put, base + i)
      const rc = host.opBytes(1, put, 0, 1, source, (i % 256) * PAGE)
      if (rc !== 1) throw new Error(`put ${base + i} failed with ${rc}`)
    }
    if (kind === 'eph') base += count
  }
  if (kind === 'dedup2') {
    const run = () => {
      fill(pages)
      fill(pages)
    }
    run.setup = setup
    run.ops = 2 * pages
    return run
  }
  fill(kind === 'hot' ? 1 : pages)
  if (kind === 'get') {
    return () => {
      for (let i = 0; i < pages; i++) {
        aim(get, (i * 7919) % pages)
        if (host.opBytes(1, get, 0, 1, target, 0) !== 1) throw new Error('get missed')
      }
    }
  }
  if (kind === 'hot') {
    return () => {
      for (let i = 0; i < pages; i++) host.opBytes(1, get, 0, 1, target, 0)
    }
  }
  return () => fill(pages)
}

/** The floor, as in bench/engine.bench.ts: the same copies in and out of one slab. */
function loopRun() {
  const slots = kind === 'hot' ? 1 : persistent ? pages : pages >> 1
  const slab = Buffer.alloc(slots * PAGE)
  for (let at = 0; at < slab.length; at += PAGE) slab[at] = 1
  const from = Buffer.from(source.buffer)
  if (kind === 'get' || kind === 'hot') {
    return () => {
      for (let i = 0; i < pages; i++) {
        const at = ((i * 7919) % slots) * PAGE
        slab.copy(target, 0, at, at + PAGE)
      }
    }
  }
  return () => {
    for (let i = 0; i < pages; i++) {
      const at = (i % 256) * PAGE
      from.copy(slab, (i % slots) * PAGE, at, at + PAGE)
    }
  }
}

/** The floor (see the header): decode, one probe, one key compare, the copy. */
async function floorRun(dir, inline) {
  const { copyPage } = await import(`${dir}/dist/src/engine/page-copy.js`)
  const { encodeOp } = await import(`${dir}/dist/src/abi/codec.js`)
  const C = await import(`${dir}/dist/src/abi/constants.js`)
  const { OP_LAYOUT_V1: L } = await import(`${dir}/dist/src/abi/layout.js`)
  const slots = kind === 'hot' ? 1 : pages
  const mask = (1 << Math.ceil(Math.log2(slots * 2))) - 1
  // inline: a bucket is [slot + 1, index, oid words 0..5] (one miss per lookup, 64 B of table
  // per page); else a bucket is [slot + 1] and the key is a row of its own (two misses).
  const stride = inline ? 8 : 1
  const buckets = new Uint32Array((mask + 1) * stride)
  const keys = inline ? buckets : new Uint32Array(slots * 8)
  const slab = new Uint8Array(slots * PAGE)
  const gen = { oid: [0n, 0n, 0n], index: 0, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n }
  const op = encodeOp({ cmd: kind === 'put' ? C.TMEM_PUT_PAGE : C.TMEM_GET_PAGE, poolId: 0, gen })
  const key = new Uint32Array(8)
  let lastBucket = 0
  const u32 = (at) => op[at] | (op[at + 1] << 8) | (op[at + 2] << 16) | (op[at + 3] << 24)
  const find = () => {
    key[0] = u32(0)
    key[1] = u32(4)
    for (let w = 0; w < 6; w++) key[2 + w] = u32(L.genOid + 4 * w)
    const index = u32(L.genIndex)
    key[0] = index
    let h = Math.imul(index ^ 0x9e3779b9, 0x85ebca6b)
    for (let w = 2; w < 8; w++) h = Math.imul(h ^ key[w], 0xc2b2ae35) ^ (h >>> 15)
    for (let b = h & mask; ; b = (b + 1) & mask) {
      const slot = buckets[b * stride] - 1
      if (slot < 0) {
        lastBucket = b
        return -1
      }
      const k = inline ? b * 8 + 1 : slot * 8
      if (
        keys[k] === index &&
        keys[k + 1] === key[2] &&
        keys[k + 2] === key[3] &&
        keys[k + 3] === key[4] &&
        keys[k + 4] === key[5] &&
        keys[k + 5] === key[6] &&
        keys[k + 6] === key[7]
      )
        return slot
    }
  }
  const aim = (offset) => {
    writeU32(op, L.genOid, offset & 15)
    writeU32(op, L.genIndex, offset >>> 4)
  }
  for (let i = 0; i < slots; i++) {
    aim(i)
    if (find() !== -1) throw new Error('floor: duplicate key')
    const k = inline ? lastBucket * 8 + 1 : i * 8
    keys[k] = key[0]
    for (let w = 0; w < 6; w++) keys[k + 1 + w] = key[2 + w]
    buckets[lastBucket * stride] = i + 1
    copyPage(source, (i % 256) * PAGE, slab, i * PAGE, PAGE)
  }
  if (kind === 'put') {
    return () => {
      for (let i = 0; i < pages; i++) {
        aim(i % slots)
        const slot = find()
        if (slot < 0) throw new Error('floor: put missed')
        copyPage(source, (i % 256) * PAGE, slab, slot * PAGE, PAGE)
      }
    }
  }
  return () => {
    for (let i = 0; i < pages; i++) {
      aim(kind === 'hot' ? 0 : (i * 7919) % pages)
      const slot = find()
      if (slot < 0) throw new Error('floor: get missed')
      copyPage(slab, slot * PAGE, target, 0, PAGE)
    }
  }
}

/**
 * The evicting floor (case eph): a minimal store with `pages / 2` frames that evicts first in,
 * first out. Per put: decode the op, hash the key, probe (a miss), take the victim under the
 * hand, find its bucket from the hash kept in its row and delete it with a backward shift,
 * probe again for the new key's empty bucket, write the key row and copy the page. No LRU
 * lists, counters or per-client accounting.
 */
async function evictFloorRun(dir) {
  const { copyPage } = await import(`${dir}/dist/src/engine/page-copy.js`)
  const { encodeOp } = await import(`${dir}/dist/src/abi/codec.js`)
  const C = await import(`${dir}/dist/src/abi/constants.js`)
  const { OP_LAYOUT_V1: L } = await import(`${dir}/dist/src/abi/layout.js`)
  const slots = pages >> 1
  const mask = (1 << Math.ceil(Math.log2(slots * 2))) - 1
  const buckets = new Uint32Array((mask + 1) * 2) // [slot + 1, hash]
  const rows = new Uint32Array(slots * 8) // [hash, index, oid words 0..5]
  const slab = new Uint8Array(slots * PAGE)
  const gen = { oid: [0n, 0n, 0n], index: 0, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n }
  const op = encodeOp({ cmd: C.TMEM_PUT_PAGE, poolId: 0, gen })
  const key = new Uint32Array(8)
  const u32 = (at) => op[at] | (op[at + 1] << 8) | (op[at + 2] << 16) | (op[at + 3] << 24)
  let used = 0
  let hand = 0
  let base = 0
  const emptyFor = (h) => {
    let b = h & mask
    while (buckets[b * 2] !== 0) b = (b + 1) & mask
    return b
  }
  const remove = (victim) => {
    const h = rows[victim * 8]
    let j = h & mask
    while (buckets[j * 2] !== victim + 1) j = (j + 1) & mask
    for (let k = (j + 1) & mask; buckets[k * 2] !== 0; k = (k + 1) & mask) {
      const home = buckets[k * 2 + 1] & mask
      if (((k - home) & mask) >= ((k - j) & mask)) {
        buckets[j * 2] = buckets[k * 2]
        buckets[j * 2 + 1] = buckets[k * 2 + 1]
        j = k
      }
    }
    buckets[j * 2] = 0
  }
  const put = (sourceAt) => {
    key[0] = u32(0)
    key[1] = u32(4)
    for (let w = 0; w < 6; w++) key[2 + w] = u32(L.genOid + 4 * w)
    const index = u32(L.genIndex)
    let h = Math.imul(index ^ 0x9e3779b9, 0x85ebca6b)
    for (let w = 2; w < 8; w++) h = Math.imul(h ^ key[w], 0xc2b2ae35) ^ (h >>> 15)
    h >>>= 0
    for (let b = h & mask; buckets[b * 2] !== 0; b = (b + 1) & mask) {
      if (buckets[b * 2 + 1] !== h) continue
      const r = (buckets[b * 2] - 1) * 8
      if (rows[r + 1] === index && rows[r + 2] === key[2] && rows[r + 7] === key[7]) {
        throw new Error('evict floor: the workload puts new keys only')
      }
    }
    let slot
    if (used < slots) slot = used++
    else {
      slot = hand
      hand = hand + 1 === slots ? 0 : hand + 1
      remove(slot)
    }
    const b = emptyFor(h)
    buckets[b * 2] = slot + 1
    buckets[b * 2 + 1] = h
    const r = slot * 8
    rows[r] = h
    rows[r + 1] = index
    for (let w = 0; w < 6; w++) rows[r + 2 + w] = key[2 + w]
    copyPage(source, sourceAt, slab, slot * PAGE, PAGE)
  }
  const fill = () => {
    for (let i = 0; i < pages; i++) {
      const offset = base + i
      writeU32(op, L.genOid, offset & 15)
      writeU32(op, L.genIndex, offset >>> 4)
      put((i % 256) * PAGE)
    }
    base += pages
  }
  fill()
  return fill
}

const floor = kind === 'get' || kind === 'put' || kind === 'hot'
const names = [
  'loop',
  ...(floor ? ['floor1', 'floor2'] : kind === 'eph' ? ['floor'] : []),
  ...dirs.map((dir) => dir.replace(/\/+$/, '').split('/').pop()),
]
const runs = [loopRun()]
if (floor) runs.push(await floorRun(dirs[0], true), await floorRun(dirs[0], false))
if (kind === 'eph') runs.push(await evictFloorRun(dirs[0]))
for (const dir of dirs) runs.push(await engineRun(dir))
const times = runs.map(() => [])
for (let r = 0; r < reps; r++) {
  runs.forEach((run, k) => {
    if (run.setup !== undefined) run.setup()
    const started = process.cpuUsage()
    run()
    const used = process.cpuUsage(started)
    times[k].push(((used.user + used.system) * 1000) / (run.ops ?? pages))
  })
}
const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1]
const loopMin = Math.min(...times[0])
names.forEach((name, k) => {
  const min = Math.min(...times[k])
  console.log(
    `${kind} ${pages} ${name}: CPU ns/op min ${min.toFixed(0)}, median ` +
      `${median(times[k]).toFixed(0)}, rate / loop ${(loopMin / min).toFixed(2)}x`,
  )
})
