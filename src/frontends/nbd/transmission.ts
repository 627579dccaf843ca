/**
 * The transmission phase of one connection: checks each request, runs it on the export page by
 * page, and writes its reply. Requests run synchronously and in the order they arrive; their
 * replies go out in that order (NBD allows any order; one is enough).
 *
 *   request: u32 0x25609513 | u16 flags | u16 type | u64 cookie | u64 offset | u32 length
 *   simple reply:     u32 0x67446698 | u32 error | u64 cookie [| data for a good READ]
 *   structured chunk: u32 0x668e33ef | u16 flags | u16 type | u64 cookie | u32 length | data
 *
 * WRITE payloads are consumed as they stream in: a whole aligned page that sits inside one
 * socket read goes to the engine in place; other pieces gather in a page buffer, and a page
 * only partly written is read, patched and written back. Nothing here allocates per page.
 */
import { PAGE_SIZE } from '../../abi/constants.js'
import { copyPage, pageCopyMode } from '../../engine/page-copy.js'
import { assert } from '../../util/assert.js'
import { registerCopyBuffer } from '../../util/bytes.js'
import { type Export, RUN_PAGES } from './export.js'
import { CHUNK_BYTES, type ReplyWriter } from './writer.js'
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_ENOTSUP,
  NBD_EPERM,
  NBD_META_ID_BASE_ALLOCATION,
  NBD_PAYLOAD_BYTES_MAX,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STATUS_PAGES_MAX,
  NBD_STRUCTURED_REPLY_MAGIC,
} from './constants.js'

/** One request header, decoded into a reused object. */
export interface Request {
  flags: number
  type: number
  cookieHi: number
  cookieLo: number
  offset: number
  length: number
}

/**
 * Flags each command takes (DF also needs structured replies). FUA is on every one: proto.md
 * says a server that advertises SEND_FUA "MUST accept all commands with this bit set (even by
 * ignoring the bit)"; READ, CACHE and BLOCK_STATUS write nothing, and FLUSH syncs anyway.
 */
const ALLOWED_FLAGS: readonly number[] = [
  /* READ */ NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF,
  /* WRITE */ NBD_CMD_FLAG_FUA,
  /* DISC */ 0,
  /* FLUSH */ NBD_CMD_FLAG_FUA,
  /* TRIM */ NBD_CMD_FLAG_FUA,
  /* CACHE */ NBD_CMD_FLAG_FUA,
  /* WRITE_ZEROES */ NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO,
  /* BLOCK_STATUS */ NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE,
]

export class Transmission {
  readonly #w: ReplyWriter
  readonly #exp: Export
  readonly #structured: boolean
  readonly #metaAllocation: boolean
  readonly #scratch = new Uint8Array(PAGE_SIZE)
  readonly #scratchWords = new Int32Array(this.#scratch.buffer)
  /** A WRITE's page being gathered: bytes [#gatherStart, #gatherEnd) of page #gatherPage. */
  readonly #gather = new Uint8Array(PAGE_SIZE)
  #gatherPage = -1
  #gatherStart = 0
  #gatherEnd = 0
  /** The WRITE whose payload is streaming in. */
  #write: Request | null = null
  #writeAt = 0
  #writeLeft = 0
  #writeError = 0
  /**
   * READ pages go to 8-byte aligned places of the reply (the engine's wide copy needs them
   * there to stay allocation-free); the native copy takes any place, so replies stay
   * contiguous and a flush is one write.
   */
  readonly #alignReads = pageCopyMode() === 'wide'

