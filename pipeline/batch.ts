import type { Catalog } from '../schemas/catalog.ts'
import type { Decision } from '../schemas/decision.ts'
import { Channel, type InputEvent } from '../schemas/events.ts'
import type { CardEvent } from '../schemas/cardEvent.ts'
import type { OutboxRow } from '../schemas/outbox.ts'
import type { Effect, Moment, Operator } from '../operators/types.ts'
import { foldProfile, hasConsent } from '../operators/profile.ts'
import { foldFacts, recordAlert } from '../operators/facts.ts'
import { SERVICE_TRIGGERS, decide, holdForRisk } from './policy.ts'
import { deadLetter } from './decode.ts'
import { emptyOutput, type BatchOutput, type CancelReason, type EventMessage } from './stream.ts'
import { buildAlert } from './alerts.ts'
import { admit, closeEnded, nextWindowEnd, observe, openWindow, tracked, type OpenWindow } from './conversions.ts'
import { TimerHeap, parseTimerMember, timerMember, type TimerEntry } from './timers.ts'
import type { OperatorHost } from './operatorHost.ts'
import type { CustomerRecord } from './store/types.ts'

/**
 * One batch of a partition's stream, stepped in event time: takes events in, fires the timers the
 * watermark passes (the customers' held events, the operators' timers, attribution windows ending,
 * decisions), and collects what changed for the processor to commit.
 */

/** What a batch needs of its partition: the processor hands it this, not itself. */
export interface BatchContext {
  /** The customer's record: cached, or new for a customer never seen. */
  record(customerId: string): CustomerRecord
  watermark(): number
  /** Moves the partition's watermark forward; never back. */
  advanceWatermark(to: number): void
  readonly operators: OperatorHost
  /** The catalogue in force: triggers, signals and the contact policy. */
  catalog(): Catalog
  /**
   * A draft catalogue evaluated beside the live one (shadow decisions: recorded, never sent), or
   * undefined. Only its decision policy applies: the moments are the live operators'.
   */
  shadowCatalog(): Catalog | undefined
  /** When decisions and alerts about that event time are made. */
  decisionTime(eventTime: number): number
  /** When a late event's dead letter says it was received; null leaves it out. */
  receivedAt(): number | null
  /** How far behind the watermark an event may arrive and still be applied (at once, out of order). */
  readonly allowedLateness: number
  /**
   * When the watermark comes from the events themselves (replay, demo): how far an event may trail
   * the newest and still be applied in order. Null when it comes from the sources' watermark records.
   */
  readonly maxDisorder: number | null
  /** Most event ids remembered per customer for deduplication. */
  readonly seenPerCustomer: number
  /** Whether the batch collects ClickHouse rows of its own: the card funnel's milestones and hourly event volume. */
  readonly clickhouseRows: boolean
}

/**
 * The runtime's own timers. '!' sorts before every operator name and '~' after, so at one instant
 * a customer's events are applied first, then the operators' timers fire (as in Flink, where a
 * watermark at t follows the elements at t), then attribution windows ending then close, then the
 * moments of that instant are decided together (and open their windows).
 */
const APPLY = '!apply'
const CONVERT = '~convert'
const DECIDE = '~decide'
/** At one instant, a card's lifecycle change applies before app events and transactions. */
const STREAM_RANK: Record<InputEvent['type'], number> = { lifecycle: 0, app: 1, transaction: 2 }

/** The working set of one batch: timers due, what changed, and what it produced. */
export class Batch {
  readonly out: BatchOutput = emptyOutput()
  readonly changed = new Set<string>()
  /** Final timer state per member touched in this batch: due time, or null when removed. */
  readonly timerChanges = new Map<string, number | null>()
  private readonly timers = new TimerHeap()
  private readonly volume = new Map<string, { hour: number; type: string; events: number; firstOffset: string }>()
  /** The card funnel's milestones, for ClickHouse only. */
  readonly cardEvents: CardEvent[] = []

