import { describe, expect, it } from 'vitest'
import { createHash } from 'node:crypto'
import { SimulatedBank, simulateBank } from '../simulator/bank.ts'
import { parseBankConfig, FRAUD_KINDS, SEGMENTS, type BankConfigInput } from '../simulator/config.ts'
import type { TruthRecord } from '../simulator/truth.ts'
import { InputEvent } from '../schemas/events.ts'
import type { WebhookBody } from '../schemas/decision.ts'
import type { RiskAlert } from '../schemas/alert.ts'
import type { Decision } from '../schemas/decision.ts'
import { EmbeddedPipeline } from '../pipeline/embedded.ts'
import { loadCatalogFile } from '../pipeline/catalog/index.ts'

/** The simulated bank: deterministic, valid, at the configured rates, with fraud the pipeline detects and customers who react. */

const START = Date.parse('2026-09-01T00:00:00Z')
const DAY = 86_400_000

function digest(bank: SimulatedBank) {
  const h = createHash('sha256')
  for (const m of bank.messages(Infinity)) h.update(m.value + '\n')
  h.update(bank.truthNdjson())
  return h.digest('hex')
}

const config = (c: BankConfigInput = {}) => parseBankConfig(c, 'test')

/** Runs events through the embedded pipeline on the default catalogue. */
async function pipeline(events: Iterable<InputEvent>) {
  const alerts: RiskAlert[] = []
  const decisions: Decision[] = []
  const catalog = loadCatalogFile()
  const engine = new EmbeddedPipeline({
    catalog: () => catalog,
    maxDisorder: 0,
    outbox: { webhooks: false, alerts: false, rows: false },
    onOutput: (o) => {
      alerts.push(...o.alerts)
      decisions.push(...o.decisions)
    },
    onDeadLetter: () => {},
  })
  const batch = []
  for (const event of events) batch.push({ ok: true as const, event, at: Date.parse(event.occurredAt), source: { topic: 'bank', partition: 0, offset: '0' } })
  await engine.pushAll(batch)
  await engine.finish()
  return { alerts, decisions }
}

