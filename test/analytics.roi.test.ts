import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ClickHouseClient } from '@clickhouse/client'
import { ClickHouseSink, connectClickHouse } from '../sinks/clickhouse.ts'
import { Economics } from '../schemas/catalog.ts'
import { alertsByKind, alertsOverTime, cardFunnel, deliveryHealth, outcomes, outcomesOverTime, VIEWS } from '../pipeline/analytics/queries.ts'
import { programmeLift, roiByTrigger, roiByTriggerDay, roiTable } from '../pipeline/analytics/roi.ts'
import { FilterError, parseFilter } from '../pipeline/analytics/filter.ts'
import { roiFromRows } from '../pipeline/analytics/roiFromRows.ts'
import type { Conversion } from '../schemas/conversion.ts'
import type { Decision } from '../schemas/decision.ts'

/**
 * The ROI and dashboard queries over a population built directly as rows: treated customers truly
 * convert at 30%, control at 20%, a 10% holdout, 5000 decisions of one trigger.
 */

const DB = 'analytics_roi'
const economics = Economics.parse({})
let client: ClickHouseClient
let sink: ClickHouseSink

function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const iso = (ms: number) => new Date(ms).toISOString()
const ch = (ms: number) => iso(ms).replace('T', ' ').replace('Z', '')
const DAY = 86_400_000
const START = Date.parse('2026-03-01T00:00:00Z')

interface Built {
  decisions: Record<string, unknown>[]
  decisionObjects: Decision[]
  conversions: Conversion[]
  deliveries: Record<string, unknown>[]
  truth: Record<string, { treated: number; control: number; tc: number; cc: number; delivered: number; deliveredSms: number; offerCost: number; tSpend: number; cSpend: number }>
  bySegment: Record<string, number>
  byDay: Record<string, number>
}

function build(): Built {
  const rand = rng(42)
  const out: Built = { decisions: [], decisionObjects: [], conversions: [], deliveries: [], truth: {}, bySegment: {}, byDay: {} }
  const add = (trigger: string, i: number, opts: { control: boolean; pRate: number; window: boolean; holdout?: string }) => {
    const id = `${trigger}-${i}`
    const t = (out.truth[trigger] ??= { treated: 0, control: 0, tc: 0, cc: 0, delivered: 0, deliveredSms: 0, offerCost: 0, tSpend: 0, cSpend: 0 })
    const time = START + (Math.floor(i / 500) % 10) * DAY + (i % 24) * 3_600_000
    const channel = i % 2 ? 'sms' : 'push'
    const segment = i % 3 === 0 ? 'affluent' : 'mass'
    const outcome = opts.control ? 'control' : 'send'
    const converted = opts.window && rand() < opts.pRate
    const pre = Math.round(rand() * 50_000) / 100
    // Spend follows the customer's earlier spend; treated converters spend 40 more on average.
    const spend = opts.window ? Math.round((0.5 * pre + (converted ? 60 + (opts.control ? 0 : 40) : 0) + rand() * 20) * 100) / 100 : 0
    out.decisions.push({
      id, trigger, customer_id: `c${i}`, card_id: `k${i}`, segment, outcome, suppressed_by: '', holdout: opts.holdout ?? (opts.control ? 'trigger' : ''), channel,
      event_time: ch(time), decided_at: ch(time), send_at: opts.control ? null : ch(time), expires_at: ch(time + 2 * DAY), offer_code: 'X', offer_value: 30, offer_currency: 'CNY', reason: '{}', catalog_version: 'v1', attribution_window_days: 14,
    })
    out.decisionObjects.push({ id, trigger, customerId: `c${i}`, cardId: `k${i}`, outcome, channel, eventTime: iso(time), decidedAt: iso(time), ...(opts.control ? {} : { sendAt: iso(time) }), expiresAt: iso(time + 2 * DAY), offer: { code: 'X', value: 30, currency: 'CNY' }, reason: {}, catalogVersion: 'v1', attributionWindowDays: 14 } as Decision)
    if (opts.window)
      out.conversions.push({
        decisionId: id, trigger, customerId: `c${i}`, cardId: `k${i}`, outcome, decisionTime: iso(time), windowEnd: iso(time + 14 * DAY), converted,
        ...(converted ? { convertedAt: iso(time + DAY), convertingEventId: `e${i}` } : {}), engaged: converted, spend, preSpend: pre, final: true, version: 2,
      })
    if (opts.control) {
      t.control++
      t.cc += converted ? 1 : 0
      t.cSpend += spend
    } else {
      t.treated++
      t.tc += converted ? 1 : 0
      t.tSpend += spend
      t.offerCost += converted ? 30 : 0
      const ok = i % 20 !== 7
      if (ok) {
        t.delivered++
        if (channel === 'sms') t.deliveredSms++
      }
      out.deliveries.push({ decision_id: id, trigger, customer_id: `c${i}`, channel, status: ok ? 'delivered' : 'failed', attempts: ok ? 1 + (i % 3) : 5, http_status: ok ? 200 : 500, latency_ms: ok ? 10 + (i % 100) : 30_000, error: ok ? null : 'HTTP 500', delivered_at: ok ? ch(time + 1000) : null, event_time: ch(time), decided_at: ch(time), finished_at: ch(time + 1000) })
    }
    if (trigger === 'first_swipe_incentive') {
      out.bySegment[segment] = (out.bySegment[segment] ?? 0) + 1
      out.byDay[iso(time).slice(0, 10)] = (out.byDay[iso(time).slice(0, 10)] ?? 0) + 1
    }
  }
  for (let i = 0; i < 5000; i++) add('first_swipe_incentive', i, { control: i % 10 === 0, pRate: i % 10 === 0 ? 0.2 : 0.3, window: true })
  // A young trigger: few decisions, and the last ones' windows still open (no conversions row).
  for (let i = 0; i < 60; i++) add('renewal_reminder', i, { control: i % 10 === 0, pRate: 0.5, window: i < 50 })
  return out
}

