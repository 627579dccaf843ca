/**
 * The evicting put (src/engine/reuse.ts: with every slot or frame taken, a plain ephemeral put
 * takes its victim's slot and frame over in place) held to a plain model after every step of
 * random sequences (fast-check). The model keeps every ephemeral page, with the seed of its
 * bytes, in one array in global LRU order and evicts as docs/semantics.md "Eviction" says with
 * no weights: the oldest page not of the object being written. It checks what the in-place
 * path could get wrong:
 *
 *  - which page goes: the eviction hook (`onEvictEphemeral`, the remote tier's) names each
 *    victim, in the model's order, and hands over the victim's own bytes (the hook runs before
 *    the new page is copied into the frame it is about to reuse);
 *  - the put's result, the LRU order, and the bytes of every hit;
 *  - the LIST counters an eviction and a put move: Et, Ea, Af, Pf, Ec, Pc, Oc, Ep, Fc, per
 *    client Ec, Et, and per pool the page and object counts.
 *
 * A second test mixes in a compressing client, whose pages are chunks: a chunk victim frees no
 * frame of its own, so the put goes the usual way (and may evict more than once). There the
 * model checks that every victim is the oldest eligible page at the time, with its own bytes,
 * and that every page the model still holds reads back with its bytes.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { NONE } from '../../src/engine/store.js'
import { E, F, Harness, lineValue, page, PAGE, SUB } from './conformance-helpers.js'

interface ModelPage {
  client: number
  pool: number
  oid: number
  index: number
  seed: number
}

const sameKey = (a: ModelPage, b: Omit<ModelPage, 'seed'>): boolean =>
  a.client === b.client && a.pool === b.pool && a.oid === b.oid && a.index === b.index

class LruModel {
  /** Every ephemeral page, oldest first. */
  pages: ModelPage[] = []
  evictions = 0
  failedEvictions = 0
  newPuts = 0
  /** Most pages held at once (Em, Pm). */
  heldMax = 0

  find(key: Omit<ModelPage, 'seed'>): number {
    return this.pages.findIndex((p) => sameKey(p, key))
  }

  /** The oldest page not of object (client, pool, oid), or -1. */
  victim(client: number, pool: number, oid: number): number {
    return this.pages.findIndex((p) => !(p.client === client && p.pool === pool && p.oid === oid))
  }

  /** A put into a host of `budget` plain pages (one page, one slot, one frame). */
  put(budget: number, page: ModelPage): number {
    const at = this.find(page)
    if (at >= 0) {
      this.pages[at]!.seed = page.seed // replaced in place, not moved
      return 1
    }
    if (this.pages.length >= budget) {
      const victim = this.victim(page.client, page.pool, page.oid)
      if (victim < 0) {
        this.failedEvictions++
        return E.NOMEM
      }
      this.pages.splice(victim, 1)
      this.evictions++
    }
    this.pages.push(page)
    this.newPuts++
    return 1
  }

  /** A get: a hit leaves a private pool (0) and moves to the tail in a shared one (1). */
  get(key: Omit<ModelPage, 'seed'>): ModelPage | null {
    const at = this.find(key)
    if (at < 0) return null
    const [hit] = this.pages.splice(at, 1)
    if (key.pool === 1) this.pages.push(hit!)
    return hit!
  }

  flush(key: Omit<ModelPage, 'seed'>): void {
    const at = this.find(key)
    if (at >= 0) this.pages.splice(at, 1)
  }
}

/** What the eviction hook saw: each victim's key and its page, expanded. */
interface Seen {
  client: number
  pool: number
  oid: number
  index: number
  bytes: Uint8Array
}

function watchEvictions(h: Harness): Seen[] {
  const seen: Seen[] = []
  h.host.onEvictEphemeral = (victim) => {
    const bytes = new Uint8Array(PAGE)
    const end = victim.offset + victim.length
    const input = victim.kind === 3 ? new Uint8Array(new Uint32Array([victim.fill]).buffer) : null
    const ok =
      input === null
        ? h.host.expandStored(victim.kind, victim.bytes, victim.offset, end, bytes)
        : h.host.expandStored(victim.kind, input, 0, 4, bytes)
    assert.ok(ok, 'the victim expands to a page')
    seen.push({
      client: victim.clientId,
      pool: victim.poolId,
      oid: victim.oid[0]!,
      index: victim.index,
      bytes,
    })
  }
  return seen
}

