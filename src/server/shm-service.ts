/**
 * The daemon's answers to the shared-memory frames (docs/protocol.md, "Shared memory"): the
 * hello flag that offers a region, SHM (ATTACH, MAPPED, DETACH) and the client's SHM_KICK.
 * The regions themselves are `ShmAttachment`s (shm-attach.ts), one per connection at most.
 *
 * A region is offered on client connections over the Unix socket only, when the native addon
 * loaded and the daemon was not started with `--no-shm`. A client that asks without the offer,
 * or before it has a session, gets rc -EPERM; bad sizes -EINVAL; over the limits -ENOSPC.
 */
import { EINVAL, EPERM } from '../abi/constants.js'
import type { DeferredReply } from '../protocol/deferred.js'
import {
  FRAME_HEADER_BYTES,
  type FrameReader,
  REJECT_NONE,
  writeFrameHeader,
} from '../protocol/frame.js'
import {
  HELLO_FLAG_SHM,
  KIND_SHM,
  KIND_SHM_KICK,
  KIND_SHM_KICK_NOTICE,
  KIND_SHM_REPLY,
  SHM_ATTACH,
  SHM_DETACH,
  SHM_MAPPED,
  SHM_REPLY_PAYLOAD_BYTES,
  decodeShmRequest,
  encodeShmReplyInto,
} from '../protocol/shm-frame.js'
import { shmNative, type ShmNative } from '../util/shm-native.js'
import type { Connection } from './connection.js'
import type { HostLike } from './host-like.js'
import { ShmAttachment, ShmBudget } from './shm-attach.js'

/**
 * Takes the reply of an op the host just deferred and hands it to `answer` when it settles
 * (DeferredOps.later, which also answers -EFAULT for a host that never defers); `conn` names
 * the connection in logs.
 */
export type ShmDefer = (conn: number, answer: (reply: DeferredReply) => void) => void

const KICK_NOTICE = new Uint8Array(FRAME_HEADER_BYTES)
writeFrameHeader(KICK_NOTICE, 0, KIND_SHM_KICK_NOTICE, 0, 0)

/** Counters of the shared-memory service since the daemon started (all regions, past too). */
export interface ShmCounters {
  /** Regions made (ATTACH answered with rc 0). */
  regionsAttached: number
  /** ATTACH requests refused (bad sizes, over the limits, not offered). */
  regionsRefused: number
  /** Regions dropped because the client broke their rings (connection closed). */
  regionsBroken: number
  /** SHM_KICK notices sent to sleeping clients. */
  kicksSent: number
  /** SHM_KICK frames received from clients. */
  kicksReceived: number
}

/** What the counters of closed regions add up to, so totals survive a region. */
interface RetiredTotals {
  opsServed: number
  opsRefused: number
  ringFull: number
  sleeps: number
}

/** The `daemon.shm` section of STATS (and the `tmem_daemon_shm_*` metrics). */
export interface ShmStats extends ShmCounters {
  /** False when regions are not offered; `reason` then says why. */
  available: boolean
  reason: string
  /** Regions mapped now, and their bytes (header, rings and frames). */
  regions: number
  bytesMapped: number
  /** Ops run from submission rings. */
  opsServed: number
  /** Entries answered without running (reserved bits set, cmfn not a frame of the region). */
  opsRefused: number
  /** Turns that found a completion ring full (its client not reading completions). */
  ringFull: number
  /** Times the daemon stopped polling a region and slept until kicked. */
  sleeps: number
}

function addRegion(totals: RetiredTotals, region: ShmAttachment): void {
  const counters = region.serve.counters
  totals.opsServed += counters.ops
  totals.opsRefused += counters.badReserved + counters.badFrame
  totals.ringFull += counters.ringFull
  totals.sleeps += region.sleeps
}

export class ShmService {
  readonly budget: ShmBudget
  readonly counters: ShmCounters = {
    regionsAttached: 0,
    regionsRefused: 0,
    regionsBroken: 0,
    kicksSent: 0,
    kicksReceived: 0,
  }
  /** Why regions are not offered ('' when they are). */
  readonly unavailable: string
  readonly #native: ShmNative | null
  readonly #host: HostLike
  readonly #defer: ShmDefer
  readonly #regions = new Map<Connection, ShmAttachment>()
  readonly #retired: RetiredTotals = { opsServed: 0, opsRefused: 0, ringFull: 0, sleeps: 0 }

