/**
 * The tier's one connection to Redis Cluster: ioredis's `Cluster` client (it follows MOVED and
 * ASK, refreshes the slot map, reconnects) with auto-pipelining, so the commands issued in one
 * tick go to each node as one pipeline. Every call here has a deadline: a command that has
 * not answered by then fails, so no op of the daemon ever waits on a dead node for longer
 * (docs/remote.md "Failures").
 *
 * The store keeps a health state for logs and metrics: `up` once the cluster answered,
 * `down` when it is unreachable (a failed start, or FAILURES_DOWN failures in a row); the
 * first success after that is logged as recovered.
 */
import { Cluster } from 'ioredis'
import type { Logger } from 'pino'
import type { SeedNode } from './keys.js'
import { TurnMeter } from './turns.js'

/** Consecutive failed calls after which the cluster is reported down. */
export const FAILURES_DOWN = 3

/** The key that names the cluster (see identity). */
export const CLUSTER_ID_KEY = 'tmem:cluster-id'

export type RemoteHealth = 'connecting' | 'up' | 'down'

export interface RemoteStoreOptions {
  seeds: SeedNode[]
  /** Deadline of each remote call, in milliseconds. */
  timeoutMs: number
  /** The remote work of a turn before the work that can wait waits (turns.ts TURN_BUDGET_MS). */
  turnBudgetMs?: number
  log: Logger
}

/** Counters for metrics: calls made, failed, timed out. */
export class RemoteCalls {
  ok = 0
  failed = 0
  timedOut = 0
}

/** Reads of one object's hash asked for in the same tick: one HMGET. */
interface JoinedRead {
  key: string
  fields: string[]
  resolve: ((value: Buffer | null) => void)[]
  reject: ((error: Error) => void)[]
}

export class RemoteStore {
  health: RemoteHealth = 'connecting'
  readonly calls = new RemoteCalls()
  /** The remote work of each event-loop turn (turns.ts). */
  readonly meter: TurnMeter
  readonly #reads = new Map<string, JoinedRead>()
  #readsScheduled = false
  readonly #cluster: Cluster
  readonly #timeoutMs: number
  readonly #log: Logger
  #failures = 0
  #closed = false
  readonly #deadlines: Deadlines

