/**
 * Joins a batch of queued changes into fewer commands (docs/remote.md "Ordering"): the page
 * writes to one object's hash become one multi-field `HSET`, its field deletes one `HDEL`.
 * Each ioredis command costs the daemon about as much CPU as a page's bytes, so a batch of
 * sixteen pages of one object in one command costs a fraction of sixteen commands.
 *
 * A change joins the open command of its key when that command is of its kind (a write with
 * the same replica count, or a field delete); any other change to the key (a `DEL`, a write
 * after a delete, a delete after a write) closes it, so the changes to one key reach its node
 * in the order they were made. Inside one `HSET` a later value of the same field wins, as it
 * would have as a later command. Commands are issued in the order of their first change; a
 * joined change moves earlier only past changes to other keys, which never were ordered with
 * it (they may live on other nodes). The `SADD`s to a pool's index join too (each of an
 * object's overflow writes in flight queues one, as none is listed yet), members once: adding
 * earlier keeps the index a superset of the objects in the cluster. An `SREM` is never
 * joined or moved, and closes the open `SADD` of its key like any other change.
 */
import type { Change } from './queue.js'

/** A command to issue: a change as it was, or joined writes or deletes of one key. */
export type Command =
  | {
      kind: 'hset'
      key: string
      /** field, value, field, value...: the HSET arguments after the key. */
      args: (string | Buffer)[]
      replicas: number
      /** Each joined write's callback, told whether the cluster has the page. */
      done: ((ok: boolean) => void)[]
    }
  | { kind: 'hdel'; key: string; fields: string[] }
  | { kind: 'sadd'; key: string; members: string[]; seen: Set<string> }
  | { kind: 'del'; key: string }
  | { kind: 'srem'; key: string; member: string }

/** Pages a command carries (what bounds the work issued in one event-loop turn). */
export function commandWeight(command: Command): number {
  if (command.kind === 'hset') return command.done.length
  if (command.kind === 'sadd') return command.members.length
  return command.kind === 'hdel' ? command.fields.length : 1
}

/** The commands that make `batch`, in issue order. */
export function coalesce(batch: readonly Change[]): Command[] {
  const open = new Map<string, Command>()
  const commands: Command[] = []
  for (const change of batch) {
    const joined = open.get(change.key)
    if (change.kind === 'put') {
      if (joined?.kind === 'hset' && joined.replicas === change.replicas) {
        joined.args.push(String(change.index), change.value)
        joined.done.push(change.done)
        continue
      }
      const args = [String(change.index), change.value]
      const command: Command = {
        kind: 'hset',
        key: change.key,
        args,
        replicas: change.replicas,
        done: [change.done],
      }
      open.set(change.key, command)
      commands.push(command)
    } else if (change.kind === 'hdel') {
      if (joined?.kind === 'hdel') {
        joined.fields.push(String(change.index))
        continue
      }
      const command: Command = { kind: 'hdel', key: change.key, fields: [String(change.index)] }
      open.set(change.key, command)
      commands.push(command)
    } else if (change.kind === 'sadd') {
      if (joined?.kind === 'sadd') {
        if (!joined.seen.has(change.member)) joined.members.push(change.member)
        joined.seen.add(change.member)
        continue
      }
      const members = [change.member]
      const command: Command = { kind: 'sadd', key: change.key, members, seen: new Set(members) }
      open.set(change.key, command)
      commands.push(command)
    } else {
      if (joined !== undefined) open.delete(change.key)
      commands.push(change.kind === 'del' ? change : { ...change, kind: 'srem' })
    }
  }
  return commands
}
