/**
 * One NBD export: a tmem client named `nbd:<name>` with one pool, whose single object holds
 * the export's pages (page index = byte offset / 4096), and an optional backing file.
 *
 *   swap  (persistent pool)   write -> PUT; refused (-ENOMEM, cap, frozen) -> backing file, the
 *                             tmem copy flushed, the page marked "in file"; no file -> ENOSPC
 *                             read  -> GET; miss -> file if marked, else zeros
 *   cache (ephemeral pool)    read  -> GET (a private pool's hit is put back: its gets are
 *                             exclusive); miss -> file, then PUT
 *                             write -> file first, then PUT (the cached copy is replaced)
 *
 * Every call goes through the engine's guest hypercall (`HostLike.opBytes`) with one 56-byte
 * op per export whose `cmd` and `index` are rewritten in place: nothing is allocated per page.
 * File I/O is synchronous (pread/pwrite on one descriptor), so a request runs to its end
 * before the next one starts and no page is ever half-updated between requests.
 *
 * The export holds its tmem client like a connection holds a session (`SessionHolder`): the
 * control plane may freeze, flush, cap or destroy it like any client. After a destroy a cache
 * export opens a new client on its next request (its file keeps the truth); a swap export
 * answers EIO from then on, because the guest's swapped pages are gone.
 */
import { closeSync, constants, fstatSync, fsyncSync, openSync } from 'node:fs'
import type { Logger } from 'pino'
import {
  EEMPTY,
  PAGE_SIZE,
  TMEM_AUTH,
  TMEM_FLUSH_OBJECT,
  TMEM_FLUSH_PAGE,
  TMEM_GET_PAGE,
  TMEM_NEW_POOL,
  TMEM_PUT_PAGE,
} from '../../abi/constants.js'
import { encodeOp, poolFlags } from '../../abi/codec.js'
import { OP_CMD, OP_LAYOUT_V1, TMEM_OP_BYTES_V1 } from '../../abi/layout.js'
import type { Oid } from '../../abi/types.js'
import { writeU32LE } from '../../util/le.js'
import { assert } from '../../util/assert.js'
import { registerCopyBuffer } from '../../util/bytes.js'
import type { HostLike } from '../../server/host-like.js'
import type { MovedTo, Session, SessionHolder } from '../../server/session.js'
import type { SessionTable } from '../../server/sessions.js'
import { NBD_EIO, NBD_ENOSPC, NBD_STATE_HOLE, NBD_STATE_ZERO } from './constants.js'
import { readFilePage, writeFilePage } from './backing-file.js'
import { type ExportSpec, clientNameOf } from './spec.js'
import { PageBitmap } from './bitmap.js'
import type { ExportView } from './handshake.js'

/** Most pages one readPages or writePages call takes (one engine call for a swap export). */
export const RUN_PAGES = 32

const ZERO_PAGE = new Uint8Array(PAGE_SIZE)
registerCopyBuffer(ZERO_PAGE.buffer)

export class Export implements SessionHolder, ExportView {
  readonly spec: ExportSpec
  readonly pages: number
  readonly remote = 'nbd'
  readonly #host: HostLike
  readonly #sessions: SessionTable
  readonly #log: Logger
  readonly #op = new Uint8Array(TMEM_OP_BYTES_V1)
  /** The engine's return code of each page of a run (readPages, writePages). */
  readonly #results = new Int32Array(RUN_PAGES)
  readonly #oid: Oid
  /** swap + backing: which pages live in the file (a page is in tmem or the file, never both). */
  readonly #inFile: PageBitmap | null
  #fd: number | null
  #session: Session | null = null
  #poolId = -1
  #gone = false
  #closed = false
  /** Pages written to the backing file because tmem refused them. */
  spilledPages = 0

  private constructor(
    host: HostLike,
    sessions: SessionTable,
    log: Logger,
    spec: ExportSpec,
    fd: number | null,
    oid: Oid,
  ) {
    this.spec = spec
    this.pages = spec.size / PAGE_SIZE
    this.#host = host
    this.#sessions = sessions
    this.#log = log
    this.#fd = fd
    this.#oid = oid
    this.#inFile = spec.mode === 'swap' && fd !== null ? new PageBitmap(this.pages) : null
  }

