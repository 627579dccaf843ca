/**
 * TMEMC_LIST_PAGE (tmem's own subop 43): the LIST text a page at a time. The oracle is the
 * whole-host TMEMC_LIST text of the same host (clients made in id order, so both list them in
 * the same order): the pages put together, at any page size, carry exactly its S=, C= and P=
 * lines, G= once at the start and T= once at the end; every page fits its buffer with the NUL
 * and holds whole clients only. Also the refusals: a buffer too small for one client
 * (-ENOMEM), the id 0xFFFF and unknown flag bits (-EINVAL).
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import {
  CLI_ID_NULL,
  EINVAL,
  ENOMEM,
  TMEMC_LIST_PAGE,
  TMEM_LIST_PAGE_HEAD,
  TMEM_LIST_PAGE_LONG,
} from '../../src/abi/constants.js'
import { controlOp } from '../../src/abi/codec.js'
import { Host } from '../../src/engine/host.js'

const UUID: [bigint, bigint] = [0x1234n, 0x5678n]

/** Clients 1, 2, 4, 7, 8, 11 (made in that order), pools of each kind, some pages. */
function host(): Host {
  const h = new Host({ pages: 256 })
  const page = new Uint8Array(4096).fill(3)
  for (const id of [1, 2, 4, 7, 8, 11]) {
    const guest = h.client(id)
    const cache = guest.newPool()
    for (let i = 0; i < id; i++) cache.put(BigInt(id), i, page)
    guest.newPool({ persistent: true }).put(1n, 0, page)
    if (id % 2 === 0) guest.newPool({ shared: true, uuid: UUID })
  }
  return h
}

/** Every page from id 0 up; each checked to fit `capacity` and hold whole clients. */
function pages(h: Host, capacity: number, long: boolean): string[] {
  const out: string[] = []
  let first = 0
  let head = true
  for (;;) {
    const flags = (long ? TMEM_LIST_PAGE_LONG : 0) | (head ? TMEM_LIST_PAGE_HEAD : 0)
    const data = new Uint8Array(capacity).fill(0xee)
    const next = h.control(controlOp(TMEMC_LIST_PAGE, first, 0, capacity, flags), data)
    assert.ok(next >= 0, `page from ${first}: rc ${next}`)
    const end = data.indexOf(0)
    assert.ok(end >= 0 && end < capacity, 'the text and its NUL fit the buffer')
    const text = Buffer.from(data.subarray(0, end)).toString('latin1')
    const lines = text.split('\n').filter((line) => line !== '')
    const body = lines.filter((line) => /^[CP]=/.test(line))
    if (body.length > 0) assert.match(body[0]!, /^C=/, 'a page starts with a whole client')
    out.push(text)
    if (next === CLI_ID_NULL) return out
    assert.ok(next > first || (head && next === first), 'pages advance')
    first = next
    head = false
  }
}

function tagged(text: string, tags: string): string[] {
  return text.split('\n').filter((line) => line !== '' && tags.includes(line[0]!))
}

void describe('TMEMC_LIST_PAGE', () => {
  void test('pages put together are the whole LIST text, at any page size', () => {
    for (const long of [false, true]) {
      const h = host()
      const whole = h.listText(CLI_ID_NULL, long)
      // The smallest holds the T= line (263 bytes) and about one client: many pages.
      const small = long ? 800 : 450
      for (const capacity of [small, 2 * small, 1 << 20]) {
        const parts = pages(h, capacity, long)
        if (capacity === small) assert.ok(parts.length >= 4, `${parts.length} pages`)
        const text = parts.join('')
        assert.deepEqual(tagged(text, 'SCP'), tagged(whole, 'SCP'), `capacity ${capacity}`)
        const lines = text.trimEnd().split('\n')
        assert.match(lines[0]!, /^G=/)
        assert.match(lines.at(-1)!, /^T=/)
        assert.equal(tagged(text, 'GT').length, 2, 'one G= and one T= line')
      }
    }
  })

  void test('clients come in id order even when made out of order', () => {
    const h = new Host({ pages: 64 })
    for (const id of [9, 3, 5]) h.client(id).newPool()
    const ids = tagged(pages(h, 4096, false).join(''), 'C').map((line) =>
      Number(/CI:(\d+)/.exec(line)?.[1]),
    )
    assert.deepEqual(ids, [3, 5, 9])
  })

  void test('refusals: no room for one client, id 0xFFFF, unknown flags', () => {
    const h = host()
    const data = new Uint8Array(1 << 16)
    const run = (first: number, capacity: number, flags: number): number =>
      h.control(controlOp(TMEMC_LIST_PAGE, first, 0, capacity, flags), data)
    assert.equal(run(1, 80, 0), -ENOMEM)
    assert.equal(run(0, 80, TMEM_LIST_PAGE_HEAD), -ENOMEM)
    assert.equal(run(CLI_ID_NULL, 4096, 0), -EINVAL)
    assert.equal(run(0, 4096, 4), -EINVAL)
    // Past the last client: only the T= line.
    assert.equal(run(12, 4096, 0), CLI_ID_NULL)
    assert.match(Buffer.from(data.subarray(0, data.indexOf(0))).toString('latin1'), /^T=[^\n]*\n$/)
  })
})
