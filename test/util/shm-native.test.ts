/**
 * The native shared-memory addon (native/shm) through its loader: two processes that map the
 * same file see each other's writes, Atomics on the mapping are atomic across processes, a
 * sealed memfd cannot be shrunk under a mapping, `unmap` empties every view, and the loader
 * says "unavailable: <why>" instead of throwing.
 *
 * Where the addon is not built the mapping tests are skipped with the loader's reason, except
 * under CI (CI=true), whose `npm ci` builds it: there they fail.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { type ChildProcess, fork, spawnSync } from 'node:child_process'
import { closeSync, ftruncateSync, openSync, rmSync, statfsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { shmNative } from '../../src/util/shm-native.js'
import { pattern } from '../helpers/shm-child.js'

const CHILD = fileURLToPath(new URL('../helpers/shm-child.js', import.meta.url))
const LOADER = fileURLToPath(new URL('../../src/util/shm-native.js', import.meta.url))
const status = shmNative()
const skip = !status.available && process.env['CI'] === undefined ? status.reason : false

interface Reply {
  ready?: boolean
  bytes?: number[]
  done?: boolean
  code?: string
}

/** A child mapping `path`; `ask` sends one request and resolves with its reply. */
async function child(
  path: string,
  size: number,
): Promise<{ ask(request: object): Promise<Reply>; process: ChildProcess }> {
  const proc = fork(CHILD, [path, String(size)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const replies: ((reply: Reply) => void)[] = []
  proc.on('message', (reply: Reply) => replies.shift()?.(reply))
  const ready = new Promise<Reply>((resolve) => replies.push(resolve))
  await ready
  return {
    process: proc,
    ask: (request) =>
      new Promise<Reply>((resolve) => {
        replies.push(resolve)
        proc.send(request)
      }),
  }
}

async function exercise(path: string, buffer: ArrayBuffer, size: number): Promise<void> {
  const view = new Uint8Array(buffer)
  view.set(pattern(7, 4096), 0)
  const peer = await child(path, size)
  try {
    // The child sees what the parent wrote before and after it mapped.
    assert.deepEqual(
      Uint8Array.from((await peer.ask({ do: 'read', at: 0, bytes: 4096 })).bytes ?? []),
      pattern(7, 4096),
    )
    view.set(pattern(8, 100), 8000)
    assert.deepEqual(
      Uint8Array.from((await peer.ask({ do: 'read', at: 8000, bytes: 100 })).bytes ?? []),
      pattern(8, 100),
    )
    // The parent sees what the child writes.
    await peer.ask({ do: 'write', at: 4096, seed: 9, bytes: 4096 })
    assert.deepEqual(view.subarray(4096, 8192), pattern(9, 4096))
    // Atomics from both processes at once: no increment lost.
    const words = new Int32Array(buffer)
    const childDone = peer.ask({ do: 'add', word: 3000, times: 200000 })
    for (let i = 0; i < 200000; i++) Atomics.add(words, 3000, 1)
    await childDone
    assert.equal(Atomics.load(words, 3000), 400000)
  } finally {
    peer.process.kill()
  }
}

void test("two processes mapping one sealed memfd see each other's writes", { skip }, async () => {
  const native = status.native!
  const size = 4 * 4096
  const fd = native.memfd('tmem-test', size)
  try {
    assert.equal(native.sizeOf(fd), size)
    // Sealed against shrinking, growing and further seals (F_SEAL_SHRINK 2 | GROW 4 | SEAL 1).
    assert.equal(native.seals(fd), 2 | 4 | 1)
    const buffer = native.map(fd, size)
    await exercise(`/proc/${process.pid}/fd/${fd}`, buffer, size)
    // The size is sealed: neither the creator nor a process that opened it can shrink it.
    assert.throws(() => ftruncateSync(fd, 4096), { code: 'EPERM' })
    const peer = await child(`/proc/${process.pid}/fd/${fd}`, size)
    try {
      assert.equal((await peer.ask({ do: 'truncate' })).code, 'EPERM')
    } finally {
      peer.process.kill()
    }
    native.unmap(buffer)
    assert.equal(buffer.byteLength, 0, 'unmap detaches the buffer')
  } finally {
    closeSync(fd)
  }
})

void test("two processes mapping one /dev/shm file see each other's writes", { skip }, async () => {
  const native = status.native!
  const path = `/dev/shm/tmem-test-${process.pid}`
  const size = 4 * 4096
  const fd = openSync(path, 'wx+', 0o600)
  try {
    ftruncateSync(fd, size)
    // A tmpfs file made by open() cannot be sealed (it reports F_SEAL_SEAL alone), so its size
    // can always change: the client refuses such a region (shm-attach.ts).
    assert.equal(native.seals(fd) & 2, 0)
    const buffer = native.map(fd, size)
    await exercise(path, buffer, size)
    native.unmap(buffer)
  } finally {
    closeSync(fd)
    rmSync(path, { force: true })
  }
})

void test('the addon refuses bad arguments with errors, not crashes', { skip }, () => {
  const native = status.native!
  const fd = native.memfd('tmem-test', 4096)
  try {
    assert.throws(() => native.map(fd, 8192), { code: 'EINVAL' })
    assert.throws(() => native.map(fd, 0), RangeError)
    assert.throws(() => native.map(-1, 4096), RangeError)
    assert.throws(() => native.memfd('x', 0), RangeError)
    assert.throws(() => native.map(0x7fff_fff0, 4096), { code: 'EBADF' })
    assert.throws(() => native.unmap(new Uint8Array(4) as unknown as ArrayBuffer), TypeError)
    // A descriptor missing or out of range is refused, not read as fd 0 or ignored.
    const call = native as unknown as { sizeOf(): number; seals(): number }
    assert.throws(() => call.sizeOf(), RangeError)
    assert.throws(() => call.seals(), RangeError)
    assert.throws(() => native.seals(-1), RangeError)
    // A file that is not shared memory (this script, unless the repository is on tmpfs,
    // 0x01021994) has no seals to report: EINVAL, so the client would not map it.
    const script = new URL(import.meta.url)
    if (statfsSync(script).type !== 0x01021994) {
      const plain = openSync(script, 'r')
      try {
        assert.throws(() => native.seals(plain), { code: 'EINVAL' })
      } finally {
        closeSync(plain)
      }
    }
  } finally {
    closeSync(fd)
  }
})

void test('the loader reports "unavailable: <why>" and never throws', () => {
  const script = `import(${JSON.stringify(LOADER)}).then((m) => console.log(JSON.stringify(m.shmNative())))`
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, TMEM_SHM: 'off' },
    encoding: 'utf8',
  })
  assert.equal(run.status, 0, run.stderr)
  const reported = JSON.parse(run.stdout) as { available: boolean; reason: string }
  assert.equal(reported.available, false)
  assert.match(reported.reason, /^unavailable: TMEM_SHM=off/)
  if (!status.available) assert.match(status.reason, /^unavailable: /)
})
