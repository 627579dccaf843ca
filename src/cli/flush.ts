/**
 * `tmem flush --kb N` (xm tmem-flush) and `tmem freeable` (xl tmem-freeable): the two halves
 * of Xen's "reclaim memory for a new guest" sequence (docs/semantics.md "Flush and freeable memory", "Freeze and thaw").
 *
 * TMEMC_FLUSH evicts ephemeral pages until tmem's free list holds N KiB, then hands the whole
 * free list back to the host, and returns the KiB handed back. Xen supports it only for all
 * clients (a single client gets -1, "not supported yet"), so the verb takes no CLIENT; `-a` is
 * accepted for xm's spelling. QUERY_FREEABLE_MB is what such a flush could free, in MiB.
 */
import type { Command } from 'commander'
import {
  CLI_ID_NULL,
  PAGE_SIZE,
  TMEMC_FLUSH,
  TMEMC_QUERY_FREEABLE_MB,
  rcName,
} from '../abi/constants.js'
import { addControlOptions, parseU32, withControl } from './args.js'
import { controlOp } from '../abi/codec.js'
import { OpFailedError } from './exit.js'

const CONNECTION_HELP = `
The daemon is found as for every control verb (see tmem list --help).
Exit codes: 0 done, 1 the op failed, 2 usage, 3 daemon unreachable.`

export function registerFlushCommand(program: Command): void {
  const command = program
    .command('flush')
    .description(
      "Evict ephemeral pages until N KiB are free, then hand tmem's free memory back (TMEMC_FLUSH)",
    )
    .requiredOption('--kb <n>', 'KiB to free (rounded up to 4 KiB pages)', parseU32)
    .option('-a, --all', "all clients (the only form Xen supports; accepted for xm's spelling)")
  addControlOptions(command)
    .addHelpText(
      'after',
      `
Prints the KiB handed back to the host (the free list after the evictions, which can
be more than asked for). Ephemeral pages only: persistent pages are never evicted.

Examples:
  $ tmem flush --kb 1024
  released 1024 KiB (256 pages)
${CONNECTION_HELP}`,
    )
    .action(async (options: { kb: number }, self: Command) => {
      const kib = await withControl(self, async (control) => {
        const { rc } = await control.control(controlOp(TMEMC_FLUSH, CLI_ID_NULL, 0, options.kb))
        if (rc < 0) throw new OpFailedError(`flush failed: ${rcName(rc)} (${rc})`, rcName(rc), rc)
        return rc
      })
      process.stdout.write(`released ${kib} KiB (${(kib * 1024) / PAGE_SIZE} pages)\n`)
    })
}

export function registerFreeableCommand(program: Command): void {
  const command = program
    .command('freeable')
    .description('Print how many MiB a flush could free now (TMEMC_QUERY_FREEABLE_MB)')
  addControlOptions(command)
    .addHelpText(
      'after',
      `
Prints one number, MiB (rounded down): tmem's free list plus its ephemeral pages, as
xl tmem-freeable did.

Examples:
  $ tmem freeable
  12
${CONNECTION_HELP}`,
    )
    .action(async (_options: unknown, self: Command) => {
      const mib = await withControl(self, async (control) => {
        const { rc } = await control.control(controlOp(TMEMC_QUERY_FREEABLE_MB, CLI_ID_NULL))
        if (rc < 0)
          throw new OpFailedError(`freeable failed: ${rcName(rc)} (${rc})`, rcName(rc), rc)
        return rc
      })
      process.stdout.write(`${mib}\n`)
    })
}
