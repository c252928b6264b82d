import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { NO_MARK, SourceClock, allIdle, marksToSend, mergeMarks, watermarkOf, type Marks, type SourceStates } from '../pipeline/sourceMarks.ts'
import { PartitionProcessor } from '../pipeline/processor.ts'
import type { StreamMessage } from '../pipeline/stream.ts'
import { MemoryStore } from '../pipeline/store/memory.ts'
import { atEventTime } from '../pipeline/policy.ts'
import { InputEvent } from '../schemas/events.ts'
import { defaultCatalogForTests, transaction } from './helpers/harness.ts'

/**
 * Source watermarks (pipeline/sourceMarks.ts): the state stage's watermark is the minimum over the
 * input partitions that are not idle, marks only move forward, and what a partition knows
 * survives a restart. Properties in the style of test/alignment.test.ts, then the processor fed
 * by several sources through one stream.
 */

const MIN = 60_000
const T0 = Date.parse('2026-10-01T02:00:00.000Z')
const fold = (records: Marks[], known: SourceStates = {}) => records.reduce(mergeMarks, known)

describe('the watermark over sources', () => {
  it('is the minimum over the sources of the newest mark each sent, whatever the order records arrive in', () => {
    // Each source's marks rise, but a new owner re-reading from committed offsets may send lower ones again.
    const source = fc.array(fc.integer({ min: 0, max: 1e6 }), { minLength: 1, maxLength: 20 })
    fc.assert(
      fc.property(fc.array(source, { minLength: 1, maxLength: 6 }), fc.infiniteStream(fc.nat()), (sources, picks) => {
        const queues = sources.map((marks, i) => marks.map((m) => ({ [`s|${i}`]: m }) as Marks))
        const order = picks[Symbol.iterator]()
        const records: Marks[] = []
        while (queues.some((q) => q.length)) {
          const open = queues.filter((q) => q.length)
          records.push(open[order.next().value % open.length].shift()!)
        }
        const expected = Math.min(...sources.map((marks) => Math.max(...marks)))
        expect(watermarkOf(fold(records))).toBe(expected)
        // Every prefix: never above the slowest source's newest mark so far.
        let known: SourceStates = {}
        for (const r of records) {
          known = mergeMarks(known, r)
          const wm = watermarkOf(known)!
          for (const s of Object.values(known)) expect(wm).toBeLessThanOrEqual(s.at)
        }
      }),
      { numRuns: 300 },
    )
  })

  it('knows the same from records of the marks that changed as from whole records, read from the start or from any whole record', () => {
    const mark = fc.oneof(fc.integer({ min: 0, max: 50 }), fc.constant('idle' as const))
    // what the ingest stage has to say at each publish: a mark for some of four sources
    const step = fc.dictionary(fc.constantFrom('tx|0', 'tx|1', 'app|0', 'life|0'), mark, { minKeys: 1 })
    fc.assert(
      fc.property(fc.array(fc.tuple(step, fc.boolean()), { minLength: 1, maxLength: 30 }), (steps) => {
        let published: Marks = {}
        const wholes: Marks[] = []
        const sent: { record: Marks; whole: boolean }[] = []
        for (const [marks, whole] of steps) {
          wholes.push(marks)
          sent.push({ record: marksToSend(marks, published, whole), whole })
          published = marks
        }
        expect(fold(sent.map((r) => r.record))).toEqual(fold(wholes))
        sent.forEach((r, i) => {
          if (r.whole) expect(fold(sent.slice(i).map((x) => x.record))).toEqual(fold(wholes.slice(i)))
        })
      }),
      { numRuns: 500 },
    )
    // most records say less than the whole set
    expect(marksToSend({ 'tx|0': 5, 'app|0': 'idle' }, { 'tx|0': 4, 'app|0': 'idle' }, false)).toEqual({ 'tx|0': 5 })
  })

  it('is held by a source known to exist until it is heard from', () => {
    const known = fold([{ 'tx|0': 500 }, { 'app|0': 700 }])
    expect(watermarkOf(known, ['tx|0', 'app|0'])).toBe(500)
    expect(watermarkOf(known, ['tx|0', 'app|0', 'lifecycle|0'])).toBe(NO_MARK)
    expect(watermarkOf(mergeMarks(known, { 'lifecycle|0': 'idle' }), ['tx|0', 'app|0', 'lifecycle|0'])).toBe(500)
    expect(watermarkOf({})).toBeUndefined()
  })

  it('leaves idle sources out, takes the newest mark when all are idle, and lets an idle source hold again with its next mark', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 1000 }), fc.boolean()), { minLength: 1, maxLength: 8 }), (sources) => {
        const marks = sources.map(([at], i) => ({ [`s|${i}`]: at }) as Marks)
        const idles = sources.flatMap(([, idle], i) => (idle ? [{ [`s|${i}`]: 'idle' } as Marks] : []))
        const known = fold([...marks, ...idles])
        const busy = sources.filter(([, idle]) => !idle).map(([at]) => at)
        const expected = busy.length ? Math.min(...busy) : Math.max(...sources.map(([at]) => at))
        expect(watermarkOf(known)).toBe(expected)
        expect(allIdle(known)).toBe(!busy.length)
        // The next mark of an idle source makes it hold again (never below what it reached before).
        const woken = mergeMarks(known, { 's|0': -5 })
        expect(woken['s|0']).toEqual({ at: sources[0][0] })
        expect(watermarkOf(woken)).toBe(Math.min(sources[0][0], ...busy))
      }),
      { numRuns: 300 },
    )
  })
})

