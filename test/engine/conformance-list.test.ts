/**
 * Conformance, Appendix B item 13: the exact TMEMC_LIST text (spec §5.7, D14) for a scripted
 * scenario modelled on the spec's constructed example (dom 1 with private ephemeral, private
 * persistent and shared ephemeral pools; dom 2 joined the shared pool into its slot 0), short
 * and long, all clients and single client; the buffer discipline (fit check on every line,
 * nothing written → buffer untouched); return values.
 *
 * Every expected line is typed by hand from the key order of §5.7 and counters traced through
 * the script by the rules of §3 and §7 (the trace is in the comments). The cycle counters use
 * an injected clock that advances 1000 per reading, so each timed operation (§3.0 step 9: put,
 * get, flush page, destroy pool, flush object) lasts exactly 1000.
 *
 * `Ta` is tmem's free list (§4.1): frames that held data and were freed — here the page of the
 * destructive get and the flushed page (the duplicate put and the failed put take and give
 * back one frame each, or none).
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { E, F, Harness, poolGroup, SUB } from './conformance-helpers.js'
import { page } from './conformance-helpers.js'

const UUID: [bigint, bigint] = [0x8899aabbccddeeffn, 0x1122334455667788n]
const U = 'U0:8899aabbccddeeff,U1:1122334455667788'

interface Scenario {
  h: Harness
  /** Calls made so far (Tt before the next call). */
  calls: number
}

function scenario(): Scenario {
  let clock = 0
  const h = new Harness({ pages: 64, reservePages: 0, clockNs: () => (clock += 1000) })
  let calls = 0
  const step = (rc: number, expected: number, what: string): void => {
    calls++
    assert.equal(rc, expected, what)
  }
  step(h.newPool(1, F.PRIVATE_EPH), 0, 'dom 1 pool 0')
  step(h.newPool(1, F.PRIVATE_PERS), 1, 'dom 1 pool 1')
  step(h.get(2, 0, 0, 0), E.NODEV, 'dom 2 first call') // Te 1, creates client 2, not timed
  step(h.auth(1, UUID, 1), 1, 'auth dom 1')
  step(h.auth(2, UUID, 1), 1, 'auth dom 2')
  step(h.newPool(1, F.SHARED_EPH, UUID), 2, 'dom 1 pool 2 shared')
  step(h.newPool(2, F.SHARED_EPH, UUID), 0, 'dom 2 joins into slot 0')
  // Puts (P, 1000 each). dom 1 Ec: 1, 2, 3; persistent; shared 4; dom 2's put 5 (owner dom 1).
  step(h.put(1, 0, 1, 0, page(1)), 1, 'put p0 (1,0)')
  step(h.put(1, 0, 1, 1, page(2)), 1, 'put p0 (1,1)')
  step(h.put(1, 0, 2, 0, page(3)), 1, 'put p0 (2,0)')
  step(h.put(1, 1, 7, 0, page(4)), 1, 'put p1 (7,0)')
  step(h.put(1, 1, 7, 1, page(5)), 1, 'put p1 (7,1)')
  step(h.put(1, 2, 9, 0, page(6)), 1, 'put p2 (9,0)')
  step(h.put(2, 0, 9, 1, page(7)), 1, 'dom 2 put shared (9,1)') // pages 7, objects 4: maxima
  // Gets.
  step(h.get(1, 0, 1, 0), 1, 'get p0 (1,0) hit, destructive') // G; Ge(1) 1
  step(h.get(1, 0, 1, 0), 0, 'get p0 (1,0) miss') // g
  step(h.get(1, 1, 7, 0), 1, 'get p1 (7,0)') // G; Gp 1
  step(h.get(1, 1, 7, 0), 1, 'get p1 (7,0) again') // G; Gp 2
  step(h.get(2, 0, 9, 0), 1, 'dom 2 get shared (9,0)') // G (dom 2's Tc); Ge of the owner dom 1: 2
  // Flushes.
  step(h.flushPage(1, 0, 2, 0), 1, 'flush p0 (2,0)') // F; object 2 goes
  step(h.flushObject(1, 1, 5), 1, 'flush object p1 5 (miss)') // O
  step(h.put(1, 1, 7, 1, page(8)), 1, 'duplicate put p1 (7,1)') // P; pr 1; Pp 3
  // Errors.
  step(h.put(1, 5, 1, 0, page(1)), E.NODEV, 'put to empty slot 5') // Te 2
  step(h.get(2, 3, 1, 0), E.NODEV, 'dom 2 get slot 3') // Te 3
  step(h.put(1, 0, 3, 0, null), E.FAULT, 'put p0 (3,0) without a frame') // p; Te 4; Cf 1; px 1
  // dom 2: a private pool, an empty get, then destroyed (F).
  step(h.newPool(2, F.PRIVATE_EPH), 1, 'dom 2 pool 1')
  step(h.get(2, 1, 1, 0), E.EMPTY, 'dom 2 get empty pool') // g; Te 5
  step(h.destroy(2, 1), 1, 'dom 2 destroys pool 1') // F
  step(h.ctrl(SUB.SET_WEIGHT, { cliId: 1, arg1: 5 }), 0, 'weight dom 1')
  return { h, calls }
}

