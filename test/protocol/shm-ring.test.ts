/**
 * The shared-memory rings against a plain array model (STYLE §6), and the region's bytes
 * against a naive byte builder typed from docs/protocol.md ("Shared memory").
 *
 * The model test drives the four ring ends of one region (client: SubmissionProducer,
 * CompletionConsumer; daemon: SubmissionConsumer, CompletionProducer) through random
 * interleavings of their steps: submitting, publishing, a daemon turn that takes part of what
 * it may and posts completions, the client reading completions, each side publishing its
 * cursor late or not at all for a while. The model is four arrays and four counters. After
 * every step each end's view (room, entries available, every entry's bytes and id) must be
 * what the model says the other side has published, never more. Cursors start at 0, just
 * below 2^32 or anywhere, so the wrap is crossed.
 *
 * Replay a failure with TMEM_SEED=<seed> TMEM_PATH=<path>; TMEM_RUNS=<n> sets the runs.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { encodeOp } from '../../src/abi/codec.js'
import { OP_LAYOUT_V1 } from '../../src/abi/layout.js'
import { TMEM_GET_PAGE, TMEM_PUT_PAGE } from '../../src/abi/constants.js'
import {
  SHM_HEADER_BYTES,
  type ShmGeometry,
  checkShmHeader,
  shmGeometry,
  writeShmHeader,
} from '../../src/protocol/shm-region.js'
import {
  CompletionConsumer,
  CompletionProducer,
  SHM_OPS_PER_TURN_MAX,
  type ShmViews,
  SubmissionConsumer,
  SubmissionProducer,
  sqeFrame,
  sqeRequestId,
  shmViews,
} from '../../src/protocol/shm-ring.js'
import { naive } from '../helpers/naive-bytes.js'

const RUNS = Number(process.env['TMEM_RUNS'] ?? 150)

function checkParameters<T>(): fc.Parameters<T> {
  const parameters: fc.Parameters<T> = { numRuns: RUNS }
  const seedText = process.env['TMEM_SEED']
  const pathText = process.env['TMEM_PATH']
  if (seedText !== undefined) parameters.seed = Number(seedText)
  if (pathText !== undefined && pathText !== '') parameters.path = pathText
  return parameters
}

function region(geometry: ShmGeometry): ShmViews {
  const views = shmViews(new ArrayBuffer(geometry.regionBytes), geometry.regionBytes)
  writeShmHeader(views.bytes, geometry)
  return views
}

/** A gen-arm op whose every field comes from `n`, as the client would encode it. */
function opBytes(n: number): Uint8Array {
  const op = {
    cmd: n % 2 === 0 ? TMEM_PUT_PAGE : TMEM_GET_PAGE,
    poolId: n % 16,
    gen: {
      oid: [BigInt(n) * 0x1_0000_0001n, BigInt(n ^ 0x5a5a), 0xffff_ffff_ffff_ffffn] as [
        bigint,
        bigint,
        bigint,
      ],
      index: (n * 2654435761) >>> 0,
      tmemOffset: 0,
      pfnOffset: 0,
      len: 0,
      cmfn: BigInt(n % 4),
    },
  }
  return encodeOp(op, 1)
}

type Step =
  | { kind: 'submit'; count: number }
  | { kind: 'publishSq' }
  | { kind: 'daemonTurn'; fraction: number; end: boolean; publish: boolean }
  | { kind: 'clientTurn'; fraction: number; end: boolean }

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('submit' as const), count: fc.integer({ min: 1, max: 20 }) }),
  fc.record({ kind: fc.constant('publishSq' as const) }),
  fc.record({
    kind: fc.constant('daemonTurn' as const),
    fraction: fc.double({ min: 0, max: 1, noNaN: true }),
    end: fc.boolean(),
    publish: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('clientTurn' as const),
    fraction: fc.double({ min: 0, max: 1, noNaN: true }),
    end: fc.boolean(),
  }),
)

const scenarioArbitrary = fc.record({
  sqEntries: fc.constantFrom(8, 16, 32),
  cqEntries: fc.constantFrom(8, 16, 32),
  start: fc.oneof(fc.constant(0), fc.constant(0xffff_fff0), fc.nat({ max: 0xffff_ffff })),
  steps: fc.array(stepArbitrary, { minLength: 1, maxLength: 120 }),
})

/** The model: what each side has done and what it has published. */
class Model {
  readonly submitted: { id: number; op: Uint8Array }[] = []
  sqPublished = 0
  daemonTaken = 0
  sqHeadPublished = 0
  readonly posted: { id: number; rc: number }[] = []
  cqPublished = 0
  clientTaken = 0
  cqHeadPublished = 0
}

interface Scenario {
  sqEntries: number
  cqEntries: number
  start: number
  steps: Step[]
}

