/**
 * Boots a Linux guest under QEMU (TCG: KVM is not usable on our machines) that swaps onto an
 * NBD export: a busybox initramfs loads the virtio modules, runs `mkswap` + `swapon` on the
 * virtio disk, runs the memory test over twice the guest's RAM, prints what the kernel said
 * about I/O errors and powers off. Every wait is bounded: the whole boot has one deadline, and
 * QEMU is killed when it passes.
 *
 * The initramfs is a newc cpio archive written here byte by byte (no `cpio` on the machine).
 */
import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { VIRTIO_MODULES, type GuestKernel } from './guest-kernel.js'

export interface CpioEntry {
  name: string
  /** Full st_mode: type bits and permissions (0o100755 a file, 0o40755 a directory...). */
  mode: number
  data?: Uint8Array
  /** For device nodes. */
  rdev?: [number, number]
}

function hex8(value: number): string {
  return value.toString(16).padStart(8, '0')
}

function pad4(length: number): number {
  return (4 - (length % 4)) % 4
}

/** One newc ("070701") archive of `entries`, ending with the TRAILER!!! record. */
export function newcArchive(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = []
  const all = [...entries, { name: 'TRAILER!!!', mode: 0 }]
  all.forEach((entry, index) => {
    const data = entry.data ?? new Uint8Array(0)
    const name = Buffer.from(`${entry.name}\0`)
    const fields = [
      index + 1,
      entry.mode,
      0,
      0,
      1,
      0,
      data.length,
      0,
      0,
      entry.rdev?.[0] ?? 0,
      entry.rdev?.[1] ?? 0,
      name.length,
      0,
    ]
    const header = `070701${fields.map(hex8).join('')}`
    parts.push(Buffer.from(header, 'ascii'), name, Buffer.alloc(pad4(110 + name.length)))
    parts.push(Buffer.from(data), Buffer.alloc(pad4(data.length)))
  })
  return Buffer.concat(parts)
}

/** The guest's /init: everything it prints that the host reads starts with "GUEST ". */
export function initScript(memtestMiB: number): string {
  return `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "GUEST booted $(uname -r) memtotal=$(grep MemTotal /proc/meminfo | tr -s ' ')"
for m in ${VIRTIO_MODULES.join(' ')}; do insmod /modules/$m.ko || echo "GUEST insmod $m failed"; done
n=0
while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
if mkswap /dev/vda >/dev/null && swapon /dev/vda; then
  echo "GUEST swapon $(tail -n 1 /proc/swaps | tr -s ' \\t' ' ')"
  start=$(cut -d ' ' -f 1 /proc/uptime)
  /memtest ${memtestMiB}
  echo "GUEST memtest exit=$? start=$start end=$(cut -d ' ' -f 1 /proc/uptime)"
  echo "GUEST vmstat $(grep -E '^pswp(in|out) ' /proc/vmstat | tr '\\n' ' ')"
else
  echo "GUEST swapon failed"
fi
echo "GUEST dmesg-errors $(dmesg | grep -ciE 'I/O error|blk_update_request|Buffer I/O|Read-error|Write-error|swap.*error')"
dmesg | grep -iE 'I/O error|error' | head -n 20 | sed 's/^/GUEST dmesg: /'
echo "GUEST done"
poweroff -f
`
}

/** The initramfs for `kernel`: busybox, the virtio modules, the memory test and /init. */
export function buildInitramfs(kernel: GuestKernel, memtest: string, memtestMiB: number): Buffer {
  const entries: CpioEntry[] = [
    { name: 'bin', mode: 0o40755 },
    { name: 'dev', mode: 0o40755 },
    { name: 'proc', mode: 0o40755 },
    { name: 'sys', mode: 0o40755 },
    { name: 'modules', mode: 0o40755 },
    { name: 'dev/console', mode: 0o20600, rdev: [5, 1] },
    { name: 'bin/busybox', mode: 0o100755, data: readFileSync('/bin/busybox') },
    { name: 'init', mode: 0o100755, data: Buffer.from(initScript(memtestMiB)) },
    { name: 'memtest', mode: 0o100755, data: readFileSync(memtest) },
  ]
  for (const [name, path] of kernel.modules) {
    entries.push({ name: `modules/${name}.ko`, mode: 0o100644, data: readFileSync(path) })
  }
  return newcArchive(entries)
}

export interface GuestRun {
  /** Everything the serial console printed. */
  console: string
  /** Milliseconds from QEMU's start to its exit. */
  wallMs: number
  /** Seconds the memory test took by the guest's clock, or null if it never ran. */
  memtestSeconds: number | null
  exit: number | string
  timedOut: boolean
}

export interface GuestOptions {
  kernel: GuestKernel
  initramfs: string
  /** A QEMU drive file name, e.g. nbd+unix:///swap?socket=/tmp/x.sock. */
  drive: string
  memoryMiB: number
  deadlineMs: number
}