// Timed operations: dom 1: 7 puts + 1 failed put, 4 gets, 1 flush, 1 flush object = 14;
// dom 2: 1 put, 1 get, 1 failed get, 1 destroy = 4. The clock moves 1000 per reading, and an
// op that copies a page reads it twice more (the copy is timed as C): 3000 for the 8 good puts
// and the 4 hits, 1000 for the rest. Dom 1: 7 x 3000 + 1000 + 3 x 3000 + 3 x 1000 = 34000;
// dom 2: 3000 + 3000 + 1000 + 1000 = 8000. Copies: 8 puts in, 4 hits out.
const T_LINE =
  'T=Gn:4,Gt:12000,Gx:3000,Gm:3000,Pn:8,Pt:24000,Px:3000,Pm:3000,gn:2,gt:2000,gx:1000,gm:1000,' +
  'pn:1,pt:1000,px:1000,pm:1000,Fn:2,Ft:2000,Fx:1000,Fm:1000,On:1,Ot:1000,Ox:1000,Om:1000,' +
  'Cn:12,Ct:12000,Cx:1000,Cm:1000,cn:0,ct:0,cx:0,cm:2147483647,dn:0,dt:0,dx:0,dm:2147483647\n'

function gLine(tt: number, long: boolean): string {
  const short = `G=Tt:${tt},Te:5,Cf:1,Af:0,Pf:0,Ta:2,Lm:0,Et:0,Ea:0,Rt:0,Ra:0,Rx:0,Fp:0`
  const longGroup =
    'Ec:3,Em:5,Oc:3,Om:4,Nc:0,Nm:0,Pc:5,Pm:7,Fc:5,Fm:7,Sc:0,Sm:0,Ep:5,Gd:0,Zt:0,Gz:0'
  return long ? `${short},${longGroup}\n` : `${short}\n`
}

// Pool groups traced from the script.
const SHARED_GROUP = poolGroup({ Pc: 2, Pm: 2, Oc: 1, Om: 1, ps: 2, pt: 2, gs: 1, gt: 1 })
const P0_GROUP = poolGroup({
  Pc: 1,
  Pm: 3,
  Oc: 1,
  Om: 2,
  ps: 3,
  pt: 4,
  px: 1,
  gs: 1,
  gt: 2,
  fs: 1,
  ft: 1,
})
const P1_GROUP = poolGroup({ Pc: 2, Pm: 2, Oc: 1, Om: 1, ps: 3, pt: 3, pr: 1, gs: 2, gt: 2, ot: 1 })

function withGroup(short: string, group: string, long: boolean): string {
  return long ? `${short},${group}\n` : `${short}\n`
}

interface Sections {
  g: string
  s: string[]
  clients: { c: string; p: string[] }[]
  t: string
}

function sections(tt: number, long: boolean): Sections {
  return {
    g: gLine(tt, long),
    s: [withGroup(`S=SI:0,PT:ES,${U},SC:1,SC:2`, SHARED_GROUP, long)],
    clients: [
      {
        c: withGroup(
          'C=CI:1,ww:5,ca:0,co:0,fr:0,Tc:34000,Ge:2,Pp:3,Gp:2',
          'Ec:3,Em:5,cp:0,cb:0,cn:0,cm:0',
          long,
        ),
        p: [
          withGroup('P=CI:1,PI:0,PT:EP,U0:0,U1:0', P0_GROUP, long),
          withGroup('P=CI:1,PI:1,PT:PP,U0:0,U1:0', P1_GROUP, long),
          withGroup(`P=CI:1,PI:2,PT:ES,${U}`, SHARED_GROUP, long),
        ],
      },
      {
        c: withGroup(
          'C=CI:2,ww:0,ca:0,co:0,fr:0,Tc:8000,Ge:0,Pp:0,Gp:0',
          'Ec:0,Em:0,cp:0,cb:0,cn:0,cm:0',
          long,
        ),
        // PI is the owner's slot (2), not dom 2's slot 0 (spec §5.7, §10 item 6).
        p: [withGroup(`P=CI:2,PI:2,PT:ES,${U}`, SHARED_GROUP, long)],
      },
    ],
    t: T_LINE,
  }
}

function whole(x: Sections): string {
  return x.g + x.s.join('') + x.clients.map((c) => c.c + c.p.join('')).join('') + x.t
}