  constructor(w: ReplyWriter, exp: Export, structured: boolean, metaAllocation: boolean) {
    this.#w = w
    this.#exp = exp
    this.#structured = structured
    this.#metaAllocation = metaAllocation
    // The engine copies pages in and out of these: keep those copies off the view path.
    registerCopyBuffer(this.#scratch.buffer)
    registerCopyBuffer(this.#gather.buffer)
  }

  /** True while a WRITE payload is being read. */
  get writing(): boolean {
    return this.#write !== null
  }

  /** The byte offset inside its page of the next WRITE payload byte. */
  get writePageOffset(): number {
    return this.#writeAt % PAGE_SIZE
  }

  /** Runs a request; 'disc' when it was NBD_CMD_DISC, 'payload' when a WRITE payload follows. */
  request(req: Request): 'done' | 'disc' | 'payload' {
    if (req.type === NBD_CMD_DISC) return 'disc'
    if (req.type === NBD_CMD_WRITE) {
      this.#beginWrite(req)
      return this.#writeLeft === 0 ? (this.#endWrite(), 'done') : 'payload'
    }
    const error = this.#check(req) || this.#exp.begin()
    if (error !== 0) {
      this.#error(req, error)
      return 'done'
    }
    switch (req.type) {
      case NBD_CMD_READ:
        this.#read(req)
        break
      case NBD_CMD_FLUSH:
        this.#status(req, this.#exp.sync())
        break
      case NBD_CMD_TRIM:
        this.#status(req, this.#trim(req))
        break
      case NBD_CMD_CACHE:
        this.#status(req, this.#cache(req))
        break
      case NBD_CMD_WRITE_ZEROES:
        this.#status(req, this.#zeroes(req))
        break
      case NBD_CMD_BLOCK_STATUS:
        this.#blockStatus(req)
        break
      default:
        this.#error(req, NBD_EINVAL)
    }
    return 'done'
  }

  /** 0, or the error the request earns before it runs. */
  #check(req: Request): number {
    const allowed = ALLOWED_FLAGS[req.type]
    if (allowed === undefined || (req.flags & ~allowed) !== 0) return NBD_EINVAL
    if ((req.flags & NBD_CMD_FLAG_DF) !== 0 && !this.#structured) return NBD_EINVAL
    if (req.type === NBD_CMD_FLUSH) return 0
    const writes =
      req.type === NBD_CMD_WRITE || req.type === NBD_CMD_WRITE_ZEROES || req.type === NBD_CMD_TRIM
    if (writes && this.#exp.readOnly) return NBD_EPERM
    if (
      (req.type === NBD_CMD_READ || req.type === NBD_CMD_WRITE) &&
      req.length > NBD_PAYLOAD_BYTES_MAX
    ) {
      // Above the maximum block size we state: proto.md asks for EINVAL here, and says
      // EOVERFLOW is for a READ with DF that cannot be sent in one chunk (ours always can).
      return NBD_EINVAL
    }
    if (req.length === 0) return NBD_EINVAL
    if (req.offset + req.length > this.#exp.size) {
      // proto.md: a write reaching past the end is "no space"; anything else is invalid.
      return req.type === NBD_CMD_WRITE || req.type === NBD_CMD_WRITE_ZEROES
        ? NBD_ENOSPC
        : NBD_EINVAL
    }
    if (req.type === NBD_CMD_BLOCK_STATUS && !this.#metaAllocation) return NBD_EINVAL
    return 0
  }

  // ---------------------------------------------------------------------------------------
  // Replies.

  #simple(req: Request, error: number): void {
    const w = this.#w
    w.ensure(16)
    const buf = w.buf
    buf.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, w.used)
    buf.writeUInt32BE(error, w.used + 4)
    buf.writeUInt32BE(req.cookieHi, w.used + 8)
    buf.writeUInt32BE(req.cookieLo, w.used + 12)
    w.used += 16
  }

  #chunkHeader(req: Request, flags: number, type: number, length: number): void {
    const w = this.#w
    w.ensure(20)
    const buf = w.buf
    buf.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, w.used)
    buf.writeUInt16BE(flags, w.used + 4)
    buf.writeUInt16BE(type, w.used + 6)
    buf.writeUInt32BE(req.cookieHi, w.used + 8)
    buf.writeUInt32BE(req.cookieLo, w.used + 12)
    buf.writeUInt32BE(length, w.used + 16)
    w.used += 20
  }