  constructor(options: RemoteStoreOptions) {
    this.#timeoutMs = options.timeoutMs
    this.meter = new TurnMeter(options.turnBudgetMs)
    this.#log = options.log
    this.#deadlines = new Deadlines(options.timeoutMs, (error) => this.#failed(error))
    this.#cluster = new Cluster(options.seeds, {
      enableAutoPipelining: true,
      enableOfflineQueue: false,
      slotsRefreshTimeout: options.timeoutMs,
      clusterRetryStrategy: (times) => Math.min(100 * times, 2000),
      redisOptions: {
        commandTimeout: options.timeoutMs,
        connectTimeout: options.timeoutMs,
        maxRetriesPerRequest: 1,
      },
    })
    this.#cluster.on('ready', () => this.#succeeded())
    this.#cluster.on('error', (error: Error) => {
      if (this.health !== 'down') this.#log.warn({ err: error.message }, 'remote cluster error')
    })
    this.#cluster.on('end', () => this.#down('connection ended'))
    this.#cluster.on('+node', (node: NodeConnection) => this.#watch(node))
    this.#timeFlushes()
  }

  /**
   * Times the writing of each auto-pipeline (ioredis runs it from a setImmediate: the
   * commands made into RESP and written to the node's socket) as issue work.
   */
  #timeFlushes(): void {
    const cluster = this.#cluster as unknown as { pipeline: (...a: unknown[]) => Flushable }
    const meter = this.meter
    const make = cluster.pipeline
    cluster.pipeline = function (this: unknown, ...a: unknown[]): Flushable {
      const pipeline = make.apply(this, a)
      const exec = pipeline.exec
      pipeline.exec = function (this: unknown, ...b: unknown[]): unknown {
        const started = meter.start()
        try {
          return exec.apply(this, b)
        } finally {
          meter.stop(started, 'issue')
        }
      }
      return pipeline
    }
  }

  /**
   * Times each node connection's data (reply parsing and what runs from it) as reply work:
   * a listener before ioredis's parser (it adds its own with prependListener before it emits
   * 'connect') and one after it. Once the turn's remote work is over its budget the
   * connection's further data waits for a later turn (the socket is paused until the loop's
   * check phase; what the kernel holds stays there, nothing is lost).
   */
  #watch(node: NodeConnection): void {
    const meter = this.meter
    node.on('connect', () => {
      const stream = node.stream
      const resume = (): void => {
        stream.resume()
      }
      stream.prependListener('data', () => meter.replyStart())
      stream.on('data', () => {
        meter.replyMark()
        if (!meter.overBudget() || stream.isPaused()) return
        stream.pause()
        setImmediate(resume)
        meter.deferred('replies')
      })
    })
  }

  /** Waits until the cluster answered once or `ms` passed; true when it is up. */
  async ready(ms: number): Promise<boolean> {
    if (this.health === 'up') return true
    try {
      await this.#deadline(
        new Promise<void>((resolve) => this.#cluster.once('ready', () => resolve())),
        ms,
      )
      return true
    } catch {
      this.#down(`no answer from the seed nodes within ${ms} ms`)
      return false
    }
  }

  /**
   * One HSET of `args` (field, value, field, value...: pages of one object), then (when
   * `replicas` > 0) WAIT until that many replicas have it.
   */
  async writeFields(key: string, args: (string | Buffer)[], replicas: number): Promise<void> {
    await this.#call(this.#cluster.hset(key, ...args))
    if (replicas <= 0) return
    const node = this.#nodeFor(key)
    if (node === null) throw new Error('No node owns the slot of ' + key)
    const acked = await this.#call(node.wait(replicas, this.#timeoutMs))
    if (acked < replicas) throw new Error(`WAIT: ${acked} of ${replicas} replicas acknowledged`)
  }

  /**
   * A field of a hash. The reads of one hash asked for in the same tick (the gets of one
   * socket read, a save's pages) go as one HMGET, issued after the tick.
   */
  read(key: string, field: number): Promise<Buffer | null> {
    return new Promise<Buffer | null>((resolve, reject) => {
      let joined = this.#reads.get(key)
      if (joined === undefined) {
        joined = { key, fields: [], resolve: [], reject: [] }
        this.#reads.set(key, joined)
      }
      joined.fields.push(String(field))
      joined.resolve.push(resolve)
      joined.reject.push(reject)
      if (this.#readsScheduled) return
      this.#readsScheduled = true
      process.nextTick(() => this.#issueReads())
    })
  }

  #issueReads(): void {
    this.#readsScheduled = false
    const started = this.meter.start()
    for (const joined of this.#reads.values()) this.#readJoined(joined)
    this.#reads.clear()
    this.meter.stop(started, 'issue')
  }

  #readJoined(joined: JoinedRead): void {
    const fail = (error: Error): void => {
      for (const reject of joined.reject) reject(error)
    }
    if (joined.fields.length === 1) {
      this.#call(this.#cluster.hgetBuffer(joined.key, joined.fields[0]!)).then(
        joined.resolve[0],
        fail,
      )
      return
    }
    this.#call(this.#cluster.hmgetBuffer(joined.key, ...joined.fields)).then((values) => {
      for (let i = 0; i < joined.resolve.length; i++) joined.resolve[i]!(values[i] ?? null)
    }, fail)
  }

  /** One HDEL of fields of a hash. */
  hdel(key: string, fields: string[]): Promise<number> {
    return this.#call(this.#cluster.hdel(key, ...fields))
  }

  del(key: string): Promise<number> {
    return this.#call(this.#cluster.del(key))
  }

  sadd(key: string, members: string[]): Promise<number> {
    return this.#call(this.#cluster.sadd(key, ...members))
  }

  srem(key: string, member: string): Promise<number> {
    return this.#call(this.#cluster.srem(key, member))
  }

  smembers(key: string): Promise<string[]> {
    return this.#call(this.#cluster.smembers(key))
  }

  hgetall(key: string): Promise<Record<string, Buffer>> {
    return this.#call(this.#cluster.hgetallBuffer(key))
  }

  /**
   * The cluster's identity (the key `tmem:cluster-id`, set by the first daemon that asks):
   * two daemons that read the same one share the cluster (docs/remote.md "Live migration").
   */
  async identity(candidate: string): Promise<string> {
    await this.#call(this.#cluster.set(CLUSTER_ID_KEY, candidate, 'NX'))
    const id = await this.#call(this.#cluster.get(CLUSTER_ID_KEY))
    if (id === null) throw new Error(`${CLUSTER_ID_KEY} vanished`)
    return id
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#deadlines.stop()
    this.meter.close()
    try {
      await this.#deadline(this.#cluster.quit(), this.#timeoutMs)
    } catch {
      this.#cluster.disconnect()
    }
  }

  /** The master that owns the key's slot (the connection its writes went through). */
  #nodeFor(key: string) {
    const owners = this.#cluster.slots[keySlot(key)]
    const address = owners?.[0]
    if (address === undefined) return null
    return (
      this.#cluster.nodes('master').find((node) => {
        const options = node.options
        return `${options.host}:${options.port}` === address
      }) ?? null
    )
  }

  /** The command's result, or its failure, or a DeadlineError once its deadline passed. */
  #call<T>(command: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const waiting = this.#deadlines.add(reject)
      command.then(
        (value) => {
          if (waiting.done) return
          waiting.done = true
          this.calls.ok++
          this.#succeeded()
          resolve(value)
          this.meter.replyMark()
        },
        (error: unknown) => {
          if (waiting.done) return
          waiting.done = true
          const failure = error instanceof Error ? error : new Error(String(error))
          this.#failed(failure)
          reject(failure)
          this.meter.replyMark()
        },
      )
    })
  }

  #failed(error: unknown): void {
    this.calls.failed++
    if (error instanceof DeadlineError) this.calls.timedOut++
    if (++this.#failures >= FAILURES_DOWN) this.#down((error as Error).message)
  }

  #deadline<T>(promise: Promise<T>, ms: number): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const expiry = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new DeadlineError(ms)), ms)
      timer.unref()
    })
    promise.catch(() => undefined) // a late failure after the deadline is not unhandled
    return Promise.race([promise, expiry]).finally(() => clearTimeout(timer))
  }

  #succeeded(): void {
    this.#failures = 0
    if (this.health === 'up') return
    this.#log.info({ was: this.health }, 'remote cluster up')
    this.health = 'up'
  }

  #down(reason: string): void {
    if (this.health === 'down' || this.#closed) return
    this.health = 'down'
    this.#log.warn({ reason }, 'remote cluster down: serving local memory only')
  }
}

