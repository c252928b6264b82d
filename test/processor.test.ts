import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { PipelineHarness, app, defaultCatalogForTests, lifecycle, transaction } from './helpers/harness.ts'
import type { MemoryStore } from '../pipeline/store/memory.ts'
import type { BatchCommit } from '../pipeline/store/types.ts'
import { FencedError } from '../core/errors.ts'
import { simulateBank } from '../simulator/bank.ts'
import { TimerHeap, parseTimerMember, timerCustomer, timerMember } from '../pipeline/timers.ts'

const HOUR = 3_600_000
const T0 = Date.parse('2026-10-01T02:00:00.000Z')
const at = (hours: number) => new Date(T0 + hours * HOUR).toISOString()

describe('watermarks, lateness and deduplication', () => {
  it('applies events within the allowed lateness and dead-letters later ones', async () => {
    const h = new PipelineHarness(undefined, { maxDisorder: 10 * 60_000 })
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

  it('commits a late event\'s dead letter in the outbox with its batch, kept until acknowledged', async () => {
    const h = new PipelineHarness(undefined, { maxDisorder: 10 * 60_000, decisionTime: () => T0, receivedAt: () => T0 })
    await h.send(app('c', 'login', at(10)))
    const commits: BatchCommit[] = []
    const commit = h.store.commit.bind(h.store)
    h.store.commit = async (b) => {
      commits.push(structuredClone(b))
      return commit(b)
    }
    await h.send(app('c', 'login', at(9)))
    expect(h.deadLetters).toHaveLength(1)
    // Atomic with the batch: a crash after the commit cannot lose it.
    expect(commits).toHaveLength(1)
    expect(commits[0].deadLetters).toEqual(h.deadLetters)
    const taken = await h.store.peekDeadLetters(0, 10)
    expect(taken.map((e) => e.value)).toEqual(h.deadLetters)
    await h.send(app('c', 'login', at(11)))
    expect((await h.store.peekDeadLetters(0, 10)).map((e) => e.value)).toEqual(h.deadLetters) // still there
    await h.store.ackDeadLetters(0, taken.map((e) => e.id))
    expect(await h.store.peekDeadLetters(0, 10)).toEqual([])
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

  it('keeps at most its budget of customers decoded, and decides the same as with all of them cached', async () => {
    const events = simulateBank({ customers: 150, start: Date.parse('2026-01-01T00:00:00Z'), days: 20, seed: 7 })
    let budget = 12
    const small = new PipelineHarness(defaultCatalogForTests(), { maxCachedCustomers: () => budget })
    const large = new PipelineHarness(defaultCatalogForTests())
    let most = 0
    for (let i = 0; i < events.length; i += 40) {
      // a stage that is assigned more partitions gives each a smaller share
      if (i > events.length / 2) budget = 5
      const batch = events.slice(i, i + 40) as unknown as Record<string, unknown>[]
      await small.send(...batch)
      await large.send(...batch)
      most = Math.max(most, small.cachedCustomers)
      expect(small.cachedCustomers).toBeLessThanOrEqual(i > events.length / 2 ? 5 : 12)
    }
    await small.finish()
    await large.finish()
    expect(large.cachedCustomers).toBeGreaterThan(100)
    expect(most).toBeGreaterThan(4)
    expect(small.decisions.length).toBeGreaterThan(10)
    expect(small.decisions).toEqual(large.decisions)
    expect(small.alerts).toEqual(large.alerts)
    expect(small.conversions).toEqual(large.conversions)
  })

  it('skips what was already applied after a restart from the store', async () => {
    const catalog = defaultCatalogForTests()
    // Decisions (first purchase, installment, compliance notice), an alert and pending timers.
    const events = [
      lifecycle('c', 'approved', at(0)),
      lifecycle('c', 'activated', at(1)),
      transaction('c', at(2), 6000, { merchant: { id: 'm9', mcc: '7995', country: 'CN' } }),
      app('c', 'login', at(3)),
    ]
    const first = new PipelineHarness(catalog)
    await first.send(...events)
    await first.advanceTo(at(3))
    expect(first.decisions.length).toBeGreaterThanOrEqual(3)
    expect(first.alerts.map((a) => a.kind)).toEqual(['prohibited_use'])
    const before = await snapshot(first.store)
    expect(before.appliedOffset).toBe('4')

    // Restarted on the same store, the pipeline is sent the committed batch again: Kafka redelivers
    // from its own, older commit.
    const second = new PipelineHarness(catalog, { store: first.store })
    const again = await second.send(...events)
    await second.advanceTo(at(3))
    // Skipped by offset: not seen as duplicates, and not dead-lettered as late although the
    // watermark has passed them.
    expect(again).toMatchObject({ skipped: 4, applied: 0, duplicates: 0, late: 0 })
    expect(second.decisions).toEqual([])
    expect(second.alerts).toEqual([])
    expect(second.deadLetters).toEqual([])
    expect(await snapshot(first.store)).toEqual(before)

    // What follows the committed offset is applied as usual.
    const next = await second.send(app('c', 'login', at(4)))
    expect(next).toMatchObject({ skipped: 0, applied: 1 })
    expect((await snapshot(first.store)).appliedOffset).toBe('5')
  })

  it('applies the events of a packed record together, and skips all of them when the record is delivered again', async () => {
    const catalog = defaultCatalogForTests()
    const pack = [lifecycle('c', 'approved', at(0)), lifecycle('c', 'activated', at(1)), app('d', 'login', at(1))]
    const first = new PipelineHarness(catalog)
    expect(await first.sendPack(...pack)).toMatchObject({ applied: 3, skipped: 0 })
    expect(await first.sendPack(app('c', 'login', at(2)), app('d', 'login', at(2)))).toMatchObject({ applied: 2 })
    expect((await snapshot(first.store)).appliedOffset).toBe('2')
    const before = await snapshot(first.store)

    // Kafka delivers both records again after a restart, cut into two batches: the events of a record
    // share its offset, and a batch that ends before what was applied leaves the applied offset where it was.
    const second = new PipelineHarness(catalog, { store: first.store })
    const again = await second.sendPack(...pack)
    expect(again).toMatchObject({ skipped: 3, applied: 0, duplicates: 0, late: 0 })
    expect(await second.sendPack(app('c', 'login', at(2)), app('d', 'login', at(2)))).toMatchObject({ skipped: 2, applied: 0 })
    expect(await snapshot(first.store)).toEqual(before)
    expect(await second.sendPack(app('c', 'login', at(3)))).toMatchObject({ skipped: 0, applied: 1 })
  })

  it('commits the pending timer so a new processor on the same store fires it', async () => {
    const h = new PipelineHarness()
    await h.send(lifecycle('c', 'approved', at(0)))
    // Held until the watermark reaches it: the event waits on the runtime's own timer.
    expect((await h.store.load(0, [], Infinity)).timers).toEqual([{ member: 'c|!apply:', at: T0 }])
    await h.advanceTo(at(0))
    const loaded = await h.store.load(0, [], Infinity)
    expect(loaded.timers).toEqual([{ member: 'c|activation_reminder:tok_c', at: T0 + 72 * HOUR }])
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

  it('fires a timer once when two owners step one idle partition past it at the same time', async () => {
    // Moving only the watermark leaves the applied offset as it was: the commit is fenced on the
    // partition's commit count too, or both owners' reminders would be committed.
    const first = new PipelineHarness()
    await first.send(lifecycle('c', 'approved', at(0)))
    const second = new PipelineHarness(undefined, { store: first.store })
    const commit = first.store.commit.bind(first.store)
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    let commits = 0
    first.store.commit = async (b) => {
      if (commits++ === 0) await gate
      return commit(b)
    }
    const held = first.advanceTo(at(100)).then(
      () => undefined,
      (e: unknown) => e,
    )
    while (commits === 0) await new Promise((r) => setImmediate(r))
    await second.advanceTo(at(100))
    release()
    expect(await held).toBeInstanceOf(FencedError)
    expect(second.decisions.map((d) => d.trigger)).toEqual(['activation_reminder'])
    const rows = (await first.store.peekRows(0, 100)).filter((e) => e.value.table === 'decisions')
    expect(rows).toHaveLength(1)
    expect(await first.store.dueWebhooks(0, Infinity, 10)).toHaveLength(1)
  })
})

/** Everything the store holds for partition 0: state, timers, offset, watermark and the outboxes. */
async function snapshot(store: MemoryStore) {
  const { appliedOffset, watermark, customers, timers } = await store.load(0, ['c'], Infinity)
  return {
    appliedOffset,
    watermark,
    customers: Object.fromEntries(customers),
    timers,
    rows: await store.peekRows(0, 1e6),
    alerts: await store.peekAlerts(0, 1e6),
    webhooks: await store.dueWebhooks(0, Infinity, 1e6),
  }
}

describe('timer members', () => {
  it('name customer, owner and key; a key may hold the separators', () => {
    const member = timerMember('c-1', 'risk.velocity', 'tok_1:a|b')
    expect(member).toBe('c-1|risk.velocity:tok_1:a|b')
    expect(parseTimerMember(member)).toEqual({ customerId: 'c-1', name: 'risk.velocity', key: 'tok_1:a|b' })
    expect(timerCustomer(member)).toBe('c-1')
    expect(parseTimerMember(timerMember('c', '!apply', ''))).toEqual({ customerId: 'c', name: '!apply', key: '' })
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
    for (let i = 0; i < 50_000; i++) {
      h.set('x', i)
      // Each re-arm leaves a stale entry; the rebuild keeps them from piling up.
      if (h.entries > 2 * h.size + 1025) throw new Error(`${h.entries} heap entries for ${h.size} live timer after ${i + 1} re-arms`)
    }
    expect(h.size).toBe(1)
    expect(h.entries).toBeLessThanOrEqual(1025)
    expect(h.popDue(Infinity)).toEqual({ member: 'x', at: 49_999 })
    expect(h.popDue(Infinity)).toBeUndefined()
  })
})
