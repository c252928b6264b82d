import { describe, expect, it } from 'vitest'
import { PipelineHarness, defaultCatalogForTests, lifecycle, transaction } from './helpers/harness.ts'
import { RISK_OPERATORS } from '../operators/risk/index.ts'
import { OPERATORS } from '../operators/index.ts'
import { createMetrics } from '../core/metrics.ts'
import { Instrumentation } from '../core/instrumentation.ts'
import { createLogger } from '../core/log.ts'

/**
 * Late data: an event behind the watermark but within ALLOWED_LATENESS is applied at once, to the
 * customer's state as it is then, and may still raise alerts and make decisions; only later ones
 * are dead-lettered. MAX_DISORDER is 0 here: the watermark trails the newest event by 1 ms.
 */

const MIN = 60_000
const HOUR = 60 * MIN
// 01:00 in Shanghai: night for night_burst.
const NIGHT = Date.parse('2026-10-01T17:00:00.000Z')
const iso = (ms: number) => new Date(ms).toISOString()
const harness = (allowedLateness: number) => new PipelineHarness(defaultCatalogForTests(), { operators: RISK_OPERATORS, allowedLateness })
const nightTx = (id: string, at: number) => transaction('c', iso(at), 120, { eventId: id })

describe('late data within the allowed lateness', () => {
  it('detects a night burst whose first transaction arrives 15 minutes behind the watermark', async () => {
    const h = harness(6 * HOUR)
    await h.send(nightTx('t2', NIGHT + 10 * MIN))
    await h.send(nightTx('t3', NIGHT + 20 * MIN))
    expect(h.alerts).toEqual([])
    const late = await h.send(nightTx('t1', NIGHT + 5 * MIN))
    expect(late.lateness).toEqual([{ ms: 15 * MIN - 1, applied: true }])
    expect(late).toMatchObject({ applied: 1, late: 0 })
    await h.finish()
    expect(h.deadLetters).toEqual([])
    // As sorted input would have raised it: the burst's events and time.
    expect(h.alerts.map((a) => [a.kind, a.evidence.eventIds])).toEqual([['night_burst', ['t1', 't2', 't3']]])
  })

  it('dead-letters an event beyond the allowance, with the reason, and counts how late it was', async () => {
    const h = harness(10 * MIN)
    await h.send(nightTx('t2', NIGHT + 10 * MIN))
    await h.send(nightTx('t3', NIGHT + 20 * MIN))
    const late = await h.send(nightTx('t1', NIGHT + 5 * MIN))
    expect(late).toMatchObject({ applied: 0, late: 1, lateness: [{ ms: 15 * MIN - 1, applied: false }] })
    expect(h.deadLetters.map((q) => q.error.code)).toEqual(['late_event'])
    expect(h.deadLetters[0].error.message).toMatch(/behind the watermark .* by more than the allowed lateness/)
    expect(h.alerts).toEqual([])
  })

  it('does not apply a repeat within the allowance twice, though the watermark has passed it', async () => {
    const h = harness(6 * HOUR)
    const first = nightTx('t1', NIGHT)
    await h.send(first)
    await h.send(nightTx('t2', NIGHT + 2 * HOUR))
    await h.send(nightTx('t3', NIGHT + 3 * HOUR)) // ids behind the watermark less the allowance are forgotten here
    const again = await h.send(first)
    expect(again).toMatchObject({ applied: 0, duplicates: 1, late: 0 })
  })

  it('makes decisions on a late event, and retracts none already made', async () => {
    const h = new PipelineHarness(defaultCatalogForTests(), { operators: OPERATORS, allowedLateness: 6 * HOUR })
    const t = Date.parse('2026-10-01T02:00:00.000Z')
    await h.send(lifecycle('c', 'activated', iso(t)))
    // The first purchase after activation is rewarded on the purchase itself.
    await h.send(transaction('c', iso(t + 2 * HOUR), 80, { eventId: 'second' }))
    await h.finish()
    expect(h.decisions.map((d) => d.trigger)).toEqual(['first_purchase_reward'])
    // An earlier purchase arrives an hour late: applied (it is now the card's first purchase in
    // the facts), but the reward already decided on the later one stands, and none is added.
    const late = await h.send(transaction('c', iso(t + HOUR), 5000, { eventId: 'first' }))
    expect(late.lateness).toEqual([{ ms: HOUR, applied: true }])
    // A purchase of 5000 makes an installment offer, even an hour late.
    expect(h.decisions.map((d) => d.trigger)).toEqual(['first_purchase_reward', 'installment_offer'])
    expect(h.decisions[1].eventTime).toBe(iso(t + HOUR))
  })
})

describe('counting late events', () => {
  it('observes each late event in the lateness histogram by result, and counts those applied', async () => {
    const metrics = createMetrics()
    const events = new Instrumentation(createLogger('silent'), metrics)
    const h = harness(10 * MIN)
    await h.send(nightTx('t2', NIGHT + 20 * MIN))
    events.emit('pipeline.batch_end', await h.send(nightTx('t1', NIGHT + 15 * MIN)))
    events.emit('pipeline.batch_end', await h.send(nightTx('t0', NIGHT)))
    const text = await metrics.registry.metrics()
    expect(text).toContain('cardpulse_event_lateness_seconds_count{result="applied"} 1')
    expect(text).toContain('cardpulse_event_lateness_seconds_count{result="dead_letter"} 1')
    // 5 minutes late falls in the 300 s bucket, 20 minutes late only in 1800 s and above.
    expect(text).toMatch(/cardpulse_event_lateness_seconds_bucket\{le="300",result="applied"\} 1/)
    expect(text).toMatch(/cardpulse_event_lateness_seconds_bucket\{le="900",result="dead_letter"\} 0/)
    expect(text).toMatch(/cardpulse_event_lateness_seconds_bucket\{le="1800",result="dead_letter"\} 1/)
    expect(text).toContain('cardpulse_events_total{type="all",result="late_applied"} 1')
    expect(text).toContain('cardpulse_events_total{type="all",result="late"} 1')
  })
})
