import { afterEach, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { PipelineHarness, app, defaultCatalogForTests, lifecycle, transaction } from './helpers/harness.ts'
import { RISK_OPERATORS } from '../operators/risk/index.ts'
import { velocity } from '../operators/risk/velocity.ts'
import { cardTesting } from '../operators/risk/cardTesting.ts'
import { impossibleTravel, haversineKm } from '../operators/risk/impossibleTravel.ts'
import { amountAnomaly } from '../operators/risk/amountAnomaly.ts'
import { newDeviceLargeAmount } from '../operators/risk/newDeviceLargeAmount.ts'
import { OperatorHarness } from './helpers/operatorHarness.ts'
import type { Operator } from '../operators/types.ts'
import type { Catalog } from '../schemas/catalog.ts'

const SEC = 1_000
const MIN = 60_000
const HOUR = 3_600_000
const DAY = 86_400_000
/** 10:00 in Shanghai: daytime, so only the rules under test see anything. */
const T0 = Date.parse('2026-10-01T02:00:00.000Z')
const iso = (ms: number) => new Date(ms).toISOString()
const atMin = (m: number) => iso(T0 + m * MIN)

const SHANGHAI = { lat: 31.2304, lon: 121.4737 }
const BEIJING = { lat: 39.9042, lon: 116.4074 }

const created: PipelineHarness[] = []
/** Settled after each send unless events may arrive out of order (see PipelineHarness). */
function harness(catalog: Catalog = defaultCatalogForTests(), opts: { maxDisorder?: number; settle?: boolean; operators?: readonly Operator<any, any>[] } = {}) {
  const h = new PipelineHarness(catalog, { operators: RISK_OPERATORS, settle: !opts.maxDisorder, ...opts })
  created.push(h)
  return h
}
/** The alerts of a fresh pipeline fed these events as one batch. */
async function alertsOf(...events: Record<string, unknown>[]) {
  const h = harness()
  await h.send(...events)
  return h.alerts
}

// Every event a test sends must be applied: a late one would make a "does not fire" vacuous.
afterEach(() => {
  for (const h of created.splice(0)) expect(h.deadLetters).toEqual([])
})

const idsOf = (events: { eventId: string }[]) => events.map((e) => e.eventId)
const kinds = (h: PipelineHarness) => h.alerts.map((a) => a.kind)
const RISK_NAMES = new Set(RISK_OPERATORS.map((o) => o.name))

const tx = transaction
/** A transaction at a merchant with the given fields (coordinates, id, mcc) on top of the default one. */
const at = (customer: string, merchant: Record<string, unknown>, time: string, amount = 100, extra: Record<string, unknown> = {}) =>
  transaction(customer, time, amount, { merchant: { id: 'm1', mcc: '5411', country: 'CN', ...merchant }, ...extra })

/** Emits a marketing moment on every approved transaction, to see what the risk hold does to it. */
const probe: Operator<Record<string, never>, unknown> = {
  name: 'test.probe',
  uses: 'first_purchase_reward',
  initial: () => ({}),
  parseParams: (raw) => raw,
  onEvent: (state, event, time) =>
    event.type === 'transaction' && event.status === 'approved'
      ? { state, effects: [{ kind: 'moment', trigger: 'first_purchase_reward', occurrence: event.eventId, eventTime: time, cardId: event.cardId, reason: {} }] }
      : { state },
}

/**
 * Runs events through one operator in the order given (the harness freezes every state, so a
 * mutation would throw); params raw, or the catalogue's when absent.
 */
function run<S, P>(op: Operator<S, P>, params: Record<string, unknown> | undefined, events: Record<string, unknown>[]) {
  const h = new OperatorHarness(op, { params, catalog: defaultCatalogForTests() })
  h.events(...events)
  return h
}

describe('params', () => {
  it('default to exactly the shipped catalogue’s values, and reject unknown or bad ones', () => {
    const catalog = defaultCatalogForTests()
    expect(RISK_OPERATORS.map((o) => o.uses).sort()).toEqual(Object.keys(catalog.signals).sort())
    for (const op of RISK_OPERATORS) {
      expect(op.name).toBe(op.uses)
      expect(op.formerNames).toEqual([`risk.${op.uses}`])
      expect(op.parseParams(catalog.signals[op.uses].params)).toEqual(op.parseParams({}))
      expect(() => op.parseParams({ nonsense: 1 })).toThrow()
    }
    expect(velocity.parseParams({})).toEqual({ count: 10, window: 10 * MIN })
    expect(() => velocity.parseParams({ window: '0m' })).toThrow()
    expect(() => velocity.parseParams({ count: 0 })).toThrow()
    expect(() => cardTesting.parseParams({ window: 'soon' })).toThrow()
  })
})

describe('velocity', () => {
  it('fires on the 10th transaction exactly 10 min after the first (inclusive), any status', async () => {
    const h = harness()
    const events = Array.from({ length: 10 }, (_, i) => tx('v', atMin(i === 9 ? 10 : i), 50, { status: i % 2 ? 'declined' : 'approved' }))
    await h.send(...events)
    expect(h.alerts).toHaveLength(1)
    expect(h.alerts[0]).toMatchObject({ kind: 'velocity', severity: 'medium', customerId: 'v', cardId: 'tok_v', eventTime: atMin(10), score: 0.5 })
    expect(h.alerts[0].evidence).toMatchObject({ eventIds: idsOf(events), count: 10, windowMs: 10 * MIN, spanMs: 10 * MIN })
  })

  it('does not fire when the 10th is 1 ms past the window, or with only 9', async () => {
    const h = harness()
    await h.send(...Array.from({ length: 10 }, (_, i) => tx('v1', iso(T0 + (i === 9 ? 10 * MIN + 1 : i * MIN)), 50)))
    await h.send(...Array.from({ length: 9 }, (_, i) => tx('v2', atMin(20 + i / 10), 50)))
    expect(h.alerts).toEqual([])
  })

  it('alerts once per burst: 19 quick transactions give one alert, the 20th a second with fresh evidence', async () => {
    const h = harness()
    const events = Array.from({ length: 20 }, (_, i) => tx('v', iso(T0 + i * 10 * SEC), 20))
    await h.send(...events.slice(0, 19))
    expect(h.alerts).toHaveLength(1)
    await h.send(events[19])
    expect(h.alerts).toHaveLength(2)
    expect(h.alerts[0].evidence.eventIds).toEqual(idsOf(events.slice(0, 10)))
    expect(h.alerts[1].evidence.eventIds).toEqual(idsOf(events.slice(10, 20)))
    expect(h.alerts[1].score).toBeGreaterThan(0.5)
  })
})

describe('card_testing', () => {
  it('fires on 3 transactions ≤ 10 within 10 min whatever their status, with the amounts as evidence', async () => {
    const h = harness()
    const events = [tx('ct', atMin(0), 1, { status: 'declined' }), tx('ct', atMin(4), 10, { status: 'declined' }), tx('ct', atMin(10), 0.5)]
    await h.send(...events)
    expect(h.alerts).toHaveLength(1)
    expect(h.alerts[0]).toMatchObject({ kind: 'card_testing', severity: 'high', eventTime: atMin(10), cardId: 'tok_ct' })
    expect(h.alerts[0].evidence).toEqual({ eventIds: idsOf(events), count: 3, windowMs: 10 * MIN, spanMs: 10 * MIN, amounts: [1, 10, 0.5], maxAmount: 10 })
  })

  it('does not fire just past either bound: an amount of 10.01, or the third 1 s after 10 min', async () => {
    expect(await alertsOf(tx('a', atMin(0), 1), tx('a', atMin(1), 10.01), tx('a', atMin(2), 1))).toEqual([])
    expect(await alertsOf(tx('b', atMin(0), 1), tx('b', atMin(1), 1), tx('b', iso(T0 + 10 * MIN + SEC), 1))).toEqual([])
  })

  it('holds marketing from the alerting event on: the probe moment of that very event is suppressed', async () => {
    const h = harness(defaultCatalogForTests(), { operators: [...RISK_OPERATORS, probe] })
    const events = [tx('ct', atMin(0), 1), tx('ct', atMin(1), 2), tx('ct', atMin(2), 3), tx('ct', atMin(30), 200)]
    await h.send(...events)
    expect(kinds(h)).toEqual(['card_testing'])
    expect(h.decisions.map((d) => [d.trigger, d.outcome, d.suppressedBy])).toEqual([
      ['first_purchase_reward', 'send', undefined],
      ['first_purchase_reward', 'send', undefined],
      ['first_purchase_reward', 'suppressed', 'risk_hold'],
      ['first_purchase_reward', 'suppressed', 'risk_hold'],
    ])
    const policy = (await h.store.load(0, ['ct'], 0)).customers.get('ct')!.policy
    expect(policy).toMatchObject({ riskHoldFrom: T0 + 2 * MIN, riskHoldUntil: T0 + 2 * MIN + 72 * HOUR })
  })
})

describe('night_burst', () => {
  // Local midnight in Shanghai (UTC+8) on 2026-10-02.
  const MIDNIGHT_SH = Date.parse('2026-10-01T16:00:00.000Z')
  const sh = (hhmm: string, sec = 0) => {
    const [hh, mm] = hhmm.split(':').map(Number)
    return iso(MIDNIGHT_SH + (hh * 60 + mm) * MIN + sec * SEC)
  }

  it('fires on 3 approved transactions in the small hours within 60 min, with local times as evidence', async () => {
    const h = harness()
    const events = [tx('n', sh('00:10'), 80), tx('n', sh('00:30'), 90), tx('n', sh('00:50'), 70)]
    await h.send(...events)
    expect(h.alerts).toHaveLength(1)
    expect(h.alerts[0]).toMatchObject({ kind: 'night_burst', severity: 'medium', eventTime: sh('00:50') })
    expect(h.alerts[0].evidence).toMatchObject({ eventIds: idsOf(events), timezone: 'Asia/Shanghai', localTimes: ['00:10:00', '00:30:00', '00:50:00'], from: '00:00', to: '05:00' })
  })

  it('counts 04:59:59 Shanghai as night and 05:00 as day', async () => {
    expect(await alertsOf(tx('a', sh('04:20'), 50), tx('a', sh('04:40'), 50), tx('a', sh('04:59', 59), 50))).toHaveLength(1)
    expect(await alertsOf(tx('b', sh('04:20'), 50), tx('b', sh('04:40'), 50), tx('b', sh('05:00'), 50))).toEqual([])
  })

  it('starts the night at 00:00, not 23:59, and counts the window inclusively', async () => {
    const h = harness()
    await h.send(tx('a', iso(MIDNIGHT_SH - MIN), 50), tx('a', sh('00:10'), 50), tx('a', sh('00:20'), 50))
    await h.send(tx('b', sh('01:00'), 50), tx('b', sh('01:30'), 50), tx('b', sh('02:00'), 50))
    await h.send(tx('c', sh('03:00'), 50), tx('c', sh('03:30'), 50), tx('c', sh('04:00', 1), 50))
    expect(h.alerts.map((a) => a.customerId)).toEqual(['b'])
  })

  it('counts approved transactions only', async () => {
    const h = harness()
    await h.send(tx('a', sh('01:00'), 50), tx('a', sh('01:10'), 50, { status: 'declined' }), tx('a', sh('01:20'), 50, { status: 'reversed' }))
    expect(h.alerts).toEqual([])
  })

  it('uses the customer’s own time zone from the lifecycle profile', async () => {
    const h = harness()
    // 00:10–00:50 in New York (UTC−4 in October) is 12:10–12:50 in Shanghai.
    const ny = (m: number) => iso(Date.parse('2026-10-02T04:00:00.000Z') + m * MIN)
    await h.send(lifecycle('ny', 'activated', iso(T0), { profile: { timezone: 'America/New_York' } }))
    await h.send(tx('ny', ny(10), 50), tx('ny', ny(30), 50), tx('ny', ny(50), 50))
    expect(h.alerts.map((a) => [a.customerId, a.evidence.timezone, a.evidence.localTimes])).toEqual([['ny', 'America/New_York', ['00:10:00', '00:30:00', '00:50:00']]])
    expect(await alertsOf(tx('sh', ny(10), 50), tx('sh', ny(30), 50), tx('sh', ny(50), 50))).toEqual([])
  })
})

describe('cashout_pattern', () => {
  it('fires on 3 approved round amounts at one merchant, the third exactly 24 h after the first', async () => {
    const h = harness()
    const events = [at('co', { id: 'atm7' }, atMin(0), 1000), at('co', { id: 'atm7' }, atMin(600), 5000), at('co', { id: 'atm7' }, iso(T0 + 24 * HOUR), 2000)]
    await h.send(...events)
    expect(h.alerts).toHaveLength(1)
    expect(h.alerts[0]).toMatchObject({ kind: 'cashout_pattern', severity: 'high', eventTime: iso(T0 + 24 * HOUR) })
    expect(h.alerts[0].evidence).toMatchObject({ eventIds: idsOf(events), merchantId: 'atm7', amounts: [1000, 5000, 2000], roundTo: 1000, minAmount: 1000 })
  })

  it('does not fire across two merchants, 1 s past 24 h, for non-round amounts or for declined ones', async () => {
    expect(await alertsOf(at('a', { id: 'm1' }, atMin(0), 1000), at('a', { id: 'm2' }, atMin(1), 1000), at('a', { id: 'm1' }, atMin(2), 1000))).toEqual([])
    expect(await alertsOf(at('b', { id: 'm1' }, atMin(0), 1000), at('b', { id: 'm1' }, atMin(1), 1000), at('b', { id: 'm1' }, iso(T0 + 24 * HOUR + SEC), 1000))).toEqual([])
    expect(await alertsOf(at('c', { id: 'm1' }, atMin(0), 1000), at('c', { id: 'm1' }, atMin(1), 3000.01), at('c', { id: 'm1' }, atMin(2), 1500))).toEqual([])
    expect(await alertsOf(at('d', { id: 'm1' }, atMin(0), 1000), at('d', { id: 'm1' }, atMin(1), 1000, { status: 'declined' }), at('d', { id: 'm1' }, atMin(2), 1000))).toEqual([])
  })

  it('honours roundTo and minAmount from the catalogue', async () => {
    const h = harness(defaultCatalogForTests((c) => (c.signals.cashout_pattern.params = { count: 3, roundTo: 500, minAmount: 500, window: '24h' })))
    await h.send(at('a', {}, atMin(0), 500), at('a', {}, atMin(1), 1500), at('a', {}, atMin(2), 500))
    expect(kinds(h)).toEqual(['cashout_pattern'])
  })
})

describe('new_device_large_amount', () => {
  it('fires on an approved 5000 exactly 1 h after device_registered, critical, and holds marketing', async () => {
    const h = harness()
    const reg = app('nd', 'device_registered', atMin(0), { deviceId: 'dev-9' })
    const big = tx('nd', atMin(60), 5000)
    await h.send(reg, big)
    expect(h.alerts).toHaveLength(1)
    expect(h.alerts[0]).toMatchObject({ kind: 'new_device_large_amount', severity: 'critical', eventTime: atMin(60), cardId: 'tok_nd' })
    expect(h.alerts[0].evidence).toMatchObject({ eventIds: [reg.eventId, big.eventId], amount: 5000, minAmount: 5000, deviceId: 'dev-9', minutesAfterRegistration: 60 })
    const policy = (await h.store.load(0, ['nd'], 0)).customers.get('nd')!.policy
    expect(policy.riskHoldUntil).toBe(T0 + 60 * MIN + 72 * HOUR)
  })

  it('does not fire 1 s past the hour, for 4999.99, for a declined one, or before the registration', async () => {
    expect(await alertsOf(app('a', 'device_registered', atMin(0)), tx('a', iso(T0 + HOUR + SEC), 9000))).toEqual([])
    expect(await alertsOf(app('b', 'device_registered', atMin(0)), tx('b', atMin(5), 4999.99))).toEqual([])
    expect(await alertsOf(app('c', 'device_registered', atMin(0)), tx('c', atMin(5), 8000, { status: 'declined' }))).toEqual([])
    expect(await alertsOf(tx('d', atMin(0), 8000), app('d', 'device_registered', atMin(1)))).toEqual([])
  })

  it('alerts once per registration, however many large purchases follow', async () => {
    const h = harness()
    // Not round amounts, so that cashout_pattern stays out of it.
    await h.send(app('a', 'device_registered', atMin(0)), tx('a', atMin(5), 6000.5), tx('a', atMin(10), 7000.5), tx('a', atMin(20), 8000.5))
    expect(h.alerts).toHaveLength(1)
    await h.send(app('a', 'device_registered', atMin(30)), tx('a', atMin(40), 9000.5))
    expect(kinds(h)).toEqual(['new_device_large_amount', 'new_device_large_amount'])
    expect(h.alerts[1].evidence.amount).toBe(9000.5)
  })

  it('pairs a registration that arrives after the transaction it preceded, as sorted input would', async () => {
    const reg = app('late', 'device_registered', atMin(0))
    const big = tx('late', atMin(2), 6000)
    const sorted = harness()
    await sorted.send(reg, big)
    const swapped = harness(defaultCatalogForTests(), { maxDisorder: 5 * MIN })
    await swapped.send(big, reg)
    await swapped.finish()
    expect(sorted.alerts).toHaveLength(1)
    expect(swapped.alerts).toEqual(sorted.alerts)
  })
})

describe('impossible_travel', () => {
  it('fires on Shanghai → Beijing in 30 min, card present', async () => {
    const h = harness()
    const a = at('it', SHANGHAI, atMin(0))
    const b = at('it', BEIJING, atMin(30))
    await h.send(a, b)
    expect(h.alerts).toHaveLength(1)
    expect(h.alerts[0]).toMatchObject({ kind: 'impossible_travel', severity: 'high', eventTime: atMin(30) })
    const ev = h.alerts[0].evidence
    expect(ev.eventIds).toEqual([a.eventId, b.eventId])
    expect(ev.distanceKm).toBeGreaterThan(1050)
    expect(ev.distanceKm).toBeLessThan(1080)
    expect(ev.speedKmh).toBeGreaterThan(2100)
    expect(h.alerts[0].score).toBeGreaterThan(0.5)
  })

  it('does not fire on the same trip in 3 h, nor when the far transaction is card-not-present or has no coordinates', async () => {
    expect(await alertsOf(at('a', SHANGHAI, atMin(0)), at('a', BEIJING, atMin(180)))).toEqual([])
    expect(await alertsOf(at('b', SHANGHAI, atMin(0)), at('b', BEIJING, atMin(30), 100, { cardPresent: false, channel: 'ecom' }), at('b', SHANGHAI, atMin(40)))).toEqual([])
    expect(await alertsOf(at('c', SHANGHAI, atMin(0)), at('c', { city: 'Beijing' }, atMin(30)), at('c', SHANGHAI, atMin(40)))).toEqual([])
    expect(await alertsOf(at('d', SHANGHAI, atMin(0)), at('d', BEIJING, atMin(30), 100, { status: 'declined' }))).toEqual([])
  })

  it('is strict at both bounds: exactly minSpeedKmh or minDistanceKm does not fire, just past them does', () => {
    const d = haversineKm(SHANGHAI.lat, SHANGHAI.lon, BEIJING.lat, BEIJING.lon)
    const dt = 2 * HOUR
    const exactSpeed = d / (dt / HOUR)
    const a = at('p', SHANGHAI, iso(T0))
    const b = at('p', BEIJING, iso(T0 + dt))
    const b2 = at('p', BEIJING, iso(T0 + dt - 1))
    expect(run(impossibleTravel, { minDistanceKm: 100, minSpeedKmh: exactSpeed }, [a, b]).alerts).toEqual([])
    expect(run(impossibleTravel, { minDistanceKm: 100, minSpeedKmh: exactSpeed }, [a, b2]).alerts).toHaveLength(1)
    expect(run(impossibleTravel, { minDistanceKm: d, minSpeedKmh: 800 }, [a, at('p', BEIJING, iso(T0 + 1))]).alerts).toEqual([])
    expect(run(impossibleTravel, { minDistanceKm: d - 0.001, minSpeedKmh: 800 }, [a, at('p', BEIJING, iso(T0 + 1))]).alerts).toHaveLength(1)
  })

  it('measures consecutive transactions only, and needs two fresh ones after an alert', async () => {
    // Shanghai → Beijing (alert) → Shanghai (not measured against the reported Beijing one) → Beijing (alert).
    const a = await alertsOf(at('a', SHANGHAI, atMin(0)), at('a', BEIJING, atMin(30)), at('a', SHANGHAI, atMin(40)), at('a', BEIJING, atMin(60)))
    expect(a.map((x) => x.eventTime)).toEqual([atMin(30), atMin(60)])
    // Three hops of about 90 km, 2 min each: the first and the last are 180 km apart in 4 min
    // (2700 km/h), but no two consecutive ones are more than 100 km apart.
    const hop1 = { lat: SHANGHAI.lat, lon: 120.53 }
    const hop2 = { lat: SHANGHAI.lat, lon: 119.58 }
    expect(haversineKm(SHANGHAI.lat, SHANGHAI.lon, hop2.lat, hop2.lon)).toBeGreaterThan(170)
    expect(haversineKm(SHANGHAI.lat, SHANGHAI.lon, hop1.lat, hop1.lon)).toBeLessThan(100)
    expect(haversineKm(hop1.lat, hop1.lon, hop2.lat, hop2.lon)).toBeLessThan(100)
    expect(await alertsOf(at('b', SHANGHAI, atMin(0)), at('b', hop1, atMin(2)), at('b', hop2, atMin(4)))).toEqual([])
  })
})

describe('amount_anomaly', () => {
  // Mean 100, sample standard deviation exactly 10: the default threshold (4 sd) is 140.
  const baseline = [115, 85, 115, 85, 100, 100, 100, 100, 100, 100]
  const history = (customer: string, amounts: number[]) => amounts.map((a, i) => tx(customer, iso(T0 + i * 3 * DAY), a))
  const after = T0 + 40 * DAY

  it('fires strictly above mean + 4 sd of the last 90 days, with the figures as evidence', async () => {
    const big = tx('a', iso(after), 140.01)
    const alerts = await alertsOf(...history('a', baseline), big)
    expect(await alertsOf(...history('b', baseline), tx('b', iso(after), 140))).toEqual([])
    expect(alerts).toHaveLength(1)
    expect(alerts[0]).toMatchObject({ kind: 'amount_anomaly', severity: 'low', customerId: 'a', eventTime: iso(after) })
    expect(alerts[0].evidence).toMatchObject({ eventIds: [big.eventId], amount: 140.01, mean: 100, stdDev: 10, threshold: 140, purchases: 10, stdDevs: 4 })
  })

  it('needs at least minPurchases purchases before the current one', async () => {
    expect(await alertsOf(...history('a', baseline.slice(0, 9)), tx('a', iso(after), 5000))).toEqual([])
    const alerts = await alertsOf(...history('b', baseline), tx('b', iso(after), 5000))
    expect(alerts.map((a) => [a.kind, a.evidence.purchases])).toEqual([['amount_anomaly', 10]])
  })

  it('forgets purchases older than the window and ignores declined ones', () => {
    const params = { window: 90 * DAY, minPurchases: 10, stdDevs: 4 }
    const old = history('p', baseline)
    expect(run(amountAnomaly, params, [...old, tx('p', iso(T0 + 130 * DAY), 5000)]).alerts).toEqual([])
    const declined = baseline.map((a, i) => tx('p', iso(T0 + i * DAY), a, { status: 'declined' }))
    expect(run(amountAnomaly, params, [...declined, tx('p', iso(T0 + 20 * DAY), 5000)]).alerts).toEqual([])
    expect(run(amountAnomaly, params, [...old, tx('p', iso(T0 + 60 * DAY), 5000)]).alerts).toHaveLength(1)
  })
})

describe('prohibited_use', () => {
  it('alerts and sends a compliance_notice for an approved transaction at a barred MCC', async () => {
    const h = harness()
    const bet = at('pu', { id: 'casino-1', mcc: '7995' }, atMin(0), 888)
    await h.send(bet)
    expect(h.alerts).toHaveLength(1)
    expect(h.alerts[0]).toMatchObject({ kind: 'prohibited_use', severity: 'medium', score: 1, cardId: 'tok_pu' })
    expect(h.alerts[0].evidence).toMatchObject({ eventIds: [bet.eventId], mcc: '7995', merchantId: 'casino-1', amount: 888 })
    expect(h.decisions).toHaveLength(1)
    expect(h.decisions[0]).toMatchObject({ trigger: 'compliance_notice', outcome: 'send', cardId: 'tok_pu', reason: { mcc: '7995', merchantId: 'casino-1', amount: 888 } })
  })

  it('ignores declined transactions and other MCCs, and reads the list from the catalogue', async () => {
    const h = harness()
    await h.send(at('a', { mcc: '6211' }, atMin(0), 100, { status: 'declined' }), at('a', { mcc: '5411' }, atMin(1)))
    expect(h.alerts).toEqual([])
    const custom = harness(defaultCatalogForTests((c) => (c.signals.prohibited_use.params = { mccs: ['5411'] })))
    await custom.send(at('a', { mcc: '5411' }, atMin(0)), at('a', { mcc: '7995' }, atMin(1)))
    expect(custom.alerts.map((a) => a.evidence.mcc)).toEqual(['5411'])
  })

  it('sends the compliance_notice even in a risk hold, while marketing from the same event is held', async () => {
    const h = harness(defaultCatalogForTests(), { operators: [...RISK_OPERATORS, probe] })
    await h.send(tx('pu', atMin(0), 1), tx('pu', atMin(1), 1), tx('pu', atMin(2), 1))
    const bet = at('pu', { id: 'broker', mcc: '6211' }, atMin(60), 20_000)
    await h.send(bet)
    expect(kinds(h)).toEqual(['card_testing', 'prohibited_use'])
    const fromBet = h.decisions.filter((d) => d.eventTime === atMin(60)).map((d) => [d.trigger, d.outcome, d.suppressedBy])
    expect(fromBet).toEqual([
      ['compliance_notice', 'send', undefined],
      ['first_purchase_reward', 'suppressed', 'risk_hold'],
    ])
  })
})

describe('out-of-order events within the allowed lateness', () => {
  const lateness = 10 * MIN

  it('gives the same card_testing alert as sorted input when the burst arrives shuffled', async () => {
    const events = [tx('o', atMin(0), 1), tx('o', atMin(2), 1), tx('o', atMin(4), 1)]
    const sorted = harness(defaultCatalogForTests(), { maxDisorder: lateness })
    await sorted.send(...events)
    await sorted.finish()
    for (const order of [[0, 2, 1], [1, 2, 0], [2, 1, 0]]) {
      const shuffled = harness(defaultCatalogForTests(), { maxDisorder: lateness })
      await shuffled.send(...order.map((i) => events[i]))
      await shuffled.finish()
      expect(shuffled.alerts).toEqual(sorted.alerts)
    }
    expect(sorted.alerts).toHaveLength(1)
  })

  it('pairs a late event with hits that a newer event already slid out of its own window', async () => {
    const early = [tx('o', atMin(0), 1), tx('o', atMin(1), 1)]
    const later = tx('o', atMin(12), 300)
    const late = tx('o', atMin(5), 1)
    const sorted = harness(defaultCatalogForTests(), { maxDisorder: lateness })
    await sorted.send(...early, late, later)
    await sorted.finish()
    const arrived = harness(defaultCatalogForTests(), { maxDisorder: lateness })
    await arrived.send(...early, later, late)
    await arrived.finish()
    expect(sorted.alerts).toHaveLength(1)
    expect(arrived.alerts).toEqual(sorted.alerts)
  })

  it('keeps hit lists in event-time order, not arrival order', () => {
    const params = { count: 3, maxAmount: 10, window: 10 * MIN }
    const [a, b, c] = [tx('p', atMin(0), 1), tx('p', atMin(2), 1), tx('p', atMin(30), 1)]
    const { state } = run(cardTesting, params, [c, a, b])
    expect(state.h?.map((x) => x.id)).toEqual([c.eventId]) // a and b are > 2 windows behind c: pruned
    const near = run(cardTesting, params, [tx('p', atMin(5), 1), tx('p', atMin(3), 1)])
    expect(near.state.h?.map((x) => x.t)).toEqual([T0 + 3 * MIN, T0 + 5 * MIN])
  })
})

/** A mixed stream that exercises every signal for a few customers. */
function scenario() {
  const e: Record<string, unknown>[] = []
  e.push(at('s1', SHANGHAI, atMin(0), 120))
  e.push(tx('s1', atMin(1), 1), tx('s1', atMin(2), 2), tx('s1', atMin(3), 3))
  e.push(app('s2', 'device_registered', atMin(4)), tx('s2', atMin(5), 7000))
  e.push(at('s1', BEIJING, atMin(20), 90))
  e.push(at('s3', { id: 'atm9' }, atMin(21), 1000), at('s3', { id: 'atm9' }, atMin(22), 2000), at('s3', { id: 'atm9' }, atMin(23), 3000))
  e.push(at('s2', { mcc: '6051' }, atMin(24), 300))
  for (let i = 0; i < 10; i++) e.push(tx('s4', iso(T0 + 25 * MIN + i * 30 * SEC), 40))
  return e
}

describe('determinism', () => {
  it('gives identical alerts and ids across two runs and across batch cuts', async () => {
    const events = scenario()
    const one = harness()
    await one.send(...events)
    const two = harness()
    await two.send(...events)
    const single = harness()
    for (const e of events) await single.send(e)
    expect(new Set(kinds(one))).toEqual(new Set(['card_testing', 'new_device_large_amount', 'impossible_travel', 'cashout_pattern', 'prohibited_use', 'velocity']))
    expect(two.alerts).toEqual(one.alerts)
    expect(single.alerts).toEqual(one.alerts)
    expect(new Set(one.alerts.map((a) => a.id)).size).toBe(one.alerts.length)
  })

  it('cutting the same sorted input into different batches gives identical alerts (property)', async () => {
    const merchants = [
      { id: 'm1', mcc: '5411', ...SHANGHAI },
      { id: 'm2', mcc: '5812', ...BEIJING },
      { id: 'm3', mcc: '7995' },
      { id: 'atm', mcc: '6011', ...SHANGHAI },
    ]
    const item = fc.record({
      customer: fc.constantFrom('a', 'b', 'c'),
      minute: fc.integer({ min: 0, max: 24 * 60 }),
      kind: fc.constantFrom('tx', 'tx', 'tx', 'device'),
      amount: fc.constantFrom(1, 5, 10, 80, 1000, 2000, 6000, 120.5),
      merchant: fc.constantFrom(...merchants),
      status: fc.constantFrom('approved', 'approved', 'declined'),
      cardPresent: fc.boolean(),
    })
    await fc.assert(
      fc.asyncProperty(fc.array(item, { maxLength: 40 }), fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 8 }), async (raw, cuts) => {
        let n = 0
        const events = raw
          .sort((x, y) => x.minute - y.minute)
          .map((r) => {
            const time = iso(T0 + r.minute * MIN)
            const e =
              r.kind === 'device'
                ? app(r.customer, 'device_registered', time)
                : transaction(r.customer, time, r.amount, { merchant: r.merchant, status: r.status, cardPresent: r.cardPresent })
            return { ...e, eventId: `e${n++}` }
          })
        const whole = harness(undefined, { settle: false })
        await whole.send(...events)
        await whole.finish()
        const cut = harness(undefined, { settle: false })
        for (let i = 0, c = 0; i < events.length; ) {
          const size = cuts[c++ % cuts.length]
          await cut.send(...events.slice(i, i + size))
          i += size
        }
        await cut.finish()
        expect(cut.alerts).toEqual(whole.alerts)
        expect(cut.decisions).toEqual(whole.decisions)
      }),
      { numRuns: 60 },
    )
  })
})