  /** Opens the backing file and the tmem client; throws Error with a sentence on failure. */
  static open(host: HostLike, sessions: SessionTable, log: Logger, spec: ExportSpec): Export {
    assert(spec.size % PAGE_SIZE === 0 && spec.size > 0, 'Export sizes are whole pages')
    let fd: number | null = null
    let oid: Oid = [0n, 0n, 0n]
    if (spec.backing !== null) {
      // A swap export's overflow file is made if missing; a cache export's file must exist.
      const flags = spec.readOnly
        ? constants.O_RDONLY
        : spec.mode === 'swap'
          ? constants.O_RDWR | constants.O_CREAT
          : constants.O_RDWR
      fd = openSync(spec.backing, flags, 0o600)
      // Cache exports of one file share its pages in a shared pool: the file is the object.
      const stat = fstatSync(fd, { bigint: true })
      oid = [stat.dev, stat.ino, 0n]
    }
    const exp = new Export(host, sessions, log, spec, fd, oid)
    const error = exp.#connect()
    if (error !== null) {
      exp.close()
      throw new Error(error)
    }
    return exp
  }

  get name(): string {
    return this.spec.name
  }

  get size(): number {
    return this.spec.size
  }

  get readOnly(): boolean {
    return this.spec.readOnly
  }

  get description(): string {
    const shared = this.spec.sharedText === null ? '' : ` shared ${this.spec.sharedText}`
    const backing = this.spec.backing === null ? '' : ` backed by ${this.spec.backing}`
    return `tmem ${this.spec.mode}${shared}${backing}`
  }

  get isOpen(): boolean {
    return !this.#closed
  }

  get clientId(): number {
    return this.#session?.id ?? 0
  }

  /** SessionHolder: the control plane destroyed the client, or another hello took the name. */
  evict(reason: string): void {
    this.#lost(reason)
  }

  notifyMoved(notice: MovedTo): void {
    this.#lost(`moved to ${notice.address}`)
  }

