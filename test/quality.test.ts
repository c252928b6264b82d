import { describe, expect, it } from 'vitest'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DAY, HOUR, formatDelay, formatReport, median, scoreQuality, scoreSignals, scoreTriggers, type AlertLike, type DecisionLike, type Purchase } from '../bench/qualityScore.ts'
import { runQuality } from '../bench/quality.ts'
import { FRAUD_KINDS } from '../simulator/config.ts'
import type { TruthRecord } from '../simulator/truth.ts'

/** Detection quality (`npm run quality`): the scoring on hand-made truth, then a small bank end to end. */

const T0 = Date.parse('2026-09-01T00:00:00Z')
const iso = (ms: number) => new Date(ms).toISOString()
const MIN = 60_000

function fraud(customerId: string, fraudKind: string, at: number, ids: string[], endAt = at + 5 * MIN): TruthRecord {
  return { kind: 'fraud', at: iso(at), customerId, cardId: `tok_${customerId}`, fraudKind: fraudKind as never, eventIds: ids, endAt: iso(endAt) }
}
const alert = (kind: string, customerId: string, at: number, eventIds: string[]): AlertLike => ({ kind, customerId, eventTime: iso(at), evidence: { eventIds } })
const decision = (trigger: string, customerId: string, at: number): DecisionLike => ({ trigger, customerId, eventTime: iso(at), outcome: 'send' })
const config = (days: number): TruthRecord => ({ kind: 'config', at: iso(T0), seed: 1, customers: 10, start: iso(T0), end: iso(T0 + days * DAY), config: {} as never })

describe('scoring risk signals against the truth', () => {
  const truth: TruthRecord[] = [
    config(365),
    // Detected: the alert cites the case's third event, 4 min after its first.
    fraud('c1', 'card_testing', T0 + DAY, ['c1-a', 'c1-b', 'c1-c']),
    // Detected by time only: the alert's event lies in the case's span.
    fraud('c2', 'card_testing', T0 + 2 * DAY, ['c2-a', 'c2-b', 'c2-c'], T0 + 2 * DAY + 10 * MIN),
    // Missed: an alert for the customer, but of another kind, and an alert of the kind a day later.
    fraud('c3', 'card_testing', T0 + 3 * DAY, ['c3-a', 'c3-b', 'c3-c']),
    fraud('c4', 'velocity', T0 + 4 * DAY, ['c4-a', 'c4-b']),
  ]
  const alerts: AlertLike[] = [
    alert('card_testing', 'c1', T0 + DAY + 4 * MIN, ['c1-c']),
    alert('card_testing', 'c1', T0 + DAY + 6 * MIN, ['c1-c', 'c1-x']), // a second alert on the same case: matched, not a second detection
    alert('card_testing', 'c2', T0 + 2 * DAY + 8 * MIN, ['c2-unrelated']),
    alert('velocity', 'c3', T0 + 3 * DAY + MIN, ['c3-b']),
    alert('card_testing', 'c3', T0 + 4 * DAY, ['c3-later']), // false: a day after the case, on other events
    alert('card_testing', 'c4', T0 + 4 * DAY + MIN, ['c4-a']), // raised by a velocity case: counted apart
    alert('amount_anomaly', 'c9', T0 + 9 * DAY, ['c9-honest-big-purchase']), // a legitimate big purchase
  ]

  it('counts a detected case once, a missed case, false alerts and alerts on other fraud', () => {
    const [testing] = scoreSignals(truth, alerts).filter((s) => s.kind === 'card_testing')
    expect(testing).toMatchObject({ cases: 3, detected: 2, alerts: 5, matched: 3, onOtherFraud: 1, missed: ['c3-a'] })
    expect(testing.recall).toBeCloseTo(2 / 3)
    expect(testing.precision).toBeCloseTo(3 / 5)
    // Delays: 4 min (c1, the earliest of its two alerts) and 8 min (c2): median 6 min.
    expect(testing.medianDelayMs).toBe(6 * MIN)
  })

  it('reports every kind: no cases and only false alerts give precision 0 and no recall', () => {
    const byKind = Object.fromEntries(scoreSignals(truth, alerts).map((s) => [s.kind, s]))
    expect(byKind.amount_anomaly).toMatchObject({ cases: 0, detected: 0, recall: null, alerts: 1, matched: 0, precision: 0, medianDelayMs: null })
    expect(byKind.velocity).toMatchObject({ cases: 1, detected: 0, recall: 0, alerts: 1, matched: 0, onOtherFraud: 1, precision: 0 })
    expect(byKind.prohibited_use).toMatchObject({ cases: 0, alerts: 0, recall: null, precision: null })
  })

  it('counts an alert by time only within the slack after the case', () => {
    const t = [fraud('c1', 'cashout_pattern', T0, ['x'], T0 + HOUR)]
    const late = [alert('cashout_pattern', 'c1', T0 + HOUR + 30 * MIN, ['y'])]
    expect(scoreSignals(t, late)[3]).toMatchObject({ kind: 'cashout_pattern', detected: 1 })
    expect(scoreSignals(t, late, { fraudSlack: 10 * MIN })[3]).toMatchObject({ kind: 'cashout_pattern', detected: 0, matched: 0 })
  })
})

