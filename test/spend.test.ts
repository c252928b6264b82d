import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { PipelineHarness, defaultCatalogForTests, lifecycle, transaction } from './helpers/harness.ts'
import { SPEND_OPERATORS } from '../operators/spend/index.ts'
import { dormancyWakeup } from '../operators/spend/dormancy.ts'
import { churnFigures, churnRetention } from '../operators/spend/churn.ts'
import { checkAt, monthOf, spendThresholdChallenge } from '../operators/spend/spendChallenge.ts'
import { limitUpgradeOffer } from '../operators/spend/limitUpgrade.ts'
import { addSpend, emptyLedger, epochDay } from '../operators/ledger.ts'
import { initialFacts, type CustomerFacts } from '../operators/facts.ts'
import { OperatorHarness } from './helpers/operatorHarness.ts'
import type { CustomerRecord } from '../pipeline/store/types.ts'

const HOUR = 3_600_000
const DAY = 24 * HOUR
const iso = (ms: number) => new Date(ms).toISOString()
const SH = 'Asia/Shanghai'

const harness = () => new PipelineHarness(defaultCatalogForTests(), { operators: [...SPEND_OPERATORS], settle: true })
const of = (h: PipelineHarness, trigger: string) => h.decisions.filter((d) => d.trigger === trigger)


describe('dormancy_wakeup', () => {
  const T0 = Date.parse('2026-10-01T04:00:00.000Z')

  it('fires at exactly 30, 60 and 90 days after the last purchase with no further event', async () => {
    const h = harness()
    await h.send(transaction('d1', iso(T0), 120))
    for (const days of [30, 60, 90]) {
      await h.advanceTo(T0 + days * DAY - 1)
      expect(of(h, 'dormancy_wakeup')).toHaveLength(days / 30 - 1)
      await h.advanceTo(T0 + days * DAY)
      expect(of(h, 'dormancy_wakeup')).toHaveLength(days / 30)
    }
    await h.advanceTo(T0 + 400 * DAY)
    const ds = of(h, 'dormancy_wakeup')
    expect(ds.map((d) => d.eventTime)).toEqual([30, 60, 90].map((n) => iso(T0 + n * DAY)))
    expect(ds.map((d) => d.reason)).toEqual([30, 60, 90].map((n) => ({ lastPurchaseAt: iso(T0), daysSincePurchase: n })))
    expect(new Set(ds.map((d) => d.id)).size).toBe(3)
  })

  it('restarts the spell at every purchase', async () => {
    const h = harness()
    await h.send(transaction('d1', iso(T0), 120))
    await h.send(transaction('d1', iso(T0 + 20 * DAY), 80))
    await h.advanceTo(T0 + 50 * DAY - 1)
    expect(of(h, 'dormancy_wakeup')).toHaveLength(0)
    await h.advanceTo(T0 + 50 * DAY)
    expect(of(h, 'dormancy_wakeup')).toMatchObject([{ eventTime: iso(T0 + 50 * DAY), reason: { lastPurchaseAt: iso(T0 + 20 * DAY), daysSincePurchase: 30 } }])
  })

  it('treats a purchase at the due instant as not dormant, and one after it as a return after the moment', async () => {
    const exact = harness()
    await exact.send(transaction('d1', iso(T0), 120), transaction('d1', iso(T0 + 30 * DAY), 10))
    await exact.advanceTo(T0 + 59 * DAY)
    expect(of(exact, 'dormancy_wakeup')).toHaveLength(0)

    // The later purchase arrives before the watermark reaches the due time: evaluated as of it.
    const later = harness()
    await later.send(transaction('d1', iso(T0), 120), transaction('d1', iso(T0 + 45 * DAY), 10))
    await later.advanceTo(T0 + 74 * DAY)
    expect(of(later, 'dormancy_wakeup').map((d) => d.eventTime)).toEqual([iso(T0 + 30 * DAY)])
  })

  it('ignores declined transactions and customers who never purchased', async () => {
    const h = harness()
    await h.send(transaction('d1', iso(T0), 120, { status: 'declined' }), lifecycle('d2', 'activated', iso(T0)))
    await h.advanceTo(T0 + 200 * DAY)
    expect(of(h, 'dormancy_wakeup')).toHaveLength(0)
  })

  it('is pure: the given state is left as it was', () => {
    const params = dormancyWakeup.parseParams({})
    expect(params.after).toEqual([30 * DAY, 60 * DAY, 90 * DAY])
    // The harness freezes every state it hands the operator: a mutation would throw.
    const h = new OperatorHarness(dormancyWakeup, { params: {} })
    h.event(transaction('c', iso(T0), 5))
    expect(h.timers).toEqual([{ key: 'quiet', at: T0 + 30 * DAY }])
    const fired = h.advanceTo(T0 + 30 * DAY)
    expect(h.state).toEqual({ last: T0, fired: 30 * DAY })
    expect(fired).toContainEqual({ kind: 'setTimer', key: 'quiet', at: T0 + 60 * DAY })
    expect(fired).toContainEqual(expect.objectContaining({ kind: 'moment', occurrence: `${T0}:30d` }))
  })
})

