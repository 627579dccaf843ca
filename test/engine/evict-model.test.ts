/**
 * Which page eviction takes (docs/semantics.md "Eviction"), held to a plain model after every
 * step of random sequences (fast-check): the model keeps every ephemeral page in one array in
 * global LRU order and applies the documented rule by filtering it —
 *
 *   a caller over its weighted share (C·T > G·W) takes its own oldest eligible page; a caller
 *   within its share takes the oldest eligible page (global order) of any client over its
 *   share; otherwise, or when that finds nothing, the oldest eligible page of all. A page of
 *   the object being written is not eligible.
 *
 * After every step the engine's global LRU, walked from its head, must hold exactly the
 * model's pages in the model's order. Clients 1..3 each own a private ephemeral pool (slot
 * 0: a hit is destructive) and a shared ephemeral pool (slot 1: a hit moves the page to the
 * tails); weights change at random. Some runs lower the engine's age-stamp limit so that the
 * stamps are renumbered many times.
 *
 * A second test states the goal of the rule: two clients weighted 1:3 putting new pages at
 * the same rate into a full host end up holding 1/4 and 3/4 of it (not half each).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { checkInvariants } from '../../src/engine/invariants.js'
import { NONE } from '../../src/engine/store.js'
import { E, F, Harness, lineValue, page, SUB } from './conformance-helpers.js'

interface ModelPage {
  client: number
  pool: number
  oid: number
  index: number
}

class EvictionModel {
  /** Every ephemeral page, oldest first. */
  pages: ModelPage[] = []
  readonly weights = new Map<number, number>()

  constructor(readonly budget: number) {}

  #find(client: number, pool: number, oid: number, index: number): number {
    return this.pages.findIndex(
      (p) => p.client === client && p.pool === pool && p.oid === oid && p.index === index,
    )
  }

  #count(client: number): number {
    return this.pages.filter((p) => p.client === client).length
  }

  #over(client: number): boolean {
    const total = [...this.weights.values()].reduce((sum, w) => sum + w, 0)
    const weight = this.weights.get(client) ?? 0
    const count = this.#count(client)
    if (total === 0 || weight === 0 || count === 0) return false
    return count * total > this.pages.length * weight
  }

  /** The page the rule evicts for `client` writing object (`pool`, `oid`), or -1. */
  #victim(client: number, pool: number, oid: number): number {
    const eligible = (p: ModelPage): boolean =>
      !(p.client === client && p.pool === pool && p.oid === oid)
    let at = -1
    if (this.#over(client)) {
      at = this.pages.findIndex((p) => eligible(p) && p.client === client)
    } else {
      const over = new Set([...this.weights.keys()].filter((c) => this.#over(c)))
      at = this.pages.findIndex((p) => eligible(p) && over.has(p.client))
    }
    return at >= 0 ? at : this.pages.findIndex(eligible)
  }

  put(client: number, pool: number, oid: number, index: number): number {
    if (this.#find(client, pool, oid, index) >= 0) return 1 // replaced in place, not moved
    if (this.pages.length >= this.budget) {
      const victim = this.#victim(client, pool, oid)
      if (victim < 0) return E.NOMEM
      this.pages.splice(victim, 1)
    }
    this.pages.push({ client, pool, oid, index })
    return 1
  }

  /** A get: a hit removes the page (private pool) or moves it to the tail (shared pool). */
  get(client: number, pool: number, oid: number, index: number): boolean {
    const at = this.#find(client, pool, oid, index)
    if (at < 0) return false
    const [hit] = this.pages.splice(at, 1)
    if (pool === 1) this.pages.push(hit!)
    return true
  }

  flush(client: number, pool: number, oid: number, index: number): void {
    const at = this.#find(client, pool, oid, index)
    if (at >= 0) this.pages.splice(at, 1)
  }
}

/** The engine's global LRU, oldest first, as model pages. */
function engineLru(h: Harness): ModelPage[] {
  const core = h.host.core
  const store = core.store
  const pages: ModelPage[] = []
  for (let slot = core.globalLru[0]!; slot !== NONE; slot = store.listNext[slot]!) {
    const object = store.slotObject(slot)
    const pool = core.pools.byGid(store.objectPool[object]!)
    pages.push({
      client: pool.owner.id,
      pool: pool.poolId,
      oid: store.objectOid[object * 6]!,
      index: store.slotIndex(slot),
    })
  }
  return pages
}

type Step =
  | { k: 'put' | 'get' | 'flush'; c: number; pool: number; oid: number; index: number }
  | { k: 'weight'; c: number; weight: number }

const stepArbitrary: fc.Arbitrary<Step> = (() => {
  const page = {
    c: fc.integer({ min: 1, max: 3 }),
    pool: fc.integer({ min: 0, max: 1 }),
    oid: fc.nat(5),
    index: fc.nat(7),
  }
  const r = <T>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> =>
    fc.record(model, { noNullPrototype: true })
  return fc.oneof(
    { weight: 12, arbitrary: r({ k: fc.constant('put' as const), ...page }) },
    { weight: 3, arbitrary: r({ k: fc.constant('get' as const), ...page }) },
    { weight: 1, arbitrary: r({ k: fc.constant('flush' as const), ...page }) },
    {
      weight: 1,
      arbitrary: r({
        k: fc.constant('weight' as const),
        c: fc.integer({ min: 1, max: 3 }),
        weight: fc.nat(4),
      }),
    },
  )
})()

const CLIENTS = [1, 2, 3]

function setup(budget: number, weights: number[]): { h: Harness; model: EvictionModel } {
  const h = new Harness({ pages: budget, reservePages: 0, sharedAuth: false })
  const model = new EvictionModel(budget)
  for (const c of CLIENTS) {
    assert.equal(h.newPool(c, F.PRIVATE_EPH), 0)
    assert.equal(h.newPool(c, F.SHARED_EPH, [BigInt(c), 7n]), 1)
    const weight = weights[c - 1] ?? 0
    assert.equal(h.ctrl(SUB.SET_WEIGHT, { cliId: c, arg1: weight }), 0)
    model.weights.set(c, weight)
  }
  return { h, model }
}

function runStep(h: Harness, model: EvictionModel, step: Step): void {
  switch (step.k) {
    case 'put': {
      const rc = h.put(step.c, step.pool, step.oid, step.index, page(step.index))
      assert.equal(rc, model.put(step.c, step.pool, step.oid, step.index), 'put result')
      return
    }
    case 'get': {
      const hit = h.get(step.c, step.pool, step.oid, step.index) === 1
      assert.equal(hit, model.get(step.c, step.pool, step.oid, step.index), 'get hit')
      return
    }
    case 'flush':
      h.flushPage(step.c, step.pool, step.oid, step.index)
      model.flush(step.c, step.pool, step.oid, step.index)
      return
    case 'weight':
      assert.equal(h.ctrl(SUB.SET_WEIGHT, { cliId: step.c, arg1: step.weight }), 0)
      model.weights.set(step.c, step.weight)
  }
}

void test('eviction takes the page the documented rule names (random steps vs a model)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 6, max: 40 }),
      fc.array(fc.nat(4), { minLength: 3, maxLength: 3 }),
      fc.constantFrom(0, 3, 50),
      fc.array(stepArbitrary, { minLength: 1, maxLength: 250 }),
      (budget, weights, stampLimit, steps) => {
        const { h, model } = setup(budget, weights)
        if (stampLimit !== 0) h.host.core.eviction.stampLimit = stampLimit
        steps.forEach((step, i) => {
          runStep(h, model, step)
          assert.deepEqual(engineLru(h), model.pages, `step ${i} (${JSON.stringify(step)})`)
          checkInvariants(h.host)
        })
      },
    ),
    { numRuns: 300 },
  )
})

void test('weights 1:3, equal demand: the shares converge to 1/4 and 3/4 of a full host', () => {
  const budget = 2000
  const { h } = setup(budget, [1, 3, 0])
  // Each client puts new pages (a new object each) at the same rate, 10 host-fulls in all.
  const data = page(1)
  for (let i = 0; i < 10 * budget; i++) {
    assert.equal(h.put(1, 0, 2 * i, 0, data), 1)
    assert.equal(h.put(2, 0, 2 * i + 1, 0, data), 1)
  }
  const text = h.list(0xffff, true)
  const one = lineValue(text, 'C=CI:1,', 'Ec')
  const two = lineValue(text, 'C=CI:2,', 'Ec')
  assert.equal(one + two, budget)
  // The shares are 500 and 1500; at most one page either side, since each put of the client
  // under its share takes a page of the one over it.
  assert.ok(Math.abs(one - budget / 4) <= 1, `client 1 holds ${one} pages, its share is 500`)
  assert.ok(Math.abs(two - (3 * budget) / 4) <= 1, `client 2 holds ${two} pages, its share 1500`)
  h.check()
})