describe('scoring dormancy_wakeup and churn_retention against the truth', () => {
  const dormancy = (customerId: string, at: number, dormantAt: number): TruthRecord => ({ kind: 'dormancy', at: iso(at), customerId, dormantAt: iso(dormantAt) })
  const churn = (customerId: string, at: number, floorAt: number): TruthRecord => ({ kind: 'churn', at: iso(at), customerId, floorAt: iso(floorAt), floor: 0.15 })
  const truth: TruthRecord[] = [
    config(200),
    dormancy('d1', T0 + 10 * DAY, T0 + 30 * DAY), // detected 25 d after dormantAt, then again at 60 d and 90 d
    dormancy('d2', T0 + 10 * DAY, T0 + 30 * DAY), // missed: the customer bought again 10 d after dormantAt
    dormancy('d3', T0 + 150 * DAY, T0 + 180 * DAY), // not due: its window closes after the period
    churn('k1', T0 + 20 * DAY, T0 + 60 * DAY), // detected 28 d after it starts
    churn('k2', T0 + 20 * DAY, T0 + 60 * DAY), // missed, and spent too little for the rule anyway
  ]
  const decisions = [
    decision('dormancy_wakeup', 'd1', T0 + 55 * DAY),
    decision('dormancy_wakeup', 'd1', T0 + 85 * DAY),
    decision('dormancy_wakeup', 'd1', T0 + 115 * DAY),
    decision('dormancy_wakeup', 'd2', T0 + 70 * DAY), // after the detection window: not a detection, but within the repeats' window
    decision('dormancy_wakeup', 'k1', T0 + 90 * DAY), // on a churner at their floor
    decision('dormancy_wakeup', 'x1', T0 + 40 * DAY), // a customer who never drifted away
    decision('churn_retention', 'k1', T0 + 48 * DAY),
    decision('churn_retention', 'x2', T0 + 48 * DAY),
    decision('churn_retention', 'k1', T0 + 120 * DAY), // long after the episode
  ]
  const purchases = new Map<string, Purchase[]>([
    ['d1', [{ t: T0 + 5 * DAY, amount: 100 }]],
    ['d2', [{ t: T0 + 5 * DAY, amount: 100 }, { t: T0 + 40 * DAY, amount: 800 }]],
    ['k1', [{ t: T0 + 5 * DAY, amount: 3500 }]],
    ['k2', [{ t: T0 + 5 * DAY, amount: 900 }]],
  ])

  it('dormancy: detection within 30 d (and a day) of dormantAt, repeats matched, the others not', () => {
    const [d] = scoreTriggers(truth, decisions, { purchases })
    expect(d).toMatchObject({ trigger: 'dormancy_wakeup', cases: 3, due: 2, detected: 1, recall: 0.5, decisions: 6, matched: 4, onOtherTruth: 1, eligible: 1, eligibleDetected: 1, eligibleRecall: 1 })
    expect(d.precision).toBeCloseTo(4 / 6)
    expect(d.medianDelayMs).toBe(25 * DAY)
  })

  it('churn: detection from the start of the fall to 30 d after the floor; eligibility by the rule’s spend floor', () => {
    const [, c] = scoreTriggers(truth, decisions, { purchases })
    expect(c).toMatchObject({ trigger: 'churn_retention', cases: 2, due: 2, detected: 1, recall: 0.5, decisions: 3, matched: 1, onOtherTruth: 0, eligible: 1, eligibleRecall: 1 })
    expect(c.medianDelayMs).toBe(28 * DAY)
    // Without purchases there is no eligibility.
    expect(scoreTriggers(truth, decisions)[1].eligible).toBeUndefined()
  })

  it('lists the other triggers as exact by construction, with their decision counts', () => {
    const r = scoreQuality(truth, [], [...decisions, decision('activation_reminder', 'a1', T0), decision('activation_reminder', 'a2', T0)])
    expect(r.exact).toEqual([{ trigger: 'activation_reminder', decisions: 2 }])
    expect(formatReport(r)).toContain('`dormancy_wakeup` | 3 (2) | 1 | 50.0 %')
  })

  it('medians and delays', () => {
    expect(median([])).toBeNull()
    expect(median([5, 1, 3])).toBe(3)
    expect(median([4, 1, 3, 2])).toBe(2.5)
    expect([formatDelay(42_000), formatDelay(17 * MIN), formatDelay(3.2 * HOUR), formatDelay(25.4 * DAY), formatDelay(null)]).toEqual(['42 s', '17.0 min', '3.2 h', '25.4 d', '–'])
  })
})

describe('npm run quality, end to end', () => {
  it('a small bank with every fraud kind: each is detected by its signal', { timeout: 300_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardpulse-quality-test-'))
    const configFile = join(dir, 'bank.yaml')
    writeFileSync(configFile, `population: { existingShare: 0.8 }\nfraud: { ${FRAUD_KINDS.map((k) => `${k}: 0.6`).join(', ')} }\n`)
    const result = await runQuality({ customers: 300, days: 60, seed: 5, config: configFile, progress: false, threads: 1 })
    expect(result.events).toBeGreaterThan(10_000)
    const byKind = Object.fromEntries(result.report.signals.map((s) => [s.kind, s]))
    for (const kind of FRAUD_KINDS) {
      expect(byKind[kind].cases, kind).toBeGreaterThanOrEqual(3)
      expect(byKind[kind].recall, `${kind}: missed ${byKind[kind].missed.join(', ')}`).toBeGreaterThanOrEqual(0.9)
      expect(byKind[kind].medianDelayMs, kind).toBeLessThan(24 * HOUR)
    }
    // Every signal but amount_anomaly (which also fires on honest big purchases) is precise here.
    for (const kind of FRAUD_KINDS.filter((k) => k !== 'amount_anomaly')) expect(byKind[kind].precision, kind).toBeGreaterThanOrEqual(0.8)
    expect(result.report.triggers.map((t) => t.trigger)).toEqual(['dormancy_wakeup', 'churn_retention'])
    expect(result.report.exact.find((e) => e.trigger === 'activation_reminder')?.decisions).toBeGreaterThan(0)
  })
})