const built = build()

beforeAll(async () => {
  client = await connectClickHouse({ database: DB, embeddedPath: ':memory:' })
  sink = new ClickHouseSink(client, DB)
  await sink.ensureSchema()
  await client.insert({ table: `${DB}.decisions`, values: built.decisions, format: 'JSONEachRow' })
  await client.insert({ table: `${DB}.deliveries`, values: built.deliveries, format: 'JSONEachRow' })
  await sink.insert(built.conversions.map((row) => ({ table: 'conversions', row: row as unknown as Record<string, unknown> })))
  // A suppressed decision, alerts and card milestones for the other views.
  await client.insert({
    table: `${DB}.decisions`,
    format: 'JSONEachRow',
    values: [{ id: 's1', trigger: 'first_swipe_incentive', customer_id: 'c1', card_id: 'k1', segment: 'mass', outcome: 'suppressed', suppressed_by: 'weekly_cap', holdout: '', channel: '', event_time: ch(START), decided_at: ch(START), send_at: null, expires_at: ch(START + DAY), offer_code: '', offer_value: 0, offer_currency: '', reason: '{}', catalog_version: 'v1', attribution_window_days: 14 }],
  })
  await client.insert({
    table: `${DB}.alerts`,
    format: 'JSONEachRow',
    values: [
      { id: 'a1', kind: 'velocity', severity: 'medium', score: 0.5, customer_id: 'c0', card_id: 'k0', event_time: ch(START), detected_at: ch(START), evidence: '{}', rule_version: 'r1' },
      { id: 'a2', kind: 'velocity', severity: 'medium', score: 0.7, customer_id: 'c1', card_id: 'k1', event_time: ch(START + DAY), detected_at: ch(START + DAY), evidence: '{}', rule_version: 'r1' },
      { id: 'a3', kind: 'impossible_travel', severity: 'high', score: 0.9, customer_id: 'c3', card_id: 'k3', event_time: ch(START), detected_at: ch(START), evidence: '{}', rule_version: 'r1' },
    ],
  })
  const card = (c: string, stage: string, hours: number, segment = 'mass') => ({ table: 'card_events', row: { customerId: c, cardId: `${c}-card`, stage, eventTime: iso(START + hours * 3_600_000), eventId: `${c}-${stage}`, segment } })
  await sink.insert([
    ...['applied', 'approved', 'activated', 'bound', 'first_purchase'].map((s, i) => card('f1', s, i * 10)),
    ...['applied', 'approved', 'activated'].map((s, i) => card('f2', s, i * 20)),
    ...['applied', 'approved'].map((s, i) => card('f3', s, i * 30, 'affluent')),
    card('f4', 'applied', 0),
    card('f4', 'declined', 5),
    { ...card('f1', 'activated', 100), row: { ...card('f1', 'activated', 100).row, eventId: 'f1-activated-again' } }, // a repeated activation does not move the first one
  ])
})
afterAll(async () => {
  await client?.close()
})

