/**
 * The daemon's shared-memory regions (issue 12; the layout: src/protocol/shm-region.ts; the
 * socket frames: src/protocol/shm-frame.ts; the prose: docs/protocol.md, "Shared memory").
 *
 * One region per client connection, made on the client's ATTACH: a memfd of the size its
 * rings and frames need, sealed so nobody can shrink it under a mapping, mapped here, its
 * header written. The client opens `/proc/<daemon pid>/fd/<fd>` (which works for the same
 * user only: the file is the daemon's, mode 0600 by the memfd rules) and maps it; on MAPPED
 * the daemon closes its descriptor, and from then the region has no name anywhere: it lives
 * as long as the two mappings.
 *
 * Serving: a `ShmServeRing` turn per event-loop turn while work comes (`ShmPoller`), each op
 * run by `host.opBytes` with the op bytes copied out of the ring and the frame as the page, so
 * a put's page is copied once (frame to pool) and a get's once (pool to frame). An op the host
 * answers later (the remote tier) completes when its reply comes: a get's page is then copied
 * into its frame, and the ring keeps a completion slot for it meanwhile (shm-serve.ts). A
 * kick from the client (an SHM_KICK frame) wakes the poller; the daemon kicks a sleeping
 * client with an SHM_KICK notice. A ring whose cursors turn impossible closes the connection,
 * like a malformed frame; it harms no other client, whose regions and pages are their own.
 *
 * Limits: `framesMax` frames per region (default 4096, 16 MiB) and `bytesMax` for all regions
 * together (default 256 MiB); an ATTACH beyond them gets -ENOSPC, outside the protocol's limits
 * -EINVAL.
 */
import { closeSync } from 'node:fs'
import { EINVAL, ENOMEM, ENOSPC, PAGE_SIZE } from '../abi/constants.js'
import type { DeferredReply } from '../protocol/deferred.js'
import { ShmDoorbell, ShmPoller } from '../protocol/shm-doorbell.js'
import {
  SHM_FRAMES_MAX,
  SHM_WORD_CLIENT_SLEEPING,
  SHM_WORD_DAEMON_SLEEPING,
  type ShmGeometry,
  shmGeometry,
  writeShmHeader,
} from '../protocol/shm-region.js'
import { type ShmViews, shmViews } from '../protocol/shm-ring.js'
import { ShmServeRing } from '../protocol/shm-serve.js'
import type { ShmRequest } from '../protocol/shm-frame.js'
import { copyBytes, registerCopyBuffer } from '../util/bytes.js'
import type { ShmNative } from '../util/shm-native.js'
import type { HostLike } from './host-like.js'

export const SHM_DAEMON_FRAMES_MAX = 4096
export const SHM_DAEMON_BYTES_MAX = 256 * 1024 * 1024

/** The daemon-wide budget of region bytes. */
export class ShmBudget {
  readonly framesMax: number
  readonly bytesMax: number
  used = 0
  regions = 0

  constructor(framesMax = SHM_DAEMON_FRAMES_MAX, bytesMax = SHM_DAEMON_BYTES_MAX) {
    this.framesMax = Math.min(framesMax, SHM_FRAMES_MAX)
    this.bytesMax = bytesMax
  }
}

/** What the attachment needs from its connection. */
export interface ShmOwner {
  /** The engine client id the connection serves now, or -1 when it serves none any more. */
  clientId(): number
  readonly abiVersion: 0 | 1
  /** Sends the SHM_KICK notice to the client. */
  kickClient(): void
  /** The ring is broken: close the connection with this reason. */
  broken(why: string): void
  /**
   * The host deferred the op just run: `answer` gets its reply (shm-service.ts). Without it,
   * such an op completes with -EFAULT.
   */
  defer?(answer: (reply: DeferredReply) => void): void
}

export class ShmAttachment {
  readonly geometry: ShmGeometry
  readonly serve: ShmServeRing
  /** Times the daemon's side stopped polling this region and slept until kicked. */
  sleeps = 0
  readonly #native: ShmNative
  readonly #budget: ShmBudget
  readonly #buffer: ArrayBuffer
  readonly #poller: ShmPoller
  readonly #doorbell: ShmDoorbell
  readonly #views: ShmViews
  readonly #owner: ShmOwner
  #fd: number
  #closed = false

