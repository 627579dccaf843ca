/** `tmem daemon --busy-poll`: the option and its check (util/busy-poll.ts does the polling). */
import { Option } from 'commander'
import { BUSY_POLL_MICROSECONDS_DEFAULT, BUSY_POLL_MICROSECONDS_MAX } from '../util/busy-poll.js'
import { wholeNumberOption } from './args.js'

export function busyPollOption(): Option {
  return new Option(
    '--busy-poll <microseconds>',
    'after serving a request, poll this long for the next one before sleeping ' +
      `(0: off; at most ${BUSY_POLL_MICROSECONDS_MAX}; docs/daemon.md)`,
  )
    .env('TMEM_BUSY_POLL')
    .default(String(BUSY_POLL_MICROSECONDS_DEFAULT))
}

/** Whole microseconds from 0 (off) to the poller's limit; absent: the default. */
export function busyPollBudget(value: string | undefined): number {
  if (value === undefined) return BUSY_POLL_MICROSECONDS_DEFAULT
  return wholeNumberOption(value, '--busy-poll', 'microseconds', 0, BUSY_POLL_MICROSECONDS_MAX)
}