  constructor(
    private readonly ctx: BatchContext,
    due: TimerEntry[],
  ) {
    for (const t of due) this.timers.set(t.member, t.at)
  }

  /**
   * Takes an event in: checks it is new, then holds it in the customer's inbox until the watermark
   * passes its event time, so operators see each customer's events and timers in event-time order
   * (the sort-by-watermark of Flink's CEP library). An event already behind the watermark is late:
   * within the allowed lateness it is applied at once (after what the customer had before the
   * watermark, before what waits in the inbox), beyond it dead-lettered.
   */
  applyEvent(m: EventMessage) {
    const { event, at } = m
    const ctx = this.ctx
    const rec = ctx.record(event.customerId)
    if (seenBefore(rec.seen, event.eventId)) {
      this.out.duplicates++
      return
    }
    const wm = ctx.watermark()
    const floor = wm - ctx.allowedLateness
    if (at <= wm) {
      this.out.lateness.push({ ms: wm - at, applied: at > floor })
      if (at <= floor) {
        this.out.late++
        const reason = `event time ${event.occurredAt} is behind the watermark ${new Date(wm).toISOString()} by more than the allowed lateness`
        this.out.deadLetters.push(deadLetter(Buffer.from(JSON.stringify(event)), m.source, 'late_event', reason, '$.occurredAt', ctx.receivedAt()))
        return
      }
    }
    this.out.applied++
    if (ctx.clickhouseRows) this.countVolume(event, at, m.offset)
    // An id need only be remembered while its event could still be applied: a repeat beyond the
    // allowed lateness is dead-lettered as late, so it is never applied twice either.
    if (anyAtOrBefore(rec.seen, floor)) rec.seen = rec.seen.filter(([, t]) => t > floor)
    rec.seen.push([event.eventId, at])
    if (rec.seen.length > ctx.seenPerCustomer) rec.seen.shift()
    this.changed.add(event.customerId)
    if (at <= wm) {
      this.applyNow(event, at, rec)
    } else {
      const inbox = (rec.inbox ??= [])
      let i = inbox.length
      while (i > 0 && inboxOrder(inbox[i - 1], event, at) > 0) i--
      inbox.splice(i, 0, event)
      this.arm(event.customerId, APPLY, i === 0 ? at : Date.parse(inbox[0].occurredAt))
      if (ctx.maxDisorder !== null) ctx.advanceWatermark(watermarkAfter(at, ctx.maxDisorder))
    }
    this.fireTimers(ctx.watermark())
  }

  /** Fires every timer due by `upTo`, earliest first; timers may set new ones that are due too. */
  fireTimers(upTo: number) {
    let t: TimerEntry | undefined
    while ((t = this.timers.popDue(upTo))) {
      this.out.timersFired++
      this.timerChanges.set(t.member, null)
      const { customerId, name, key } = parseTimerMember(t.member)
      if (name === APPLY) this.applyDue(customerId, t.at)
      else if (name === DECIDE) this.decideDue(customerId, t.at)
      else if (name === CONVERT) this.closeWindows(customerId, t.at)
      else this.fireOperatorTimer(customerId, name, key, t.at)
    }
  }

  /** ClickHouse's hourly event counts of this batch. */
  volumeRows(partition: number): OutboxRow[] {
    return [...this.volume.values()].map((v) => {
      const hour = new Date(v.hour * 3_600_000).toISOString()
      return { table: 'event_volume', row: { id: `${partition}:${v.firstOffset}:${hour}:${v.type}`, hour, type: v.type, events: v.events } }
    })
  }