  /**
   * Makes a region for `request` (an ATTACH); returns it, or a negative rc: -EINVAL for sizes
   * outside the protocol's limits, -ENOSPC over the daemon's, -ENOMEM when the system said no.
   */
  static create(
    native: ShmNative,
    budget: ShmBudget,
    host: HostLike,
    owner: ShmOwner,
    request: ShmRequest,
  ): ShmAttachment | number {
    let geometry: ShmGeometry
    try {
      geometry = shmGeometry(
        owner.abiVersion,
        request.sqEntries,
        request.cqEntries,
        request.frameCount,
      )
    } catch {
      return -EINVAL
    }
    if (
      geometry.frameCount > budget.framesMax ||
      budget.used + geometry.regionBytes > budget.bytesMax
    )
      return -ENOSPC
    let fd = -1
    try {
      fd = native.memfd(`tmem-client-${owner.clientId()}`, geometry.regionBytes)
      const buffer = native.map(fd, geometry.regionBytes)
      return new ShmAttachment(native, budget, host, owner, geometry, fd, buffer)
    } catch {
      if (fd >= 0) closeSync(fd)
      return -ENOMEM
    }
  }

  private constructor(
    native: ShmNative,
    budget: ShmBudget,
    host: HostLike,
    owner: ShmOwner,
    geometry: ShmGeometry,
    fd: number,
    buffer: ArrayBuffer,
  ) {
    this.#native = native
    this.#budget = budget
    this.geometry = geometry
    this.#fd = fd
    this.#buffer = buffer
    const views = shmViews(buffer, geometry.regionBytes)
    this.#views = views
    this.#owner = owner
    registerCopyBuffer(buffer)
    writeShmHeader(views.bytes, geometry)
    budget.used += geometry.regionBytes
    budget.regions++
    const abi = owner.abiVersion
    this.serve = new ShmServeRing(views, geometry, (entry, frameAt) => {
      const id = owner.clientId()
      if (id < 0) return -EINVAL
      return host.opBytes(id, entry, 0, abi, frameAt < 0 ? null : views.bytes, frameAt)
    })
    this.#doorbell = new ShmDoorbell(
      views.words,
      SHM_WORD_DAEMON_SLEEPING,
      SHM_WORD_CLIENT_SLEEPING,
    )
    this.serve.afterPublish = () => {
      if (this.#doorbell.peerNeedsKick()) owner.kickClient()
    }
    if (owner.defer !== undefined)
      this.serve.onDeferred = (requestId, frameAt) =>
        owner.defer?.((reply) => this.#answerLate(requestId, frameAt, reply))
    if (host.yieldTurn !== undefined) this.serve.shouldYield = () => host.yieldTurn!()
    this.#poller = new ShmPoller(
      this.#doorbell,
      {
        turn: () => {
          // A connection that serves no client any more (moved, taken over) runs nothing: ops
          // left in the ring were not run here, and the client sends them where it went.
          if (owner.clientId() < 0) return 0
          const served = this.serve.turn()
          if (served > 0 && this.#doorbell.peerNeedsKick()) owner.kickClient()
          return served
        },
        hasWork: () => owner.clientId() >= 0 && this.serve.hasWork(),
      },
      {
        onBroken: () => owner.broken("the client's shared-memory ring has impossible cursors"),
        onSleep: () => this.sleeps++,
      },
    )
  }

  /**
   * A deferred op's reply: a get's page into its frame (which the client keeps for the op
   * until its completion), then the completion, and a kick if the client sleeps. Nothing
   * once the region is closed.
   */
  #answerLate(requestId: number, frameAt: number, reply: DeferredReply): void {
    if (this.#closed) return
    if (reply.rc === 1 && reply.page !== null && frameAt >= 0)
      copyBytes(reply.page, 0, this.#views.bytes, frameAt, PAGE_SIZE)
    this.serve.complete(requestId, reply.rc)
    // One kick for all the replies that settle in this turn (a pipeline's worth from the
    // cluster), not one socket write per reply: checked once they have all been posted.
    if (!this.#kickDue) {
      this.#kickDue = true
      setImmediate(this.#kickLate)
    }
  }

  #kickDue = false
  readonly #kickLate = (): void => {
    this.#kickDue = false
    if (!this.#closed && this.#doorbell.peerNeedsKick()) this.#owner.kickClient()
  }

  /** The descriptor the client opens (through /proc), until it says MAPPED; -1 after. */
  get fd(): number {
    return this.#fd
  }

  /** The client mapped the region: close our descriptor (the mapping stays). */
  mapped(): void {
    if (this.#fd < 0) return
    closeSync(this.#fd)
    this.#fd = -1
  }

  /** The client rang: serve now (in the read of its kick). */
  kicked(): void {
    if (!this.#closed) this.#poller.wake()
  }

  /** Stops serving and unmaps (the connection closed, or the client detached). */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    this.#poller.stop()
    this.mapped()
    this.#native.unmap(this.#buffer)
    this.#budget.used -= this.geometry.regionBytes
    this.#budget.regions--
  }
}
