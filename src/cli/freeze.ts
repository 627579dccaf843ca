/**
 * `tmem freeze`, `tmem thaw` and `tmem destroy` (xl tmem-freeze, tmem-thaw, tmem-destroy):
 * TMEMC_FREEZE, TMEMC_THAW and TMEMC_DESTROY on one client or all (docs/semantics.md "Control subops", "Freeze and thaw").
 *
 * TMEMC_DESTROY keeps Xen's meaning: it only thaws the client(s) (docs/semantics.md "Control subops"; Xen
 * logged "destroyed" and never destroyed anything). We keep the subop as the ABI defines it so
 * tools written for Xen get what they got there, and say so in the help and the output. Really
 * destroying a client in this daemon happens when the client says goodbye (`close()`) or when
 * its grace period ends after its connection dropped.
 */
import type { Command } from 'commander'
import { TMEMC_DESTROY, TMEMC_FREEZE, TMEMC_THAW } from '../abi/constants.js'
import { addControlOptions, withControl } from './args.js'
import { controlOp } from '../abi/codec.js'
import {
  addClientSelection,
  type ClientSelection,
  opFailed,
  parseClientArg,
  selectClient,
} from './clients.js'

interface StateVerb {
  name: 'freeze' | 'thaw' | 'destroy'
  subop: number
  description: string
  done: (selection: ClientSelection) => string
  help: string
}

const CONNECTION_HELP = `
The daemon is found as for every control verb: --control-socket, --control-listen with
--token-file, or TMEM_CONTROL_SOCKET / TMEM_CONTROL_LISTEN / TMEM_TOKEN_FILE (see tmem list --help).
Exit codes: 0 done, 1 the op failed (an unknown client id gives EPERM (-1)), 2 usage,
3 daemon unreachable.`

const VERBS: readonly StateVerb[] = [
  {
    name: 'freeze',
    subop: TMEMC_FREEZE,
    description: 'Freeze clients: new puts into their pools fail with EFROZEN (TMEMC_FREEZE)',
    done: (selection) => `froze ${selection.label}`,
    help: `
A frozen client's gets still work; puts of new pages fail with EFROZEN and flushes
work but return EFROZEN (docs/semantics.md "Freeze and thaw"). The Xen sequence to
reclaim memory is freeze -a, freeable, flush --kb N, start the new guest, thaw -a.

Examples:
  $ tmem freeze web-1
  froze client 1 (web-1)
  $ tmem freeze -a
  froze all clients`,
  },
  {
    name: 'thaw',
    subop: TMEMC_THAW,
    description: 'Thaw frozen clients: puts work again (TMEMC_THAW)',
    done: (selection) => `thawed ${selection.label}`,
    help: `
Examples:
  $ tmem thaw 1
  thawed client 1 (web-1)
  $ tmem thaw -a
  thawed all clients`,
  },
  {
    name: 'destroy',
    subop: TMEMC_DESTROY,
    description: 'TMEMC_DESTROY, which in Xen (and here) only thaws: pools and pages are kept',
    done: (selection) =>
      `destroy: thawed ${selection.label} (TMEMC_DESTROY only thaws, as in Xen; pools and pages are kept)`,
    help: `
Xen's TMEMC_DESTROY never destroyed anything: it sets frozen := 0, exactly like
thaw, although the hypervisor logged "destroyed" (docs/semantics.md "Freeze and
thaw"). tmem keeps that meaning so scripts written for xl tmem-destroy behave as they
did. A client is
really destroyed (its pools flushed and freed) when it closes its connection with
goodbye, or when its grace period (tmem daemon --grace) ends after it dropped.

Examples:
  $ tmem destroy web-1
  destroy: thawed client 1 (web-1) (TMEMC_DESTROY only thaws, as in Xen; pools and pages are kept)`,
  },
]

function registerStateVerb(program: Command, verb: StateVerb): void {
  const command = program.command(verb.name).description(verb.description)
  addClientSelection(command)
  addControlOptions(command)
    .addHelpText('after', verb.help + '\n' + CONNECTION_HELP)
    .action(async (client: string | undefined, options: { all?: boolean }, self: Command) => {
      const arg = parseClientArg(options.all, client)
      const line = await withControl(self, async (control) => {
        const { selection, stats } = await selectClient(control, arg, verb.name)
        const { rc } = await control.control(controlOp(verb.subop, selection.cliId))
        if (rc < 0) throw opFailed(verb.name, rc, selection, stats)
        return verb.done(selection)
      })
      process.stdout.write(`${line}\n`)
    })
}

export function registerFreezeCommand(program: Command): void {
  registerStateVerb(program, VERBS[0]!)
}

export function registerThawCommand(program: Command): void {
  registerStateVerb(program, VERBS[1]!)
}

export function registerDestroyCommand(program: Command): void {
  registerStateVerb(program, VERBS[2]!)
}
