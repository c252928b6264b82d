import { WebhookBody } from '../schemas/decision.ts'
import type { EventType, InputEvent } from '../schemas/events.ts'
import { loadBankConfig, type BankConfig } from './config.ts'
import { Customer, DAY, bankContext, type BankContext, type Item, type Reaction } from './customer.ts'
import { unit } from './random.ts'
import { compareTruth, type TruthRecord } from './truth.ts'

export { mulberry32 } from './random.ts'
export { fraudScenarios, badInputSamples } from './legacy.ts'
export type { TruthRecord } from './truth.ts'

/**
 * The simulated bank: a population of customers in segments that behave differently, their
 * cards' whole life, their spending and app usage, fraud injected into their streams, and their
 * reactions to cardpulse's touchpoints. Steppable in event time, so it can run closed loop:
 *
 *   const bank = new SimulatedBank({ customers: 2000, days: 90, start: new Date('2026-09-01'), seed: 1 })
 *   for (const event of bank.until(t)) pipeline.push(event)   // events up to event time t
 *   bank.receive(webhookBody)                                 // a touchpoint reaches its customer
 *   bank.truth()                                              // what really happened
 *
 * Deterministic for the seed and the touchpoints received. Every customer draws from streams of
 * their own, so a touchpoint changes only that customer's events, and only after it reaches them
 * (at its sendAt, or when it arrives if the bank has already passed that time): deliver each
 * touchpoint before stepping past its sendAt and the output does not depend on how finely time is
 * stepped. Events come sorted by event time, then eventId.
 */

export interface BankOptions {
  customers: number
  /** First day of the simulated period (UTC midnight), or epoch ms. */
  start: Date | number
  days: number
  seed: number
  /** Rates and effects; default: the shipped simulator/bank.yaml. */
  config?: BankConfig
}

/** One message for an input topic or file: the event, or a deliberately malformed line. */
export interface BankMessage {
  stream: EventType
  /** The Kafka key: the customer. */
  key: string
  value: string
  /** Event time (epoch ms). */
  at: number
  /** The event; absent for a malformed message. */
  event?: InputEvent
}

export type ReceiveResult =
  | { ok: true; duplicate: boolean; customerId: string; persuaded: boolean; at: number }
  | { ok: false; reason: string }

const compareItems = (a: Item, b: Item) => a.t - b.t || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
const iso = (ms: number) => new Date(ms).toISOString()

export class SimulatedBank {
  readonly start: number
  readonly end: number
  readonly seed: number
  readonly config: BankConfig
  readonly customers: readonly Customer[]
  private readonly ctx: BankContext
  private readonly byId = new Map<string, Customer>()
  private day = -1
  private buffer: Item[] = []
  private pos = 0
  /** Everything up to (horizon, horizonId) in stream order has been emitted. */
  private horizon = -Infinity
  private horizonId = ''
  private readonly records: TruthRecord[] = []
  private readonly received = new Set<string>()
  /** Counts of what has been emitted, by stream, and of malformed messages. */
  readonly emitted = { transaction: 0, app: 0, lifecycle: 0, malformed: 0 }

  constructor(opts: BankOptions) {
    this.start = typeof opts.start === 'number' ? opts.start : opts.start.getTime()
    this.end = this.start + opts.days * DAY
    this.seed = opts.seed
    this.config = opts.config ?? loadBankConfig()
    this.ctx = bankContext(this.config, this.seed, this.start, this.end)
    const customers: Customer[] = []
    for (let i = 0; i < opts.customers; i++) {
      const c = new Customer(this.ctx, i)
      customers.push(c)
      this.byId.set(c.id, c)
    }
    this.customers = customers
    this.records.push({ kind: 'config', at: iso(this.start), seed: this.seed, customers: opts.customers, start: iso(this.start), end: iso(this.end), config: this.config })
    for (const c of customers) {
      const p = c.plan
      this.records.push({
        kind: 'customer',
        at: iso(c.existing ? this.start : p.appliedAt),
        customerId: c.id,
        segment: c.segment,
        existing: c.existing,
        approved: p.approved,
        timezone: c.tz,
        homeCity: c.home.city,
        homeCountry: c.home.country,
        preferredChannel: c.preferred,
        creditLimit: c.initialLimit,
      })
    }
  }