describe('churn_retention', () => {
  /** 100 yuan a day at 04:00Z for `days` days from 2026-03-01: a monthly average of 3000. */
  const D0 = Date.UTC(2026, 2, 1)
  const at = (day: number, hourUtc = 4) => D0 + day * DAY + hourUtc * HOUR
  const daily = (customer: string, days: number, amount = 100) => Array.from({ length: days }, (_, i) => transaction(customer, iso(at(i)), amount))
  const S = 119 // the last day with spend

  it('detects the drop with no event after it, at 10:00 local on the first day it holds', async () => {
    const h = harness()
    await h.send(...daily('c1', S + 1))
    // Day S+15: 15 days of 100 = 1500, not below half of 3000; day S+16: 1400 is.
    await h.advanceTo(at(S + 16, 2) - 1)
    expect(of(h, 'churn_retention')).toHaveLength(0)
    await h.advanceTo(at(S + 16, 2)) // 02:00Z = 10:00 in Shanghai
    expect(of(h, 'churn_retention')).toMatchObject([
      { eventTime: iso(at(S + 16, 2)), reason: { recentSpend: 1400, baselineMonthlyAverage: 3000, ratio: 0.467 } },
    ])
    // Once per episode: nothing more however long the customer stays away.
    await h.advanceTo(at(S + 300))
    expect(of(h, 'churn_retention')).toHaveLength(1)
  })

  it('does not fire when the baseline monthly average is below the minimum', async () => {
    const h = harness()
    await h.send(...daily('c1', S + 1, 33)) // 990 a month
    await h.advanceTo(at(S + 300))
    expect(of(h, 'churn_retention')).toHaveLength(0)
  })

  it('fires again only after spend recovered, on a new drop', async () => {
    const h = harness()
    await h.send(...daily('c1', S + 1))
    await h.advanceTo(at(S + 18))
    expect(of(h, 'churn_retention')).toHaveLength(1)
    // Day S+20: 10 × 100 + 2000 = 3000 in 30 days against 3000 a month: recovered.
    await h.send(transaction('c1', iso(at(S + 20)), 2000))
    // Day S+50: the 2000 has left the 30 days (0) while the baseline is 70 × 100 + 2000 = 9000.
    await h.advanceTo(at(S + 50, 2) - 1)
    expect(of(h, 'churn_retention')).toHaveLength(1)
    await h.advanceTo(at(S + 400))
    const ds = of(h, 'churn_retention')
    expect(ds.map((d) => d.eventTime)).toEqual([iso(at(S + 16, 2)), iso(at(S + 50, 2))])
    expect(ds[1].reason).toMatchObject({ recentSpend: 0, baselineMonthlyAverage: 3000, ratio: 0 })
    expect(ds[0].id).not.toBe(ds[1].id)
  })

  it('does not fire twice for one episode when spend stays low but above zero', async () => {
    const h = harness()
    await h.send(...daily('c1', S + 1))
    await h.advanceTo(at(S + 17))
    // Small purchases keep the ratio low: the episode stays open.
    for (let d = S + 20; d < S + 60; d += 5) await h.send(transaction('c1', iso(at(d)), 50))
    await h.advanceTo(at(S + 200))
    expect(of(h, 'churn_retention')).toHaveLength(1)
  })

  it('fires once while spend stays low for seven weeks, however its purchases enter and leave the window', async () => {
    const h = harness()
    await h.send(...daily('c1', S + 1))
    // From 3000 a month to about 1290 (300 a week, 43% of the average): the 30 days hold four or
    // five of these purchases, and the pre-drop days roll out one by one, so the window's spend
    // crosses half the average back and forth; none of that is a recovery.
    for (let week = 0; week < 7; week++) await h.send(transaction('c1', iso(at(S + 1 + 7 * week)), 300))
    await h.advanceTo(at(S + 1 + 7 * 7))
    const ds = of(h, 'churn_retention')
    // Day S+28 at 10:00 local: 2 × 100 + 4 × 300 = 1400 in the 30 days.
    expect(ds.map((d) => d.eventTime)).toEqual([iso(at(S + 28, 2))])
    const { customers } = await h.store.load(0, ['c1'], -Infinity)
    expect((customers.get('c1') as CustomerRecord).ops.churn_retention).toMatchObject({ episode: epochDay(at(S + 28)) })
  })

  it('fires a second time after spend recovered from the drop and fell again', async () => {
    const h = harness()
    await h.send(...daily('c1', S + 1))
    for (let week = 0; week < 5; week++) await h.send(transaction('c1', iso(at(S + 1 + 7 * week)), 300))
    expect(of(h, 'churn_retention')).toHaveLength(1)
    // Day S+36: 1600 spent since the drop, at least half of the 3000 average: the episode ends.
    await h.send(transaction('c1', iso(at(S + 36)), 1300))
    const { customers } = await h.store.load(0, ['c1'], -Infinity)
    expect((customers.get('c1') as CustomerRecord).ops.churn_retention).not.toHaveProperty('episode')
    // Back to 300 a week: once the 1300 has left the 30 days, spend is below half again.
    for (let week = 6; week < 14; week++) await h.send(transaction('c1', iso(at(S + 1 + 7 * week)), 300))
    await h.advanceTo(at(S + 1 + 7 * 14))
    const ds = of(h, 'churn_retention')
    expect(ds).toHaveLength(2)
    expect(Date.parse(ds[1].eventTime)).toBeGreaterThan(at(S + 36 + 29))
    expect(ds[1].reason.ratio).toBeLessThan(0.5)
    expect(ds[0].id).not.toBe(ds[1].id)
  })

  it('stops the daily check once no baseline can qualify any more', async () => {
    const h = harness()
    await h.send(...daily('c1', S + 1))
    await h.advanceTo(at(S + 200))
    const { customers } = await h.store.load(0, ['c1'], -Infinity)
    expect((customers.get('c1') as CustomerRecord).ops.churn_retention).toEqual({ episode: epochDay(at(S + 16)) })
  })

  it('compares the average with the minimum inclusively (pure figures)', () => {
    const params = churnRetention.parseParams({})
    const day0 = epochDay(at(0))
    // One purchase in the baseline window, none in the last 30 days.
    const exactly = churnFigures(addSpend(emptyLedger(), at(0), 3000), day0 + 40, params)
    expect(exactly).toMatchObject({ baselineMonthlyAverage: 1000, dropped: true })
    const below = churnFigures(addSpend(emptyLedger(), at(0), 2999), day0 + 40, params)
    expect(below).toMatchObject({ dropped: false })
    // Exactly half is not a drop.
    const half = churnFigures(addSpend(addSpend(emptyLedger(), at(0), 3000), at(35), 500), day0 + 40, params)
    expect(half).toMatchObject({ recentSpend: 500, ratio: 0.5, dropped: false, recovered: true })
  })

  it('judges recovery on spend from the episode day on (pure figures)', () => {
    const params = churnRetention.parseParams({})
    const day0 = epochDay(at(0))
    // 3000 in the baseline; 1000 just before the drop on day 40 and 600 after it: the 30 days
    // hold 1600, half the average and more, but only 600 of it came after the drop.
    let l = addSpend(emptyLedger(), at(0), 9000)
    l = addSpend(addSpend(l, at(39), 1000), at(42), 600)
    expect(churnFigures(l, day0 + 45, params)).toMatchObject({ recentSpend: 1600, recovered: true })
    expect(churnFigures(l, day0 + 45, params, day0 + 40)).toMatchObject({ recentSpend: 1600, recovered: false })
    l = addSpend(l, at(45), 900)
    expect(churnFigures(l, day0 + 45, params, day0 + 40)).toMatchObject({ recovered: true })
    // An episode older than the window: the whole window counts.
    expect(churnFigures(l, day0 + 45, params, day0 - 100)).toMatchObject({ recovered: true })
  })

  it('rejects windows longer than the spend history kept', () => {
    expect(() => churnRetention.parseParams({ baselineWindow: '180d' })).toThrow(/at most 125d/)
    expect(() => limitUpgradeOffer.parseParams({ window: '200d' })).toThrow(/at most 125d/)
    expect(() => limitUpgradeOffer.parseParams({ noAlertWithin: '120d' })).toThrow(/at most 90d/)
    expect(churnRetention.parseParams({ recentWindow: '14d', baselineWindow: '56d' })).toMatchObject({ recentWindow: 14 * DAY, baselineWindow: 56 * DAY })
  })

  it('is pure: the given state is left as it was', () => {
    // The harness folds the facts from each event, as the runtime does, and freezes every state.
    const h = new OperatorHarness(churnRetention, { params: {} })
    h.events(...daily('c', 40, 200))
    // One check armed, after the purchases (when a drop could first show), not one per day.
    expect(Object.keys(h.state)).toEqual(['check'])
    expect(h.state.check).toBeGreaterThan(at(39))
    expect(h.timers).toEqual([{ key: expect.any(String), at: h.state.check }])
  })
})