describe('the simulated bank', () => {
  it('is deterministic for a seed: same seed, same bytes (events and truth); another seed differs', () => {
    const opts = { customers: 150, days: 30, start: START, seed: 4, config: config({ malformed: { share: 0.01 } }) }
    const a = digest(new SimulatedBank(opts))
    expect(digest(new SimulatedBank(opts))).toBe(a)
    expect(digest(new SimulatedBank({ ...opts, seed: 5 }))).not.toBe(a)
  })

  it('emits only valid events, sorted by time then eventId, with unique ids and nothing that looks like a card number', () => {
    const events = simulateBank({ customers: 300, days: 60, start: START, seed: 2 })
    expect(events.length).toBeGreaterThan(10_000)
    const ids = new Set<string>()
    const types = new Set<string>()
    for (let i = 0; i < events.length; i++) {
      const e = events[i]
      const parsed = InputEvent.safeParse(e)
      if (!parsed.success) throw new Error(`${JSON.stringify(e)}: ${parsed.error.message}`)
      expect(ids.has(e.eventId)).toBe(false)
      ids.add(e.eventId)
      types.add(e.type === 'transaction' ? `tx:${e.status}:${e.channel}` : e.type === 'app' ? `app:${e.name}` : `lc:${e.stage}`)
      if (i) {
        const p = events[i - 1]
        expect(p.occurredAt < e.occurredAt || (p.occurredAt === e.occurredAt && p.eventId < e.eventId)).toBe(true)
      }
      expect(Date.parse(e.occurredAt)).toBeGreaterThanOrEqual(START)
      expect(Date.parse(e.occurredAt)).toBeLessThan(START + 60 * DAY)
      expect(hasPan(JSON.stringify(e))).toBe(false)
    }
    // Every app event name and the whole card lifecycle appear.
    for (const name of ['login', 'page_view', 'offer_viewed', 'offer_clicked', 'coupon_claimed', 'device_registered', 'consent_changed', 'profile_updated', 'installment_applied'])
      expect(types, name).toContain(`app:${name}`)
    for (const stage of ['applied', 'approved', 'declined', 'issued', 'activated', 'bound', 'limit_changed', 'expiring', 'renewed', 'blocked'])
      expect(types, stage).toContain(`lc:${stage}`)
    for (const t of ['tx:approved:pos', 'tx:approved:ecom', 'tx:approved:qr', 'tx:approved:wallet', 'tx:declined:pos']) expect(types, t).toContain(t)
  })

  it('draws customers, approvals, activations and fraud at the configured rates', () => {
    const cfg = config({
      population: { existingShare: 0.3, applyWithinDays: 30 },
      lifecycle: { approvalRate: 0.7, activationRate: 0.6, lostStolenPerYear: 0, blockAfterFraud: 0 },
      dormancy: { perYear: 0 },
      churn: { perYear: 0 },
      fraud: Object.fromEntries(FRAUD_KINDS.map((k) => [k, 0.5])),
    })
    const customers = 3000
    const days = 120
    const bank = new SimulatedBank({ customers, days, start: START, seed: 9, config: cfg })
    const stages = new Map<string, Set<string>>()
    for (const e of bank.until(Infinity)) if (e.type === 'lifecycle') (stages.get(e.stage) ?? stages.set(e.stage, new Set()).get(e.stage)!).add(e.customerId)
    const truth = bank.truth()
    const people = truth.filter((r) => r.kind === 'customer')
    const existing = people.filter((r) => r.existing).length
    expect(existing / customers).toBeCloseTo(0.3, 1)
    for (const s of SEGMENTS) expect(people.filter((r) => r.segment === s).length / customers, s).toBeCloseTo(cfg.segments[s].share, 1)
    const abroad = people.filter((r) => r.timezone !== 'Asia/Shanghai').length / customers
    expect(abroad).toBeGreaterThan(0.03)
    expect(abroad).toBeLessThan(0.09)
    const applied = stages.get('applied')!.size
    expect(applied).toBe(customers - existing)
    expect(stages.get('approved')!.size / applied).toBeCloseTo(0.7, 1)
    // Without any reminder: the share of issued cards activated within the period (late ones may fall after it).
    const activatedNew = [...stages.get('activated')!].filter((c) => stages.get('issued')!.has(c)).length
    expect(activatedNew / stages.get('issued')!.size).toBeGreaterThan(0.55)
    expect(activatedNew / stages.get('issued')!.size).toBeLessThan(0.62)
    // Fraud: 0.5 cases per customer-year of an active card, per kind (existing customers are active all along).
    const existingIds = new Set(people.filter((r) => r.existing).map((r) => r.customerId))
    const exposureYears = (existing * (days - 3)) / 365
    for (const kind of FRAUD_KINDS) {
      const cases = truth.filter((r) => r.kind === 'fraud' && r.fraudKind === kind && existingIds.has(r.customerId)).length
      expect(cases / exposureYears, kind).toBeGreaterThan(0.5 * (kind === 'amount_anomaly' ? 0.6 : 0.8))
      expect(cases / exposureYears, kind).toBeLessThan(0.5 * 1.2)
    }
  })

  it('injects fraud of every kind, and the pipeline raises that kind of alert for each case', { timeout: 120_000 }, async () => {
    const cfg = config({ fraud: Object.fromEntries(FRAUD_KINDS.map((k) => [k, 0.6])), population: { existingShare: 0.8 } })
    const bank = new SimulatedBank({ customers: 400, days: 60, start: START, seed: 21, config: cfg })
    const { alerts } = await pipeline(bank.until(Infinity))
    const cases = bank.truth().filter((r): r is Extract<TruthRecord, { kind: 'fraud' }> => r.kind === 'fraud')
    for (const kind of FRAUD_KINDS) expect(cases.filter((c) => c.fraudKind === kind).length, kind).toBeGreaterThanOrEqual(5)
    const missed = cases.filter((c) => {
      const ids = new Set(c.eventIds)
      return !alerts.some((a) => a.kind === c.fraudKind && a.customerId === c.customerId && a.evidence.eventIds.some((id) => ids.has(id)))
    })
    expect(missed.map((c) => `${c.fraudKind} ${c.customerId} ${c.at}`)).toEqual([])
  })

  it('reacts to touchpoints: reminded customers activate more, by the configured effect; others are untouched', () => {
    // Cards that are never activated untouched, so the whole effect shows: probability 0.4 → +40 points.
    const cfg = config({ population: { existingShare: 0 }, lifecycle: { activationRate: 0.5, activationOnTimeShare: 1 }, effects: { activation_reminder: { probability: 0.4 } } })
    const opts = { customers: 4000, days: 40, start: START, seed: 13, config: cfg }
    const bank = new SimulatedBank(opts)
    const untouched = new SimulatedBank(opts)
    const activated = new Map<string, number>()
    const issued = new Map<string, number>()
    const pending: WebhookBody[] = []
    const all: InputEvent[] = []
    // Step a simulated hour at a time; remind every card not activated 72 h after issue, odd customers only.
    for (let t = START; t < START + 40 * DAY; t += 3_600_000) {
      for (const e of bank.until(t)) {
        all.push(e)
        if (e.type !== 'lifecycle') continue
        if (e.stage === 'issued') {
          issued.set(e.customerId, Date.parse(e.occurredAt))
          if (Number(e.customerId.slice(5)) % 2) pending.push(reminder(e.customerId, e.cardId, Date.parse(e.occurredAt) + 72 * 3_600_000))
        }
        if (e.stage === 'activated') activated.set(e.customerId, Date.parse(e.occurredAt))
      }
      while (pending.length && Date.parse(pending[0].sendAt) <= t + 3_600_000) {
        const body = pending.shift()!
        const at = activated.get(body.customerId)
        if (at === undefined || at > Date.parse(body.sendAt)) expect(bank.receive(body).ok).toBe(true)
      }
    }
    const rate = (odd: number) => {
      const group = [...issued.keys()].filter((c) => Number(c.slice(5)) % 2 === odd && issued.get(c)! < START + 30 * DAY)
      return group.filter((c) => activated.has(c)).length / group.length
    }
    const lift = rate(1) - rate(0)
    expect(rate(0)).toBeCloseTo(0.5, 1)
    // 0.5 would not have activated; 40% of them do when reminded: +20 points.
    expect(lift).toBeGreaterThan(0.15)
    expect(lift).toBeLessThan(0.25)

    // Customers never reminded have exactly the events they would have had with no touchpoints at all.
    const evenOnly = (events: Iterable<InputEvent>) => [...events].filter((e) => Number(e.customerId.slice(5)) % 2 === 0).map((e) => JSON.stringify(e))
    all.push(...bank.until(Infinity))
    expect(evenOnly(all)).toEqual(evenOnly(untouched.until(Infinity)))
    expect(all.length).toBeGreaterThan([...new SimulatedBank(opts).until(Infinity)].length)
    const treatedTruth = bank.truth().filter((r) => r.kind === 'treatment')
    expect(treatedTruth.length).toBeGreaterThan(500)
    expect(treatedTruth.every((r) => r.kind === 'treatment' && r.effect.probability === 0.4 && r.action === 'activate')).toBe(true)
  })

  it('gives the same events however finely time is stepped, touchpoints included', () => {
    const opts = { customers: 200, days: 20, start: START, seed: 8 }
    const run = (step: number, upfront?: WebhookBody[]) => {
      const bank = new SimulatedBank(opts)
      const out: string[] = []
      const touch: WebhookBody[] = []
      const delivered: WebhookBody[] = []
      // The reference: every touchpoint known before the bank starts.
      for (const body of upfront ?? []) bank.receive(body)
      for (let t = START; t <= START + 21 * DAY; t += step) {
        for (const e of bank.until(t)) {
          out.push(JSON.stringify(e))
          // A spend offer a day after every approval.
          if (!upfront && e.type === 'lifecycle' && e.stage === 'approved') touch.push(offer(e.customerId, Date.parse(e.occurredAt) + DAY))
        }
        touch.sort((a, b) => a.sendAt.localeCompare(b.sendAt))
        while (touch.length && Date.parse(touch[0].sendAt) <= t + step) {
          const body = touch.shift()!
          delivered.push(body)
          bank.receive(body)
        }
      }
      for (const e of bank.until(Infinity)) out.push(JSON.stringify(e))
      return { out, truth: bank.truthNdjson(), delivered }
    }
    const coarse = run(6 * 3_600_000)
    const fine = run(7 * 60_000)
    const reference = run(21 * DAY, fine.delivered)
    expect(fine.delivered.length).toBeGreaterThan(50)
    expect(fine.out.length).toBe(coarse.out.length)
    expect(fine.out).toEqual(coarse.out)
    expect(fine.out).toEqual(reference.out)
    expect(fine.truth).toBe(coarse.truth)
    expect(fine.truth).toBe(reference.truth)
  })

  it('answers a bad configuration with one line naming the field', () => {
    expect(() => parseBankConfig('fraud: { velocity: -1 }', 'bank.yaml')).toThrow(/^bank\.yaml: fraud\.velocity: /)
    expect(() => parseBankConfig('effects: { activation_reminder: { within: soon } }', 'bank.yaml')).toThrow('bank.yaml: effects.activation_reminder.within: "soon" is not a duration')
    expect(() => parseBankConfig('lifecycle: { approvalRat: 1 }', 'bank.yaml')).toThrow('bank.yaml: lifecycle: unknown setting "approvalRat"')
  })
})

