/**
 * `tmem set [-a | CLIENT] -w WEIGHT -c CAP -p COMPRESS` (xl tmem-set): TMEMC_SET_WEIGHT,
 * TMEMC_SET_CAP and TMEMC_SET_COMPRESS, value in arg1 (docs/semantics.md "Control subops", "Client settings"). The subops are sent
 * in that order and the first failure stops the rest, so a refused cap leaves the weight set
 * and the compress flag untouched (the message names which one failed).
 *
 * Meaning in this host: weight sets the client's share of ephemeral pages (docs/semantics.md "Decision: eviction quota": a client over
 * its weighted share evicts its own pages first); cap is the largest percentage (1-100) of the
 * host's pages its ephemeral pages may hold, 0 = none (docs/semantics.md "Decision: cap", enforced, where Xen ignored it;
 * above 100 the engine answers EINVAL); compress turns per-client page compression on or off
 * (refused with EPERM (-1) while the host deduplicates).
 */
import type { Command } from 'commander'
import { TMEMC_SET_CAP, TMEMC_SET_COMPRESS, TMEMC_SET_WEIGHT } from '../abi/constants.js'
import { addControlOptions, parseOnOff, parseU32, withControl } from './args.js'
import { controlOp } from '../abi/codec.js'
import { addClientSelection, opFailed, parseClientArg, selectClient } from './clients.js'
import { UsageError } from './exit.js'
import { parsePolicy, TMEMC_SET_REMOTE, TMEMC_SET_REMOTE_QUOTA } from '../remote/policy.js'
import { parseSize } from '../server/config.js'

interface SetOptions {
  all?: boolean
  weight?: number
  cap?: number
  compress?: boolean
  remote?: number
  remoteQuota?: number
}

export function registerSetCommand(program: Command): void {
  const command = program
    .command('set')
    .description("Set clients' weight, cap and compression (TMEMC_SET_WEIGHT, _CAP, _COMPRESS)")
  addClientSelection(command)
    .option(
      '-w, --weight <n>',
      'weight: share of ephemeral pages when memory is short (0 = never over quota)',
      parseU32,
    )
    .option(
      '-c, --cap <percent>',
      "cap: at most this % of the host's pages as ephemeral pages, 0 = no cap",
      parseU32,
    )
    .option('-p, --compress <0|1>', "compress the client's pages: 1 on, 0 off", parseOnOff)
    .option('--remote <policy>', 'remote tier: off, ephemeral or all (docs/remote.md)', policyArg)
    .option('--remote-quota <size>', 'most bytes the client keeps remote, 0 = no quota', sizeArg)
  addControlOptions(command)
    .addHelpText(
      'after',
      `
At least one of -w, -c, -p. They are applied in that order; the first that fails stops
the rest. The values show in tmem list -l as ww, ca and co.

Examples:
  $ tmem set web-1 -w 5 -c 25
  set client 1 (web-1): weight 5, cap 25
  $ tmem set -a -p 1
  set all clients: compress 1

The daemon is found as for every control verb (see tmem list --help).
Exit codes: 0 done, 1 an op failed (unknown client: EPERM (-1); cap over 100: EINVAL (-22)),
2 usage, 3 daemon unreachable.`,
    )
    .action(async (client: string | undefined, options: SetOptions, self: Command) => {
      const arg = parseClientArg(options.all, client)
      const steps: { flag: string; subop: number; value: number; text: string }[] = []
      if (options.weight !== undefined) {
        steps.push({
          flag: '-w',
          subop: TMEMC_SET_WEIGHT,
          value: options.weight,
          text: `weight ${options.weight}`,
        })
      }
      if (options.cap !== undefined) {
        steps.push({
          flag: '-c',
          subop: TMEMC_SET_CAP,
          value: options.cap,
          text: `cap ${options.cap}`,
        })
      }
      if (options.compress !== undefined) {
        const value = options.compress ? 1 : 0
        steps.push({ flag: '-p', subop: TMEMC_SET_COMPRESS, value, text: `compress ${value}` })
      }
      steps.push(...remoteSteps(options))
      if (steps.length === 0)
        throw new UsageError('Give at least one of -w WEIGHT, -c CAP, -p COMPRESS, --remote')
      const line = await withControl(self, async (control) => {
        const { selection, stats } = await selectClient(control, arg, 'set')
        for (const step of steps) {
          const { rc } = await control.control(
            controlOp(step.subop, selection.cliId, 0, step.value),
          )
          if (rc < 0) throw opFailed(`set ${step.flag}`, rc, selection, stats)
        }
        return `set ${selection.label}: ${steps.map((step) => step.text).join(', ')}`
      })
      process.stdout.write(`${line}\n`)
    })
}

function policyArg(text: string): number {
  const policy = parsePolicy(text)
  if (policy < 0) throw new UsageError('--remote must be off, ephemeral or all')
  return policy
}

function sizeArg(text: string): number {
  if (text.trim() === '0') return 0
  try {
    return Math.ceil(parseSize(text) / 4096)
  } catch (error) {
    throw new UsageError((error as Error).message)
  }
}

/** The remote tier's subops (TMEMC_SET_REMOTE, _QUOTA; refused by a daemon without it). */
function remoteSteps(options: SetOptions) {
  const steps: { flag: string; subop: number; value: number; text: string }[] = []
  if (options.remote !== undefined) {
    const names = ['off', 'ephemeral', 'all']
    const text = `remote ${names[options.remote] ?? '?'}`
    steps.push({ flag: '--remote', subop: TMEMC_SET_REMOTE, value: options.remote, text })
  }
  if (options.remoteQuota !== undefined) {
    const text = `remote quota ${options.remoteQuota} pages`
    const value = options.remoteQuota
    steps.push({ flag: '--remote-quota', subop: TMEMC_SET_REMOTE_QUOTA, value, text })
  }
  return steps
}
