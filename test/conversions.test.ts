import { describe, expect, it } from 'vitest'
import { PipelineHarness, defaultCatalogForTests, lifecycle, transaction, app } from './helpers/harness.ts'
import { PartitionProcessor } from '../pipeline/processor.ts'
import type { StreamMessage } from '../pipeline/stream.ts'
import { MemoryStore } from '../pipeline/store/memory.ts'
import { atEventTime } from '../pipeline/policy.ts'
import { decodeRecord, encodeRecord } from '../pipeline/store/codec.ts'
import { MAX_OPEN_WINDOWS, admit, type OpenWindow } from '../pipeline/conversions.ts'
import { Conversion } from '../schemas/conversion.ts'
import { InputEvent } from '../schemas/events.ts'
import type { Catalog } from '../schemas/catalog.ts'

/**
 * Conversion tracking: each send and control decision's goal, watched in event time over its
 * attribution window, through the real processor and the default catalogue's goals.
 */

const HOUR = 3_600_000
const DAY = 24 * HOUR
const T0 = Date.parse('2026-10-01T02:00:00.000Z')
const iso = (ms: number) => new Date(ms).toISOString()

const harness = (patch?: (c: Catalog) => void) => new PipelineHarness(defaultCatalogForTests(patch), { settle: true })
const rowsOf = (h: PipelineHarness, trigger: string) => h.conversions.filter((c) => c.trigger === trigger)
const decisionsOf = (h: PipelineHarness, trigger: string) => h.decisions.filter((d) => d.trigger === trigger)
/** The last state of each decision's row. */
const latestOf = (h: PipelineHarness, trigger: string) => [...new Map(rowsOf(h, trigger).map((c) => [c.decisionId, c])).values()]

