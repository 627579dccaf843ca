/**
 * The tmem ABI as data: every constant of docs/semantics.md "The ABI" under Xen's own names, so that C and
 * TypeScript grep alike. Nothing here allocates or imports; the rest of the package reads
 * these values and never spells a magic number of its own.
 *
 * Byte layouts of `struct tmem_op` and `struct tmem_handle` are in `layout.ts`.
 */

/** Bytes in a tmem page. Only 4 KiB pages exist (x86, PAGE_SHIFT 12). */
export const PAGE_SIZE = 4096
export const PAGE_SHIFT = 12

/** The ABI this host speaks natively; v0 is served only with the `acceptV0` option. */
export const TMEM_SPEC_VERSION = 1

// Commands (`struct tmem_op.cmd`), docs/semantics.md "Commands".
export const TMEM_CONTROL = 0
export const TMEM_NEW_POOL = 1
export const TMEM_DESTROY_POOL = 2
export const TMEM_NEW_PAGE = 3
export const TMEM_PUT_PAGE = 4
export const TMEM_GET_PAGE = 5
export const TMEM_FLUSH_PAGE = 6
export const TMEM_FLUSH_OBJECT = 7
export const TMEM_READ = 8
export const TMEM_WRITE = 9
export const TMEM_XCHG = 10
export const TMEM_AUTH = 101
export const TMEM_RESTORE_NEW = 102

// Control sub-operations (`u.ctrl.subop` with cmd TMEM_CONTROL), docs/semantics.md "Control subops".
export const TMEMC_THAW = 0
export const TMEMC_FREEZE = 1
export const TMEMC_FLUSH = 2
export const TMEMC_DESTROY = 3
export const TMEMC_LIST = 4
export const TMEMC_SET_WEIGHT = 5
export const TMEMC_SET_CAP = 6
export const TMEMC_SET_COMPRESS = 7
export const TMEMC_QUERY_FREEABLE_MB = 8
export const TMEMC_SAVE_BEGIN = 10
export const TMEMC_SAVE_GET_VERSION = 11
export const TMEMC_SAVE_GET_MAXPOOLS = 12
export const TMEMC_SAVE_GET_CLIENT_WEIGHT = 13
export const TMEMC_SAVE_GET_CLIENT_CAP = 14
export const TMEMC_SAVE_GET_CLIENT_FLAGS = 15
export const TMEMC_SAVE_GET_POOL_FLAGS = 16
export const TMEMC_SAVE_GET_POOL_NPAGES = 17
export const TMEMC_SAVE_GET_POOL_UUID = 18
export const TMEMC_SAVE_GET_NEXT_PAGE = 19
export const TMEMC_SAVE_GET_NEXT_INV = 20
export const TMEMC_SAVE_END = 21
export const TMEMC_RESTORE_BEGIN = 30
export const TMEMC_RESTORE_PUT_PAGE = 32
export const TMEMC_RESTORE_FLUSH_PAGE = 33

// Pool flags (`u.creat.flags`), docs/semantics.md "Pool flags". The bit picture:
//
//   31        24 23                       8 7    4  3  2  1  0
//  +------------+--------------------------+-------+--+--+--+--+
//  |  version   |   reserved (must be 0)   | pgsz  |  |PC|SH|PE|
//  +------------+--------------------------+-------+--+--+--+--+
//   PE persist, SH shared, PC precompressed (refused), bit 3 ignored, pgsz log2(size)-12
export const TMEM_POOL_PERSIST = 0x1
export const TMEM_POOL_SHARED = 0x2
export const TMEM_POOL_PRECOMPRESSED = 0x4
export const TMEM_POOL_PAGESIZE_SHIFT = 4
export const TMEM_POOL_PAGESIZE_MASK = 0xf
export const TMEM_POOL_VERSION_SHIFT = 24
export const TMEM_POOL_VERSION_MASK = 0xff
export const TMEM_POOL_RESERVED_BITS = 0x00ffff00

// Client flags (save stream only), docs/semantics.md "Client flags".
export const TMEM_CLIENT_COMPRESS = 0x1
export const TMEM_CLIENT_FROZEN = 0x2

// Errno values (returned negated), docs/semantics.md "Return codes".
export const EPERM = 1
export const ENOMEM = 12
export const EFAULT = 14
export const ENODEV = 19
export const EINVAL = 22
export const ENOSPC = 28
export const ENOSYS = 38
export const EFROZEN = 1000
export const EEMPTY = 1001