describe('ROI per trigger', () => {
  it('counts the population exactly, and finds the true lift of 0.10 inside its interval', async () => {
    const rows = await roiByTrigger(sink, {}, economics)
    expect(rows.map((r) => r.trigger)).toEqual(['first_swipe_incentive', 'renewal_reminder'])
    const r = rows[0]
    const t = built.truth.first_swipe_incentive
    expect([r.treated, r.control, r.treatedConversions, r.controlConversions, r.delivered, r.pending]).toEqual([4500, 500, t.tc, t.cc, t.delivered, 0])
    expect(r.treatedRate).toBeCloseTo(t.tc / 4500, 6)
    expect(r.controlRate).toBeCloseTo(t.cc / 500, 6)
    expect(r.lift).toBeCloseTo(t.tc / 4500 - t.cc / 500, 6)
    expect(Math.abs(r.lift! - 0.1)).toBeLessThan(0.04)
    expect(r.liftCi95![0]).toBeLessThan(0.1)
    expect(r.liftCi95![1]).toBeGreaterThan(0.1)
    expect(r.liftCi95![0]).toBeGreaterThan(0)
    expect(r.verdict).toBe('lift credible')
    expect(r.incrementalConversions).toBeCloseTo(r.lift! * 4500, 1)

    const incrementalSpend = (t.tSpend / 4500 - t.cSpend / 500) * 4500
    expect(r.incrementalSpend).toBeCloseTo(incrementalSpend, 1)
    expect(r.incrementalSpendCi95![0]).toBeLessThan(r.incrementalSpend!)
    expect(r.incrementalSpendCi95![1]).toBeGreaterThan(r.incrementalSpend!)
    // Pre-period spend explains most of the spend, so CUPED narrows the interval.
    const width = (i: [number, number]) => i[1] - i[0]
    expect(width(r.cupedIncrementalSpendCi95!)).toBeLessThan(width(r.incrementalSpendCi95!) / 2)
    expect(r.cupedTheta).toBeGreaterThan(0.3)

    const channelCost = t.deliveredSms * 0.05
    expect(r.channelCost).toBeCloseTo(channelCost, 2)
    expect(r.offerCost).toBe(t.offerCost)
    expect(r.cost).toBeCloseTo(channelCost + t.offerCost, 2)
    expect(r.incrementalMargin).toBeCloseTo(incrementalSpend * 0.006, 1)
    expect(r.roi).toBeCloseTo((incrementalSpend * 0.006 - (channelCost + t.offerCost)) / (channelCost + t.offerCost), 4)
    expect(r.currency).toBe('CNY')
  })

  it('says "not yet" for a trigger with too few decisions, and counts open windows as pending', async () => {
    const [r] = await roiByTrigger(sink, { trigger: 'renewal_reminder' }, economics)
    expect([r.treated, r.control, r.pending]).toEqual([54, 6, 10])
    expect(r.verdict).toBe('not yet')
    expect(r.verdictText).toMatch(/too few decisions \(6 control\)/)
  })

  it('gives the same figures from the SQL-only query the Grafana panel runs', async () => {
    const [ts] = await roiByTrigger(sink, { trigger: 'first_swipe_incentive' }, economics)
    const [sql] = await roiTable(sink, { trigger: 'first_swipe_incentive' }, economics)
    expect(Number(sql.treated)).toBe(ts.treated)
    expect(Number(sql.lift)).toBeCloseTo(ts.lift!, 6)
    expect(Number(sql.lift_low)).toBeCloseTo(ts.liftCi95![0], 6)
    expect(Number(sql.lift_high)).toBeCloseTo(ts.liftCi95![1], 6)
    expect(Number(sql.incremental_spend)).toBeCloseTo(ts.incrementalSpend!, 1)
    expect(Number(sql.cost)).toBeCloseTo(ts.cost, 2)
    expect(Number(sql.roi)).toBeCloseTo(ts.roi!, 5)
    expect(sql.verdict).toBe(ts.verdict)
  })

  it('applies the date, trigger and segment filters; days add up to the whole', async () => {
    const days = await roiByTriggerDay(sink, { trigger: 'first_swipe_incentive' }, economics)
    expect(Object.fromEntries(days.map((d) => [d.day, d.treated + d.control]))).toEqual(built.byDay)
    expect(days.reduce((n, d) => n + d.treatedConversions, 0)).toBe(built.truth.first_swipe_incentive.tc)
    const [affluent] = await roiByTrigger(sink, { trigger: 'first_swipe_incentive', segment: 'affluent' }, economics)
    expect(affluent.treated + affluent.control).toBe(built.bySegment.affluent)
    const range = await roiByTrigger(sink, { from: '2026-03-02', to: '2026-03-04T00:00:00Z', trigger: 'first_swipe_incentive' }, economics)
    expect(range[0].treated + range[0].control).toBe(built.byDay['2026-03-02'] + built.byDay['2026-03-03'])
    expect(range[0].control).toBe(100)
    expect(await roiByTrigger(sink, { from: '2027-01-01' }, economics)).toEqual([])
  })

  it('refuses a bad filter with a message naming the field, never a SQL error', async () => {
    await expect(roiByTrigger(sink, { from: 'yesterday' }, economics)).rejects.toThrow(/^bad filter: from must be a date like 2026-11-01/)
    await expect(roiByTrigger(sink, { trigger: "x' OR 1=1 --" }, economics)).rejects.toThrow(FilterError)
    await expect(roiByTrigger(sink, { from: '2026-03-05', to: '2026-03-01' }, economics)).rejects.toThrow('bad filter: from must be before to')
    await expect(outcomes(sink, { tigger: 'x' })).rejects.toThrow('bad filter: unknown filter "tigger" (use from, to, trigger, segment)')
    expect(() => parseFilter({ from: '2026-02-30' })).toThrow('bad filter: from is not a real date')
    expect(parseFilter({ from: '2026-03-01T23:30:00+08:00' })).toEqual({ from: '2026-03-01T23:30:00+08:00' })
    // A segment is free text, and reaches ClickHouse only as a parameter.
    expect(await roiByTrigger(sink, { segment: "x' OR '1'='1" }, economics)).toEqual([])
    expect(parseFilter(new URLSearchParams('from=2026-03-01&trigger=&segment=mass'))).toEqual({ from: '2026-03-01', segment: 'mass' })
  })

  it('loads rows into embedded ClickHouse and computes the same ROI (the replay path)', async () => {
    const fsi = (r: { trigger: string }) => r.trigger === 'first_swipe_incentive'
    const deliveriesAsRows = built.deliveries.map((d) => ({ decisionId: d.decision_id, trigger: d.trigger, customerId: d.customer_id, channel: d.channel, status: d.status, attempts: d.attempts, latencyMs: d.latency_ms, eventTime: iso(Date.parse(`${String(d.event_time).replace(' ', 'T')}Z`)), decidedAt: iso(START), finishedAt: iso(START) }))
    const [live] = (await roiByTrigger(sink, { trigger: 'first_swipe_incentive' }, economics))
    const [fromRows] = (await roiFromRows({ decisions: built.decisionObjects, conversions: built.conversions, deliveries: deliveriesAsRows as never, catalog: { economics }, clickhouse: sink })).filter(fsi)
    expect(fromRows).toEqual(live)
    // Without deliveries (a replay), every send decision counts as delivered.
    const [replayed] = (await roiFromRows({ decisions: built.decisionObjects, conversions: built.conversions, catalog: { economics }, clickhouse: sink })).filter(fsi)
    expect(replayed.delivered).toBe(4500)
    expect(replayed.channelCost).toBeCloseTo(built.decisionObjects.filter((d) => d.trigger === 'first_swipe_incentive' && d.outcome === 'send' && d.channel === 'sms').length * 0.05, 2)
    expect(replayed.lift).toBe(live.lift)
    // The scratch databases are gone.
    expect(await sink.query(`SELECT name FROM system.databases WHERE name LIKE 'cardpulse_roi_%'`)).toEqual([])
  })
})