  /** Applies the customer's held events of instant `at` to the facts and every operator. */
  private applyDue(customerId: string, at: number) {
    const rec = this.ctx.record(customerId)
    const inbox = rec.inbox ?? []
    const times: number[] = []
    for (let i = 0; i < inbox.length; i++) {
      const t = Date.parse(inbox[i].occurredAt)
      if (t > at) {
        this.arm(customerId, APPLY, t)
        break
      }
      times.push(t)
    }
    const due = inbox.splice(0, times.length)
    // Left undefined rather than deleted: JSON leaves it out all the same, and the record keeps
    // its shape (adding and deleting a property on every event churns hidden classes).
    if (!inbox.length) rec.inbox = undefined
    for (let i = 0; i < due.length; i++) this.applyNow(due[i], times[i], rec)
  }

  private applyNow(event: InputEvent, at: number, rec: CustomerRecord) {
    const profileBefore = rec.profile
    rec.profile = foldProfile(rec.profile, event)
    const before = rec.facts
    rec.facts = foldFacts(rec.facts, event, at, rec.profile.timezone)
    if (this.ctx.clickhouseRows) this.noteMilestone(event, before, rec)
    this.changed.add(event.customerId)
    if (rec.conversions) {
      const windows = rec.conversions
      rec.conversions = observe(windows, event, at, rec.facts, rec.profile, event.customerId, this.out.conversions)
      // observe keeps each window at its index: a goal reached now is a convertedAt that appeared.
      if (rec.conversions !== windows) {
        const reached = new Set<string>()
        for (let i = 0; i < windows.length; i++) if (windows[i].convertedAt === undefined && rec.conversions[i].convertedAt !== undefined) reached.add(windows[i].decisionId)
        // A service message informs whatever the customer does next: its goal only measures it.
        if (reached.size) this.cancelWaiting(event.customerId, rec, at, 'goal_reached', event.eventId, (w) => reached.has(w.decisionId) && !SERVICE_TRIGGERS.has(w.trigger))
      }
      if (rec.profile !== profileBefore && rec.profile.consent !== profileBefore.consent) {
        const withdrawn = Channel.options.filter((c) => hasConsent(profileBefore, c) && !hasConsent(rec.profile, c))
        if (withdrawn.length) this.cancelWaiting(event.customerId, rec, at, 'consent_withdrawn', event.eventId, (w) => withdrawn.includes(w.channel!))
      }
    }
    const moments: Moment[] = []
    const host = this.ctx.operators
    const ops = host.operators
    const params = host.params()
    for (const i of host.receivers(event.type)) {
      if (params[i] === undefined) continue
      const ctx = host.context(event.customerId, rec, params[i])
      const result = ops[i].onEvent(host.state(i, rec), event, at, ctx)
      host.keepState(i, rec, result.state)
      this.effects(ops[i], event.customerId, rec, result.effects, moments, event.eventId)
    }
    this.queue(event.customerId, rec, moments)
  }

  private noteMilestone(event: InputEvent, before: CustomerRecord['facts'], rec: CustomerRecord) {
    if (event.type === 'app') return
    const first = event.type === 'transaction' && before.cards[event.cardId]?.firstPurchaseAt === undefined && rec.facts.cards[event.cardId]?.firstPurchaseAt !== undefined
    if (event.type === 'transaction' && !first) return
    this.cardEvents.push({
      customerId: event.customerId,
      cardId: event.cardId,
      stage: event.type === 'lifecycle' ? event.stage : 'first_purchase',
      eventTime: event.occurredAt,
      eventId: event.eventId,
      ...(rec.profile.segment ? { segment: rec.profile.segment } : {}),
    })
  }

  /** An operator's timer; `name` may be one of the operator's former names. */
  private fireOperatorTimer(customerId: string, name: string, key: string, at: number) {
    const host = this.ctx.operators
    const i = host.indexOf(name)
    const op = host.operators[i]
    const params = host.params()[i]
    if (!op?.onTimer || params === undefined) return
    const rec = this.ctx.record(customerId)
    const ctx = host.context(customerId, rec, params)
    const result = op.onTimer(host.state(i, rec), { key, at }, ctx)
    host.keepState(i, rec, result.state)
    this.changed.add(customerId)
    const moments: Moment[] = []
    this.effects(op, customerId, rec, result.effects, moments)
    this.queue(customerId, rec, moments)
  }

