import { describe, expect, it } from 'vitest'
import { decide, holdForRisk, initialPolicyState, type PolicyState } from '../pipeline/policy.ts'
import { parseCatalog } from '../pipeline/catalog/index.ts'
import { customerIdProblem, explain, label, parseSince, renderExplanation, type ExplainInput } from '../pipeline/explain.ts'
import { holdoutBucket } from '../pipeline/ids.ts'
import { foldFacts, initialFacts, recordAlert } from '../operators/facts.ts'
import { timerMember } from '../pipeline/timers.ts'
import type { CustomerProfile, Moment } from '../operators/types.ts'
import type { Decision } from '../schemas/decision.ts'
import type { RiskAlert } from '../schemas/alert.ts'
import type { InputEvent } from '../schemas/events.ts'

/** The explanation built from decisions the decision step itself made, on a catalogue made for each rule. */

const HOUR = 3_600_000
const DAY = 24 * HOUR
const catalog = parseCatalog(
  `version: "explain-1"
policy:
  quietHours: { start: "21:00", end: "09:00" }
  holdoutPercent: 0
  weeklyCap: 2
  cooldown: 7d
  riskHold: 72h
triggers:
  activation_reminder: { priority: 90, channels: [sms, push], goal: { kind: lifecycle, stage: activated }, attributionWindow: 7d }
  first_purchase_reward: { priority: 85, channels: [push, sms], goal: { kind: transaction }, attributionWindow: 30d }
  bind_wallet_nudge: { priority: 60, channels: [push], goal: { kind: lifecycle, stage: bound }, attributionWindow: 7d }
  installment_offer: { priority: 50, channels: [push], holdoutPercent: 100, goal: { kind: app, name: installment_applied }, attributionWindow: 7d }
`,
  'test',
)

const customerId = 'cust_explain'
// 22:00 in Shanghai: inside quiet hours.
const T0 = Date.parse('2026-10-05T14:00:00Z')
const iso = (ms: number) => new Date(ms).toISOString()
const moment = (trigger: string, eventTime: number, reason: Record<string, unknown> = {}): Moment => ({ kind: 'moment', trigger, occurrence: `${trigger}@${eventTime}`, eventTime, cardId: 'tok_a', reason })

/** The decisions of one customer's life, each by the real decision step. */
function history() {
  let state: PolicyState = initialPolicyState()
  let profile: CustomerProfile = { timezone: 'Asia/Shanghai', homeCountry: 'CN', consent: {}, segment: 'mass' }
  const decisions: Decision[] = []
  const step = (m: Moment) => {
    const out = decide(state, [m], { customerId, profile, catalog })
    state = out.state
    decisions.push(...out.decisions)
    return out.decisions[0]
  }
  const sent = step(moment('activation_reminder', T0, { approvedAt: iso(T0 - 72 * HOUR), hoursWithoutActivation: 72 }))
  const cooled = step(moment('activation_reminder', T0 + DAY, { approvedAt: iso(T0 - 48 * HOUR), hoursWithoutActivation: 72 }))
  const control = step(moment('installment_offer', T0 + 2 * DAY, { amount: 8000, minAmount: 5000 }))
  const capped = step(moment('first_purchase_reward', T0 + 3 * DAY, { amount: 68.5, note: 'ref 4111 1111 1111 1111' }))
  const alertAt = T0 + 8 * DAY
  state = holdForRisk(state, 'high', alertAt, catalog.policy.riskHold)
  const alert: RiskAlert = {
    id: 'a_1',
    kind: 'impossible_travel',
    severity: 'high',
    score: 0.9,
    customerId,
    cardId: 'tok_a',
    eventTime: iso(alertAt),
    detectedAt: iso(alertAt),
    evidence: { eventIds: ['tx-1', 'tx-2'], distanceKm: 1200, speedKmh: 2400, windowMs: 1_800_000 },
    ruleVersion: 'explain-1',
  }
  const held = step(moment('bind_wallet_nudge', alertAt + HOUR, { activatedAt: iso(T0), daysUnbound: 3 }))
  const later = step(moment('first_purchase_reward', T0 + 12 * DAY, { amount: 80 }))
  profile = { ...profile, consent: { push: false } }
  const noConsent = step(moment('bind_wallet_nudge', T0 + 20 * DAY, { activatedAt: iso(T0), daysUnbound: 3 }))
  return { decisions, state, profile, alert, sent, cooled, control, capped, held, later, noConsent }
}

