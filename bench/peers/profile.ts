/**
 * Reads a V8 .cpuprofile (node --cpu-prof) and lists the functions with the most self time,
 * so a run can say where the daemon spends its CPU.
 */
import { readFileSync } from 'node:fs'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
}

interface CpuProfile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples?: number[]
}

export interface Frame {
  name: string
  where: string
  share: number
}

/** The top `count` frames by self time, as shares of all samples (idle included). */
export function topFrames(
  path: string,
  count: number,
): { frames: Frame[]; idleShare: number; seconds: number } {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile
  const byKey = new Map<string, Frame & { hits: number }>()
  let total = 0
  let idle = 0
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0
    if (hits === 0) continue
    total += hits
    const { functionName, url, lineNumber } = node.callFrame
    if (functionName === '(idle)') idle += hits
    const file = url.replace(/^file:\/\//, '').replace(/^.*\/(dist|node_modules)\//, '$1/')
    const where = file === '' ? '' : `${file}:${lineNumber + 1}`
    const key = `${functionName}@${where}`
    const entry = byKey.get(key) ?? {
      name: functionName || '(anonymous)',
      where,
      share: 0,
      hits: 0,
    }
    entry.hits += hits
    byKey.set(key, entry)
  }
  const frames = [...byKey.values()]
    .sort((a, b) => b.hits - a.hits)
    .slice(0, count)
    .map((f) => ({ name: f.name, where: f.where, share: total === 0 ? 0 : f.hits / total }))
  return {
    frames,
    idleShare: total === 0 ? 0 : idle / total,
    seconds: (profile.endTime - profile.startTime) / 1e6,
  }
}

export interface Category {
  name: string
  share: number
}

/** Busy time (idle left out) by where it goes: kernel I/O, copies, engine, wire layer, GC. */
export function categories(path: string): Category[] {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile
  const totals = new Map<string, number>()
  let busy = 0
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0
    if (hits === 0) continue
    const { functionName, url } = node.callFrame
    if (functionName === '(idle)') continue
    busy += hits
    const name = categoryOf(functionName, url)
    totals.set(name, (totals.get(name) ?? 0) + hits)
  }
  return [...totals.entries()]
    .map(([name, hits]) => ({ name, share: busy === 0 ? 0 : hits / busy }))
    .sort((a, b) => b.share - a.share)
}

function categoryOf(functionName: string, url: string): string {
  if (/^(writeBuffer|writev|writeUtf8String|writeLatin1String)$/.test(functionName)) {
    return 'socket write syscalls (writeBuffer/writev)'
  }
  if (
    functionName === '_copyActual' ||
    functionName === 'copy' ||
    functionName === '_copy' ||
    url.includes('/src/util/bytes')
  ) {
    return 'page copies (request to frame, frame to reply: util/bytes copyBytes, Buffer copy)'
  }
  if (functionName === '(garbage collector)') return 'garbage collector'
  if (url.includes('/src/engine/')) return 'engine (src/engine)'
  if (url.includes('/src/server/')) return 'wire layer (src/server: frames, connection, dispatch)'
  if (functionName === '(program)')
    return '(program): native code outside JS, event loop, syscalls not attributed'
  if (url.startsWith('node:') || url === '')
    return 'Node runtime (streams, event loop, other natives)'
  return 'other'
}
