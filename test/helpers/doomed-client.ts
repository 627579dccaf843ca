/**
 * Runs `shm-client-child.ts` (a client putting batches over shared memory for ever) against a
 * daemon, and SIGKILLs it once it has finished two batches, while the next is in flight.
 * Resolves when the process is gone, with what it printed (`ready <pool> <shm active>` first).
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const CHILD = fileURLToPath(new URL('./shm-client-child.js', import.meta.url))

export async function killShmClientMidBatch(socketPath: string): Promise<string> {
  const child = spawn(process.execPath, [CHILD, socketPath], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  let out = ''
  await new Promise<void>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      out += text
      if (/batch 2\n/.test(out)) resolve()
    })
    child.once('exit', (code) => reject(new Error(`The client exited first (${code}): ${out}`)))
  })
  child.kill('SIGKILL')
  await exited
  return out
}
