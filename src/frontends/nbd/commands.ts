/**
 * The NBD server's control commands (`tmem export add|remove|list`): handlers for the daemon's
 * COMMAND frames (server/commands.ts), registered by cli/daemon.ts, which composes the daemon
 * and the NBD server. Control plane: allocates freely.
 *
 *   export.add     { spec: "name=NAME,size=SIZE[,...]" }   -> the new export
 *   export.remove  { name, force? }                        -> the export as it was
 *   export.list    {}                                      -> every export
 */
import {
  COMMAND_EBUSY,
  COMMAND_EEXIST,
  COMMAND_EINVAL,
  COMMAND_EIO,
  COMMAND_ENOENT,
} from '../../protocol/command-frame.js'
import { CommandError, type ControlCommands } from '../../server/commands.js'
import type { NbdServer } from './server.js'
import { parseExportSpec } from './spec.js'

export const EXPORT_COMMANDS = ['export.add', 'export.remove', 'export.list'] as const

/** Registers the export commands of `server` on the daemon's `commands`. */
export function registerExportCommands(commands: ControlCommands, server: NbdServer): void {
  commands.register('export.add', (args) => addExport(server, args))
  commands.register('export.remove', (args) => removeExport(server, args))
  commands.register('export.list', () => server.list())
}

function addExport(server: NbdServer, args: Record<string, unknown>): unknown {
  const text = args['spec']
  if (typeof text !== 'string') throw new CommandError(COMMAND_EINVAL, 'export.add needs a spec')
  let spec
  try {
    spec = parseExportSpec(text)
  } catch (error) {
    throw new CommandError(COMMAND_EINVAL, (error as Error).message)
  }
  if (server.exportOf(spec.name) !== undefined)
    throw new CommandError(COMMAND_EEXIST, `Export ${spec.name} already exists`)
  try {
    server.add(spec)
  } catch (error) {
    throw new CommandError(COMMAND_EIO, `Export ${spec.name}: ${(error as Error).message}`)
  }
  return describe(server, spec.name)
}

function removeExport(server: NbdServer, args: Record<string, unknown>): unknown {
  const name = args['name']
  if (typeof name !== 'string' || name === '')
    throw new CommandError(COMMAND_EINVAL, 'export.remove needs the name of an export')
  const before = describe(server, name)
  if (before === undefined) throw new CommandError(COMMAND_ENOENT, `No export ${name}`)
  const connections = server.connectionsOf(name)
  if (connections > 0 && args['force'] !== true) {
    throw new CommandError(
      COMMAND_EBUSY,
      `Export ${name} is in use by ${connections} NBD connection${connections === 1 ? '' : 's'}` +
        ' (--force closes them and destroys its pages)',
    )
  }
  server.remove(name)
  return before
}

function describe(server: NbdServer, name: string): Record<string, unknown> | undefined {
  return server.list().find((entry) => entry['name'] === name)
}