function runScenario(scenario: Scenario): void {
  const geometry = shmGeometry(1, scenario.sqEntries, scenario.cqEntries, 4)
  const views = region(geometry)
  const start = scenario.start
  const sqProducer = new SubmissionProducer(views, geometry, start)
  const sqConsumer = new SubmissionConsumer(views, geometry, start)
  const cqProducer = new CompletionProducer(views, geometry, start)
  const cqConsumer = new CompletionConsumer(views, geometry, start)
  // Both sides publish their starting cursors, as a fresh header at `start` would hold them.
  sqProducer.publish()
  sqConsumer.end()
  cqProducer.publish()
  cqConsumer.end()
  const model = new Model()
  const entry = new Uint8Array(64)
  for (const step of scenario.steps) {
    switch (step.kind) {
      case 'submit': {
        const room = scenario.sqEntries - (model.submitted.length - model.sqHeadPublished)
        assert.equal(sqProducer.room(), room)
        for (let i = 0; i < Math.min(step.count, room); i++) {
          const id = (model.submitted.length * 7 + 1) >>> 0
          const op = opBytes(model.submitted.length)
          const at = sqProducer.next()
          views.bytes.set(op, at)
          sqProducer.push(id)
          model.submitted.push({ id, op })
        }
        break
      }
      case 'publishSq':
        sqProducer.publish()
        model.sqPublished = model.submitted.length
        break
      case 'daemonTurn': {
        const room = scenario.cqEntries - (model.posted.length - model.cqHeadPublished)
        assert.equal(cqProducer.room(), room)
        const may = sqConsumer.begin(room)
        assert.equal(
          may,
          Math.min(model.sqPublished - model.daemonTaken, room, SHM_OPS_PER_TURN_MAX),
        )
        const take = Math.floor(may * step.fraction)
        for (let i = 0; i < take; i++) {
          sqConsumer.take(entry)
          const expected = model.submitted[model.daemonTaken]!
          assert.deepEqual(entry.subarray(0, 56), expected.op, 'op bytes of the entry')
          assert.equal(sqeRequestId(entry), expected.id)
          assert.equal(sqeFrame(entry, OP_LAYOUT_V1, geometry), model.daemonTaken % 4)
          model.daemonTaken++
          const rc = (expected.id % 3) - 1
          cqProducer.post(expected.id, rc)
          model.posted.push({ id: expected.id, rc })
        }
        if (step.end) {
          sqConsumer.end()
          model.sqHeadPublished = model.daemonTaken
        }
        if (step.publish) {
          cqProducer.publish()
          model.cqPublished = model.posted.length
        }
        break
      }
      case 'clientTurn': {
        const may = cqConsumer.begin()
        assert.equal(may, Math.min(model.cqPublished - model.clientTaken, SHM_OPS_PER_TURN_MAX))
        const take = Math.floor(may * step.fraction)
        for (let i = 0; i < take; i++) {
          cqConsumer.take()
          const expected = model.posted[model.clientTaken]!
          assert.equal(cqConsumer.requestId, expected.id)
          assert.equal(cqConsumer.rc, expected.rc)
          model.clientTaken++
        }
        if (step.end) {
          cqConsumer.end()
          model.cqHeadPublished = model.clientTaken
        }
        break
      }
    }
    assert.equal(sqConsumer.hasWork(), model.sqPublished > model.daemonTaken)
    assert.equal(cqConsumer.hasWork(), model.cqPublished > model.clientTaken)
  }
  for (const ring of [sqProducer, sqConsumer, cqProducer, cqConsumer])
    assert.equal(ring.errors.badCursor, 0)
}

void test('the rings match an array model over random interleavings of both sides', (t) => {
  const details = fc.check(
    fc.property(scenarioArbitrary, (scenario) => runScenario(scenario)),
    checkParameters(),
  )
  if (details.failed) {
    const error = details.errorInstance
    assert.fail(
      `seed ${details.seed} path ${details.counterexamplePath ?? ''}: ` +
        `${error instanceof Error ? error.message : String(error)}\n` +
        `Replay: TMEM_SEED=${details.seed} TMEM_PATH=${details.counterexamplePath ?? ''} node tools/run-tests.mjs shm-ring`,
    )
  }
  t.diagnostic(`seed ${details.seed}: ${details.numRuns} runs`)
})

void test('the header is laid out byte by byte as docs/protocol.md draws it', () => {
  const geometry = shmGeometry(1, 16, 32, 3)
  // Rings: 16 x 64 + 32 x 8 = 1280 bytes after the header page, padded to a page; 3 frames.
  assert.deepEqual(geometry, {
    abi: 1,
    sqEntries: 16,
    cqEntries: 32,
    frameCount: 3,
    sqOffset: 4096,
    cqOffset: 4096 + 1024,
    framesOffset: 8192,
    regionBytes: 8192 + 3 * 4096,
  })
  const views = region(geometry)
  const expected = naive()
    .at(0)
    .raw(0x54, 0x53, 0x48, 0x4d) // "TSHM"
    .at(4)
    .u32le(1)
    .at(8)
    .u32le(1)
    .at(12)
    .u32le(16)
    .at(16)
    .u32le(32)
    .at(20)
    .u32le(3)
    .at(24)
    .u32le(4096)
    .at(28)
    .u32le(5120)
    .at(32)
    .u32le(8192)
    .at(36)
    .u32le(8192 + 3 * 4096)
    .zeros(320 - 40)
    .at(320)
    .u32le(1) // the daemon starts asleep
    .zeros(60)
    .at(384)
    .u32le(1) // and so does the client
    .zeros(SHM_HEADER_BYTES - 388)
    .done(SHM_HEADER_BYTES)
  assert.deepEqual(views.bytes.subarray(0, SHM_HEADER_BYTES), expected)
  assert.equal(checkShmHeader(views.bytes, geometry), null)
  const other = shmGeometry(1, 16, 32, 4)
  assert.match(checkShmHeader(views.bytes, other) ?? '', /disagrees|smaller/)
  views.bytes[0] = 0
  assert.match(checkShmHeader(views.bytes, geometry) ?? '', /magic/)
})