  /**
   * Moments wait for the watermark to pass their event time before the contact policy decides
   * them, so that decisions are made in event-time order whatever order events arrived in before
   * the watermark passed them (a late event's moments are due at once). A per-customer
   * decide timer sorts after the customer's other timers at the same time, so that moments of
   * one instant are decided together, by priority.
   */
  private queue(customerId: string, rec: CustomerRecord, moments: Moment[]) {
    if (!moments.length) return
    rec.pending = [...(rec.pending ?? []), ...moments]
    this.armDecide(customerId, rec)
  }

  private armDecide(customerId: string, rec: CustomerRecord) {
    if (rec.pending?.length) this.arm(customerId, DECIDE, Math.min(...rec.pending.map((m) => m.eventTime)))
  }

  /** Sets (or, with no time, removes) one of the runtime's own timers for a customer. */
  private arm(customerId: string, name: string, at: number | undefined) {
    this.setTimer(timerMember(customerId, name, ''), at)
  }

  private setTimer(member: string, at: number | undefined) {
    if (at === undefined) this.timers.delete(member)
    else this.timers.set(member, at)
    this.timerChanges.set(member, at ?? null)
  }

  /**
   * Asks the commit to cancel the customer's touchpoints that `which` selects among those that may
   * still be waiting: send decisions before `at` whose TTL has not run out by it. The open
   * attribution windows say which sends there were (docs/webhooks.md); the store cancels only what
   * is still pending.
   */
  private cancelWaiting(customerId: string, rec: CustomerRecord, at: number, reason: CancelReason, cause: string, which: (w: OpenWindow) => boolean) {
    const catalog = this.ctx.catalog()
    for (const w of rec.conversions ?? []) {
      if (w.outcome !== 'send' || !w.channel || !(at > w.from) || !which(w)) continue
      if (!(at < w.from + (catalog.triggers[w.trigger]?.ttl ?? catalog.policy.ttl))) continue
      this.out.cancellations.push({ decisionId: w.decisionId, trigger: w.trigger, customerId, channel: w.channel, eventTime: w.from, at, reason, cause })
    }
  }

  /** Opens the attribution windows of the send and control decisions just made. */
  private openWindows(customerId: string, rec: CustomerRecord, decisions: Decision[]) {
    const catalog = this.ctx.catalog()
    let windows = rec.conversions
    for (const d of decisions) {
      const trigger = catalog.triggers[d.trigger]
      if (!tracked(d) || !trigger) continue
      windows = admit(windows ?? [], openWindow(d, trigger, rec.facts, rec.profile), customerId, this.out.conversions)
    }
    if (windows === rec.conversions) return
    rec.conversions = windows
    this.arm(customerId, CONVERT, nextWindowEnd(windows))
  }

  /** The `~convert` timer: writes the final rows of the windows that ended by `at`. */
  private closeWindows(customerId: string, at: number) {
    const rec = this.ctx.record(customerId)
    const open = closeEnded(rec.conversions ?? [], at, customerId, this.out.conversions)
    if (open.length) rec.conversions = open
    else delete rec.conversions
    this.changed.add(customerId)
    this.arm(customerId, CONVERT, nextWindowEnd(open))
  }

  private decideDue(customerId: string, at: number) {
    const rec = this.ctx.record(customerId)
    const due = (rec.pending ?? []).filter((m) => m.eventTime <= at)
    rec.pending = (rec.pending ?? []).filter((m) => m.eventTime > at)
    if (!rec.pending.length) delete rec.pending
    this.changed.add(customerId)
    this.decide(customerId, rec, due)
    this.armDecide(customerId, rec)
  }

