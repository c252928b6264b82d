import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { PipelineHarness, lifecycle, app } from './helpers/harness.ts'
import { TimerHeap } from '../pipeline/timers.ts'

const HOUR = 3_600_000
const T0 = Date.parse('2026-10-01T02:00:00.000Z')
const at = (hours: number) => new Date(T0 + hours * HOUR).toISOString()

describe('watermarks, lateness and deduplication', () => {
  it('applies events within the allowed lateness and dead-letters later ones', async () => {
    const h = new PipelineHarness(undefined, { allowedLateness: 10 * 60_000 })
    await h.send(app('c', 'login', at(10)))
    // Every event at or before the watermark has arrived: it trails the newest by the lateness and 1 ms.
    expect(h.watermark).toBe(T0 + 10 * HOUR - 10 * 60_000 - 1)
    const within = await h.send(app('c', 'login', at(9.9)), app('c', 'login', new Date(T0 + 10 * HOUR - 10 * 60_000).toISOString()))
    expect(within.applied).toBe(2)
    const late = await h.send(app('c', 'login', new Date(T0 + 10 * HOUR - 10 * 60_000 - 1).toISOString()))
    expect(late.late).toBe(1)
    expect(h.deadLetters).toHaveLength(1)
    expect(h.deadLetters[0].error).toMatchObject({ code: 'late_event', path: '$.occurredAt' })
  })

  it('processes a repeated eventId once', async () => {
    const h = new PipelineHarness()
    const e = lifecycle('c', 'approved', at(0))
    await h.send(e)
    const again = await h.send(e)
    expect(again).toMatchObject({ applied: 0, duplicates: 1 })
    await h.advanceTo(at(100))
    expect(h.decisions).toHaveLength(1)
  })

  it('forgets ids once the watermark passes them, and a repeat that late is dead-lettered, not applied', async () => {
    const h = new PipelineHarness()
    const e = lifecycle('c', 'approved', at(0))
    await h.send(e, app('c', 'login', at(1)), app('c', 'login', at(2)))
    const rec = (await h.store.load(0, ['c'], 0)).customers.get('c')!
    expect(rec.seen.map(([id]) => id)).not.toContain(e.eventId) // pruned as newer events moved the watermark past it
    const again = await h.send(e)
    expect(again).toMatchObject({ applied: 0, duplicates: 0, late: 1 })
    await h.advanceTo(at(100))
    expect(h.decisions).toHaveLength(1)
  })

  it('remembers a bounded number of event ids per customer', async () => {
    const h = new PipelineHarness()
    for (let i = 0; i < 200; i++) await h.send(app('c', 'login', at(i / 100)))
    const loaded = await h.store.load(0, ['c'], 0)
    expect(loaded.customers.get('c')!.seen.length).toBeLessThanOrEqual(64)
  })

  it('skips what was already applied after a restart from the store', async () => {
    const h = new PipelineHarness()
    await h.send(lifecycle('c', 'approved', at(0)))
    const meta = await h.store.load(0, [], -Infinity)
    expect(meta.appliedOffset).toBe('1')
  })

  it('commits the pending timer so a new processor on the same store fires it', async () => {
    const h = new PipelineHarness()
    await h.send(lifecycle('c', 'approved', at(0)))
    // Held until the watermark reaches it: the event waits on the runtime's own timer.
    expect((await h.store.load(0, [], Infinity)).timers).toEqual([{ member: 'c|!apply:', at: T0 }])
    await h.advanceTo(at(0))
    const loaded = await h.store.load(0, [], Infinity)
    expect(loaded.timers).toEqual([{ member: 'c|activation:tok_c', at: T0 + 72 * HOUR }])
  })

  it('fires timers in event-time order across customers, whatever the batch cuts (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ customer: fc.constantFrom('a', 'b', 'c', 'd'), hours: fc.integer({ min: 0, max: 300 }), stage: fc.constantFrom('approved', 'activated', 'issued') }), { maxLength: 25 }),
        fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 10 }),
        async (raw, cuts) => {
          let n = 0
          const events = raw
            .sort((x, y) => x.hours - y.hours)
            .map((r) => ({ ...lifecycle(r.customer, r.stage, at(r.hours)), eventId: `e${n++}` }))
          const whole = new PipelineHarness()
          await whole.send(...events)
          await whole.advanceTo(at(1000))
          const cut = new PipelineHarness()
          let i = 0
          let c = 0
          while (i < events.length) {
            const size = cuts[c++ % cuts.length]
            await cut.send(...events.slice(i, i + size))
            i += size
          }
          await cut.advanceTo(at(1000))
          expect(cut.decisions).toEqual(whole.decisions)
          const times = whole.decisions.map((d) => d.eventTime)
          expect([...times].sort()).toEqual(times)
        },
      ),
      { numRuns: 60 },
    )
  })
})

describe('TimerHeap', () => {
  it('pops in (at, member) order, honours deletes and moves', () => {
    const h = new TimerHeap()
    h.set('b', 2)
    h.set('a', 2)
    h.set('c', 1)
    h.set('d', 5)
    h.delete('c')
    h.set('d', 0)
    const out = []
    let t
    while ((t = h.popDue(10))) out.push(t)
    expect(out).toEqual([
      { member: 'd', at: 0 },
      { member: 'a', at: 2 },
      { member: 'b', at: 2 },
    ])
  })

  it('stays compact when one timer is re-armed many times', () => {
    const h = new TimerHeap()
    for (let i = 0; i < 50_000; i++) h.set('x', i)
    expect(h.size).toBe(1)
    expect(h.popDue(Infinity)).toEqual({ member: 'x', at: 49_999 })
    expect(h.popDue(Infinity)).toBeUndefined()
  })
})