  /** The event time the bank has reached: everything up to it has been emitted. */
  get time(): number {
    return this.horizon
  }

  /** Whether the whole period has been emitted. */
  get done(): boolean {
    return this.horizon >= this.end - 1
  }

  /** Events up to event time `t` (inclusive), sorted by time then eventId; malformed messages left out. */
  *until(t: number): Generator<InputEvent> {
    for (const item of this.emit(t, false)) if (item.event) yield item.event
  }

  /** Messages up to event time `t`, as the input topics carry them, malformed ones included. */
  *messages(t: number): Generator<BankMessage> {
    for (const m of this.emit(t, true)) yield m.event ? { stream: m.event.type, key: m.event.customerId, value: JSON.stringify(m.event), at: m.at, event: m.event } : m.malformed!
  }

  /**
   * A touchpoint (a webhook body) reaches its customer. Deduplicated on its id; takes effect at
   * its sendAt, or just after the bank's current time if that has passed.
   */
  receive(touchpoint: WebhookBody | unknown): ReceiveResult {
    const parsed = WebhookBody.safeParse(touchpoint)
    if (!parsed.success) return { ok: false, reason: `not a webhook body: ${parsed.error.issues[0].path.join('.')} ${parsed.error.issues[0].message}` }
    const body = parsed.data
    const c = this.byId.get(body.customerId)
    if (!c) return { ok: false, reason: `unknown customer ${body.customerId}` }
    if (this.received.has(body.id)) return { ok: true, duplicate: true, customerId: c.id, persuaded: c.reactions.find((x) => x.id === body.id)?.persuaded ?? false, at: this.horizon }
    this.received.add(body.id)
    const at = Math.max(Date.parse(body.sendAt), this.horizon + 1)
    const x = c.react(body, at)
    this.records.push(this.treatmentRecord(c, x))
    const dayEnd = this.start + (this.day + 1) * DAY
    if (this.day >= 0 && at < dayEnd) this.regenerate(c)
    return { ok: true, duplicate: false, customerId: c.id, persuaded: x.persuaded, at }
  }

  /** Ground truth so far, sorted (see truth.ts). */
  truth(): TruthRecord[] {
    return [...this.records].sort(compareTruth)
  }

  /** The truth as NDJSON text. */
  truthNdjson(): string {
    return this.truth().map((r) => JSON.stringify(r) + '\n').join('')
  }

  private treatmentRecord(c: Customer, x: Reaction): TruthRecord {
    const natural = c.naturalActionAt(x)
    return {
      kind: 'treatment',
      at: iso(x.at),
      customerId: c.id,
      id: x.id,
      trigger: x.trigger,
      channel: x.channel,
      ...(x.cardId ? { cardId: x.cardId } : {}),
      sendAt: iso(x.sendAt),
      persuaded: x.persuaded,
      action: x.effect.action,
      ...(x.persuaded ? { actionAt: iso(x.actionAt) } : {}),
      ...(natural === undefined ? {} : { naturalActionAt: natural === null ? null : iso(Math.max(natural, 0)) }),
      effect: x.effect,
    }
  }

  private loadDay(day: number) {
    const from = this.start + day * DAY
    const to = from + DAY
    const items: Item[] = []
    for (const c of this.customers) {
      const own = c.items(day, from, to)
      for (let i = 0; i < own.length; i++) items.push(own[i])
    }
    items.sort(compareItems)
    this.day = day
    this.buffer = items
    this.pos = 0
  }

