/**
 * Setting up a client's shared-memory region (docs/protocol.md, "Shared memory"), over the
 * connection's own requests: after a hello that offers it (flag HELLO_FLAG_SHM, Unix sockets
 * only), ATTACH with the sizes, open `/proc/<daemon pid>/fd/<fd>` from the reply, check that
 * its size is sealed, map it, check its header against the sizes, say MAPPED. Any step that fails leaves the client on the
 * socket path, with the reason kept for `client.sharedMemory`; nothing here throws at the
 * caller but a connection failure.
 */
import { closeSync, openSync } from 'node:fs'
import {
  HELLO_FLAG_SHM,
  KIND_SHM,
  SHM_ATTACH,
  SHM_DETACH,
  SHM_MAPPED,
  SHM_PAYLOAD_BYTES,
  type ShmReply,
  decodeShmReply,
  encodeShmRequestInto,
} from '../protocol/shm-frame.js'
import { type ShmGeometry, checkShmHeader, shmGeometry } from '../protocol/shm-region.js'
import { shmViews } from '../protocol/shm-ring.js'
import { FRAME_HEADER_BYTES, writeFrameHeader } from '../protocol/frame.js'
import { SHM_SEAL_SHRINK, type ShmNative, shmNative } from '../util/shm-native.js'
import { ShmChannel } from './shm-channel.js'

/** Region sizes a client asks for (each ring's entries, frames). */
export interface SharedMemoryOptions {
  /** Entries of each ring (a power of two, 8..4096); the most ops in flight. Default 256. */
  entries?: number
  /** Page frames in the region (1..the daemon's limit, 4096 by default). Default 256 (1 MiB). */
  frames?: number
}

export const SHM_CLIENT_ENTRIES_DEFAULT = 256
export const SHM_CLIENT_FRAMES_DEFAULT = 256

/** What the attach needs of the connection. */
export interface ShmAttachLink {
  /** Flags of the hello reply on this connection. */
  helloFlags(): number
  /** A request with a reply; `decode` sees the reply's payload. */
  ask<T>(
    frame: Uint8Array,
    replayable: boolean,
    decode: (reply: { bytes: Uint8Array; payloadOffset: number; payloadBytes: number }) => T,
  ): Promise<T>
}

export type ShmAttachResult =
  { channel: ShmChannel; reason: '' } | { channel: null; reason: string }

function shmFrame(cmd: number, geometry: ShmGeometry | null): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + SHM_PAYLOAD_BYTES)
  writeFrameHeader(frame, 0, KIND_SHM, 0, SHM_PAYLOAD_BYTES)
  encodeShmRequestInto(frame, FRAME_HEADER_BYTES, {
    cmd,
    sqEntries: geometry?.sqEntries ?? 0,
    cqEntries: geometry?.cqEntries ?? 0,
    frameCount: geometry?.frameCount ?? 0,
  })
  return frame
}

function askShm(link: ShmAttachLink, cmd: number, geometry: ShmGeometry | null): Promise<ShmReply> {
  return link.ask(shmFrame(cmd, geometry), false, (reply) => {
    const decoded = decodeShmReply(reply.bytes, reply.payloadOffset, reply.payloadBytes)
    if (decoded === null) throw new RangeError('Malformed SHM reply')
    return decoded
  })
}

/** True when `fd` is a memfd whose size cannot shrink. */
function sizeSealed(native: ShmNative, fd: number): boolean {
  try {
    return (native.seals(fd) & SHM_SEAL_SHRINK) !== 0
  } catch {
    return false // not a sealable file at all (not a memfd)
  }
}

/**
 * Attaches a region of `options`' sizes, or says why not. `kickDaemon` sends an SHM_KICK frame;
 * `onBroken` is told when the daemon breaks the ring protocol.
 */
export async function attachSharedMemory(
  link: ShmAttachLink,
  abi: 0 | 1,
  options: SharedMemoryOptions,
  kickDaemon: () => void,
  onBroken: (why: string) => void,
): Promise<ShmAttachResult> {
  const native = shmNative()
  if (!native.available) return { channel: null, reason: native.reason }
  if ((link.helloFlags() & HELLO_FLAG_SHM) === 0) {
    return {
      channel: null,
      reason: 'unavailable: the daemon does not offer shared memory on this connection',
    }
  }
  const entries = options.entries ?? SHM_CLIENT_ENTRIES_DEFAULT
  const geometry = shmGeometry(abi, entries, entries, options.frames ?? SHM_CLIENT_FRAMES_DEFAULT)
  const reply = await askShm(link, SHM_ATTACH, geometry)
  if (reply.rc < 0)
    return { channel: null, reason: `unavailable: the daemon refused the region (rc ${reply.rc})` }
  let buffer: ArrayBuffer | null = null
  let why = ''
  try {
    const fd = openSync(`/proc/${reply.pid}/fd/${reply.fd}`, 'r+')
    try {
      // Only a file whose size nobody can shrink: a daemon (or anyone) truncating the file
      // under the mapping would make the client's next touch of it a SIGBUS, fatal to the
      // process. Seals are never lifted, so the check holds for the mapping's life.
      if (!sizeSealed(native.native, fd))
        throw new Error('its size is not sealed (a truncated mapping would be a SIGBUS)')
      buffer = native.native.map(fd, geometry.regionBytes)
    } finally {
      closeSync(fd)
    }
  } catch (error) {
    why = `cannot map the daemon's region: ${(error as Error).message}`
  }
  const views = buffer === null ? null : shmViews(buffer, geometry.regionBytes)
  if (views !== null) why = checkShmHeader(views.bytes, geometry) ?? ''
  if (views === null || why !== '') {
    if (buffer !== null) native.native.unmap(buffer)
    await askShm(link, SHM_DETACH, null)
    return { channel: null, reason: `unavailable: ${why}` }
  }
  const done = await askShm(link, SHM_MAPPED, null)
  if (done.rc < 0) {
    native.native.unmap(views.bytes.buffer as ArrayBuffer)
    return { channel: null, reason: `unavailable: the daemon dropped the region (rc ${done.rc})` }
  }
  return { channel: new ShmChannel(views, geometry, kickDaemon, onBroken), reason: '' }
}

/** Unmaps a detached channel's region (its views become empty). */
export function releaseSharedMemory(channel: ShmChannel): void {
  const native = shmNative()
  if (native.available) native.native.unmap(channel.views.bytes.buffer as ArrayBuffer)
}