/** A call waiting for its answer (or its deadline). */
interface Waiting {
  readonly expiresAt: number
  readonly reject: (error: Error) => void
  done: boolean
}

/**
 * The deadlines of the calls in flight. Every call has the same deadline, so they expire in
 * the order they were made: one list, oldest first, and one timer that sweeps it every tenth
 * of the deadline while calls are in flight (instead of a timer and a race per call). A call
 * fails between its deadline and a tenth of it later.
 */
class Deadlines {
  readonly #ms: number
  readonly #period: number
  readonly #onExpired: (error: DeadlineError) => void
  #list: Waiting[] = []
  #head = 0
  #timer: NodeJS.Timeout | null = null
  #stopped = false

  constructor(ms: number, onExpired: (error: DeadlineError) => void) {
    this.#ms = ms
    this.#period = Math.max(1, Math.ceil(ms / 10))
    this.#onExpired = onExpired
  }

  add(reject: (error: Error) => void): Waiting {
    const waiting: Waiting = { expiresAt: performance.now() + this.#ms, reject, done: false }
    this.#list.push(waiting)
    if (this.#timer === null && !this.#stopped) {
      this.#timer = setInterval(() => this.#sweep(), this.#period)
      this.#timer.unref()
    }
    return waiting
  }

  /** Fails every call whose deadline passed; stops the timer when none is left. */
  #sweep(): void {
    const now = performance.now()
    const list = this.#list
    let head = this.#head
    while (head < list.length) {
      const waiting = list[head]!
      if (!waiting.done && waiting.expiresAt > now) break
      head++
      if (waiting.done) continue
      waiting.done = true
      const error = new DeadlineError(this.#ms)
      this.#onExpired(error)
      waiting.reject(error)
    }
    if (head === list.length) {
      this.#list = []
      this.#head = 0
      this.stop(false)
    } else if (head > 1024 && head * 2 > list.length) {
      this.#list = list.slice(head)
      this.#head = 0
    } else {
      this.#head = head
    }
  }

  stop(forGood = true): void {
    if (forGood) this.#stopped = true
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
  }
}

/** What the store needs of an ioredis pipeline. */
interface Flushable {
  exec: (...a: unknown[]) => unknown
}

/** What the store needs of an ioredis node connection. */
interface NodeConnection {
  on(event: 'connect', listener: () => void): unknown
  readonly stream: {
    pause(): void
    resume(): void
    isPaused(): boolean
    prependListener(event: 'data', l: () => void): unknown
    on(event: 'data', l: () => void): unknown
  }
}

export class DeadlineError extends Error {
  constructor(ms: number) {
    super(`The remote call did not answer within ${ms} ms`)
    this.name = 'DeadlineError'
  }
}

/** The cluster slot of a key (CRC16/XMODEM of its hash tag, modulo 16384). */
export function keySlot(key: string): number {
  const open = key.indexOf('{')
  const close = open < 0 ? -1 : key.indexOf('}', open + 1)
  const tag = close > open + 1 ? key.slice(open + 1, close) : key
  let crc = 0
  for (const byte of Buffer.from(tag, 'utf8')) {
    crc ^= byte << 8
    for (let bit = 0; bit < 8; bit++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc % 16384
}
