/**
 * What the client library's `connect()` and pool API take and return: the option and result
 * types of `client.ts`, and the parsing of a resume secret. `client.ts` re-exports them.
 */
import type { AbiVersion } from '../abi/codec.js'
import type { SharedMemoryOptions } from './shm-attach.js'

/** An object id: a number or bigint (word 0 then up), or the three 64-bit words. */
export type OidInput =
  number | bigint | readonly [bigint | number, bigint | number, bigint | number]

export interface ConnectOptions {
  /** The client's name (`web-1`); the daemon names it `client-<id>` when empty. */
  name?: string
  /** The tmem ABI of this connection's ops; 1 unless you are a v0 guest. */
  abi?: AbiVersion
  /** A secret from an earlier connection (hex or 32 bytes) to take back its client and pools. */
  secret?: string | Uint8Array
  /** Reconnect transparently within the grace period when the connection drops. Default true. */
  reconnect?: boolean
  /**
   * Send ops through a region of memory shared with the daemon (Unix sockets only; needs the
   * native addon and a daemon that offers it). Default true: used where available, else the
   * socket, with the same API and errors. `client.sharedMemory` says which and why.
   */
  sharedMemory?: boolean | SharedMemoryOptions
}

export interface NewPoolOptions {
  persistent?: boolean
  shared?: boolean
  /** The shared pool's UUID (`xxxxxxxx-xxxx-...` or `[uuid_lo, uuid_hi]`). */
  uuid?: string | readonly [bigint, bigint]
}

/** What a raw op returns: the rc and, for a get or read that hit, the page. */
export interface OpResult {
  rc: number
  page: Uint8Array | null
}

/** A secret given as hex or bytes; must be 32 bytes. */
export function parseSecret(secret: string | Uint8Array | undefined): Uint8Array | null {
  if (secret === undefined) return null
  const bytes = typeof secret === 'string' ? Buffer.from(secret, 'hex') : secret
  if (bytes.length !== 32) throw new RangeError('A secret is 32 bytes (64 hex digits)')
  return bytes
}