/** The engine's global LRU, oldest first, as keys. */
function engineLru(h: Harness): Omit<ModelPage, 'seed'>[] {
  const core = h.host.core
  const store = core.store
  const keys: Omit<ModelPage, 'seed'>[] = []
  for (let slot = core.globalLru[0]!; slot !== NONE; slot = store.listNext[slot]!) {
    const object = store.slotObject(slot)
    const pool = core.pools.byGid(store.objectPool[object]!)
    keys.push({
      client: pool.owner.id,
      pool: pool.poolId,
      oid: store.objectOid[object * 6]!,
      index: store.slotIndex(slot),
    })
  }
  return keys
}

type Step = { k: 'put' | 'get' | 'flush'; c: number; pool: number; oid: number; index: number }

const stepArbitrary = (clients: number): fc.Arbitrary<Step> =>
  fc.record(
    {
      k: fc.constantFrom<Step['k']>('put', 'put', 'put', 'put', 'put', 'put', 'get', 'flush'),
      c: fc.integer({ min: 1, max: clients }),
      pool: fc.integer({ min: 0, max: 1 }),
      oid: fc.nat(3),
      index: fc.nat(9),
    },
    { noNullPrototype: true },
  )

function setup(budget: number, clients: number): Harness {
  const h = new Harness({ pages: budget, reservePages: 0, sharedAuth: false })
  for (let c = 1; c <= clients; c++) {
    assert.equal(h.newPool(c, F.PRIVATE_EPH), 0)
    assert.equal(h.newPool(c, F.SHARED_EPH, [BigInt(c), 7n]), 1)
  }
  return h
}

/** Checks the victims the hook reported since `from` against the model's expectations. */
function checkVictims(seen: Seen[], from: number, expected: ModelPage[], what: string): void {
  assert.equal(seen.length - from, expected.length, `${what}: number of victims`)
  expected.forEach((want, i) => {
    const got = seen[from + i]!
    const { bytes, ...key } = got
    assert.deepEqual(key, {
      client: want.client,
      pool: want.pool,
      oid: want.oid,
      index: want.index,
    })
    assert.ok(Buffer.from(bytes).equals(page(want.seed)), `${what}: the victim's own bytes`)
  })
}

function pageCount(model: LruModel, client: number, pool?: number): number {
  return model.pages.filter((p) => p.client === client && (pool === undefined || p.pool === pool))
    .length
}

function objectCount(model: LruModel, client?: number, pool?: number): number {
  const objects = new Set(
    model.pages
      .filter(
        (p) =>
          (client === undefined || p.client === client) && (pool === undefined || p.pool === pool),
      )
      .map((p) => `${p.client}/${p.pool}/${p.oid}`),
  )
  return objects.size
}

/** The LIST numbers a put and an eviction move, against the model. */
function checkCounters(h: Harness, model: LruModel, budget: number, clients: number, what: string) {
  const text = h.list(0xffff, true)
  const g = (key: string): number => lineValue(text, 'G=', key)
  const held = model.pages.length
  assert.deepEqual(
    { Et: g('Et'), Ea: g('Ea'), Af: g('Af'), Pf: g('Pf'), Ec: g('Ec'), Pc: g('Pc') },
    {
      Et: model.evictions,
      Ea: model.evictions + model.failedEvictions,
      Af: model.failedEvictions,
      Pf: 0,
      Ec: held,
      Pc: held,
    },
    what,
  )
  assert.deepEqual(
    { Oc: g('Oc'), Ep: g('Ep'), Fc: g('Fc'), Em: g('Em'), Pm: g('Pm') },
    { Oc: objectCount(model), Ep: model.newPuts, Fc: held, Em: model.heldMax, Pm: model.heldMax },
    what,
  )
  assert.ok(held <= budget)
  for (let c = 1; c <= clients; c++) {
    assert.equal(lineValue(text, `C=CI:${c},`, 'Ec'), pageCount(model, c), `${what}: client ${c}`)
    for (const pool of [0, 1]) {
      const prefix = `P=CI:${c},PI:${pool},`
      assert.equal(lineValue(text, prefix, 'Pc'), pageCount(model, c, pool), `${what}: pages`)
      assert.equal(lineValue(text, prefix, 'Oc'), objectCount(model, c, pool), `${what}: objects`)
    }
  }
}

/** One random run's engine, model and evictions seen, as the step handlers get them. */
interface StepRun {
  h: Harness
  model: LruModel
  seen: Seen[]
  budget: number
  clients: number
  /** The next page's seed (its bytes); each put takes one. */
  seed: number
}

