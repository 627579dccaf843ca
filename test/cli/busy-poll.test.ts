/**
 * `tmem daemon --busy-poll`: the daemon's startup line and STATS say whether it polls and with
 * which budget, client requests arm it (its waits are counted), and `--busy-poll 0` turns it
 * off (no wait counted, whatever the traffic). Skipped where the loop addon is not built,
 * except under CI (CI=true), whose `npm ci` builds it.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, connectControl } from '../../src/client/mod.js'
import { startBusyPoll, stopBusyPoll } from '../../src/util/busy-poll.js'
import { startDaemon } from '../helpers/daemon.js'

const probe = startBusyPoll(100)
stopBusyPoll()
const skip = probe !== '' && process.env['CI'] === undefined ? probe : false

/** Starts a daemon with `args`, makes 64 unpipelined puts and gets, returns its busyPoll. */
async function pollAfterTraffic(args: string[]) {
  const daemon = await startDaemon({ args })
  try {
    const client = await connect({ path: daemon.socketPath }, { name: 'busy-poll' })
    const pool = await client.newPool({ persistent: true })
    const page = new Uint8Array(4096).fill(7)
    for (let i = 0; i < 64; i++) {
      await client.put(pool, 1n, i, page)
      await client.get(pool, 1n, i)
    }
    await client.disconnect()
    const control = await connectControl({ path: daemon.controlPath })
    try {
      return { summary: daemon.stdout(), poll: (await control.stats()).daemon.busyPoll }
    } finally {
      await control.close()
    }
  } finally {
    await daemon.stop()
  }
}

void describe('tmem daemon --busy-poll', { timeout: 60_000, skip }, () => {
  void test('on by default: 100 us, and served requests arm it', async () => {
    const { summary, poll } = await pollAfterTraffic([])
    assert.match(summary, /, busy poll 100 us\n/)
    assert.ok(poll !== undefined)
    assert.equal(poll.budgetUs, 100)
    assert.equal(poll.off, '')
    assert.ok(poll.polls + poll.sleeps > 0, `armed waits counted: ${JSON.stringify(poll)}`)
    assert.ok(poll.hits <= poll.polls)
  })

  void test('--busy-poll 0: off, no wait polled', async () => {
    const { summary, poll } = await pollAfterTraffic(['--busy-poll', '0'])
    assert.match(summary, /, busy poll off \(budget 0\)\n/)
    assert.ok(poll !== undefined)
    assert.equal(poll.budgetUs, 0)
    assert.equal(poll.polls + poll.sleeps, 0)
  })
})