  private effects(op: Operator, customerId: string, rec: CustomerRecord, effects: Effect[] | undefined, moments: Moment[], cause?: string) {
    if (!effects) return
    for (const e of effects) {
      if (e.kind === 'setTimer' || e.kind === 'cancelTimer') {
        const at = e.kind === 'setTimer' ? e.at : undefined
        this.setTimer(timerMember(customerId, op.name, e.key), at)
        // A twin left under a former name by an earlier release must not fire as well.
        if (op.formerNames) for (const former of op.formerNames) this.setTimer(timerMember(customerId, former, e.key), undefined)
      } else if (e.kind === 'moment') {
        moments.push(cause ? { ...e, causeEventId: cause } : e)
      } else {
        const catalog = this.ctx.catalog()
        const alert = buildAlert(e, customerId, catalog, this.ctx.decisionTime(e.eventTime))
        this.out.alerts.push(alert)
        rec.facts = recordAlert(rec.facts, e.eventTime, alert.severity)
        const shadow = this.ctx.shadowCatalog()
        if (shadow) rec.shadow = holdForRisk(rec.shadow ?? rec.policy, alert.severity, e.eventTime, shadow.policy.riskHold)
        rec.policy = holdForRisk(rec.policy, alert.severity, e.eventTime, catalog.policy.riskHold)
        // The risk hold stops new marketing; touchpoints already waiting are cancelled. Service messages go on.
        if (alert.severity === 'high' || alert.severity === 'critical')
          this.cancelWaiting(customerId, rec, e.eventTime, 'risk_alert', alert.id, (w) => !SERVICE_TRIGGERS.has(w.trigger))
      }
    }
  }

  private decide(customerId: string, rec: CustomerRecord, moments: Moment[]) {
    if (!moments.length) return
    const { state, decisions } = decide(rec.policy, moments, {
      customerId,
      profile: rec.profile,
      facts: rec.facts,
      catalog: this.ctx.catalog(),
      decisionTime: this.ctx.decisionTime,
    })
    this.decideShadow(customerId, rec, moments)
    rec.policy = state
    this.out.decisions.push(...decisions)
    this.openWindows(customerId, rec, decisions)
  }

  /**
   * The draft catalogue's decisions on the same moments, with its own ledger (cooldowns, caps, risk
   * hold) in `rec.shadow`: started from the live one the first time, never read by the live policy.
   */
  private decideShadow(customerId: string, rec: CustomerRecord, moments: Moment[]) {
    const catalog = this.ctx.shadowCatalog()
    if (!catalog) {
      if (rec.shadow) delete rec.shadow
      return
    }
    const { state, decisions } = decide(rec.shadow ?? rec.policy, moments, {
      customerId,
      profile: rec.profile,
      facts: rec.facts,
      catalog,
      decisionTime: this.ctx.decisionTime,
    })
    rec.shadow = state
    this.out.shadowDecisions.push(...decisions)
  }

  private countVolume(event: InputEvent, at: number, offset: string) {
    const hour = Math.floor(at / 3_600_000)
    const key = `${hour}|${event.type}`
    const v = this.volume.get(key)
    if (v) v.events++
    else this.volume.set(key, { hour, type: event.type, events: 1, firstOffset: offset })
  }
}

/**
 * The watermark says every event at or before it has arrived; timers at or before it fire. Events
 * up to `maxDisorder` older than the newest are still in time, so it trails by one more ms
 * (Flink's bounded-out-of-orderness watermark).
 */
export function watermarkAfter(eventTime: number, maxDisorder: number) {
  return eventTime - maxDisorder - 1
}

function seenBefore(seen: [string, number][], eventId: string): boolean {
  for (let i = 0; i < seen.length; i++) if (seen[i][0] === eventId) return true
  return false
}

function anyAtOrBefore(seen: [string, number][], time: number): boolean {
  for (let i = 0; i < seen.length; i++) if (seen[i][1] <= time) return true
  return false
}

function inboxOrder(a: InputEvent, b: InputEvent, bAt: number): number {
  return Date.parse(a.occurredAt) - bAt || STREAM_RANK[a.type] - STREAM_RANK[b.type] || (a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0)
}
