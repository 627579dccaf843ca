/** What the daemon tells a `RemoteTier` (tier.ts) when it starts one. */
import type { Logger } from 'pino'
import type { RemoteStore } from './cluster.js'

export interface RemoteTierOptions {
  store: RemoteStore
  /** This daemon's namespace in the cluster (docs/remote.md "Key layout"). */
  hostId: string
  /** Replicas a persistent write waits for (`--remote-durability replica`: 1). */
  replicas: number
  /** Policy of a client the first time it is seen: off, ephemeral or all. */
  defaultPolicy: number
  /** Bound of the demotion queue, in pages. */
  queueMax: number
  log: Logger
}