  /** A touchpoint changed a customer's timeline within the current day: rebuild what is not yet emitted. */
  private regenerate(c: Customer) {
    const from = this.start + this.day * DAY
    const rest = this.buffer.slice(this.pos).filter((x) => x.c !== c)
    const fresh = c.items(this.day, from, from + DAY).filter((x) => x.t > this.horizon || (x.t === this.horizon && x.id > this.horizonId))
    this.buffer = [...rest, ...fresh].sort(compareItems)
    this.pos = 0
  }

  private *emit(t: number, withMalformed: boolean): Generator<{ at: number; event?: InputEvent; malformed?: BankMessage }> {
    const limit = Math.min(t, this.end - 1)
    const share = this.config.malformed.share
    for (;;) {
      if (this.day < 0 || this.pos >= this.buffer.length) {
        const next = this.day + 1
        const from = this.start + next * DAY
        if (from > limit || from >= this.end) break
        this.loadDay(next)
        continue
      }
      const item = this.buffer[this.pos]
      if (item.t > limit) break
      this.pos++
      this.horizon = item.t
      this.horizonId = item.id
      if (item.truth) {
        this.records.push(item.truth)
        continue
      }
      const event = item.event!
      const c = item.c
      if (item.anomaly && event.type === 'transaction') {
        const amount = c.anomalyAmount(item.t, unit(this.seed, 'anomaly', event.eventId))
        if (amount === undefined) continue
        event.amount = amount
      }
      if (item.limitFactor !== undefined && event.type === 'lifecycle') {
        c.limit = Math.max(c.limit + 1000, Math.round((c.limit * item.limitFactor) / 1000) * 1000)
        event.creditLimit = c.limit
      }
      if (event.type === 'transaction' && event.status === 'approved') c.recordPurchase(item.t, event.amount)
      if (item.fraud) this.records.push({ kind: 'fraud', at: iso(item.t), customerId: c.id, cardId: item.fraud.cardId, fraudKind: item.fraud.kind, eventIds: item.fraud.eventIds, endAt: iso(item.fraud.endAt) })
      this.emitted[event.type]++
      yield { at: item.t, event }
      if (share > 0 && unit(this.seed, 'malformed', event.eventId) < share) {
        const bad = malformedCopy(event, unit(this.seed, 'malformed-kind', event.eventId))
        this.records.push({ kind: 'malformed', at: iso(item.t), customerId: c.id, stream: event.type, reason: bad.reason, eventId: event.eventId })
        this.emitted.malformed++
        if (withMalformed) yield { at: item.t, malformed: { stream: event.type, key: c.id, value: bad.value, at: item.t } }
      }
    }
    // Everything up to `limit` has been emitted: the next item, or the next day, lies beyond it.
    if (limit > this.horizon) {
      this.horizon = limit
      this.horizonId = '\uffff'
    }
  }
}

/** A malformed copy of an event, of one of the kinds the pipeline must dead-letter. */
function malformedCopy(event: InputEvent, u: number): { reason: string; value: string } {
  const text = JSON.stringify({ ...event, eventId: `${event.eventId}-bad` })
  switch (Math.floor(u * 5)) {
    case 0:
      return { reason: 'invalid_json', value: text.slice(0, Math.max(10, Math.floor(text.length / 2))) }
    case 1:
      return { reason: 'schema_violation', value: JSON.stringify({ ...event, eventId: `${event.eventId}-bad`, occurredAt: 'yesterday' }) }
    case 2:
      return { reason: 'unknown_type', value: JSON.stringify({ ...event, eventId: `${event.eventId}-bad`, type: 'refund' }) }
    case 3: {
      // A deliberately leaked card number (a Luhn-valid test PAN), which must never pass the edge.
      return { reason: 'pan_detected', value: JSON.stringify({ ...event, eventId: `${event.eventId}-bad`, note: `card 4111111111111111` }) }
    }
    default:
      return { reason: 'not_an_object', value: JSON.stringify([event.eventId]) }
  }
}

/** All events of the simulated period, sorted by event time (ties by eventId): the open-loop bank. */
export function simulateBank(opts: BankOptions): InputEvent[] {
  return [...new SimulatedBank(opts).until(Infinity)]
}
