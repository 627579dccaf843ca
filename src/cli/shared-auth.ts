/**
 * `tmem shared-auth [-a | CLIENT] -u UUID -A 0|1` (xl tmem-shared-auth): TMEM_AUTH (docs/semantics.md "Shared-pool authorisation").
 * 1 authorises the client to create or join the shared pool with that UUID, 0 revokes it.
 * (xl's help text said "0=auth,1=deauth"; the hypervisor always meant 1 = authorise, and so do
 * we.) With -a the op sets the host-wide "global auth" flag instead: any client may join any
 * shared pool by UUID while it is 1.
 *
 * The UUID string is read as Xen's tools read it: 32 hex digits with dashes at 8, 13, 18, 23;
 * the first 16 digits are uuid_hi, the last 16 uuid_lo (src/abi/codec.ts uuidFromString).
 * A client exists in the engine only after its first tmem call, so authorise a client after it
 * made one (a guest whose first call is the shared NEW_POOL gets a private pool).
 */
import type { Command } from 'commander'
import { TMEM_AUTH, rcName } from '../abi/constants.js'
import { uuidFromString } from '../abi/codec.js'
import type { TmemOp } from '../abi/types.js'
import { addControlOptions, usageOf, withControl } from './args.js'
import { addClientSelection, engineClient, parseClientArg, selectClient } from './clients.js'
import { OpFailedError, UsageError } from './exit.js'

interface SharedAuthOptions {
  all?: boolean
  uuid: string
  auth: string
}

export function registerSharedAuthCommand(program: Command): void {
  const command = program
    .command('shared-auth')
    .description("Authorise (1) or revoke (0) a client's use of a shared pool by UUID (TMEM_AUTH)")
  addClientSelection(
    command,
    'every client: set the host-wide "global auth" flag (1 = anyone may join)',
  )
    .requiredOption(
      '-u, --uuid <uuid>',
      "the shared pool's UUID, xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
    )
    .requiredOption('-A, --auth <0|1>', "1 = authorise, 0 = revoke (xl's help had this backwards)")
  addControlOptions(command)
    .addHelpText(
      'after',
      `
The daemon requires authorisation for shared pools unless it runs with
--global-shared-auth (docs/semantics.md "Shared-pool authorisation"). An unauthorised
shared NEW_POOL silently gets a private pool. The first 16 hex digits of the UUID are uuid_hi, the last 16 uuid_lo (LIST prints
them as U1 and U0). The client must have made a tmem call first (the host creates a
client at its first call); an unknown client gives EINVAL (-22).

Examples:
  $ tmem shared-auth web-2 -u 11223344-5566-7788-99aa-bbccddeeff00 -A 1
  authorised client 2 (web-2) for shared pool 11223344-5566-7788-99aa-bbccddeeff00
  $ tmem shared-auth web-2 -u 11223344-5566-7788-99aa-bbccddeeff00 -A 0
  revoked client 2 (web-2) for shared pool 11223344-5566-7788-99aa-bbccddeeff00
  $ tmem shared-auth -a -u 11223344-5566-7788-99aa-bbccddeeff00 -A 1
  global shared-pool auth on: any client may join any shared pool

The daemon is found as for every control verb (see tmem list --help).
Exit codes: 0 done, 1 the op failed, 2 usage, 3 daemon unreachable.`,
    )
    .action(async (client: string | undefined, options: SharedAuthOptions, self: Command) => {
      const arg = parseClientArg(options.all, client)
      const uuidText = options.uuid.toLowerCase()
      const uuid = usageOf(() => uuidFromString(uuidText))
      if (options.auth !== '0' && options.auth !== '1')
        throw new UsageError('-A takes 1 (authorise) or 0 (revoke)')
      const auth = Number(options.auth)
      const line = await withControl(self, async (control) => {
        const { selection, stats } = await selectClient(control, arg, 'shared-auth')
        const op: TmemOp = {
          cmd: TMEM_AUTH,
          poolId: 0,
          creat: { uuid, flags: auth, arg1: selection.cliId },
        }
        const { rc } = await control.control(op)
        if (rc < 0) {
          const hint =
            engineClient(stats, selection.cliId) === undefined
              ? `: the host has no tmem client for ${selection.label} (a client exists after its first tmem call)`
              : ''
          throw new OpFailedError(
            `shared-auth failed: ${rcName(rc)} (${rc})${hint}`,
            rcName(rc),
            rc,
          )
        }
        if (arg.kind === 'all') {
          return auth === 1
            ? 'global shared-pool auth on: any client may join any shared pool'
            : 'global shared-pool auth off: clients need TMEM_AUTH per shared pool'
        }
        if (auth === 1) return `authorised ${selection.label} for shared pool ${uuidText}`
        return rc === 1
          ? `revoked ${selection.label} for shared pool ${uuidText}`
          : `${selection.label} was not authorised for shared pool ${uuidText} (nothing to revoke)`
      })
      process.stdout.write(`${line}\n`)
    })
}