describe('SourceClock (ingest)', () => {
  it('marks each owned partition at its newest forwarded event less the disorder, and idle once drained and quiet', () => {
    let now = 0
    const c = new SourceClock(1000, 2000, () => now)
    c.assign(['tx|0', 'lc|0', 'app|0'])
    const drained = new Set(['app|0'])
    // Nothing forwarded yet: only a drained partition may say anything, and only once quiet.
    expect(c.marks((k) => drained.has(k))).toEqual({})
    c.forwarded('tx|0', 10_000)
    c.forwarded('tx|0', 9_000)
    expect(c.marks((k) => drained.has(k))).toEqual({ 'tx|0': 8_999 })
    // Events about to be published count before they go; the clock itself has not moved.
    expect(c.marks((k) => drained.has(k), [{ key: 'lc|0', at: 5_000 }])).toEqual({ 'tx|0': 8_999, 'lc|0': 3_999 })
    now = 2000
    expect(c.marks((k) => drained.has(k))).toEqual({ 'tx|0': 8_999, 'app|0': 'idle' })
    drained.add('tx|0')
    expect(c.marks((k) => drained.has(k))).toEqual({ 'tx|0': 'idle', 'app|0': 'idle' })
    // Its next event ends its idleness.
    c.forwarded('tx|0', 12_000)
    expect(c.marks((k) => drained.has(k))).toEqual({ 'tx|0': 10_999, 'app|0': 'idle' })
    // A rebalance: nothing is said of partitions not owned; a kept one keeps its progress.
    c.assign(['tx|0'])
    expect(c.marks(() => false)).toEqual({ 'tx|0': 10_999 })
    c.forwarded('lc|0', 99_999)
    expect(c.marks(() => false)).toEqual({ 'tx|0': 10_999 })
  })
})

const catalog = defaultCatalogForTests()

/** A live partition's processor: its watermark comes from the marks in its stream. */
function liveProcessor(store: MemoryStore, sources: string[]) {
  return new PartitionProcessor({
    partition: 0,
    store,
    catalog: () => catalog,
    watermarks: { sources: () => sources },
    allowedLateness: 0,
    decisionTime: atEventTime,
    outbox: { webhooks: false, alerts: false, rows: false },
  })
}

describe('a state partition fed by several sources through one stream', () => {
  it('applies every event in time, none late, when each source marks after its events; the same across a restart at any point', async () => {
    // Each source (input partition) sends events in time order, each followed by its mark; the
    // sources interleave at random on the partition's stream, as ingest processes publish them.
    const sourceArb = fc.array(fc.integer({ min: 0, max: 120 * MIN }), { minLength: 1, maxLength: 12 }).map((ts) => ts.sort((a, b) => a - b))
    await fc.assert(
      fc.asyncProperty(fc.array(sourceArb, { minLength: 1, maxLength: 4 }), fc.infiniteStream(fc.nat()), fc.nat(), async (sources, picks, cutAt) => {
        const keys = sources.map((_, i) => `s|${i}`)
        const queues = sources.map((times, i) =>
          times.flatMap((t, k): Omit<StreamMessage, 'offset'>[] => {
            const event = InputEvent.parse(transaction(`c${k % 3}`, new Date(T0 + t).toISOString(), 20, { eventId: `e${i}-${k}` }))
            return [{ event, at: T0 + t, source: { topic: 's', partition: i, offset: String(k) } }, { marks: { [keys[i]]: T0 + t - 1 } }]
          }),
        )
        const order = picks[Symbol.iterator]()
        const stream: StreamMessage[] = []
        while (queues.some((q) => q.length)) {
          const open = queues.filter((q) => q.length)
          stream.push({ ...open[order.next().value % open.length].shift()!, offset: String(stream.length + 1) } as StreamMessage)
        }
        const store = new MemoryStore()
        const cut = cutAt % (stream.length + 1)
        let p = liveProcessor(store, keys)
        const outs = [await p.process(stream.slice(0, cut))]
        p = liveProcessor(store, keys) // a restart: the sources' marks come back from the store
        outs.push(await p.process(stream.slice(cut)))
        expect(outs.reduce((n, o) => n + o.late + o.lateness.length, 0)).toBe(0)
        expect(outs.reduce((n, o) => n + o.applied, 0)).toBe(sources.flat().length)
        const slowest = Math.min(...sources.map((ts) => ts[ts.length - 1]))
        expect(p.watermark).toBe(T0 + slowest - 1)
      }),
      { numRuns: 200 },
    )
  })

  it('does not let a restart take the watermark back, and lets an idle source stop holding the others', async () => {
    const store = new MemoryStore()
    const keys = ['tx|0', 'lc|0']
    let p = liveProcessor(store, keys)
    await p.process([{ offset: '1', marks: { 'tx|0': T0 + 10 * MIN } }])
    expect(p.watermark).toBeLessThan(T0) // lc|0 has not been heard from
    await p.process([{ offset: '2', marks: { 'lc|0': 'idle' } }])
    expect(p.watermark).toBe(T0 + 10 * MIN)
    p = liveProcessor(store, keys)
    // A new owner of tx|0 re-reads from its committed offsets and marks lower: nothing moves back.
    await p.process([{ offset: '3', marks: { 'tx|0': T0 } }, { offset: '4', marks: { 'lc|0': T0 + MIN } }])
    expect(p.watermark).toBe(T0 + 10 * MIN)
    expect(p.sourceStates).toEqual({ 'tx|0': { at: T0 + 10 * MIN }, 'lc|0': { at: T0 + MIN } })
  })
})