  #lost(reason: string): void {
    this.#session = null
    this.#poolId = -1
    if (this.spec.mode === 'swap') this.#gone = true
    this.#log.warn({ export: this.spec.name, reason }, 'nbd export lost its tmem client')
  }

  /** Called once per request: 0 when the export can serve, else an NBD error. */
  begin(): number {
    if (this.#closed || this.#gone) return NBD_EIO
    if (this.#session !== null) return 0
    const error = this.#connect()
    if (error === null) return 0
    this.#log.error(
      { export: this.spec.name, error },
      'nbd export could not reopen its tmem client',
    )
    return NBD_EIO
  }

  /** A session for `nbd:<name>` and its pool; null or a sentence. */
  #connect(): string | null {
    const name = clientNameOf(this.spec.name)
    const opened = this.#sessions.open(name, null, 1, this)
    if (opened.session === null) return `tmem client ${name}: ${opened.message}`
    this.#session = opened.session
    const id = opened.session.id
    const persistent = this.spec.mode === 'swap'
    const shared = this.spec.shared
    const flags = poolFlags({ persistent, shared: shared !== null })
    const uuid: [bigint, bigint] = shared ?? [0n, 0n]
    if (shared !== null) {
      // The engine makes a client at its first guest call; authorise it, then join the pool.
      this.#call(TMEM_FLUSH_PAGE, 0, null, 0)
      const auth = encodeOp({ cmd: TMEM_AUTH, poolId: 0, creat: { uuid, flags: 1, arg1: id } })
      const rc = this.#host.controlBytes(auth, 0, 1, null, 0, 0)
      if (rc < 0) return `tmem client ${name}: shared-pool authorisation failed (${rc})`
    }
    const create = encodeOp({ cmd: TMEM_NEW_POOL, poolId: 0, creat: { uuid, flags, arg1: 0 } })
    const poolId = this.#host.opBytes(id, create, 0, 1, null, 0)
    if (poolId < 0) return `tmem client ${name}: NEW_POOL failed (${poolId})`
    this.#poolId = poolId
    this.#op.set(
      encodeOp({
        cmd: TMEM_GET_PAGE,
        poolId,
        gen: { oid: this.#oid, index: 0, tmemOffset: 0, pfnOffset: 0, len: 0, cmfn: 0n },
      }),
    )
    this.#log.info(
      { export: this.spec.name, client: id, pool: poolId, mode: this.spec.mode },
      'nbd export ready',
    )
    return null
  }

  /** One hypercall on this export's object: `cmd` on page `index`. */
  #call(cmd: number, index: number, data: Uint8Array | null, at: number): number {
    const op = this.#op
    writeU32LE(op, OP_CMD, cmd)
    writeU32LE(op, OP_LAYOUT_V1.genIndex, index)
    return this.#host.opBytes(this.#session?.id ?? 0, op, 0, 1, data, at)
  }

  /** Reads page `index` into `target[at..+4096]`; 0 or an NBD error. */
  readPage(index: number, target: Uint8Array, at: number): number {
    assert(index >= 0 && index < this.pages, 'Page index inside the export')
    const rc = this.#call(TMEM_GET_PAGE, index, target, at)
    if (rc === 1) {
      // A private ephemeral pool's hit left the pool: keep it cached.
      if (this.spec.mode === 'cache' && this.spec.shared === null)
        this.#call(TMEM_PUT_PAGE, index, target, at)
      return 0
    }
    if (rc < 0 && rc !== -EEMPTY) return NBD_EIO
    if (this.spec.mode === 'swap') return this.#swapMiss(index, target, at)
    const error = this.#readFile(index, target, at)
    if (error === 0) this.#call(TMEM_PUT_PAGE, index, target, at)
    return error
  }

  /** A swap page tmem does not hold: in the file if marked so, else never written (zeros). */
  #swapMiss(index: number, target: Uint8Array, at: number): number {
    if (this.#inFile !== null && this.#inFile.has(index)) return this.#readFile(index, target, at)
    target.fill(0, at, at + PAGE_SIZE)
    return 0
  }

  /**
   * Pages `first` .. `first + count - 1` (count <= RUN_PAGES) into `target[at..]`, page i at
   * `at + 4096 i`; 0 or an NBD error. A swap export asks the engine for all of them in one
   * call, then serves its misses as readPage would; a cache export goes page by page.
   */
  readPages(first: number, count: number, target: Uint8Array, at: number): number {
    assert(count <= RUN_PAGES && first + count <= this.pages, 'A run of pages in the export')
    if (!this.#runs(TMEM_GET_PAGE, first, count, target, at))
      return this.#pageByPage(false, first, count, target, at)
    const results = this.#results
    for (let i = 0; i < count; i++) {
      const rc = results[i]!
      if (rc === 1) continue
      if (rc < 0 && rc !== -EEMPTY) return NBD_EIO
      const error = this.#swapMiss(first + i, target, at + i * PAGE_SIZE)
      if (error !== 0) return error
    }
    return 0
  }

  /** writePage for pages `first` .. `first + count - 1` from `source[at..]` (see readPages). */
  writePages(first: number, count: number, source: Uint8Array, at: number): number {
    assert(count <= RUN_PAGES && first + count <= this.pages, 'A run of pages in the export')
    if (!this.#runs(TMEM_PUT_PAGE, first, count, source, at))
      return this.#pageByPage(true, first, count, source, at)
    const results = this.#results
    for (let i = 0; i < count; i++) {
      if (results[i] === 1) {
        this.#inFile?.clear(first + i)
        continue
      }
      const error = this.#spill(first + i, source, at + i * PAGE_SIZE)
      if (error !== 0) return error
    }
    return 0
  }

  /** writePage or readPage on each page of a run in turn; the first error stops it. */
  #pageByPage(write: boolean, first: number, count: number, bytes: Uint8Array, at: number): number {
    for (let i = 0; i < count; i++) {
      const pageAt = at + i * PAGE_SIZE
      const error = write
        ? this.writePage(first + i, bytes, pageAt)
        : this.readPage(first + i, bytes, pageAt)
      if (error !== 0) return error
    }
    return 0
  }

  /**
   * A swap export with an engine that takes runs: `cmd` on every page of the run, return
   * codes in #results; true. False (nothing done) where the run goes page by page.
   */
  #runs(cmd: number, first: number, count: number, data: Uint8Array, at: number): boolean {
    const host = this.#host
    if (this.spec.mode !== 'swap' || host.opPagesBytes === undefined) return false
    const op = this.#op
    writeU32LE(op, OP_CMD, cmd)
    writeU32LE(op, OP_LAYOUT_V1.genIndex, first)
    host.opPagesBytes(this.#session?.id ?? 0, op, 0, 1, count, data, at, this.#results)
    return true
  }

  /** Writes page `index` from `source[at..+4096]`; 0 or an NBD error. */
  writePage(index: number, source: Uint8Array, at: number): number {
    assert(index >= 0 && index < this.pages, 'Page index inside the export')
    if (this.spec.mode === 'cache') {
      const error = this.#writeFile(index, source, at)
      if (error !== 0) {
        this.#call(TMEM_FLUSH_PAGE, index, null, 0)
        return error
      }
      // A refused put leaves no copy (a failed duplicate put drops the old one): a miss.
      this.#call(TMEM_PUT_PAGE, index, source, at)
      return 0
    }
    const rc = this.#call(TMEM_PUT_PAGE, index, source, at)
    if (rc === 1) {
      this.#inFile?.clear(index)
      return 0
    }
    return this.#spill(index, source, at)
  }

  /** A swap page tmem refused: to the backing file, its tmem copy flushed; else ENOSPC. */
  #spill(index: number, source: Uint8Array, at: number): number {
    if (this.#fd === null || this.#inFile === null) return NBD_ENOSPC
    const error = this.#writeFile(index, source, at)
    if (error !== 0) return error
    this.#call(TMEM_FLUSH_PAGE, index, null, 0)
    this.#inFile.set(index)
    this.spilledPages++
    return 0
  }

  /** Swap: the page reads as zeros afterwards, a hole (TRIM, WRITE_ZEROES without NO_HOLE). */
  discardPage(index: number): number {
    assert(this.spec.mode === 'swap', 'Only swap exports punch holes')
    this.#call(TMEM_FLUSH_PAGE, index, null, 0)
    this.#inFile?.clear(index)
    return 0
  }

  /** Every page at once (a TRIM of the whole export): one FLUSH_OBJECT. */
  discardAll(): number {
    if (this.spec.mode === 'cache') return 0
    this.#call(TMEM_FLUSH_OBJECT, 0, null, 0)
    this.#inFile?.clearAll()
    return 0
  }

  /** The page reads as zeros afterwards and stays allocated (cache: zeros in the file). */
  zeroPage(index: number): number {
    if (this.spec.mode === 'swap') return this.writePage(index, ZERO_PAGE, 0)
    this.#call(TMEM_FLUSH_PAGE, index, null, 0)
    return this.#writeFile(index, ZERO_PAGE, 0)
  }

  /** CACHE: bring the page into tmem (cache mode reads it from the file). */
  prefetchPage(index: number, scratch: Uint8Array): number {
    if (this.spec.mode === 'swap') return 0
    return this.readPage(index, scratch, 0)
  }

  /** base:allocation flags of a page: 0 (data) or HOLE|ZERO (never written, or trimmed). */
  pageState(index: number, scratch: Uint8Array): number {
    if (this.spec.mode === 'cache') return 0
    if (this.#inFile?.has(index) === true) return 0
    const rc = this.#call(TMEM_GET_PAGE, index, scratch, 0)
    return rc === 1 ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO
  }

  /** FLUSH and FUA: the backing file to stable storage (tmem itself has nothing to flush). */
  sync(): number {
    if (this.#fd === null) return 0
    try {
      fsyncSync(this.#fd)
      return 0
    } catch {
      return NBD_EIO
    }
  }

  #readFile(index: number, target: Uint8Array, at: number): number {
    if (this.#fd === null) return NBD_EIO
    return readFilePage(this.#fd, index, target, at, (err) =>
      this.#log.error({ export: this.spec.name, err }, 'nbd backing file read failed'),
    )
  }

  #writeFile(index: number, source: Uint8Array, at: number): number {
    if (this.#fd === null) return NBD_EIO
    return writeFilePage(this.#fd, index, source, at, (err) =>
      this.#log.error({ export: this.spec.name, err }, 'nbd backing file write failed'),
    )
  }

  /** A listing line's worth of facts. */
  describe(): Record<string, unknown> {
    return {
      name: this.spec.name,
      size: this.spec.size,
      mode: this.spec.mode,
      backing: this.spec.backing,
      shared: this.spec.sharedText,
      readOnly: this.spec.readOnly,
      client: this.clientId,
      pool: this.#poolId,
      lost: this.#gone,
      spilledPages: this.spilledPages,
    }
  }

  /** Closes the file; with `destroy`, the tmem client and its pages go too (export removed). */
  close(destroy = false): void {
    if (this.#closed) return
    this.#closed = true
    const session = this.#session
    this.#session = null
    if (destroy && session !== null) this.#sessions.release(session, this)
    if (this.#fd !== null) closeSync(this.#fd)
    this.#fd = null
  }
}