/**
 * The buffer discipline of §5.7 with the project's fit check on every line: a line is written
 * if its length < the room left (its NUL must fit); a line that does not fit ends its section
 * (the S= loop, one client's P= loop; a client whose C= does not fit is skipped); later
 * sections are still attempted.
 */
function fit(x: Sections, capacity: number): string {
  let out = ''
  const add = (line: string): boolean => {
    if (line.length < capacity - out.length) {
      out += line
      return true
    }
    return false
  }
  add(x.g)
  for (const line of x.s) if (!add(line)) break
  for (const client of x.clients) {
    if (!add(client.c)) continue
    for (const line of client.p) if (!add(line)) break
  }
  add(x.t)
  return out
}

void describe('conformance: LIST text (spec §5.7)', () => {
  void test('all clients, short then long; single client long and short', () => {
    const { h, calls } = scenario()
    assert.equal(h.list(0xffff, false), whole(sections(calls + 1, false)))
    assert.equal(h.list(0xffff, true), whole(sections(calls + 2, true)))
    const long = sections(0, true)
    assert.equal(h.list(1, true), long.clients[0]!.c + long.clients[0]!.p.join(''))
    const short = sections(0, false)
    assert.equal(h.list(2, false), short.clients[1]!.c + short.clients[1]!.p.join(''))
    // The lines of the example in the spec, checked literally (dom 2's PI quirk included).
    const text = h.list(0xffff, false)
    assert.match(text, /\nS=SI:0,PT:ES,U0:8899aabbccddeeff,U1:1122334455667788,SC:1,SC:2\n/)
    assert.match(text, /\nP=CI:1,PI:0,PT:EP,U0:0,U1:0\nP=CI:1,PI:1,PT:PP,U0:0,U1:0\n/)
    assert.match(text, /\nC=CI:2,ww:0,ca:0,co:0,fr:0,Tc:8000,Ge:0,Pp:0,Gp:0\nP=CI:2,PI:2,PT:ES,/)
  })

  void test('LIST returns 0 (not the length) and writes a NUL after the text', () => {
    const { h, calls } = scenario()
    const buffer = new Uint8Array(8192).fill(0xaa)
    assert.equal(h.ctrl(SUB.LIST, { cliId: 0xffff, arg1: 8192, arg2: 0 }, buffer), 0)
    const expected = whole(sections(calls + 1, false))
    assert.equal(Buffer.from(buffer.subarray(0, expected.length)).toString('latin1'), expected)
    assert.equal(buffer[expected.length], 0)
    assert.equal(buffer[expected.length + 1], 0xaa)
  })

  void test('cli_id 0xFFFFFFFF is narrowed to 0xFFFF (all clients)', () => {
    const { h, calls } = scenario()
    const buffer = new Uint8Array(8192)
    assert.equal(h.ctrl(SUB.LIST, { cliId: 0xffffffff, arg1: 8192, arg2: 0 }, buffer), 0)
    const expected = whole(sections(calls + 1, false))
    assert.equal(Buffer.from(buffer.subarray(0, expected.length)).toString('latin1'), expected)
  })

  void test('any non-zero arg2 selects the long form', () => {
    const { h, calls } = scenario()
    const buffer = new Uint8Array(8192)
    assert.equal(h.ctrl(SUB.LIST, { cliId: 0xffff, arg1: 8192, arg2: 256 }, buffer), 0)
    const expected = whole(sections(calls + 1, true))
    assert.equal(Buffer.from(buffer.subarray(0, expected.length)).toString('latin1'), expected)
  })

  void test('unknown client → -1, buffer untouched; counted in Te', () => {
    const { h, calls } = scenario()
    const buffer = new Uint8Array(4096).fill(0xaa)
    assert.equal(h.ctrl(SUB.LIST, { cliId: 3, arg1: 4096 }, buffer), -1)
    assert.ok(buffer.every((byte) => byte === 0xaa))
    assert.match(h.list(), new RegExp(`^G=Tt:${calls + 2},Te:6,`))
  })

  void test('fit check on every line, at every capacity around the line boundaries', () => {
    const { h, calls } = scenario()
    let tt = calls
    for (const long of [false, true]) {
      const full = sections(0, long)
      const lengths = [
        full.g,
        ...full.s,
        ...full.clients.flatMap((c) => [c.c, ...c.p]),
        full.t,
      ].map((l) => l.length)
      const capacities = new Set<number>([0, 1, 2, 10, 50])
      let sum = 0
      for (const length of lengths) {
        for (const c of [
          length - 1,
          length,
          length + 1,
          sum + length - 1,
          sum + length,
          sum + length + 1,
        ]) {
          if (c >= 0) capacities.add(c)
        }
        sum += length
      }
      for (const capacity of capacities) {
        tt++
        const expected = fit(sections(tt, long), capacity)
        const buffer = new Uint8Array(capacity + 8).fill(0xaa)
        assert.equal(
          h.ctrl(SUB.LIST, { cliId: 0xffff, arg1: capacity, arg2: long ? 1 : 0 }, buffer),
          0,
        )
        const got = Buffer.from(buffer.subarray(0, expected.length)).toString('latin1')
        assert.equal(got, expected, `capacity ${capacity} long ${long}`)
        if (expected.length === 0) {
          assert.ok(
            buffer.every((byte) => byte === 0xaa),
            `capacity ${capacity}: buffer must be untouched`,
          )
        } else {
          assert.equal(buffer[expected.length], 0, `capacity ${capacity}: NUL`)
          assert.ok(
            buffer.subarray(expected.length + 1).every((byte) => byte === 0xaa),
            `capacity ${capacity}: tail`,
          )
        }
      }
    }
  })

  void test('a tiny buffer: nothing written, buffer untouched, LIST still returns 0', () => {
    const { h } = scenario()
    for (const capacity of [0, 1, 5, 30]) {
      const buffer = new Uint8Array(64).fill(0x55)
      assert.equal(h.ctrl(SUB.LIST, { cliId: 1, arg1: capacity }, buffer), 0)
      assert.ok(
        buffer.every((byte) => byte === 0x55),
        `capacity ${capacity}`,
      )
    }
    // No buffer at all.
    assert.equal(h.ctrl(SUB.LIST, { cliId: 0xffff, arg1: 4096 }, null), 0)
  })

  void test('the capacity is arg1, never more than the buffer', () => {
    const { h } = scenario()
    const short = sections(0, false)
    const c1 = short.clients[0]!.c
    // arg1 larger than the buffer: the buffer's length is the limit.
    const small = new Uint8Array(c1.length + 1).fill(0xaa)
    assert.equal(h.ctrl(SUB.LIST, { cliId: 1, arg1: 100000 }, small), 0)
    assert.equal(Buffer.from(small.subarray(0, c1.length)).toString('latin1'), c1)
    assert.equal(small[c1.length], 0)
    // arg1 smaller than the buffer: bytes past arg1 stay untouched.
    const big = new Uint8Array(4096).fill(0xaa)
    assert.equal(h.ctrl(SUB.LIST, { cliId: 1, arg1: c1.length + 1 }, big), 0)
    assert.equal(big[c1.length], 0)
    assert.ok(big.subarray(c1.length + 1).every((byte) => byte === 0xaa))
  })
})

