/**
 * The daemon's own counters (the engine counts the ops themselves), shared by the modules
 * that serve frames. STATS carries them in its `daemon` part (protocol/stats.ts).
 */

/** Daemon-level counters (the engine counts the ops themselves). */
export interface DaemonCounters {
  connectionsAccepted: number
  connectionsClosed: number
  /** Refused at accept (over the connection cap) or at hello. */
  connectionsRefused: number
  framesReceived: number
  /** Malformed frames; each closed its connection. */
  framesRejected: number
  opsExecuted: number
  controlsExecuted: number
  /** CONTROL frames on the client endpoint, OP frames and STATS on the wrong endpoint. */
  controlDenied: number
  /** v0 hellos accepted as connections while v0 is not served. */
  v0Refused: number
  /** SESSION frames run (live migration's control requests). */
  sessionCommands: number
  /** Saves a control connection began and left open when it closed: ended with SAVE_END. */
  savesAbandoned: number
  /** Pages this daemon sent straight to another daemon (SESSION PUSH of live migration). */
  pushedPages: number
}

export function newCounters(): DaemonCounters {
  return {
    connectionsAccepted: 0,
    connectionsClosed: 0,
    connectionsRefused: 0,
    framesReceived: 0,
    framesRejected: 0,
    opsExecuted: 0,
    controlsExecuted: 0,
    controlDenied: 0,
    v0Refused: 0,
    sessionCommands: 0,
    savesAbandoned: 0,
    pushedPages: 0,
  }
}