  /** A reply without data: success as a simple reply (allowed either way), or the error. */
  #status(req: Request, error: number): void {
    if (error === 0) this.#simple(req, 0)
    else this.#error(req, error)
  }

  /** An error: a structured ERROR chunk where structured replies are on, else a simple reply. */
  #error(req: Request, error: number): void {
    assert(error !== 0, 'An error reply carries an error')
    if (!this.#structured) {
      this.#simple(req, error)
      return
    }
    this.#chunkHeader(req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, 6)
    this.#w.u32(error)
    this.#w.u16(0)
  }

  // ---------------------------------------------------------------------------------------
  // Commands.

  #read(req: Request): void {
    const w = this.#w
    w.mark()
    // The first whole page's first byte 8-byte aligned: whole pages then land in the reply
    // in place. `lead` bytes of a partial first page come before it.
    const lead = (PAGE_SIZE - (req.offset % PAGE_SIZE)) % PAGE_SIZE
    if (this.#alignReads) w.alignData((this.#structured ? 28 : 16) + Math.min(lead, req.length))
    if (this.#structured) {
      this.#chunkHeader(req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, 8 + req.length)
      w.u64(req.offset)
    } else {
      this.#simple(req, 0)
    }
    const end = req.offset + req.length
    let at = req.offset
    while (at < end) {
      const page = Math.floor(at / PAGE_SIZE)
      const inPage = at - page * PAGE_SIZE
      const n = Math.min(PAGE_SIZE - inPage, end - at)
      // Whole pages land in the reply in place where the engine's copy stays on its aligned
      // path, as many as the chunk holds in one engine call; others go through the scratch.
      if (n === PAGE_SIZE) w.ensure(PAGE_SIZE)
      const direct = n === PAGE_SIZE && (!this.#alignReads || (w.used & 7) === 0)
      const room = Math.floor((CHUNK_BYTES - w.used) / PAGE_SIZE)
      const count = direct ? Math.min(Math.floor((end - at) / PAGE_SIZE), RUN_PAGES, room) : 1
      const error = !direct
        ? this.#exp.readPage(page, this.#scratch, 0)
        : count === 1
          ? this.#exp.readPage(page, w.buf, w.used)
          : this.#exp.readPages(page, count, w.buf, w.used)
      if (error !== 0) {
        w.rollback()
        this.#error(req, error)
        return
      }
      if (direct) w.used += count * PAGE_SIZE
      else if (n === PAGE_SIZE) w.page(this.#scratchWords, this.#scratch)
      else w.bytes(this.#scratch, inPage, inPage + n)
      at += direct ? count * PAGE_SIZE : n
    }
  }

  #trim(req: Request): number {
    const exp = this.#exp
    // TRIM is advisory: a cache export keeps its file; partial pages stay as they are.
    if (exp.spec.mode === 'swap') {
      if (req.offset === 0 && req.length === exp.size) exp.discardAll()
      else {
        // Only pages wholly inside the range.
        const end = Math.floor((req.offset + req.length) / PAGE_SIZE)
        for (let page = Math.ceil(req.offset / PAGE_SIZE); page < end; page++) exp.discardPage(page)
      }
    }
    return (req.flags & NBD_CMD_FLAG_FUA) !== 0 ? exp.sync() : 0
  }

  #zeroes(req: Request): number {
    const exp = this.#exp
    const noHole = (req.flags & NBD_CMD_FLAG_NO_HOLE) !== 0
    // Flushing tmem pages is fast; writing zeros (to the file, or as pages) is not.
    const fast = exp.spec.mode === 'swap' && !noHole
    if ((req.flags & NBD_CMD_FLAG_FAST_ZERO) !== 0 && !fast) return NBD_ENOTSUP
    const end = req.offset + req.length
    let at = req.offset
    while (at < end) {
      const page = Math.floor(at / PAGE_SIZE)
      const inPage = at - page * PAGE_SIZE
      const n = Math.min(PAGE_SIZE - inPage, end - at)
      let error: number
      if (n < PAGE_SIZE) {
        error = this.#patch(page, null, 0, inPage, n)
      } else if (fast) {
        error = exp.discardPage(page)
      } else {
        error = exp.zeroPage(page)
      }
      if (error !== 0) return error
      at += n
    }
    return (req.flags & NBD_CMD_FLAG_FUA) !== 0 ? exp.sync() : 0
  }

  #cache(req: Request): number {
    const first = Math.floor(req.offset / PAGE_SIZE)
    const end = Math.ceil((req.offset + req.length) / PAGE_SIZE)
    for (let page = first; page < end; page++) {
      const error = this.#exp.prefetchPage(page, this.#scratch)
      if (error !== 0) return error
    }
    return 0
  }

  /** One BLOCK_STATUS chunk for base:allocation, runs of equal pages merged. */
  #blockStatus(req: Request): void {
    const w = this.#w
    const end = Math.min(
      req.offset + req.length,
      (Math.floor(req.offset / PAGE_SIZE) + NBD_STATUS_PAGES_MAX) * PAGE_SIZE,
    )
    const one = (req.flags & NBD_CMD_FLAG_REQ_ONE) !== 0
    w.ensure(24 + 8 * NBD_STATUS_PAGES_MAX)
    const headerAt = w.used
    this.#chunkHeader(req, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, 0)
    w.u32(NBD_META_ID_BASE_ALLOCATION)
    let runStart = req.offset
    let runState = -1
    let extents = 0
    let at = req.offset
    while (at < end) {
      const page = Math.floor(at / PAGE_SIZE)
      const next = Math.min((page + 1) * PAGE_SIZE, end)
      const state = this.#exp.pageState(page, this.#scratch)
      if (runState !== state && runState !== -1) {
        w.u32(at - runStart)
        w.u32(runState)
        extents++
        runStart = at
        if (one) break
      }
      runState = state
      at = next
    }
    if (!one || extents === 0) {
      w.u32(at - runStart)
      w.u32(runState)
      extents++
    }
    w.buf.writeUInt32BE(4 + 8 * extents, headerAt + 16)
  }

  // ---------------------------------------------------------------------------------------
  // WRITE: the payload streams in through writeData().

  #beginWrite(req: Request): void {
    this.#write = req
    this.#writeAt = req.offset
    this.#writeLeft = req.length
    this.#writeError = this.#check(req) || this.#exp.begin()
    this.#gatherPage = -1
  }

  /** Consumes WRITE payload from `data[pos..end)`; returns where it stopped. */
  writeData(data: Uint8Array, pos: number, end: number): number {
    const req = this.#write
    assert(req !== null, 'writeData only while a WRITE payload streams')
    while (this.#writeLeft > 0 && pos < end) {
      const at = this.#writeAt
      const page = Math.floor(at / PAGE_SIZE)
      const inPage = at - page * PAGE_SIZE
      let n = Math.min(PAGE_SIZE - inPage, this.#writeLeft, end - pos)
      // Whole pages at hand go to the engine as one run.
      if (n === PAGE_SIZE) n = pagesIn(Math.min(this.#writeLeft, end - pos)) * PAGE_SIZE
      if (this.#writeError === 0) this.#writePiece(data, pos, page, inPage, n)
      this.#writeAt += n
      this.#writeLeft -= n
      pos += n
    }
    if (this.#writeLeft === 0) this.#endWrite()
    return pos
  }

  #writePiece(data: Uint8Array, pos: number, page: number, inPage: number, n: number): void {
    if (n >= PAGE_SIZE) {
      this.#writeError =
        n === PAGE_SIZE
          ? this.#exp.writePage(page, data, pos)
          : this.#exp.writePages(page, n / PAGE_SIZE, data, pos)
      return
    }
    if (this.#gatherPage !== page) {
      this.#gatherPage = page
      this.#gatherStart = inPage
    }
    copyPage(data, pos, this.#gather, inPage, n)
    this.#gatherEnd = inPage + n
    if (this.#gatherEnd === PAGE_SIZE || this.#writeLeft === n) {
      const start = this.#gatherStart
      this.#gatherPage = -1
      this.#writeError = this.#patch(page, this.#gather, start, start, this.#gatherEnd - start)
    }
  }

  /**
   * Read-modify-write of part of a page: `n` bytes at byte `inPage` become
   * `source[from..from + n)`, or zeros when `source` is null.
   */
  #patch(page: number, source: Uint8Array | null, from: number, inPage: number, n: number): number {
    if (n === PAGE_SIZE && source !== null) return this.#exp.writePage(page, source, from)
    const scratch = this.#scratch
    const error = this.#exp.readPage(page, scratch, 0)
    if (error !== 0) return error
    if (source === null) scratch.fill(0, inPage, inPage + n)
    else copyPage(source, from, scratch, inPage, n)
    return this.#exp.writePage(page, scratch, 0)
  }

  #endWrite(): void {
    const req = this.#write
    assert(req !== null, 'A WRITE to end')
    this.#write = null
    let error = this.#writeError
    if (error === 0 && (req.flags & NBD_CMD_FLAG_FUA) !== 0) error = this.#exp.sync()
    if (error === 0) this.#simple(req, 0)
    else this.#error(req, error)
  }
}

/** Whole pages in `bytes`, at most a run. */
function pagesIn(bytes: number): number {
  return Math.min(Math.floor(bytes / PAGE_SIZE), RUN_PAGES)
}