function memtestSeconds(console: string): number | null {
  const match = /GUEST memtest exit=\d+ start=([\d.]+) end=([\d.]+)/.exec(console)
  return match ? Number(match[2]) - Number(match[1]) : null
}

/** Boots the guest and resolves when QEMU exits or the deadline kills it. */
export async function runGuest(options: GuestOptions): Promise<GuestRun> {
  const args = [
    '-accel',
    'tcg',
    '-m',
    String(options.memoryMiB),
    '-smp',
    '1',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-serial',
    'stdio',
    '-no-reboot',
    '-kernel',
    options.kernel.vmlinuz,
    '-initrd',
    options.initramfs,
    '-append',
    'console=ttyS0 panic=-1 zswap.enabled=0 loglevel=4',
    '-drive',
    `file=${options.drive},if=virtio,format=raw,cache=none`,
  ]
  const started = Date.now()
  const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (text: string) => (output += text))
  child.stderr.setEncoding('utf8').on('data', (text: string) => (output += text))
  let timedOut = false
  const timer = setTimeout(() => {
    timedOut = true
    child.kill('SIGKILL')
  }, options.deadlineMs)
  const exit = await new Promise<number | string>((resolve) => {
    child.once('error', (error) => resolve(error.message))
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'))
  })
  clearTimeout(timer)
  return {
    console: output,
    wallMs: Date.now() - started,
    memtestSeconds: memtestSeconds(output),
    exit,
    timedOut,
  }
}

/** Writes the initramfs into `dir` and returns its path. */
export function initramfsFile(
  kernel: GuestKernel,
  memtest: string,
  memtestMiB: number,
  dir: string,
): string {
  const path = join(dir, 'initramfs.cpio')
  writeFileSync(path, buildInitramfs(kernel, memtest, memtestMiB))
  return path
}

/** Whether /bin/busybox is a static binary (the guest has no libc to load it with). */
export function staticBusybox(): true | string {
  let elf: Buffer
  try {
    elf = readFileSync('/bin/busybox')
  } catch {
    return 'there is no /bin/busybox (install busybox-static)'
  }
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2)
    return '/bin/busybox is not a 64-bit ELF file'
  // A program header of type PT_INTERP (3) names the dynamic loader: not static.
  const phoff = Number(elf.readBigUInt64LE(0x20))
  const phentsize = elf.readUInt16LE(0x36)
  const phnum = elf.readUInt16LE(0x38)
  for (let i = 0; i < phnum; i++) {
    if (elf.readUInt32LE(phoff + i * phentsize) === 3)
      return '/bin/busybox is dynamically linked (install busybox-static)'
  }
  return true
}

/** Whether `qemu-system-x86_64` runs here (a string says why not). */
export async function qemuAvailable(): Promise<true | string> {
  const child = spawn('qemu-system-x86_64', ['--version'], { stdio: 'ignore' })
  return await new Promise((resolve) => {
    child.once('error', () => resolve('qemu-system-x86_64 is not installed'))
    child.once('exit', (code) =>
      resolve(code === 0 ? true : `qemu-system-x86_64 --version exited ${code}`),
    )
  })
}

/** What the guest reported on its console, parsed; null fields were not printed. */
export interface GuestReport {
  memTotalKiB: number | null
  /** The swap area's size by /proc/swaps, in KiB (the device less its header page). */
  swapKiB: number | null
  /** Swap in use once the memory test had written everything, in KiB. */
  filledUsedKiB: number | null
  memtest: { pass: boolean; mib: number; errors: number } | null
  pswpin: number | null
  pswpout: number | null
  dmesgErrors: number | null
  done: boolean
}

function numberAfter(text: string, pattern: RegExp): number | null {
  const match = pattern.exec(text)
  return match?.[1] === undefined ? null : Number(match[1])
}

export function parseGuestConsole(text: string): GuestReport {
  const memtest = /MEMTEST (PASS|FAIL) mib=(\d+) errors=(\d+)/.exec(text)
  return {
    memTotalKiB: numberAfter(text, /GUEST booted .* memtotal=MemTotal: (\d+) kB/),
    swapKiB: numberAfter(text, /GUEST swapon \/dev\/vda \S+ (\d+) /),
    filledUsedKiB: numberAfter(text, /MEMTEST filled, swaps: \/dev\/vda\s+\S+\s+\d+\s+(\d+)/),
    memtest: memtest
      ? { pass: memtest[1] === 'PASS', mib: Number(memtest[2]), errors: Number(memtest[3]) }
      : null,
    pswpin: numberAfter(text, /GUEST vmstat .*pswpin (\d+)/),
    pswpout: numberAfter(text, /GUEST vmstat .*pswpout (\d+)/),
    dmesgErrors: numberAfter(text, /GUEST dmesg-errors (\d+)/),
    done: text.includes('GUEST done'),
  }
}