void test('entries and cursors sit where docs/protocol.md says', () => {
  const geometry = shmGeometry(1, 8, 8, 2)
  const views = region(geometry)
  const producer = new SubmissionProducer(views, geometry)
  const daemon = new CompletionProducer(views, geometry)
  const op = opBytes(5)
  for (let i = 0; i < 3; i++) {
    views.bytes.set(op, producer.next())
    producer.push(0xa0 + i)
  }
  producer.publish()
  daemon.post(0xa1, -22)
  daemon.post(0xa2, 1)
  daemon.publish()
  // Third submission entry: slot 2, at 4096 + 2 x 64.
  const sqe = naive()
    .raw(...op)
    .at(56)
    .u32le(0xa2)
    .at(60)
    .u32le(0)
    .done(64)
  assert.deepEqual(views.bytes.subarray(4096 + 128, 4096 + 192), sqe)
  // Completion ring at 4096 + 8 x 64; second entry at + 8.
  const cqe = naive().u32le(0xa2).s32le(1).done(8)
  assert.deepEqual(views.bytes.subarray(4096 + 512 + 8, 4096 + 512 + 16), cqe)
  assert.deepEqual(
    views.bytes.subarray(4096 + 512, 4096 + 512 + 8),
    naive().u32le(0xa1).s32le(-22).done(8),
  )
  // Cursors: sq tail at 64, cq tail at 192, each a u32.
  assert.deepEqual(views.bytes.subarray(64, 68), naive().u32le(3).done(4))
  assert.deepEqual(views.bytes.subarray(192, 196), naive().u32le(2).done(4))
})

void test('a cmfn names a frame only below the frame count with a zero high word', () => {
  const geometry = shmGeometry(1, 8, 8, 5)
  const entry = new Uint8Array(64)
  const cases: [bigint, number][] = [
    [0n, 0],
    [4n, 4],
    [5n, -1],
    [1n << 32n, -1],
    [(1n << 32n) | 1n, -1],
    [0xffff_ffffn, -1],
  ]
  for (const [cmfn, frame] of cases) {
    entry.set(naive().u64le(cmfn).done(8), 48)
    assert.equal(sqeFrame(entry, OP_LAYOUT_V1, geometry), frame, `cmfn ${cmfn}`)
  }
})

void test('geometry outside the limits is refused with a sentence', () => {
  assert.throws(() => shmGeometry(1, 12, 16, 1), /powers of two/)
  assert.throws(() => shmGeometry(1, 4, 16, 1), /powers of two/)
  assert.throws(() => shmGeometry(1, 16, 8192, 1), /powers of two/)
  assert.throws(() => shmGeometry(1, 16, 16, 0), /Frame count/)
  assert.throws(() => shmGeometry(1, 16, 16, 16385), /Frame count/)
})

void test('a consumer stores its head when it took entries, and only then', () => {
  const geometry = shmGeometry(1, 8, 8, 2)
  const views = region(geometry)
  const producer = new SubmissionProducer(views, geometry)
  const consumer = new SubmissionConsumer(views, geometry)
  const sqHead = (): Uint8Array => views.bytes.subarray(128, 132)
  consumer.end()
  assert.deepEqual(sqHead(), naive().u32le(0).done(4), 'the first end stores the start')
  // A marker in the head word (docs/protocol.md: sqHead at 128): a turn that takes nothing
  // must leave it alone.
  views.bytes.set(naive().u32le(0x7777).done(4), 128)
  assert.equal(consumer.begin(8), 0)
  consumer.end()
  assert.deepEqual(sqHead(), naive().u32le(0x7777).done(4), 'an empty turn stores nothing')
  for (let i = 0; i < 2; i++) {
    views.bytes.set(opBytes(i), producer.next())
    producer.push(i)
  }
  producer.publish()
  assert.equal(consumer.begin(8), 2)
  const copy = new Uint8Array(64)
  consumer.take(copy)
  consumer.take(copy)
  consumer.end()
  assert.deepEqual(sqHead(), naive().u32le(2).done(4), 'a turn that took two stores 2')
  views.bytes.set(naive().u32le(0x7777).done(4), 128)
  assert.equal(consumer.begin(8), 0)
  consumer.end()
  assert.deepEqual(sqHead(), naive().u32le(0x7777).done(4))
})