describe('operators are pure and their state stays small', () => {
  it('never mutates the state it is given (states are frozen between events)', () => {
    const events = scenario()
    for (const op of RISK_OPERATORS) expect(() => run(op, undefined, events)).not.toThrow()
    expect(run(velocity, { count: 2, window: 10 * MIN }, events).alerts.length).toBeGreaterThan(0)
    expect(run(newDeviceLargeAmount, { minAmount: 5000, within: HOUR }, events).alerts).toHaveLength(1)
  })

  // A deterministic pseudo-random customer: 1–4 daytime purchases a day at Shanghai merchants
  // (some online, without coordinates), a device registration every 60 days.
  it.each([
    ['UUID event ids (36 characters)', 'uuid', 350, 420],
    ['simulator-style event ids (about 12 characters)', 'short', 300, 340],
  ] as const)('keeps an ordinary customer’s state across all 8 signals small over 200 days: %s', async (_, style, maxFinal, maxPeak) => {
    let seed = 42
    const rnd = () => {
      // mulberry32
      let t = (seed = (seed + 0x6d2b79f5) | 0)
      t = Math.imul(t ^ (t >>> 15), t | 1)
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
      return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
    }
    let n = 0
    const newId = () =>
      style === 'uuid'
        ? Array.from({ length: 32 }, () => Math.floor(rnd() * 16).toString(16)).join('').replace(/^(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-')
        : `tx-42-${(++n + 40_000).toString(36)}`
    const h = harness()
    await h.send({ ...lifecycle('norm', 'activated', iso(T0 - DAY)), eventId: newId() })
    let peak = 0
    let sum = 0
    let final: Record<string, number> = {}
    const DAYS = 200
    for (let day = 0; day < DAYS; day++) {
      const count = 1 + Math.floor(rnd() * 4)
      const minutes = Array.from({ length: count }, () => Math.floor(rnd() * 12 * 60)).sort((a, b) => a - b)
      const batch: Record<string, unknown>[] = minutes.map((m) => {
        const online = rnd() < 0.3
        const merchant = online
          ? { id: `web${Math.floor(rnd() * 5)}`, mcc: '5999', country: 'CN' }
          : { id: `shop${Math.floor(rnd() * 20)}`, mcc: '5411', country: 'CN', lat: round4(SHANGHAI.lat + (rnd() - 0.5) / 5), lon: round4(SHANGHAI.lon + (rnd() - 0.5) / 5) }
        const amount = Math.round((15 + rnd() * rnd() * 800) * 100) / 100
        return { ...transaction('norm', iso(T0 + day * DAY + m * MIN), amount, { merchant, cardPresent: !online, channel: online ? 'ecom' : 'pos' }), eventId: newId() }
      })
      if (day % 60 === 10) batch.unshift({ ...app('norm', 'device_registered', iso(T0 + day * DAY - MIN)), eventId: newId() })
      await h.send(...batch)
      const ops = (await h.store.load(0, ['norm'], 0)).customers.get('norm')!.ops
      final = Object.fromEntries(Object.entries(ops).filter(([name]) => RISK_NAMES.has(name)).map(([name, v]) => [name, JSON.stringify(v).length]))
      const total = Object.values(final).reduce((a, b) => a + b, 0)
      peak = Math.max(peak, total)
      sum += total
    }
    const total = Object.values(final).reduce((a, b) => a + b, 0)
    console.log(`risk state, ${style} ids, after ${DAYS} days: ${total} bytes (mean ${Math.round(sum / DAYS)}, peak ${peak}); per operator ${JSON.stringify(final)}`)
    // Operators whose state is empty are not stored at all.
    expect(RISK_OPERATORS.map((o) => o.name)).toEqual(expect.arrayContaining(Object.keys(final)))
    expect(h.alerts.filter((a) => a.kind !== 'amount_anomaly')).toEqual([])
    expect(total).toBeLessThan(maxFinal)
    expect(peak).toBeLessThan(maxPeak)
  })
})

const round4 = (x: number) => Math.round(x * 10_000) / 10_000