describe('conversions', () => {
  it('records the goal reached within the window, then the final row at its end', async () => {
    const h = harness()
    await h.send(lifecycle('a1', 'approved', iso(T0)))
    await h.advanceTo(T0 + 72 * HOUR)
    const [reminder] = decisionsOf(h, 'activation_reminder')
    expect(reminder.outcome).toBe('send')
    expect(rowsOf(h, 'activation_reminder')).toEqual([]) // nothing to say until the goal or the end

    const activated = lifecycle('a1', 'activated', iso(T0 + 80 * HOUR))
    await h.send(activated)
    const windowEnd = iso(T0 + 72 * HOUR + 7 * DAY)
    expect(rowsOf(h, 'activation_reminder')).toEqual([
      {
        decisionId: reminder.id,
        trigger: 'activation_reminder',
        customerId: 'a1',
        cardId: 'tok_a1',
        outcome: 'send',
        decisionTime: reminder.eventTime,
        windowEnd,
        converted: true,
        convertedAt: activated.occurredAt,
        convertingEventId: activated.eventId,
        engaged: false,
        spend: 0,
        preSpend: 0,
        final: false,
        version: 1,
      },
    ])
    await h.advanceTo(Date.parse(windowEnd) - 1)
    expect(rowsOf(h, 'activation_reminder')).toHaveLength(1)
    await h.advanceTo(windowEnd)
    const rows = rowsOf(h, 'activation_reminder')
    expect(rows).toHaveLength(2)
    expect(rows[1]).toMatchObject({ converted: true, convertingEventId: activated.eventId, final: true, version: 2 })
    for (const r of rows) Conversion.parse(r)
    // Closed: only the bind-wallet nudge the activation led to is still open, and the timer waits for its end.
    const loaded = await h.store.load(0, ['a1'], Infinity)
    const open = loaded.customers.get('a1')!.conversions!
    expect(open.map((w) => w.trigger)).toEqual(['bind_wallet_nudge'])
    expect(loaded.timers).toContainEqual({ member: 'a1|~convert:', at: open[0].until })
  })

  it('does not count the goal at or after the window end', async () => {
    const h = harness()
    await h.send(lifecycle('in', 'approved', iso(T0)), lifecycle('at', 'approved', iso(T0)))
    await h.advanceTo(T0 + 72 * HOUR)
    const end = T0 + 72 * HOUR + 7 * DAY
    await h.send(lifecycle('in', 'activated', iso(end - 1)), lifecycle('at', 'activated', iso(end)))
    const final = latestOf(h, 'activation_reminder')
    expect(final.map((c) => [c.customerId, c.converted, c.final, c.version])).toEqual([
      ['in', true, true, 2],
      ['at', false, true, 1],
    ])
  })

  it('tracks control decisions like sends, and says which holdout made them', async () => {
    const h = harness((c) => (c.policy.holdoutPercent = 100))
    await h.send(lifecycle('k1', 'approved', iso(T0)))
    await h.advanceTo(T0 + 72 * HOUR)
    expect(decisionsOf(h, 'activation_reminder')).toMatchObject([{ outcome: 'control', holdout: 'trigger' }])
    await h.send(lifecycle('k1', 'activated', iso(T0 + 100 * HOUR)))
    await h.advanceTo(T0 + 72 * HOUR + 7 * DAY)
    expect(latestOf(h, 'activation_reminder')).toMatchObject([{ outcome: 'control', converted: true, final: true }])
  })

  it('adds up approved spend in the window; the causing purchase is neither the conversion nor window spend', async () => {
    const h = harness()
    const first = transaction('p1', iso(T0 + HOUR), 20)
    const second = transaction('p1', iso(T0 + 2 * HOUR), 100.5)
    await h.send(lifecycle('p1', 'activated', iso(T0)), first)
    const [reward] = decisionsOf(h, 'first_purchase_reward')
    expect(reward.eventTime).toBe(first.occurredAt)
    await h.send(second)
    await h.send(transaction('p1', iso(T0 + 3 * HOUR), 999, { status: 'declined' }))
    await h.send(transaction('p1', iso(T0 + 10 * DAY), 49.5))
    await h.send(transaction('p1', iso(T0 + HOUR + 30 * DAY), 1000)) // at the window end: outside
    const rows = rowsOf(h, 'first_purchase_reward')
    expect(rows.map((c) => [c.converted, c.convertingEventId, c.spend, c.final, c.version])).toEqual([
      [true, second.eventId, 100.5, false, 1],
      [true, second.eventId, 150, true, 2],
    ])
    expect(rows[1]).toMatchObject({ convertedAt: second.occurredAt, preSpend: 20, windowEnd: iso(T0 + HOUR + 30 * DAY) })
  })

  it('churn_retention converts when window spend reaches the share of the baseline that fired it', async () => {
    const h = harness()
    // 100 a day for 120 days from 2026-03-01: a monthly average of 3000; the drop shows on day 135.
    const D0 = Date.UTC(2026, 2, 1)
    const day = (n: number, hourUtc = 4) => D0 + n * DAY + hourUtc * HOUR
    await h.send(...Array.from({ length: 120 }, (_, i) => transaction('r1', iso(day(i)), 100)))
    await h.advanceTo(day(135, 2))
    const [churn] = decisionsOf(h, 'churn_retention')
    expect(churn.reason).toMatchObject({ baselineMonthlyAverage: 3000 })
    // Half of 3000: 1499 is not enough, the purchase that makes 1500 converts.
    await h.send(transaction('r1', iso(day(136)), 1000), transaction('r1', iso(day(137)), 499))
    expect(rowsOf(h, 'churn_retention')).toEqual([])
    const reaching = transaction('r1', iso(day(138)), 1)
    await h.send(reaching)
    expect(rowsOf(h, 'churn_retention')).toMatchObject([{ converted: true, convertingEventId: reaching.eventId, spend: 1500, final: false }])
    await h.advanceTo(day(135, 2) + 30 * DAY)
    expect(latestOf(h, 'churn_retention')).toMatchObject([{ converted: true, spend: 1500, final: true, windowEnd: iso(day(135, 2) + 30 * DAY) }])
    expect(latestOf(h, 'churn_retention')[0].preSpend).toBeGreaterThan(0)
  })

  it('spend_threshold_challenge converts when the local month reaches the threshold by its end', async () => {
    const h = harness()
    // September 600, October 300 by the 20th: the challenge at 10:00 Shanghai on 2026-10-20.
    await h.send(...['m1', 'm2'].map((c) => transaction(c, '2026-09-10T04:00:00Z', 600)), ...['m1', 'm2'].map((c) => transaction(c, '2026-10-05T04:00:00Z', 300)))
    await h.advanceTo('2026-10-20T02:00:00Z')
    const challenges = decisionsOf(h, 'spend_threshold_challenge')
    expect(challenges.map((d) => [d.customerId, d.attributionWindowDays])).toEqual([
      ['m1', 12], // 11.6 days left in October, begun ones counted
      ['m2', 12],
    ])
    // Month-to-date spend before the challenge counts towards the month: 300 + 150 + 50 = 500.
    const last = transaction('m1', '2026-10-31T15:59:59Z', 50) // 23:59:59 on the 31st in Shanghai
    await h.send(transaction('m1', '2026-10-25T04:00:00Z', 150), transaction('m2', '2026-10-25T04:00:00Z', 150))
    await h.send(last, transaction('m2', '2026-10-31T16:00:00Z', 50)) // m2's is November already
    const final = latestOf(h, 'spend_threshold_challenge')
    expect(final.map((c) => [c.customerId, c.converted, c.convertingEventId ?? null, c.spend, c.final, c.windowEnd])).toEqual([
      ['m1', true, last.eventId, 200, true, '2026-10-31T16:00:00.000Z'],
      ['m2', false, null, 150, true, '2026-10-31T16:00:00.000Z'],
    ])
  })

  it('limit_upgrade_offer converts only on a limit_changed above the limit the offer was made on', async () => {
    const h = harness()
    await h.send(lifecycle('l1', 'approved', iso(T0), { creditLimit: 10_000 }), transaction('l1', iso(T0 + HOUR), 8_000))
    expect(decisionsOf(h, 'limit_upgrade_offer')).toHaveLength(1)
    await h.send(lifecycle('l1', 'limit_changed', iso(T0 + DAY), { creditLimit: 8_000 }))
    await h.send(lifecycle('l1', 'limit_changed', iso(T0 + 2 * DAY), { creditLimit: 9_500 })) // up, but not above 10 000
    expect(rowsOf(h, 'limit_upgrade_offer')).toEqual([])
    const raised = lifecycle('l1', 'limit_changed', iso(T0 + 3 * DAY), { creditLimit: 20_000 })
    await h.send(raised)
    expect(rowsOf(h, 'limit_upgrade_offer')).toMatchObject([{ converted: true, convertingEventId: raised.eventId }])
  })

  it('counts offer clicks and redemptions as engagement, not conversion', async () => {
    const h = harness()
    await h.send(lifecycle('e1', 'activated', iso(T0)), transaction('e1', iso(T0 + HOUR), 6_000))
    expect(decisionsOf(h, 'installment_offer')).toHaveLength(1)
    await h.send(app('e1', 'offer_clicked', iso(T0 + 2 * HOUR)), app('e1', 'offer_redeemed', iso(T0 + 3 * HOUR)))
    await h.advanceTo(T0 + HOUR + 7 * DAY)
    expect(latestOf(h, 'installment_offer')).toMatchObject([{ converted: false, engaged: true, final: true }])

    const g = harness()
    await g.send(lifecycle('e2', 'activated', iso(T0)), transaction('e2', iso(T0 + HOUR), 6_000))
    const applied = app('e2', 'installment_applied', iso(T0 + 2 * DAY))
    await g.send(applied)
    await g.advanceTo(T0 + HOUR + 7 * DAY)
    expect(latestOf(g, 'installment_offer')).toMatchObject([{ converted: true, engaged: false, convertingEventId: applied.eventId }])
  })

  it('cross_border_offer converts on an approved purchase abroad only', async () => {
    const h = harness()
    const abroad = (at: number, country: string, extra = {}) => transaction('x1', iso(at), 80, { merchant: { id: 'm', mcc: '5411', country }, ...extra })
    await h.send(abroad(T0, 'JP'))
    expect(decisionsOf(h, 'cross_border_offer')).toHaveLength(1)
    const us = abroad(T0 + 3 * DAY, 'US')
    await h.send(abroad(T0 + DAY, 'CN'), abroad(T0 + 2 * DAY, 'US', { status: 'declined' }))
    expect(rowsOf(h, 'cross_border_offer')).toEqual([])
    await h.send(us)
    expect(rowsOf(h, 'cross_border_offer')).toMatchObject([{ converted: true, convertingEventId: us.eventId, spend: 160 }])
  })

  it('renewal_reminder converts on `renewed` of the card it was about', async () => {
    const h = harness()
    await h.send(lifecycle('n1', 'expiring', iso(T0)))
    await h.send(lifecycle('n1', 'renewed', iso(T0 + DAY), { cardId: 'tok_other' }))
    expect(rowsOf(h, 'renewal_reminder')).toEqual([])
    await h.send(lifecycle('n1', 'renewed', iso(T0 + 2 * DAY)))
    expect(rowsOf(h, 'renewal_reminder')).toMatchObject([{ converted: true, cardId: 'tok_n1' }])
  })

  it('keeps open windows in the customer record: they survive the codec and a restart on the store', async () => {
    const catalog = defaultCatalogForTests()
    const store = new MemoryStore() // serializes records, as Redis does
    const processor = () =>
      new PartitionProcessor({ partition: 0, store, catalog: () => catalog, watermarks: { maxDisorder: 0 }, allowedLateness: 0, decisionTime: atEventTime, outbox: { webhooks: false, alerts: false, rows: true } })
    let offset = 0
    const batch = (...events: Record<string, unknown>[]): StreamMessage[] =>
      events.map((e) => {
        const event = InputEvent.parse(e)
        return { offset: String(++offset), event, at: Date.parse(event.occurredAt), source: { topic: 't', partition: 0, offset: String(offset) } }
      })

    const before = processor()
    await before.process(batch(lifecycle('s1', 'approved', iso(T0))))
    await before.advanceTo(T0 + 72 * HOUR)
    const rec = (await store.load(0, ['s1'], -Infinity)).customers.get('s1')!
    expect(rec.conversions).toMatchObject([{ trigger: 'activation_reminder', until: T0 + 72 * HOUR + 7 * DAY }])
    expect(decodeRecord(encodeRecord(rec))).toEqual(rec)
    expect((await store.load(0, [], Infinity)).timers).toContainEqual({ member: 's1|~convert:', at: T0 + 72 * HOUR + 7 * DAY })

    // A new owner of the partition picks up where the first left off.
    const after = processor()
    const activated = lifecycle('s1', 'activated', iso(T0 + 90 * HOUR))
    const out = await after.process(batch(activated))
    out.conversions.push(...(await after.advanceTo(T0 + 72 * HOUR + 7 * DAY)).conversions)
    expect(out.conversions.map((c) => [c.convertingEventId, c.final, c.version])).toEqual([
      [activated.eventId, false, 1],
      [activated.eventId, true, 2],
    ])
    const rows = (await store.peekRows(0, 10_000)).map((e) => e.value)
    expect(rows.filter((r) => r.table === 'conversions').map((r) => r.row)).toEqual(out.conversions)
  })

  it('keeps at most MAX_OPEN_WINDOWS per customer, closing the one that ends first', () => {
    const window = (i: number, until: number): OpenWindow => ({
      decisionId: `d${i}`,
      trigger: 't',
      outcome: 'send',
      from: T0 + i,
      until,
      goal: { kind: 'transaction', minAmount: 0, crossBorder: false },
      spend: 0,
      preSpend: 0,
      version: 0,
    })
    let open: OpenWindow[] = []
    const rows: Conversion[] = []
    for (let i = 0; i < MAX_OPEN_WINDOWS; i++) open = admit(open, window(i, T0 + 30 * DAY - i), 'c', rows)
    expect(rows).toEqual([])
    open = admit(open, window(99, T0 + 40 * DAY), 'c', rows)
    expect(open).toHaveLength(MAX_OPEN_WINDOWS)
    // d31 ends first; it is cut at the new decision's time, and that is its window end.
    expect(rows).toMatchObject([{ decisionId: `d${MAX_OPEN_WINDOWS - 1}`, final: true, converted: false, windowEnd: iso(T0 + 99), version: 1 }])
    expect(open.map((w) => w.decisionId)).not.toContain(`d${MAX_OPEN_WINDOWS - 1}`)
  })
})
