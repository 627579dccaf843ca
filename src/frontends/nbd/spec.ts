/**
 * `--export name=NAME,size=SIZE[,mode=swap|cache][,backing=FILE][,shared=UUID][,readonly]`:
 * what one NBD export is, parsed and checked. Invalid text throws RangeError with a sentence
 * (the CLI turns it into a usage error). Control plane; allocates freely.
 */
import { PAGE_SIZE } from '../../abi/constants.js'
import { uuidFromString } from '../../abi/codec.js'
import { parseSize } from '../../server/config.js'

export type ExportMode = 'swap' | 'cache'

export interface ExportSpec {
  /** The NBD export name; the tmem client is `nbd:<name>`. */
  name: string
  /** Bytes, a whole number of pages. */
  size: number
  mode: ExportMode
  /** A file behind the export: required for cache, optional overflow for swap. */
  backing: string | null
  /** Cache exports with the same UUID share one ephemeral pool (`[uuid_lo, uuid_hi]`). */
  shared: [bigint, bigint] | null
  /** The UUID as written, for listings. */
  sharedText: string | null
  readOnly: boolean
}

/**
 * The largest export: page indexes are the u32 `index` of a tmem handle, so 2^32 pages of
 * 4096 bytes, 16 TiB.
 */
export const EXPORT_BYTES_MAX = 2 ** 32 * PAGE_SIZE

/** Export names: what a tmem client name allows after the `nbd:` prefix (60 characters). */
export const EXPORT_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,59}$/

/** The tmem client name of an export. */
export function clientNameOf(exportName: string): string {
  return `nbd:${exportName}`
}

const KEYS = new Set(['name', 'size', 'mode', 'backing', 'shared', 'readonly'])

/** Parses one `--export` value. */
export function parseExportSpec(text: string): ExportSpec {
  const fields = new Map<string, string>()
  for (const part of text.split(',')) {
    if (part === '') continue
    const equals = part.indexOf('=')
    const key = equals < 0 ? part : part.slice(0, equals)
    const value = equals < 0 ? '' : part.slice(equals + 1)
    if (!KEYS.has(key))
      throw new RangeError(
        `Export option ${JSON.stringify(key)} is not one of ${[...KEYS].join(', ')}`,
      )
    if (fields.has(key)) throw new RangeError(`Export option ${key} is given twice`)
    fields.set(key, value)
  }
  const name = fields.get('name') ?? ''
  if (!EXPORT_NAME_PATTERN.test(name)) {
    throw new RangeError(
      `Export name ${JSON.stringify(name)} is not 1 to 60 of A-Z a-z 0-9 . _ : @ - (starting alphanumeric)`,
    )
  }
  const sizeText = fields.get('size')
  if (sizeText === undefined) throw new RangeError(`Export ${name} needs size=SIZE`)
  const size = parseSize(sizeText)
  if (size > EXPORT_BYTES_MAX)
    throw new RangeError(`Export ${name} is larger than 16 TiB (2^32 pages)`)
  const mode = fields.get('mode') ?? 'swap'
  if (mode !== 'swap' && mode !== 'cache')
    throw new RangeError(`Export mode ${JSON.stringify(mode)} is not swap or cache`)
  const backingText = fields.get('backing')
  const backing = backingText === undefined || backingText === '' ? null : backingText
  if (mode === 'cache' && backing === null)
    throw new RangeError(`Cache export ${name} needs backing=FILE`)
  const sharedText = fields.get('shared')?.toLowerCase() ?? null
  if (sharedText !== null && mode !== 'cache')
    throw new RangeError(`Only cache exports share a pool (export ${name})`)
  const shared = sharedText === null ? null : uuidFromString(sharedText)
  const readOnlyText = fields.get('readonly')
  const readOnly = readOnlyText !== undefined && readOnlyText !== '0' && readOnlyText !== 'no'
  return { name, size, mode, backing, shared, sharedText, readOnly }
}