void describe('conformance: LIST of a fresh host', () => {
  void test('no clients: the G= line of zeros and an unused T= line', () => {
    const h = new Harness({ pages: 64, reservePages: 0 })
    const unused = ['G', 'P', 'g', 'p', 'F', 'O', 'C', 'c', 'd']
      .map((tag) => `${tag}n:0,${tag}t:0,${tag}x:0,${tag}m:2147483647`)
      .join(',')
    assert.equal(
      h.list(0xffff, true),
      'G=Tt:1,Te:0,Cf:0,Af:0,Pf:0,Ta:0,Lm:0,Et:0,Ea:0,Rt:0,Ra:0,Rx:0,Fp:0,' +
        'Ec:0,Em:0,Oc:0,Om:0,Nc:0,Nm:0,Pc:0,Pm:0,Fc:0,Fm:0,Sc:0,Sm:0,Ep:0,Gd:0,Zt:0,Gz:0\n' +
        `T=${unused}\n`,
    )
  })

  void test('U0/U1 are lower-case hex without padding; private pools print 0', () => {
    const h = new Harness({ sharedAuth: false })
    assert.equal(h.newPool(4, F.SHARED_EPH, [0xabcdef0n, 0x1n]), 0)
    assert.equal(h.newPool(4, F.PRIVATE_EPH, [0x55n, 0x66n]), 1)
    assert.equal(h.newPool(4, F.SHARED_EPH, [0n, 0n]), 2)
    const text = h.list(4)
    assert.equal(
      text,
      'C=CI:4,ww:0,ca:0,co:0,fr:0,Tc:0,Ge:0,Pp:0,Gp:0\n' +
        'P=CI:4,PI:0,PT:ES,U0:abcdef0,U1:1\n' +
        'P=CI:4,PI:1,PT:EP,U0:0,U1:0\n' +
        'P=CI:4,PI:2,PT:ES,U0:0,U1:0\n',
    )
    assert.match(h.list(), /\nS=SI:0,PT:ES,U0:abcdef0,U1:1,SC:4\nS=SI:1,PT:ES,U0:0,U1:0,SC:4\n/)
  })
})