/** Every errno by name, for messages and the client's typed errors. */
export const ERRNO_NAMES: Readonly<Record<number, string>> = {
  [EPERM]: 'EPERM',
  [ENOMEM]: 'ENOMEM',
  [EFAULT]: 'EFAULT',
  [ENODEV]: 'ENODEV',
  [EINVAL]: 'EINVAL',
  [ENOSPC]: 'ENOSPC',
  [ENOSYS]: 'ENOSYS',
  [EFROZEN]: 'EFROZEN',
  [EEMPTY]: 'EEMPTY',
}

/** Per-client pool slots; valid pool ids are 0..15. */
export const MAX_POOLS_PER_DOMAIN = 16
/** Host-wide shared pool table, and each client's shared-auth table. */
export const MAX_GLOBAL_SHARED_POOLS = 16
/** `(domid_t)-1`: "no client" or "all clients" in control ops. */
export const CLI_ID_NULL = 0xffff

// Save stream markers, docs/semantics.md "Save stream", "Live save".
export const XC_SAVE_ID_TMEM = -5
export const XC_SAVE_ID_TMEM_EXTRA = -6

/** Name of a command code, or `cmd<N>` for an unknown one. */
export function cmdName(cmd: number): string {
  return CMD_NAMES[cmd] ?? `cmd${cmd}`
}

const CMD_NAMES: Readonly<Record<number, string>> = {
  [TMEM_CONTROL]: 'TMEM_CONTROL',
  [TMEM_NEW_POOL]: 'TMEM_NEW_POOL',
  [TMEM_DESTROY_POOL]: 'TMEM_DESTROY_POOL',
  [TMEM_NEW_PAGE]: 'TMEM_NEW_PAGE',
  [TMEM_PUT_PAGE]: 'TMEM_PUT_PAGE',
  [TMEM_GET_PAGE]: 'TMEM_GET_PAGE',
  [TMEM_FLUSH_PAGE]: 'TMEM_FLUSH_PAGE',
  [TMEM_FLUSH_OBJECT]: 'TMEM_FLUSH_OBJECT',
  [TMEM_READ]: 'TMEM_READ',
  [TMEM_WRITE]: 'TMEM_WRITE',
  [TMEM_XCHG]: 'TMEM_XCHG',
  [TMEM_AUTH]: 'TMEM_AUTH',
  [TMEM_RESTORE_NEW]: 'TMEM_RESTORE_NEW',
}

/** Name of a return code: `'EFROZEN'` for -1000, `'OK'` for >= 0, `'E<n>'` otherwise. */
export function rcName(rc: number): string {
  if (rc >= 0) return 'OK'
  return ERRNO_NAMES[-rc] ?? `E${-rc}`
}

// tmem extensions for live migration (not in Xen; control subops 40-42 are unassigned there,
// where they return -1). See docs/migration.md. A page record batch is a run of records:
//   tmem_handle (32 bytes, v1) | u32 kind (1 = page follows, 0 = page absent) | u32 0 | page
/** SAVE_BEGIN `arg1` value for pre-copy: the client keeps running and every change is logged. */
export const TMEM_SAVE_PRECOPY = 2
/** Next persistent pages of a pool (cursor as SAVE_GET_NEXT_PAGE) as a page record batch. */
export const TMEMC_SAVE_GET_PAGES = 40
/** Drains the change log of a pre-copy save as a page record batch (current content or absent). */
export const TMEMC_SAVE_GET_CHANGES = 41
/** Applies a page record batch to a client: kind 1 puts (as RESTORE_PUT_PAGE), kind 0 flushes. */
export const TMEMC_RESTORE_PAGES = 42
/**
 * The LIST text a page at a time (tmem's own, not Xen's): `cli_id` = the first client id,
 * `arg1` = buffer size, `arg2` = TMEM_LIST_PAGE_* flags. Returns the id to ask for next
 * (CLI_ID_NULL when done), -ENOMEM when not even one client fits.
 */
export const TMEMC_LIST_PAGE = 43
/** TMEMC_LIST_PAGE `arg2`: the long form (as TMEMC_LIST's arg2 = 1). */
export const TMEM_LIST_PAGE_LONG = 1
/** TMEMC_LIST_PAGE `arg2`: begin with the G= and S= lines (the first page). */
export const TMEM_LIST_PAGE_HEAD = 2
/** Bytes of a page record header (handle + kind + padding). */
export const PAGE_RECORD_HEADER_BYTES = 40