describe('the other dashboard views', () => {
  it('the card funnel: stage counts, step rates and median hours', async () => {
    const f = await cardFunnel(sink, {})
    expect(f.cohortCards).toBe(4)
    expect(f.steps.map((s) => [s.stage, s.cards, s.rateFromPrevious])).toEqual([
      ['applied', 4, null],
      ['approved', 3, 0.75],
      ['activated', 2, 0.666667],
      ['bound', 1, 0.5],
      ['first_purchase', 1, 1],
    ])
    expect(f.steps.map((s) => s.medianHoursFromPrevious)).toEqual([null, 20, 15, 10, 10])
    const affluent = await cardFunnel(sink, { segment: 'affluent' })
    expect(affluent.steps.map((s) => s.cards)).toEqual([1, 1, 0, 0, 0])
    expect(affluent.steps[2].medianHoursFromPrevious).toBeNull()
  })

  it('outcomes by suppression reason and over time', async () => {
    const rows = await outcomes(sink, { trigger: 'first_swipe_incentive' })
    expect(rows).toEqual([
      { trigger: 'first_swipe_incentive', outcome: 'control', suppressedBy: '', decisions: 500 },
      { trigger: 'first_swipe_incentive', outcome: 'send', suppressedBy: '', decisions: 4500 },
      { trigger: 'first_swipe_incentive', outcome: 'suppressed', suppressedBy: 'weekly_cap', decisions: 1 },
    ])
    const daily = await outcomesOverTime(sink, { trigger: 'first_swipe_incentive', to: '2026-03-02' })
    expect(daily).toEqual([
      { time: '2026-03-01 00:00:00', series: 'control', decisions: 50 },
      { time: '2026-03-01 00:00:00', series: 'send', decisions: 450 },
      { time: '2026-03-01 00:00:00', series: 'suppressed: weekly_cap', decisions: 1 },
    ])
  })

  it('alerts by kind and severity', async () => {
    expect(await alertsByKind(sink, {})).toEqual([
      { kind: 'impossible_travel', severity: 'high', alerts: 1, customers: 1, meanScore: 0.9 },
      { kind: 'velocity', severity: 'medium', alerts: 2, customers: 2, meanScore: 0.6 },
    ])
    expect(await alertsByKind(sink, { segment: 'affluent' })).toEqual([
      { kind: 'impossible_travel', severity: 'high', alerts: 1, customers: 1, meanScore: 0.9 },
      { kind: 'velocity', severity: 'medium', alerts: 1, customers: 1, meanScore: 0.5 },
    ])
    expect((await alertsOverTime(sink, {})).map((r) => r.alerts)).toEqual([1, 1, 1])
  })

  it('delivery health: success rate, attempts, latency percentiles', async () => {
    const rows = await deliveryHealth(sink, { trigger: 'first_swipe_incentive' })
    expect(rows.map((r) => r.channel)).toEqual(['push', 'sms'])
    const all = built.deliveries.filter((d) => d.trigger === 'first_swipe_incentive')
    for (const r of rows) {
      const mine = all.filter((d) => d.channel === r.channel)
      const ok = mine.filter((d) => d.status === 'delivered')
      expect([r.deliveries, r.delivered, r.failed, r.expired]).toEqual([mine.length, ok.length, mine.length - ok.length, 0])
      expect(r.successRate).toBeCloseTo(ok.length / mine.length, 6)
      expect(r.maxAttempts).toBe(r.channel === 'sms' ? 5 : 3) // the failed ones (5 attempts) are all sms
      expect(r.p50Ms).toBeGreaterThanOrEqual(10)
      expect(r.p99Ms).toBeLessThanOrEqual(109)
      expect(r.p50Ms!).toBeLessThanOrEqual(r.p95Ms!)
    }
  })

  it('the programme lift against the global control group', async () => {
    const none = await programmeLift(sink, {}, economics)
    expect(none.globalControl.decisions).toBe(0)
    expect(none.lift).toBeNull()
    await client.command({ query: `ALTER TABLE ${DB}.decisions UPDATE holdout = 'global' WHERE trigger = 'first_swipe_incentive' AND outcome = 'control' AND toUInt32(substring(id, 23)) % 20 = 0 SETTINGS mutations_sync = 1` })
    const p = await programmeLift(sink, { trigger: 'first_swipe_incentive' }, economics)
    expect(p.globalControl.decisions).toBe(250)
    expect(p.programme.decisions).toBe(4750)
    expect(p.lift).toBeGreaterThan(0.05)
    expect(p.liftCi95![0]).toBeLessThan(p.lift!)
    await client.command({ query: `ALTER TABLE ${DB}.decisions UPDATE holdout = 'trigger' WHERE holdout = 'global' SETTINGS mutations_sync = 1` })
  })

  it('every view answers by name with one signature', async () => {
    for (const [name, view] of Object.entries(VIEWS)) expect(await view(sink, { from: '2026-03-01' }, economics), name).toBeDefined()
  })
})
