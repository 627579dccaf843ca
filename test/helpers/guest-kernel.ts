/**
 * What a Linux guest needs from the host, fetched once and cached: Debian's kernel (the
 * versioned package `linux-image-amd64` depends on, downloaded with `apt-get download` and
 * unpacked, never installed), the virtio modules that reach a block device, and a static
 * memory-test program compiled with `gcc -static`. Everything lands under
 * node_modules/.cache/tmem-guest/, keyed by the kernel version or by the hash of the C source.
 *
 * `findGuestKernel()` returns a reason instead of throwing when a piece cannot be had, so that
 * a test can skip with that reason.
 */
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** node_modules/.cache/tmem-guest, found from this compiled file (dist/test/helpers/). */
export const GUEST_CACHE = fileURLToPath(
  new URL('../../../node_modules/.cache/tmem-guest', import.meta.url),
)

/** The modules that bring up virtio-blk over PCI, in the order they must be loaded. */
export const VIRTIO_MODULES = [
  'virtio_ring',
  'virtio',
  'virtio_pci_legacy_dev',
  'virtio_pci_modern_dev',
  'virtio_pci',
  'virtio_blk',
] as const

export interface GuestKernel {
  version: string
  vmlinuz: string
  /** Module name → path of the uncompressed .ko file. */
  modules: Map<string, string>
}

function run(file: string, args: string[], cwd?: string): string {
  return execFileSync(file, args, {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 300_000,
  })
}

/** The versioned package name `linux-image-amd64` depends on, e.g. linux-image-6.1.0-57-amd64. */
function kernelPackage(): string {
  const depends = run('apt-cache', ['depends', 'linux-image-amd64'])
  const match = /Depends:\s*(linux-image-[0-9][^\s]*-amd64)/.exec(depends)
  if (!match?.[1])
    throw new Error(`apt-cache depends linux-image-amd64 names no kernel:\n${depends}`)
  return match[1]
}

function walk(dir: string, out: string[]): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) walk(path, out)
    else out.push(path)
  }
  return out
}

/** Downloads and unpacks only the kernel image and the virtio modules into `dir`. */
function unpackKernel(pkg: string, dir: string): void {
  const work = mkdtempSync(join(GUEST_CACHE, 'download-'))
  try {
    run('apt-get', ['download', pkg], work)
    const deb = readdirSync(work).find((name) => name.endsWith('.deb'))
    if (!deb) throw new Error(`apt-get download ${pkg} left no .deb`)
    const unpacked = join(work, 'root')
    mkdirSync(unpacked)
    execFileSync(
      'sh',
      [
        '-c',
        'dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards "./boot/vmlinuz-*" "*/virtio*.ko*"',
        'sh',
        join(work, deb),
        unpacked,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 },
    )
    for (const file of walk(unpacked, [])) {
      if (file.endsWith('.xz')) run('xz', ['-d', file])
    }
    try {
      renameSync(unpacked, dir)
    } catch (error) {
      // Another process unpacked the same kernel first: theirs is as good.
      if (!existsSync(dir)) throw error
    }
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

function loadKernel(version: string, dir: string): GuestKernel {
  const files = walk(dir, [])
  const vmlinuz = files.find((file) => /\/boot\/vmlinuz-/.test(file))
  if (!vmlinuz) throw new Error(`no vmlinuz under ${dir}`)
  const modules = new Map<string, string>()
  for (const name of VIRTIO_MODULES) {
    const path = files.find((file) => file.endsWith(`/${name}.ko`))
    if (!path) throw new Error(`module ${name}.ko not found under ${dir}`)
    modules.set(name, path)
  }
  return { version, vmlinuz, modules }
}

/** The cached kernel, fetched on first use; a string says why it cannot be had. */
export function findGuestKernel(): GuestKernel | string {
  try {
    mkdirSync(GUEST_CACHE, { recursive: true })
    const pkg = kernelPackage()
    const dir = join(GUEST_CACHE, pkg)
    if (!existsSync(dir)) unpackKernel(pkg, dir)
    return loadKernel(pkg, dir)
  } catch (error) {
    return `the Debian kernel package cannot be had: ${(error as Error).message.split('\n')[0]}`
  }
}

/**
 * The guest's memory test: maps `MiB` (argv[1]) of anonymous memory, writes each 64-bit word's
 * own byte offset into it, prints /proc/swaps once everything is written (`MEMTEST filled,
 * swaps: ...`), reads everything back and prints `MEMTEST PASS|FAIL mib=N errors=N`. The
 * offset pattern catches a page that comes back from swap in the wrong place; it is regular
 * data, so it compresses well (zstd makes a page of it about 460 bytes).
 */
export const MEMTEST_SOURCE = `#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <sys/mman.h>
int main(int argc, char **argv) {
  size_t mib = argc > 1 ? strtoul(argv[1], 0, 10) : 64;
  size_t words = mib * 1024 * 1024 / 8;
  volatile uint64_t *p = mmap(0, words * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) { puts("MEMTEST FAIL mmap"); return 2; }
  for (size_t i = 0; i < words; i++) p[i] = i * 8;
  char line[256];
  FILE *swaps = fopen("/proc/swaps", "r");
  while (swaps && fgets(line, sizeof line, swaps)) printf("MEMTEST filled, swaps: %s", line);
  if (swaps) fclose(swaps);
  size_t errors = 0;
  for (size_t i = 0; i < words; i++) if (p[i] != i * 8) errors++;
  printf("MEMTEST %s mib=%zu errors=%zu\\n", errors ? "FAIL" : "PASS", mib, errors);
  fflush(stdout);
  return errors ? 1 : 0;
}
`

/** The memory test compiled statically (cached by source hash); a string says why not. */
export function buildMemtest(): string {
  const hash = createHash('sha256').update(MEMTEST_SOURCE).digest('hex').slice(0, 16)
  const dir = join(GUEST_CACHE, `memtest-${hash}`)
  const binary = join(dir, 'memtest')
  if (existsSync(binary)) return binary
  mkdirSync(dir, { recursive: true })
  const source = join(dir, `memtest-${process.pid}.c`)
  writeFileSync(source, MEMTEST_SOURCE)
  run('gcc', ['-static', '-O2', '-o', `${binary}.${process.pid}`, source], dir)
  renameSync(`${binary}.${process.pid}`, binary)
  rmSync(source)
  return binary
}