let touchSeq = 0
function reminder(customerId: string, cardId: string, sendAt: number): WebhookBody {
  const t = new Date(sendAt).toISOString()
  return { id: `d-${++touchSeq}-${customerId}`, trigger: 'activation_reminder', customerId, cardId, channel: 'sms', eventTime: t, decidedAt: t, sendAt: t, expiresAt: new Date(sendAt + 2 * DAY).toISOString(), reason: {}, group: 'treatment', attributionWindowDays: 7 }
}

function offer(customerId: string, sendAt: number): WebhookBody {
  const t = new Date(sendAt).toISOString()
  return { id: `o-${customerId}-${sendAt}`, trigger: 'first_swipe_incentive', customerId, channel: 'push', eventTime: t, decidedAt: t, sendAt: t, expiresAt: new Date(sendAt + 2 * DAY).toISOString(), offer: { code: 'X', value: 30, currency: 'CNY' }, reason: {}, group: 'treatment', attributionWindowDays: 14 }
}

/** A 13–19 digit run passing the Luhn check. */
function hasPan(text: string): boolean {
  for (const m of text.matchAll(/\d{13,19}/g)) {
    const digits = m[0]
    let sum = 0
    for (let i = 0; i < digits.length; i++) {
      let d = Number(digits[digits.length - 1 - i])
      if (i % 2) d = d * 2 > 9 ? d * 2 - 9 : d * 2
      sum += d
    }
    if (sum % 10 === 0) return true
  }
  return false
}