/**
 * Random steps on an engine of `clients` clients and a random budget, against the LRU model:
 * a get or flush goes through `getOrFlush`; a put through `put` (which checks its victims and
 * updates the model); then `afterStep`, the engine's LRU order against the model's and the
 * engine's own invariants.
 */
function randomSteps(options: {
  clients: number
  budgetMin: number
  numRuns: number
  prepare?: (h: Harness) => void
  put: (
    run: StepRun,
    step: Step,
    key: Omit<ModelPage, 'seed'>,
    before: number,
    what: string,
  ) => void
  afterStep?: (run: StepRun, step: Step, before: number, what: string) => void
}): void {
  fc.assert(
    fc.property(
      fc.integer({ min: options.budgetMin, max: 24 }),
      fc.array(stepArbitrary(options.clients), { minLength: 1, maxLength: 300 }),
      (budget, steps) => {
        const h = setup(budget, options.clients)
        options.prepare?.(h)
        const run: StepRun = {
          h,
          model: new LruModel(),
          seen: watchEvictions(h),
          budget,
          clients: options.clients,
          seed: 1,
        }
        steps.forEach((step, i) => {
          const what = `step ${i} (${JSON.stringify(step)})`
          const key = { client: step.c, pool: step.pool, oid: step.oid, index: step.index }
          const before = run.seen.length
          if (step.k === 'put') {
            options.put(run, step, key, before, what)
            run.seed++
          } else {
            getOrFlush(h, run.model, step, what)
          }
          options.afterStep?.(run, step, before, what)
          assert.deepEqual(
            engineLru(h),
            run.model.pages.map(({ seed: _, ...k }) => k),
            what,
          )
          h.check()
        })
      },
    ),
    { numRuns: options.numRuns },
  )
}

void test("an evicting put takes the model's victim, keeps every count (random steps)", () => {
  randomSteps({
    clients: 2,
    budgetMin: 3,
    numRuns: 150,
    put(run, step, key, before, what) {
      const lruBefore = [...run.model.pages]
      const rc = run.h.put(step.c, step.pool, step.oid, step.index, page(run.seed))
      const modelRc = run.model.put(run.budget, { ...key, seed: run.seed })
      assert.equal(rc, modelRc, `${what}: put result`)
      const gone = lruBefore.filter((p) => !run.model.pages.includes(p))
      checkVictims(run.seen, before, gone, what)
    },
    afterStep(run, step, before, what) {
      if (step.k !== 'put') assert.equal(run.seen.length, before, `${what}: no eviction`)
      run.model.heldMax = Math.max(run.model.heldMax, run.model.pages.length)
      checkCounters(run.h, run.model, run.budget, run.clients, what)
    },
  })
})

/** A get (hit and bytes checked against the model) or a flush, on the engine and the model. */
function getOrFlush(h: Harness, model: LruModel, step: Step, what: string): void {
  const key = { client: step.c, pool: step.pool, oid: step.oid, index: step.index }
  if (step.k === 'get') {
    const into = new Uint8Array(PAGE)
    const hit = h.get(step.c, step.pool, step.oid, step.index, into) === 1
    const want = model.get(key)
    assert.equal(hit, want !== null, `${what}: get hit`)
    if (want !== null) assert.ok(Buffer.from(into).equals(page(want.seed)), `${what}: bytes`)
  } else {
    h.flushPage(step.c, step.pool, step.oid, step.index)
    model.flush(key)
  }
}

void test('with a compressing client, chunk victims go the usual way (random steps)', () => {
  randomSteps({
    clients: 3,
    budgetMin: 4,
    numRuns: 100,
    prepare: (h) => assert.equal(h.ctrl(SUB.SET_COMPRESS, { cliId: 3, arg1: 1 }), 0),
    put(run, step, key, before, what) {
      const { h, model, seed } = run
      const rc = h.put(step.c, step.pool, step.oid, step.index, page(seed))
      // Each victim is the oldest eligible page when it goes, with its own bytes.
      for (const victim of run.seen.slice(before)) {
        const at = model.victim(step.c, step.pool, step.oid)
        assert.ok(at >= 0, `${what}: a victim the model has`)
        checkVictims([victim], 0, [model.pages[at]!], what)
        model.pages.splice(at, 1)
      }
      if (rc === 1) {
        const at = model.find(key)
        if (at >= 0) model.pages[at]!.seed = seed
        else model.pages.push({ ...key, seed })
      } else {
        assert.equal(rc, E.NOMEM, `${what}: put result`)
        assert.ok(
          model.victim(step.c, step.pool, step.oid) < 0,
          `${what}: -ENOMEM with a victim left`,
        )
      }
    },
  })
})