describe('spend_threshold_challenge', () => {
  it('fires at 10:00 local on day 20 when month-to-date is below the threshold last month reached', async () => {
    const h = harness()
    await h.send(transaction('s1', '2026-09-10T04:00:00Z', 600), transaction('s1', '2026-10-05T04:00:00Z', 100))
    await h.advanceTo(Date.parse('2026-10-20T02:00:00Z') - 1)
    expect(of(h, 'spend_threshold_challenge')).toHaveLength(0)
    await h.advanceTo('2026-10-20T02:00:00Z')
    expect(of(h, 'spend_threshold_challenge')).toMatchObject([
      { eventTime: '2026-10-20T02:00:00.000Z', reason: { monthToDate: 100, lastMonth: 600, threshold: 500 } },
    ])
    // November: October's 100 is below the threshold.
    await h.advanceTo('2027-03-01T00:00:00Z')
    expect(of(h, 'spend_threshold_challenge')).toHaveLength(1)
  })

  it('uses local month boundaries: 2026-09-30T17:00Z is October in Shanghai', async () => {
    // UTC months would make September 550 and October 0, and fire; local months make September 450.
    const a = harness()
    await a.send(transaction('s1', '2026-09-10T04:00:00Z', 450), transaction('s1', '2026-09-30T17:00:00Z', 100))
    await a.advanceTo('2026-12-01T00:00:00Z')
    expect(of(a, 'spend_threshold_challenge')).toHaveLength(0)

    // And 15:59:59Z on the 30th is still September 23:59:59 local.
    const b = harness()
    await b.send(transaction('s1', '2026-09-10T04:00:00Z', 450), transaction('s1', '2026-09-30T15:59:59Z', 50), transaction('s1', '2026-09-30T17:00:00Z', 100))
    await b.advanceTo('2026-12-01T00:00:00Z')
    expect(of(b, 'spend_threshold_challenge')).toMatchObject([{ eventTime: '2026-10-20T02:00:00.000Z', reason: { monthToDate: 100, lastMonth: 500 } }])
    expect(monthOf(Date.parse('2026-09-30T17:00:00Z'), SH)).toBe('2026-10')
    expect(monthOf(Date.parse('2026-09-30T17:00:00Z'), 'UTC')).toBe('2026-09')
  })

  it('does not fire when last month was below the threshold', async () => {
    const h = harness()
    await h.send(transaction('s1', '2026-09-10T04:00:00Z', 499.99), transaction('s1', '2026-10-02T04:00:00Z', 10))
    await h.advanceTo('2027-01-01T00:00:00Z')
    expect(of(h, 'spend_threshold_challenge')).toHaveLength(0)
  })

  it('rolls over months of 31, 28 and 30 days at local midnight', async () => {
    const h = harness()
    await h.send(
      transaction('s1', '2027-01-31T15:59:00Z', 500), // Jan 31 23:59 local: January
      transaction('s1', '2027-02-28T15:59:00Z', 500), // Feb 28 23:59 local: February
      transaction('s1', '2027-02-28T16:00:00Z', 100), // Mar 1 00:00 local: March
      transaction('s1', '2027-04-30T15:59:00Z', 600), // Apr 30 23:59 local: April
      transaction('s1', '2027-04-30T16:00:00Z', 50), // May 1 00:00 local: May
    )
    await h.advanceTo('2027-08-01T00:00:00Z')
    expect(of(h, 'spend_threshold_challenge').map((d) => [d.eventTime, d.reason])).toEqual([
      ['2027-02-20T02:00:00.000Z', { monthToDate: 0, lastMonth: 500, threshold: 500 }],
      ['2027-03-20T02:00:00.000Z', { monthToDate: 100, lastMonth: 500, threshold: 500 }],
      ['2027-05-20T02:00:00.000Z', { monthToDate: 50, lastMonth: 600, threshold: 500 }],
    ])
  })

  it('judges a check the watermark had not reached on the totals as of its time', async () => {
    // The 25 October purchase is applied before the watermark passes 20 October 10:00 local.
    const h = harness()
    await h.send(transaction('s1', '2026-09-10T04:00:00Z', 600), transaction('s1', '2026-10-25T04:00:00Z', 1000))
    await h.advanceTo('2026-12-01T00:00:00Z')
    // October then reached 1000, so November's check is armed and fires too.
    expect(of(h, 'spend_threshold_challenge')).toMatchObject([
      { eventTime: '2026-10-20T02:00:00.000Z', reason: { monthToDate: 0, lastMonth: 600 } },
      { eventTime: '2026-11-20T02:00:00.000Z', reason: { monthToDate: 0, lastMonth: 1000 } },
    ])
  })

  it('puts the check on the last day of a shorter month, and names occurrences by month', () => {
    expect(iso(checkAt('2027-02', 31, SH))).toBe('2027-02-28T02:00:00.000Z')
    expect(iso(checkAt('2028-02', 31, SH))).toBe('2028-02-29T02:00:00.000Z')
    expect(iso(checkAt('2026-11', 20, 'America/New_York'))).toBe('2026-11-20T15:00:00.000Z')
    const h = new OperatorHarness(spendThresholdChallenge, { params: {} })
    h.event(transaction('c', '2026-09-10T04:00:00Z', 700))
    expect(h.state).toEqual({ month: '2026-09', mtd: 70_000, last: 0 })
    expect(h.timers).toEqual([{ key: 'check', at: Date.parse('2026-10-20T02:00:00Z') }])
    expect(h.advanceTo('2026-10-20T02:00:00Z')).toEqual([expect.objectContaining({ kind: 'moment', occurrence: '2026-10', eventTime: Date.parse('2026-10-20T02:00:00Z') })])
    expect(h.state).toEqual({ month: '2026-10', mtd: 0, last: 70_000, checked: '2026-10' })
  })
})

