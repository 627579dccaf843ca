/**
 * Every change the tier makes in the cluster goes through this one ordered queue
 * (docs/remote.md "Ordering"): demotions of evicted pages, persistent overflow writes, and
 * the deletes of flushes. The queue sends a batch at a time: a batch is joined into commands
 * (coalesce.ts: one object's writes one HSET, its field deletes one HDEL), issued in order,
 * commands of at most about ISSUE_PER_TURN pages per event-loop turn, and fewer once the turn's
 * remote work reached its budget (turns.ts TURN_BUDGET_MS; ioredis pipelines each turn's
 * commands per node; the bounds keep a turn short), and the next batch starts when it has
 * settled, so two changes to the same page always reach its node in the order they were made.
 *
 * Demotions are best effort: past `demotionsMax` queued, a new one is dropped (an ephemeral
 * page may always be lost). Writes that answer an op and deletes are never dropped.
 */
import type { RemoteStore } from './cluster.js'
import { type Command, coalesce, commandWeight } from './coalesce.js'
import type { TurnMeter } from './turns.js'

/** Most changes sent in one batch. */
export const BATCH_MAX = 256
/** Pages issued in one event-loop turn (the turn's last command may take it past this). */
export const ISSUE_PER_TURN = 64

export type Change =
  | {
      kind: 'put'
      key: string
      index: number
      value: Buffer
      /** Replicas to WAIT for (persistent writes with replica durability), else 0. */
      replicas: number
      /** An evicted page's second chance (counted against the bound), not an op's write. */
      demotion: boolean
      /** Told whether the cluster has the page. */
      done: (ok: boolean) => void
    }
  | { kind: 'hdel'; key: string; index: number }
  | { kind: 'del'; key: string }
  | { kind: 'sadd' | 'srem'; key: string; member: string }

export class ChangeQueue {
  readonly #store: RemoteStore
  readonly #demotionsMax: number
  readonly #meter: TurnMeter
  #queue: Change[] = []
  #demotions = 0
  #sending = false
  #scheduled = false
  /** Demotions dropped because the queue was full, and batches sent. */
  dropped = 0
  batches = 0

  constructor(store: RemoteStore, demotionsMax: number) {
    this.#store = store
    this.#meter = store.meter
    this.#demotionsMax = demotionsMax
  }

  get length(): number {
    return this.#queue.length
  }

  /** Queues a demotion; false (and nothing queued) when the queue is full. */
  demote(change: Change): boolean {
    if (this.#demotions >= this.#demotionsMax) {
      this.dropped++
      return false
    }
    this.#demotions++
    this.push(change)
    return true
  }

  /** Queues a change that is never dropped. */
  push(change: Change): void {
    this.#queue.push(change)
    this.#schedule()
  }

  /** Resolves when everything queued so far has been sent (tests, shutdown). */
  async drain(): Promise<void> {
    while (this.#queue.length > 0 || this.#sending) {
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
  }

  #schedule(): void {
    if (this.#scheduled || this.#sending) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      void this.#send()
    })
  }

  async #send(): Promise<void> {
    if (this.#sending || this.#queue.length === 0) return
    this.#sending = true
    const batch = this.#queue.splice(0, BATCH_MAX)
    for (const change of batch) if (change.kind === 'put' && change.demotion) this.#demotions--
    this.batches++
    const settled: Promise<void>[] = []
    let weight = 0
    for (const command of coalesce(batch)) {
      const spent = weight > 0 && this.#meter.overBudget()
      if (weight >= ISSUE_PER_TURN || spent) {
        if (spent) this.#meter.deferred('issue')
        weight = 0
        await new Promise<void>((resolve) => setImmediate(resolve))
      }
      const started = this.#meter.start()
      settled.push(this.#apply(command))
      this.#meter.stop(started, 'issue')
      weight += commandWeight(command)
    }
    await Promise.all(settled)
    this.#sending = false
    if (this.#queue.length > 0) this.#schedule()
  }

  async #apply(command: Command): Promise<void> {
    const store = this.#store
    try {
      switch (command.kind) {
        case 'hset':
          await store.writeFields(command.key, command.args, command.replicas)
          this.#settle(command.done, true)
          return
        case 'hdel':
          await store.hdel(command.key, command.fields)
          return
        case 'del':
          await store.del(command.key)
          return
        case 'sadd':
          await store.sadd(command.key, command.members)
          return
        case 'srem':
          await store.srem(command.key, command.member)
      }
    } catch {
      if (command.kind === 'hset') this.#settle(command.done, false)
    }
  }

  /** Tells each joined write's op (the tier's code, measured as reply work). */
  #settle(done: ((ok: boolean) => void)[], ok: boolean): void {
    const started = this.#meter.start()
    for (const callback of done) callback(ok)
    this.#meter.replyEnd(started)
  }
}
