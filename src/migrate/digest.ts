/**
 * Our extension to the save file (docs/save-restore.md, "Digest sidecar"): the Xen v1 stream
 * has no checksum, so a flipped byte inside a page restores silently. `tmem save` writes, beside
 * FILE, `FILE.sha256` holding the SHA-256 of the stream in `sha256sum` format
 * (`<64 hex>  <name>\n`, so `sha256sum -c FILE.sha256` checks it too), and `tmem restore
 * --verify` checks FILE against it before anything is restored. The stream itself stays
 * byte-exact Xen.
 *
 * Control plane: one hash update per chunk handed to the sink (1 MiB), nothing per page.
 */
import { createHash, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { readFile, rename, unlink, writeFile } from 'node:fs/promises'
import { basename } from 'node:path'
import type { FileSink } from './sink.js'

/** The sidecar's path for a save file. */
export function digestPath(path: string): string {
  return `${path}.sha256`
}

/** A FileSink that also hashes every byte it passes on; `hex()` after the last chunk. */
export function digestingSink(file: FileSink): { file: FileSink; hex(): string } {
  const hash: Hash = createHash('sha256')
  let hex: string | null = null
  return {
    file: {
      ...file,
      sink: (chunk) => {
        hash.update(chunk)
        return file.sink(chunk)
      },
    },
    hex: () => (hex ??= hash.digest('hex')),
  }
}

/** Writes `path`'s sidecar with `hex` (atomically: a temporary file renamed into place). */
export async function writeDigest(path: string, hex: string): Promise<string> {
  const sidecar = digestPath(path)
  const temp = `${sidecar}.${process.pid}.partial`
  try {
    await writeFile(temp, `${hex}  ${basename(path)}\n`, { mode: 0o600 })
    await rename(temp, sidecar)
  } catch (error) {
    await unlink(temp).catch(() => undefined)
    throw error
  }
  return sidecar
}

/** SHA-256 of a file, read as a stream. */
export async function fileDigest(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

export type VerifyResult = { status: 'ok'; hex: string } | { status: 'absent' }

/** A save file that does not match its sidecar. */
export class DigestMismatchError extends Error {
  override readonly name = 'DigestMismatchError'
  readonly code = 'EDIGEST'
}

/**
 * Checks `path` against its sidecar: `absent` when there is none, `ok` when it matches;
 * throws DigestMismatchError when it does not match or the sidecar is not a SHA-256 line.
 */
export async function verifyDigest(path: string): Promise<VerifyResult> {
  let text: string
  try {
    text = await readFile(digestPath(path), 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'absent' }
    throw error
  }
  const expected = /^([0-9a-fA-F]{64})(?:\s|$)/.exec(text)?.[1]?.toLowerCase()
  if (expected === undefined) {
    throw new DigestMismatchError(
      `${digestPath(path)} does not start with a SHA-256 (64 hex digits)`,
    )
  }
  const actual = await fileDigest(path)
  if (actual !== expected) {
    throw new DigestMismatchError(
      `${path} does not match ${digestPath(path)}: SHA-256 ${actual}, expected ${expected}; the file was changed or damaged after the save`,
    )
  }
  return { status: 'ok', hex: actual }
}