describe('limit_upgrade_offer', () => {
  const T0 = Date.parse('2026-10-01T04:00:00.000Z')

  it('fires when 30-day spend reaches exactly 80% of the limit, once per episode', async () => {
    const h = harness()
    await h.send(lifecycle('l1', 'approved', iso(T0), { creditLimit: 10_000 }), transaction('l1', iso(T0 + HOUR), 7_999))
    expect(of(h, 'limit_upgrade_offer')).toHaveLength(0)
    await h.send(transaction('l1', iso(T0 + 2 * HOUR), 1))
    expect(of(h, 'limit_upgrade_offer')).toMatchObject([
      { cardId: 'tok_l1', eventTime: iso(T0 + 2 * HOUR), reason: { spend30d: 8_000, creditLimit: 10_000, share: 0.8 } },
    ])
    await h.send(transaction('l1', iso(T0 + 3 * DAY), 500))
    expect(of(h, 'limit_upgrade_offer')).toHaveLength(1)
  })

  it('fires again after spend fell back below the share, or when the limit changes', async () => {
    const h = harness()
    await h.send(lifecycle('l1', 'approved', iso(T0), { creditLimit: 10_000 }), transaction('l1', iso(T0 + HOUR), 8_500))
    // 40 days later the window holds nothing: a purchase that crosses again is a new episode.
    await h.send(transaction('l1', iso(T0 + 40 * DAY), 9_000))
    expect(of(h, 'limit_upgrade_offer')).toHaveLength(2)
    // Still above: nothing, until the limit changes.
    await h.send(transaction('l1', iso(T0 + 41 * DAY), 100))
    expect(of(h, 'limit_upgrade_offer')).toHaveLength(2)
    await h.send(lifecycle('l1', 'limit_changed', iso(T0 + 42 * DAY), { creditLimit: 11_000 }), transaction('l1', iso(T0 + 43 * DAY), 100))
    const ds = of(h, 'limit_upgrade_offer')
    expect(ds).toHaveLength(3)
    expect(ds[2].reason).toEqual({ spend30d: 9_200, creditLimit: 11_000, share: 0.8364 })
    expect(new Set(ds.map((d) => d.id)).size).toBe(3)
  })

  it('does not count the crossing spend rolling out of the window as a new low', async () => {
    const h = harness()
    await h.send(lifecycle('l1', 'approved', iso(T0), { creditLimit: 10_000 }), transaction('l1', iso(T0 + HOUR), 4_000))
    await h.send(transaction('l1', iso(T0 + 20 * DAY), 4_000)) // crosses: 8000
    // Day 31: the first 4000 has left the window (spend before this purchase 4000, below the
    // share), but within a window of the firing that is the same episode.
    await h.send(transaction('l1', iso(T0 + 31 * DAY), 4_000))
    expect(of(h, 'limit_upgrade_offer').map((d) => d.eventTime)).toEqual([iso(T0 + 20 * DAY)])
    // A window after the firing, a dip below and a new crossing is a new episode.
    await h.send(transaction('l1', iso(T0 + 52 * DAY), 4_000))
    expect(of(h, 'limit_upgrade_offer').map((d) => d.eventTime)).toEqual([iso(T0 + 20 * DAY), iso(T0 + 52 * DAY)])
  })

  it('uses the sum of the known limits of open cards', async () => {
    const h = harness()
    await h.send(
      lifecycle('l1', 'approved', iso(T0), { cardId: 'tok_a', creditLimit: 5_000 }),
      lifecycle('l1', 'approved', iso(T0), { cardId: 'tok_b', creditLimit: 5_000 }),
      lifecycle('l1', 'approved', iso(T0), { cardId: 'tok_c' }),
      transaction('l1', iso(T0 + HOUR), 7_000, { cardId: 'tok_a' }),
    )
    expect(of(h, 'limit_upgrade_offer')).toHaveLength(0)
    await h.send(lifecycle('l1', 'closed', iso(T0 + 2 * HOUR), { cardId: 'tok_b' }), transaction('l1', iso(T0 + 3 * HOUR), 10, { cardId: 'tok_a' }))
    expect(of(h, 'limit_upgrade_offer')).toMatchObject([{ cardId: 'tok_a', reason: { spend30d: 7_010, creditLimit: 5_000 } }])
  })

  describe('alerts (pure, facts built directly)', () => {
    const now = T0 + 100 * DAY
    /** A card with a 10 000 limit and no spend yet: the purchase below is folded in by the harness. */
    const facts = (alertAgo?: number): CustomerFacts => ({
      ...initialFacts(),
      cards: { tok_c: { stage: 'activated', creditLimit: 10_000 } },
      alerts: alertAgo === undefined ? [] : [{ at: now - alertAgo, severity: 'low' }],
    })
    const purchase = (alertAgo?: number) => {
      const h = new OperatorHarness(limitUpgradeOffer, { params: {}, facts: facts(alertAgo) })
      return { h, effects: h.event(transaction('c', iso(now), 9_000)) }
    }

    it('is blocked by an alert of any severity within 90 days', () => {
      expect(purchase(89 * DAY).effects).toEqual([])
      expect(purchase(0).effects).toEqual([])
    })

    it('is not blocked by an alert exactly 90 days old or by none', () => {
      for (const alertAgo of [90 * DAY, undefined]) {
        const { h, effects } = purchase(alertAgo)
        expect(effects).toEqual([expect.objectContaining({ kind: 'moment', occurrence: `${now}`, cardId: 'tok_c', reason: { spend30d: 9_000, creditLimit: 10_000, share: 0.9 } })])
        expect(h.state).toEqual({ firedLimit: 10_000, firedAt: now })
      }
    })

    it('does not use the episode up while blocked', () => {
      expect(purchase(10 * DAY).h.state).toEqual({})
    })
  })
})