  constructor(host: HostLike, enabled: boolean, defer: ShmDefer, budget = new ShmBudget()) {
    this.#host = host
    this.#defer = defer
    this.budget = budget
    const status = shmNative()
    this.#native = enabled ? status.native : null
    this.unavailable = !enabled ? 'unavailable: --no-shm' : status.reason
  }

  /** The hello flag for `conn`: HELLO_FLAG_SHM on a Unix client connection, else 0. */
  helloFlag(conn: Connection): number {
    return this.#native !== null && conn.endpoint === 'client' && conn.remote === 'unix'
      ? HELLO_FLAG_SHM
      : 0
  }

  /** The `daemon.shm` section of STATS. */
  stats(): ShmStats {
    const totals = { ...this.#retired }
    for (const region of this.#regions.values()) addRegion(totals, region)
    return {
      available: this.unavailable === '',
      reason: this.unavailable,
      regions: this.budget.regions,
      bytesMapped: this.budget.used,
      ...this.counters,
      ...totals,
    }
  }

  /** Handles SHM and SHM_KICK; false for any other kind. */
  onFrame(conn: Connection, reader: FrameReader): boolean {
    if (reader.kind === KIND_SHM_KICK) {
      this.counters.kicksReceived++
      this.#regions.get(conn)?.kicked()
      return true
    }
    if (reader.kind !== KIND_SHM) return false
    const request = decodeShmRequest(reader.bytes, reader.payloadOffset, reader.payloadBytes)
    let rc = -EINVAL
    let attached: ShmAttachment | null = null
    if (request === null) rc = -EINVAL
    else if (this.#native === null || this.helloFlag(conn) === 0 || conn.session === null)
      rc = -EPERM
    else if (request.cmd === SHM_ATTACH) {
      const made = this.#regions.has(conn) ? -EINVAL : this.#attach(conn, request)
      if (typeof made === 'number') rc = made
      else {
        rc = 0
        attached = made
      }
    } else if (request.cmd === SHM_MAPPED) {
      const region = this.#regions.get(conn)
      region?.mapped()
      rc = region === undefined ? -EINVAL : 0
    } else if (request.cmd === SHM_DETACH) {
      rc = this.#drop(conn) ? 0 : -EINVAL
    }
    if (rc < 0 && request?.cmd === SHM_ATTACH) this.counters.regionsRefused++
    this.#reply(conn, reader.requestId, rc, attached)
    return true
  }

  /** The connection is gone: so is its region. */
  onClose(conn: Connection): void {
    this.#drop(conn)
  }

  #attach(
    conn: Connection,
    request: { cmd: number; sqEntries: number; cqEntries: number; frameCount: number },
  ): ShmAttachment | number {
    const made = ShmAttachment.create(
      this.#native!,
      this.budget,
      this.#host,
      {
        clientId: () => conn.session?.id ?? -1,
        abiVersion: conn.abiVersion,
        defer: (answer) => this.#defer(conn.serial, answer),
        kickClient: () => {
          this.counters.kicksSent++
          // Both send buffers busy (rare: this connection carries no replies in bulk): once more
          // on the next turn, when a write has completed.
          if (!conn.sendFrame(KICK_NOTICE)) setImmediate(() => conn.sendFrame(KICK_NOTICE))
        },
        broken: (why) => {
          this.counters.regionsBroken++
          this.#drop(conn)
          conn.closeWithError(REJECT_NONE, why)
        },
      },
      request,
    )
    if (typeof made !== 'number') {
      this.#regions.set(conn, made)
      this.counters.regionsAttached++
    }
    return made
  }

  #drop(conn: Connection): boolean {
    const region = this.#regions.get(conn)
    if (region === undefined) return false
    this.#regions.delete(conn)
    addRegion(this.#retired, region)
    region.close()
    return true
  }

  #reply(conn: Connection, requestId: number, rc: number, region: ShmAttachment | null): void {
    const at = conn.sendUsed
    writeFrameHeader(conn.send, at, KIND_SHM_REPLY, requestId, SHM_REPLY_PAYLOAD_BYTES)
    encodeShmReplyInto(conn.send, at + FRAME_HEADER_BYTES, {
      rc,
      pid: region === null ? 0 : process.pid,
      fd: region === null ? 0 : region.fd,
    })
    conn.sendUsed = at + FRAME_HEADER_BYTES + SHM_REPLY_PAYLOAD_BYTES
  }
}
