/**
 * Real NBD clients this project did not write, against a real daemon process with swap
 * exports: nbdinfo, qemu-io, qemu-img, nbdcopy and fio (its nbd engine, crc32c verify). The
 * oracles are the tools' own checks (qemu-io read -P, fio verify, qemu-img compare), the
 * images the test wrote, and a page model of what was written for the allocation map.
 * A missing tool skips its test and names the package to install.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type DaemonHandle, startDaemon } from '../../helpers/daemon.js'
import { type MapEntry, makeImage, missing, nbdMap, ok, run, uri } from './tools.js'

const KiB = 1024
const MiB = 1024 * KiB

let daemon: DaemonHandle
let socket: string

let dir: string

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nbd-clients-'))
  socket = join(dir, 'nbd.sock')
  daemon = await startDaemon({
    args: [
      '--memory',
      '160M',
      '--log-level',
      'warn',
      '--nbd-socket',
      socket,
      '--nbd-listen',
      '127.0.0.1:0',
      '--export',
      'name=disk,size=16M',
      '--export',
      'name=img,size=8M',
      '--export',
      'name=copy,size=8M',
      '--export',
      'name=fio,size=64M',
    ],
  })
})

after(async () => {
  await daemon.stop()
  rmSync(dir, { recursive: true, force: true })
})

/** Merges adjacent extents of the same type. */
function merged(entries: MapEntry[]): [number, number, number][] {
  const out: [number, number, number][] = []
  for (const entry of entries) {
    const last = out[out.length - 1]
    if (last !== undefined && last[2] === entry.type && last[0] + last[1] === entry.offset)
      last[1] += entry.length
    else out.push([entry.offset, entry.length, entry.type])
  }
  return out
}

