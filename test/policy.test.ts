import { describe, expect, it } from 'vitest'
import { decide, holdForRisk, initialPolicyState, routeChannel, type PolicyState } from '../pipeline/policy.ts'
import { parseCatalog, loadCatalogFile } from '../pipeline/catalog/index.ts'
import { afterQuietHours, localTime, zonedInstant } from '../operators/time.ts'
import { globalHoldoutBucket, holdoutBucket } from '../pipeline/ids.ts'
import type { Moment, CustomerProfile } from '../operators/types.ts'
import type { Catalog } from '../schemas/catalog.ts'
import { foldFacts, initialFacts, recordAlert, type CustomerFacts } from '../operators/facts.ts'

const HOUR = 3_600_000
const DAY = 24 * HOUR
const profile: CustomerProfile = { timezone: 'Asia/Shanghai', homeCountry: 'CN', consent: {} }
// 10:00 in Shanghai: outside quiet hours.
const T = Date.parse('2026-10-05T02:00:00Z')

function catalog(policy: Record<string, unknown> = {}, extraTriggers = ''): Catalog {
  const p = Object.entries({ holdoutPercent: 0, quietHours: null, ...policy })
    .map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`)
    .join('\n')
  return parseCatalog(
    `version: "t"
policy:
${p}
triggers:
  activation_reminder: { priority: 90, channels: [sms, push], goal: { kind: lifecycle, stage: activated }, attributionWindow: 7d }
  first_purchase_reward: { priority: 85, channels: [push, sms], goal: { kind: transaction }, attributionWindow: 30d }
  bind_wallet_nudge: { priority: 60, channels: [push], goal: { kind: lifecycle, stage: bound }, attributionWindow: 7d }
  compliance_notice: { priority: 1000, channels: [sms], goal: { kind: transaction }, attributionWindow: 30d }
${extraTriggers}`,
    'test',
  )
}

const moment = (trigger: string, eventTime = T, occurrence = `${trigger}@${eventTime}`): Moment => ({ kind: 'moment', trigger, occurrence, eventTime, reason: {} })

function run(c: Catalog, moments: Moment[], state: PolicyState = initialPolicyState(), p: CustomerProfile = profile, customerId = 'cust_1') {
  return decide(state, moments, { customerId, profile: p, catalog: c })
}

describe('decision step', () => {
  it('sends, with a deterministic id and the contract fields', () => {
    const a = run(catalog(), [moment('activation_reminder')])
    const b = run(catalog(), [moment('activation_reminder')])
    expect(a.decisions[0]).toEqual(b.decisions[0])
    expect(a.decisions[0]).toMatchObject({
      outcome: 'send',
      channel: 'push', // no preferred channel: the first of the policy's order that the trigger uses
      eventTime: new Date(T).toISOString(),
      decidedAt: new Date(T).toISOString(),
      sendAt: new Date(T).toISOString(),
      expiresAt: new Date(T + 48 * HOUR).toISOString(),
      catalogVersion: 't',
      attributionWindowDays: 7,
    })
    expect(a.decisions[0].id).toMatch(/^d_[0-9a-f]{32}$/)
  })

  it('applies the per-trigger cooldown, counting from the last contact', () => {
    const c = catalog()
    const first = run(c, [moment('activation_reminder', T)])
    expect(run(c, [moment('activation_reminder', T + 7 * DAY - 1)], first.state).decisions[0]).toMatchObject({ outcome: 'suppressed', suppressedBy: 'cooldown' })
    expect(run(c, [moment('activation_reminder', T + 7 * DAY)], first.state).decisions[0].outcome).toBe('send')
    // Other triggers are not cooled down by it.
    expect(run(c, [moment('first_purchase_reward', T + HOUR)], first.state).decisions[0].outcome).toBe('send')
  })

  it('caps marketing at 3 contacts per rolling 7 days, control counting like send', () => {
    const c = catalog({ cooldown: '1m' })
    let s = initialPolicyState()
    const outcomes: string[] = []
    for (let i = 0; i < 5; i++) {
      const r = run(c, [moment('first_purchase_reward', T + i * DAY)], s)
      s = r.state
      outcomes.push(r.decisions[0].suppressedBy ?? r.decisions[0].outcome)
    }
    expect(outcomes).toEqual(['send', 'send', 'send', 'weekly_cap', 'weekly_cap'])
    expect(run(c, [moment('first_purchase_reward', T + 7 * DAY)], s).decisions[0].outcome).toBe('send')

    const controlOnly = catalog({ cooldown: '1m', holdoutPercent: 100 })
    let s2 = initialPolicyState()
    for (let i = 0; i < 3; i++) s2 = run(controlOnly, [moment('first_purchase_reward', T + i * HOUR)], s2).state
    expect(run(catalog({ cooldown: '1m' }), [moment('first_purchase_reward', T + 4 * HOUR)], s2).decisions[0].suppressedBy).toBe('weekly_cap')
  })

  it('orders simultaneous moments by priority and marks those the cap cuts as lower_priority', () => {
    const c = catalog({ weeklyCap: 1 })
    const r = run(c, [moment('bind_wallet_nudge'), moment('activation_reminder'), moment('first_purchase_reward')])
    expect(r.decisions.map((d) => [d.trigger, d.suppressedBy ?? d.outcome])).toEqual([
      ['activation_reminder', 'send'],
      ['first_purchase_reward', 'lower_priority'],
      ['bind_wallet_nudge', 'lower_priority'],
    ])
  })

  it('holds out a stable share of customers per trigger', () => {
    const c = catalog({ holdoutPercent: 10 })
    let control = 0
    for (let i = 0; i < 5000; i++) {
      const d = run(c, [moment('activation_reminder')], initialPolicyState(), profile, `cust_${i}`).decisions[0]
      if (d.outcome === 'control') control++
      expect(d.outcome === 'control').toBe(holdoutBucket(`cust_${i}`, 'activation_reminder') < 1000)
    }
    expect(control / 5000).toBeGreaterThan(0.08)
    expect(control / 5000).toBeLessThan(0.12)
  })

  it('holds a global control group out of every marketing trigger, apart from the per-trigger holdout', () => {
    const c = catalog({ globalHoldoutPercent: 10 })
    let global = 0
    for (let i = 0; i < 5000; i++) {
      const id = `cust_${i}`
      const ds = run(c, [moment('activation_reminder'), moment('first_purchase_reward', T + HOUR)], initialPolicyState(), profile, id).decisions
      const held = globalHoldoutBucket(id) < 1000
      if (held) global++
      expect(ds.map((d) => [d.outcome, d.holdout])).toEqual(held ? [['control', 'global'], ['control', 'global']] : [['send', undefined], ['send', undefined]])
    }
    expect(global / 5000).toBeGreaterThan(0.08)
    expect(global / 5000).toBeLessThan(0.12)
    // Independent of the per-trigger hash: about 10% of one group is in the other.
    const ids = Array.from({ length: 5000 }, (_, i) => `cust_${i}`)
    const both = ids.filter((id) => globalHoldoutBucket(id) < 1000 && holdoutBucket(id, 'activation_reminder') < 1000).length
    expect(both).toBeGreaterThan(25)
    expect(both).toBeLessThan(75)
    // With both holdouts, the global one is named.
    const id = ids.find((id) => globalHoldoutBucket(id) < 1000)!
    expect(run(catalog({ globalHoldoutPercent: 10, holdoutPercent: 100 }), [moment('activation_reminder')], initialPolicyState(), profile, id).decisions[0].holdout).toBe('global')
    expect(run(catalog({ holdoutPercent: 100 }), [moment('activation_reminder')], initialPolicyState(), profile, id).decisions[0].holdout).toBe('trigger')
  })

  it('still sends service messages to the global control group, and counts its controls against the cap', () => {
    const c = catalog({ globalHoldoutPercent: 100, cooldown: '1m' })
    expect(run(c, [moment('compliance_notice')]).decisions[0]).toMatchObject({ outcome: 'send' })
    let s = initialPolicyState()
    const outcomes: string[] = []
    for (let i = 0; i < 4; i++) {
      const r = run(c, [moment('first_purchase_reward', T + i * HOUR)], s)
      s = r.state
      outcomes.push(r.decisions[0].suppressedBy ?? r.decisions[0].outcome)
    }
    expect(outcomes).toEqual(['control', 'control', 'control', 'weekly_cap'])
    expect(run(catalog({ globalHoldoutPercent: 100 }), [moment('activation_reminder')], { ...initialPolicyState(), riskHoldFrom: T, riskHoldUntil: T + HOUR }).decisions[0].suppressedBy).toBe('risk_hold')
  })

  it('routes to the preferred channel when consented, else the next consented one, else suppresses', () => {
    const order = loadCatalogFile().policy.channelOrder
    expect(routeChannel(['sms', 'push'], { ...profile, preferredChannel: 'sms' }, order)).toBe('sms')
    expect(routeChannel(['sms', 'push'], { ...profile, preferredChannel: 'call' }, order)).toBe('push')
    expect(routeChannel(['sms', 'push'], { ...profile, preferredChannel: 'sms', consent: { sms: false } }, order)).toBe('push')
    const none = { ...profile, consent: { sms: false, push: false } }
    expect(run(catalog(), [moment('activation_reminder')], initialPolicyState(), none).decisions[0]).toMatchObject({ outcome: 'suppressed', suppressedBy: 'consent' })
  })

  it('holds marketing during a risk hold, from the alerting event on', () => {
    const held: PolicyState = { ...initialPolicyState(), riskHoldFrom: T, riskHoldUntil: T + 72 * HOUR }
    expect(run(catalog(), [moment('activation_reminder', T)], held).decisions[0].suppressedBy).toBe('risk_hold')
    expect(run(catalog(), [moment('activation_reminder', T + 72 * HOUR)], held).decisions[0].outcome).toBe('send')
    expect(run(catalog(), [moment('compliance_notice', T)], held).decisions[0].outcome).toBe('send')
  })

  it('defers sends in quiet hours to 09:00 local, across midnight', () => {
    const c = catalog({ quietHours: { start: '21:00', end: '09:00' } })
    const at2230 = Date.parse('2026-10-05T14:30:00Z') // 22:30 Shanghai
    const d = run(c, [moment('activation_reminder', at2230)]).decisions[0]
    expect(d.sendAt).toBe('2026-10-06T01:00:00.000Z') // 09:00 next day in Shanghai
    const at0300 = Date.parse('2026-10-05T19:00:00Z') // 03:00 Shanghai on the 6th
    expect(run(c, [moment('activation_reminder', at0300)]).decisions[0].sendAt).toBe('2026-10-06T01:00:00.000Z')
    // A service message is not deferred.
    expect(run(c, [moment('compliance_notice', at2230)]).decisions[0].sendAt).toBe(new Date(at2230).toISOString())
  })

  it('expires a moment decided after its TTL', () => {
    const d = decide(initialPolicyState(), [moment('activation_reminder', T)], { customerId: 'c', profile, catalog: catalog(), decisionTime: () => T + 49 * HOUR }).decisions[0]
    expect(d).toMatchObject({ outcome: 'suppressed', suppressedBy: 'expired', decidedAt: new Date(T + 49 * HOUR).toISOString() })
  })

  it('exempts compliance notices from cooldowns, caps and holdouts', () => {
    const c = catalog({ weeklyCap: 0, holdoutPercent: 100 })
    let s = initialPolicyState()
    for (let i = 0; i < 3; i++) {
      const r = run(c, [moment('compliance_notice', T + i)], s)
      s = r.state
      expect(r.decisions[0].outcome).toBe('send')
    }
  })

  it('ignores moments of triggers the catalogue does not enable', () => {
    expect(run(catalog(), [moment('birthday_greeting')]).decisions).toEqual([])
  })
})

describe('risk hold', () => {
  const H = 72 * HOUR
  it('starts on a high or critical alert, extends inside a running hold, starts anew after it', () => {
    const s0 = initialPolicyState()
    expect(holdForRisk(s0, 'medium', T, H)).toBe(s0)
    const held = holdForRisk(s0, 'high', T, H)
    expect(held).toMatchObject({ riskHoldFrom: T, riskHoldUntil: T + H })
    expect(holdForRisk(held, 'critical', T + HOUR, H)).toMatchObject({ riskHoldFrom: T, riskHoldUntil: T + HOUR + H })
    // An alert older than the hold's start, still inside it, moves the start back.
    expect(holdForRisk(held, 'high', T - HOUR, H)).toMatchObject({ riskHoldFrom: T - HOUR, riskHoldUntil: T + H })
    expect(holdForRisk(held, 'high', T + H, H)).toMatchObject({ riskHoldFrom: T + H, riskHoldUntil: T + 2 * H })
  })
})

describe('audiences and offer variants', () => {
  const facts = (spendPerDay: number, days = 20): CustomerFacts => {
    let f = initialFacts()
    for (let i = 0; i < days; i++) f = foldFacts(f, { type: 'transaction', eventId: `t${i}`, occurredAt: new Date(T - (days - i) * DAY).toISOString(), customerId: 'c', cardId: 'k', amount: spendPerDay, currency: 'CNY', status: 'approved', channel: 'pos', cardPresent: true, merchant: { id: 'm' } }, T - (days - i) * DAY)
    return f
  }
  const targeted = catalog(
    {},
    `  installment_offer:
    priority: 70
    channels: [push]
    offer: { code: BASE, value: 10, currency: CNY }
    offers: { high: { code: VIP, value: 100, currency: CNY } }
    audience: { tiers: [mid, high], segments: [affluent], tagsNone: [staff] }
    goal: { kind: app, name: installment_applied }
    attributionWindow: 7d`,
  )
  const decideFor = (p: CustomerProfile, f: CustomerFacts) => decide(initialPolicyState(), [moment('installment_offer')], { customerId: 'c', profile: p, facts: f, catalog: targeted }).decisions

  it('decides only for customers in the audience', () => {
    const affluent = { ...profile, segment: 'affluent' }
    expect(decideFor(affluent, facts(1000))).toHaveLength(1)
    expect(decideFor({ ...profile, segment: 'mass' }, facts(1000))).toHaveLength(0)
    expect(decideFor(affluent, facts(10, 3))).toHaveLength(0) // low tier: little spend on few days
    expect(decideFor({ ...affluent, tags: ['staff'] }, facts(1000))).toHaveLength(0)
  })

  it('gives the tier its offer variant, else the base offer', () => {
    const affluent = { ...profile, segment: 'affluent' }
    expect(decideFor(affluent, facts(1000))[0].offer).toEqual({ code: 'VIP', value: 100, currency: 'CNY' })
    expect(decideFor(affluent, facts(200))[0].offer).toEqual({ code: 'BASE', value: 10, currency: 'CNY' })
  })

  it('targets risk levels from recent alerts', () => {
    const c = catalog({}, '  birthday_greeting: { channels: [sms], audience: { riskLevels: [none, low] }, goal: { kind: transaction }, attributionWindow: 7d }')
    const clean = initialFacts()
    const flagged = recordAlert(initialFacts(), T - DAY, 'medium')
    expect(decide(initialPolicyState(), [moment('birthday_greeting')], { customerId: 'c', profile, facts: clean, catalog: c }).decisions).toHaveLength(1)
    expect(decide(initialPolicyState(), [moment('birthday_greeting')], { customerId: 'c', profile, facts: flagged, catalog: c }).decisions).toHaveLength(0)
  })
})

describe('local time', () => {
  it('converts between instants and local wall-clock time, DST included', () => {
    expect(zonedInstant(2026, 10, 6, 9, 0, 'Asia/Shanghai')).toBe(Date.parse('2026-10-06T01:00:00Z'))
    expect(zonedInstant(2026, 3, 29, 9, 0, 'Europe/Berlin')).toBe(Date.parse('2026-03-29T07:00:00Z'))
    expect(localTime(Date.parse('2026-10-05T14:30:00Z'), 'Asia/Shanghai')).toMatchObject({ day: 5, hour: 22, minute: 30 })
    expect(afterQuietHours(Date.parse('2026-10-05T02:00:00Z'), 'Asia/Shanghai', '21:00', '09:00')).toBe(Date.parse('2026-10-05T02:00:00Z'))
    expect(afterQuietHours(Date.parse('2026-10-05T12:59:00Z'), 'Asia/Shanghai', '21:00', '09:00')).toBe(Date.parse('2026-10-05T12:59:00Z'))
    expect(afterQuietHours(Date.parse('2026-10-05T13:00:00Z'), 'Asia/Shanghai', '21:00', '09:00')).toBe(Date.parse('2026-10-06T01:00:00Z'))
  })

  it('agrees with Intl at every half hour of a year, on the days the offset changes too', () => {
    // Half-hour and 45-minute offsets, and DST shifts of an hour and of half an hour.
    const zones = ['America/Los_Angeles', 'Europe/London', 'Australia/Sydney', 'Australia/Lord_Howe', 'Pacific/Chatham', 'Asia/Kolkata']
    for (const timeZone of zones) {
      const intl = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric' })
      const wrong: string[] = []
      for (let ms = Date.parse('2026-01-01T00:00:00Z'); ms < Date.parse('2027-01-01T00:00:00Z'); ms += 1_800_000) {
        const at = ms + 17 * 60_000
        const t = localTime(at, timeZone)
        const local = `${t.year}-${t.month}-${t.day} ${t.hour}:${t.minute}`
        const p = Object.fromEntries(intl.formatToParts(new Date(at)).map((x) => [x.type, x.value]))
        const expected = `${p.year}-${p.month}-${p.day} ${Number(p.hour)}:${Number(p.minute)}`
        if (local !== expected) wrong.push(`${timeZone} ${new Date(at).toISOString()}: ${local}, expected ${expected}`)
      }
      expect(wrong).toEqual([])
    }
  })
})