describe('spend operators together', () => {
  it('keep a small state for an active customer after 200 days', async () => {
    const h = harness()
    const start = Date.UTC(2026, 0, 1, 3)
    const events: Record<string, unknown>[] = [lifecycle('t1', 'approved', iso(start), { creditLimit: 20_000 })]
    for (let d = 0; d < 200; d += 1 + (d % 3)) events.push(transaction('t1', iso(start + d * DAY + (d % 5) * HOUR), 50 + ((d * 37) % 400)))
    await h.send(...events)
    const { customers } = await h.store.load(0, ['t1'], -Infinity)
    const ops = (customers.get('t1') as CustomerRecord).ops
    for (const name of ['dormancy_wakeup', 'spend_threshold_challenge']) expect(ops).toHaveProperty(name) // others only while they hold something
    expect(Buffer.byteLength(JSON.stringify(ops))).toBeLessThan(256)
  })

  it('give the same decisions however the same sorted input is cut into batches', async () => {
    const start = Date.UTC(2026, 0, 1)
    const purchase = fc.record({ customer: fc.constantFrom('a', 'b', 'c'), minute: fc.integer({ min: 0, max: 200 * 24 * 60 }), amount: fc.integer({ min: 1, max: 4_000 }) })
    await fc.assert(
      fc.asyncProperty(fc.array(purchase, { minLength: 1, maxLength: 60 }), fc.array(fc.integer({ min: 1, max: 60 }), { maxLength: 10 }), async (purchases, cuts) => {
        const events: Record<string, unknown>[] = [
          lifecycle('a', 'approved', iso(start), { creditLimit: 5_000 }),
          lifecycle('b', 'approved', iso(start), { creditLimit: 20_000 }),
          ...[...purchases].sort((x, y) => x.minute - y.minute).map((p) => transaction(p.customer, iso(start + HOUR + p.minute * 60_000), p.amount)),
        ]
        const end = start + 400 * DAY
        // Not settled: a cut may fall between purchases of the same instant.
        const unsettled = () => new PipelineHarness(defaultCatalogForTests(), { operators: [...SPEND_OPERATORS] })
        const one = unsettled()
        await one.send(...events)
        await one.advanceTo(end)
        const many = unsettled()
        const at = [...new Set(cuts.map((c) => c % events.length))].sort((x, y) => x - y)
        let from = 0
        for (const c of [...at, events.length]) {
          if (c > from) await many.send(...events.slice(from, c))
          from = Math.max(from, c)
        }
        await many.advanceTo(end)
        expect(many.decisions).toEqual(one.decisions)
      }),
      { numRuns: 25 },
    )
  })
})