void describe('real NBD clients on swap exports', { timeout: 120_000 }, () => {
  void test(
    'nbdinfo: handshake, --list, size, block sizes, flags',
    { skip: missing('nbdinfo') },
    () => {
      const info = JSON.parse(ok('nbdinfo', ['--json', uri(socket, 'disk')]).stdout) as {
        structured: boolean
        exports: Record<string, unknown>[]
      }
      assert.equal(info.structured, true)
      const disk = info.exports[0] ?? {}
      assert.equal(disk['export-size'], 16 * MiB)
      assert.equal(disk['block_size_minimum'], 512)
      assert.equal(disk['block_size_preferred'], 4096)
      assert.equal(disk['block_size_maximum'], 32 * MiB)
      assert.equal(disk['can_multi_conn'], true)
      assert.equal(disk['can_trim'], true)
      assert.equal(disk['can_zero'], true)
      assert.equal(disk['is_read_only'], false)
      assert.deepEqual(disk['contexts'], ['base:allocation'])
      const list = JSON.parse(ok('nbdinfo', ['--list', '--json', uri(socket, '')]).stdout) as {
        exports: { 'export-name': string }[]
      }
      assert.deepEqual(
        list.exports.map((e) => e['export-name']),
        ['disk', 'img', 'copy', 'fio'],
      )
      const port = /nbd {6}tcp:127\.0\.0\.1:(\d+)/.exec(daemon.stdout())?.[1]
      assert.ok(port !== undefined, daemon.stdout())
      const tcp = JSON.parse(ok('nbdinfo', ['--json', `nbd://127.0.0.1:${port}/copy`]).stdout) as {
        exports: Record<string, unknown>[]
      }
      assert.equal(tcp.exports[0]?.['export-size'], 8 * MiB, 'the same exports over loopback TCP')
    },
  )

  void test(
    'qemu-io: patterns, unaligned writes, discard, write -z; nbdinfo --map follows',
    { skip: missing('qemu-io', 'nbdinfo') },
    () => {
      const target = uri(socket, 'disk')
      const io = (...commands: string[]): string => {
        const args = ['-f', 'raw', ...commands.flatMap((command) => ['-c', command]), target]
        const result = ok('qemu-io', args)
        assert.doesNotMatch(
          result.stdout + result.stderr,
          /fail|error/i,
          result.stdout + result.stderr,
        )
        return result.stdout
      }
      io(
        'write -P 0xaa 0 1M',
        'write -P 0xbb 1049576 5000',
        'write -P 0xcc 4095 3',
        'write -z 2M 64K',
        'write -z -u 3M 64K',
        'discard 512K 256K',
      )
      io(
        'read -P 0xaa 0 4095',
        'read -P 0xcc 4095 3',
        'read -P 0xaa 4098 520190',
        'read -P 0 512K 256K',
        'read -P 0xaa 768K 256K',
        'read -P 0xbb 1049576 5000',
        'read -P 0 1054576 1M',
        'read -P 0 2M 64K',
        'read -P 0 3M 64K',
      )
      // A wrong pattern must be caught, or the reads above prove nothing.
      const wrong = run('qemu-io', ['-f', 'raw', '-c', 'read -P 0xab 0 4096', target])
      assert.match(wrong.stdout + wrong.stderr, /Pattern verification failed/)
      // The page model: which 4 KiB pages hold data.
      const pages = new Uint8Array((16 * MiB) / 4096)
      const mark = (offset: number, length: number, value: number): void => {
        for (let p = Math.floor(offset / 4096); p < Math.ceil((offset + length) / 4096); p++)
          pages[p] = value
      }
      mark(0, 1 * MiB, 1)
      mark(1049576, 5000, 1) // qemu aligns this to 512-byte sectors inside pages 256 and 257
      mark(2 * MiB, 64 * KiB, 1) // write -z without -u: zeros stay allocated (NO_HOLE)
      mark(512 * KiB, 256 * KiB, 0) // whole pages discarded
      const expected: [number, number, number][] = []
      pages.forEach((value, page) => {
        const type = value === 1 ? 0 : 3
        const last = expected[expected.length - 1]
        if (last !== undefined && last[2] === type) last[1] += 4096
        else expected.push([page * 4096, 4096, type])
      })
      assert.deepEqual(merged(nbdMap(target)), expected)
    },
  )

  void test('qemu-img convert in and back, compare and map', { skip: missing('qemu-img') }, () => {
    const source = join(dir, 'src.img')
    const image = makeImage(source, 8, [3, 4])
    const target = uri(socket, 'img')
    ok('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', source, target])
    const back = join(dir, 'back.img')
    ok('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', target, back])
    assert.ok(readFileSync(back).equals(image), 'the image came back byte for byte')
    ok('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, target])
    const map = JSON.parse(
      ok('qemu-img', ['map', '-f', 'raw', '--output=json', target]).stdout,
    ) as { start: number; length: number; data: boolean; zero: boolean }[]
    for (const extent of map) {
      if (!extent.data) {
        assert.ok(extent.zero, 'not data means zero here')
        assert.ok(
          image.subarray(extent.start, extent.start + extent.length).every((byte) => byte === 0),
          `hole at ${extent.start} holds data`,
        )
      }
    }
    const holes = map.filter((e) => !e.data).reduce((sum, e) => sum + e.length, 0)
    assert.equal(holes, 2 * MiB, 'the two zero MiBs were never stored')
  })

  void test('nbdcopy in and out, over several connections', { skip: missing('nbdcopy') }, () => {
    const source = join(dir, 'copy-src.img')
    const image = makeImage(source, 8)
    const target = uri(socket, 'copy')
    ok('nbdcopy', ['--connections=4', '--requests=16', source, target])
    const out = join(dir, 'copy-out.img')
    ok('nbdcopy', ['--connections=2', target, out])
    assert.ok(readFileSync(out).equals(image))
  })

  for (const [iodepth, numjobs] of [
    [1, 1],
    [16, 2],
    [64, 4],
  ] as const) {
    void test(
      `fio nbd engine, crc32c verify, iodepth ${iodepth}, ${numjobs} connection(s)`,
      { skip: missing('fio') },
      () => {
        const job = join(dir, `fio-${iodepth}.job`)
        writeFileSync(
          job,
          [
            '[global]',
            'ioengine=nbd',
            `uri=${uri(socket, 'fio')}`,
            'rw=randwrite',
            'bsrange=512-64k',
            'blockalign=512',
            'size=4M',
            'offset_increment=8M',
            'verify=crc32c',
            'verify_fatal=1',
            'verify_state_save=0',
            'do_verify=1',
            `iodepth=${iodepth}`,
            `numjobs=${numjobs}`,
            '[verify]',
            '',
          ].join('\n'),
        )
        const result = ok('fio', ['--output-format=json', job])
        const report = JSON.parse(result.stdout.slice(result.stdout.indexOf('{'))) as {
          jobs: { error: number; read: { io_bytes: number }; write: { io_bytes: number } }[]
        }
        assert.equal(report.jobs.length, numjobs)
        for (const j of report.jobs) {
          assert.equal(j.error, 0)
          assert.ok(
            j.write.io_bytes >= 4 * MiB && j.read.io_bytes > 0,
            'written, then read back and verified',
          )
        }
      },
    )
  }
})