function input(overrides: Partial<ExplainInput> = {}): ExplainInput {
  const h = history()
  const now = T0 + 21 * DAY
  const tx = (at: number, amount: number) => ({ type: 'transaction', status: 'approved', cardId: 'tok_a', amount, occurredAt: iso(at) }) as unknown as InputEvent
  let facts = foldFacts(initialFacts(), { type: 'lifecycle', stage: 'activated', cardId: 'tok_a' } as unknown as InputEvent, T0 - DAY)
  for (let d = 1; d <= 10; d++) facts = foldFacts(facts, tx(now - d * DAY, 2000), now - d * DAY)
  facts = recordAlert(facts, Date.parse(h.alert.eventTime), 'high')
  return {
    customerId,
    now,
    catalog,
    source: 'fixtures',
    state: {
      partition: 2,
      record: { v: 1, seen: [], profile: h.profile, facts, policy: h.state, ops: {}, conversions: [] },
      timers: [{ member: timerMember(customerId, 'dormancy_wakeup', 'd30'), at: now + 30 * DAY }],
      pendingWebhooks: [{ decision: { ...h.sent, id: 'd_waiting' }, attempts: 1, dueAt: now + HOUR }],
    },
    decisions: h.decisions,
    alerts: [h.alert],
    conversions: [
      { decisionId: h.sent.id, trigger: h.sent.trigger, customerId, outcome: 'send', decisionTime: h.sent.eventTime, windowEnd: iso(T0 + 7 * DAY), converted: true, convertedAt: iso(T0 + 2 * DAY), engaged: false, spend: 120, preSpend: 0, final: true, version: 2 },
    ],
    deliveries: [{ decisionId: h.sent.id, status: 'delivered', attempts: 1, httpStatus: 200, finishedAt: iso(T0 + 11 * HOUR) }],
    limit: 20,
    ...overrides,
  }
}

