/**
 * A client process for test/client/shm.test.ts: connects over shared memory, makes a
 * persistent pool, prints `ready <pool> <active>` and then puts batches for ever, printing
 * `batch <n>` after each, until it is killed.
 */
import { connect } from '../../src/client/client.js'

async function main(): Promise<void> {
  const [path] = process.argv.slice(2)
  if (path === undefined) throw new Error('usage: shm-client-child <socket>')
  const client = await connect(
    { path },
    { name: 'doomed', sharedMemory: { entries: 64, frames: 64 } },
  )
  const pool = await client.newPool({ persistent: true })
  process.stdout.write(`ready ${pool} ${client.sharedMemory.active}\n`)
  const page = new Uint8Array(4096).fill(0xdd)
  const entries = Array.from({ length: 500 }, (_, i) => ({ oid: 1n, index: i, page }))
  for (let n = 1; ; n++) {
    await client.putMany(pool, entries)
    process.stdout.write(`batch ${n}\n`)
  }
}

void main()
