/**
 * Starting a listener, shared by every endpoint that serves a socket: the daemon's client and
 * control listeners and the NBD frontend's.
 */
import { type Server, connect as netConnect } from 'node:net'
import type { TcpAddress } from './config.js'

/** Resolves once `server` listens on `options`; rejects with the listen error. */
export function listen(server: Server, options: { path: string } | TcpAddress): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options, () => {
      server.off('error', reject)
      resolve()
    })
  })
}

/** True when something accepts connections on the Unix socket at `path`. */
export function isListening(path: string): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = netConnect({ path })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}