describe('explain', () => {
  const h = history()
  const e = explain(input())
  const item = (id: string) => e.decisions.items.find((d) => d.id === id)!

  it('says a send went out, held for quiet hours, with its delivery and conversion', () => {
    expect(h.sent.outcome).toBe('send')
    const d = item(h.sent.id)
    expect(d.rule).toMatchObject({ rule: 'sent', channel: 'push', quietHours: { start: '21:00', end: '09:00' } })
    expect(d.why).toMatch(/Held for quiet hours \(21:00–09:00 local\) until 2026-10-06 09:00 Asia\/Shanghai/)
    expect(d.sendAt).toEqual({ utc: '2026-10-06T01:00:00.000Z', local: '2026-10-06 09:00 Asia/Shanghai' })
    expect(d.figures).toContainEqual({ name: 'hoursWithoutActivation', label: 'hours without activation', value: '72' })
    expect(d.figures).toContainEqual({ name: 'approvedAt', label: 'approved at', value: '2026-10-02 22:00 Asia/Shanghai (2026-10-02 14:00 UTC)' })
    expect(d.delivery).toMatchObject({ status: 'delivered', attempts: 1, httpStatus: 200 })
    expect(d.conversion).toMatchObject({ converted: true, convertedAt: { utc: iso(T0 + 2 * DAY) } })
  })

  it('names the earlier decision a cooldown runs from, and when it ends', () => {
    expect(h.cooled.suppressedBy).toBe('cooldown')
    const d = item(h.cooled.id)
    expect(d.rule).toMatchObject({ rule: 'cooldown', cooldown: '7 days', previous: { id: h.sent.id, outcome: 'send' }, endsAt: { utc: iso(T0 + 7 * DAY) } })
    expect(d.why).toContain(h.sent.id)
    expect(d.why).toContain('runs until 2026-10-12 22:00 Asia/Shanghai')
  })

  it('says which control group and what share of customers it holds', () => {
    expect(h.control.outcome).toBe('control')
    const d = item(h.control.id)
    expect(d.rule).toEqual({ rule: 'holdout', group: 'trigger', percent: 100, bucket: holdoutBucket(customerId, 'installment_offer') })
    expect(d.why).toMatch(/installment_offer's control group \(100% of customers/)
  })

  it('lists the decisions a weekly cap counted', () => {
    expect(h.capped.suppressedBy).toBe('weekly_cap')
    expect(h.later.outcome).toBe('send') // later, so not counted
    const d = item(h.capped.id)
    expect(d.rule).toMatchObject({ rule: 'weekly_cap', cap: 2, window: '7 days' })
    expect((d.rule as { counted: { id: string }[] }).counted.map((c) => c.id)).toEqual([h.sent.id, h.control.id])
    expect(d.why).toMatch(/2 of at most 2 messages in 7 days already counted: activation_reminder \(send, .*\), installment_offer \(control, .*\)\. Room again from 2026-10-12 22:00/)
  })

  it('names the alert behind a risk hold and when the hold ends', () => {
    expect(h.held.suppressedBy).toBe('risk_hold')
    const d = item(h.held.id)
    expect(d.rule).toMatchObject({ rule: 'risk_hold', hold: '3 days', alerts: [{ id: 'a_1', kind: 'impossible_travel', severity: 'high' }], holdUntil: { utc: iso(T0 + 11 * DAY) } })
    expect(d.why).toMatch(/the high impossible_travel alert at .* holds marketing for 3 days/)
    expect(e.alerts[0]).toMatchObject({ id: 'a_1', holdsMarketingUntil: { utc: iso(T0 + 11 * DAY) } })
    expect(e.alerts[0].figures).toContainEqual({ name: 'windowMs', label: 'window', value: '30 min' })
  })

  it('says which channels consent was withdrawn for', () => {
    expect(h.noConsent.suppressedBy).toBe('consent')
    expect(item(h.noConsent.id).rule).toEqual({ rule: 'consent', channels: ['push'], withdrawn: ['push'] })
  })

  it('explains an expired decision', () => {
    const expired: Decision = { ...h.sent, id: 'd_expired', outcome: 'suppressed', suppressedBy: 'expired', sendAt: undefined, decidedAt: iso(T0 + 3 * DAY), expiresAt: iso(T0 + 2 * DAY) }
    const d = explain(input({ decisions: [expired] })).decisions.items[0]
    expect(d.rule).toMatchObject({ rule: 'expired', expiresAt: { utc: iso(T0 + 2 * DAY) } })
    expect(d.why).toMatch(/decided at 2026-10-08 22:00 Asia\/Shanghai, after it expired at 2026-10-07 22:00/)
  })

  it('says when a decision was made later than its event, and names a suppression it cannot explain further', () => {
    const late: Decision = { ...h.cooled, id: 'd_late', decidedAt: iso(T0 + DAY + 8 * HOUR) }
    expect(renderExplanation(explain(input({ decisions: [late] })))).toMatch(/ {4}decided at +2026-10-07 06:00 Asia\/Shanghai \(2026-10-06 22:00 UTC\)\n/)
    expect(renderExplanation(explain(input({ decisions: [h.cooled] })))).not.toContain('decided at')
    const odd = { ...h.cooled, suppressedBy: 'frequency' } as unknown as Decision
    expect(explain(input({ decisions: [odd] })).decisions.items[0]).toMatchObject({ rule: { rule: 'other', suppressedBy: 'frequency' }, why: 'Suppressed (frequency).' })
  })

  it('reads the state: stage per card, value tier, risk level, hold, timers, touchpoints in the outbox', () => {
    expect(e.state).toMatchObject({
      available: true,
      partition: 2,
      segment: 'mass',
      consent: { sms: true, push: false, call: true, app_banner: true },
      stage: 'activated',
      cards: [{ cardId: 'tok_a', stage: 'activated' }],
      valueTier: 'high',
      riskLevel: 'high',
      riskHold: { until: { utc: iso(T0 + 11 * DAY) }, active: false },
      approvedTransactions: 10,
      timers: [{ owner: 'dormancy_wakeup', key: 'd30', what: 'dormancy_wakeup checks again (d30)', due: { utc: iso(T0 + 51 * DAY), local: '2026-11-25 22:00 Asia/Shanghai' } }],
      pendingTouchpoints: [{ decisionId: 'd_waiting', trigger: 'activation_reminder', channel: 'push', attempts: 1 }],
    })
  })

  it('shows the newest decisions first, as many as asked, since when asked; older ones still explain the newer', () => {
    const few = explain(input({ limit: 2 }))
    expect(few.decisions.items.map((d) => d.id)).toEqual([h.noConsent.id, h.later.id])
    expect(few.decisions).toMatchObject({ total: 7, shown: 2 })
    const recent = explain(input({ since: T0 + DAY }))
    expect(recent.decisions.items.map((d) => d.id)).not.toContain(h.sent.id)
    expect(recent.decisions.items.find((d) => d.id === h.cooled.id)!.rule).toMatchObject({ previous: { id: h.sent.id } })
  })

  it('says when a decision was made under another catalogue than the one quoted', () => {
    const old = { ...h.sent, catalogVersion: 'explain-0' }
    expect(explain(input({ decisions: [old] })).decisions.items[0].catalogNote).toBe('decided under catalogue explain-0; the rules quoted are those of explain-1, in force now')
  })

  it('says why there is no state when the source keeps none', () => {
    const e2 = explain(input({ state: { unavailable: 'a replay keeps no customer state' } }))
    expect(e2.state).toEqual({ available: false, note: 'a replay keeps no customer state' })
    expect(renderExplanation(e2)).toContain('a replay keeps no customer state')
  })
})

describe('the text', () => {
  const h = history()
  const text = renderExplanation(explain(input()))

  it('has the sections, the rule and the figures of each decision', () => {
    for (const section of ['Profile', 'Cards (1)', 'Pending timers (1)', 'Pending touchpoints in the outbox (1)', 'Recent decisions (7 of 7, newest first)', 'Risk alerts (1)', 'Conversions attributed to its decisions (1)'])
      expect(text).toContain(section)
    expect(text).toMatch(/activation_reminder {2}SUPPRESSED by cooldown\n {4}why +Suppressed by the cooldown: activation_reminder was already decided \(send, d_/)
    expect(text).toMatch(/ {4}hours without activation +72\n/)
    expect(text).toContain('value tier (RFM)    high')
    expect(text).toContain('  2026-11-25 22:00 Asia/Shanghai (2026-11-25 14:00 UTC)  dormancy_wakeup checks again (d30)')
    expect(text).toContain(`catalogue                 explain-1`)
  })

  it('never prints a card number, and colours only when asked', () => {
    expect(h.capped.reason.note).toContain('4111 1111 1111 1111')
    expect(text).not.toMatch(/4111[ -]?1111[ -]?1111[ -]?1111/)
    expect(JSON.stringify(explain(input()))).not.toMatch(/4111[ -]?1111[ -]?1111[ -]?1111/) // the --json document and the API's too
    expect(text).toContain('***********1111')
    expect(text).not.toContain('\u001b[')
    expect(renderExplanation(explain(input()), { color: true })).toContain('\u001b[31mSUPPRESSED by cooldown\u001b[39m')
  })
})

describe('arguments', () => {
  it('refuses a bad customer id without repeating it', () => {
    expect(customerIdProblem('cust_1')).toBeUndefined()
    expect(customerIdProblem('')).toBe('give a customer id (--customer)')
    expect(customerIdProblem(undefined)).toBe('give a customer id (--customer)')
    expect(customerIdProblem('a'.repeat(65))).toBe('the customer id is 65 characters long; at most 64')
    expect(customerIdProblem('cust 1')).toBe('a customer id is 1–64 characters of A-Z a-z 0-9 _ -')
    const pan = customerIdProblem('4111111111111111')
    expect(pan).toMatch(/looks like a card number/)
    expect(pan).not.toContain('4111')
  })

  it('reads since as a span back or an instant', () => {
    expect(parseSince('30d')).toEqual({ back: 30 * DAY })
    expect(parseSince('2026-10-01')).toEqual({ at: Date.parse('2026-10-01T00:00:00Z') })
    expect(parseSince('2026-10-01T08:00:00+08:00')).toEqual({ at: Date.parse('2026-10-01T00:00:00Z') })
    expect(parseSince('last week')).toBeUndefined()
  })

  it('words field names', () => {
    expect(label('hoursWithoutActivation')).toBe('hours without activation')
    expect(label('spend30d')).toBe('spend 30 days')
    expect(label('windowMs')).toBe('window')
  })
})
