import type { Catalog } from '../schemas/catalog.ts'
import type { Decision } from '../schemas/decision.ts'
import type { RiskAlert } from '../schemas/alert.ts'
import type { DeadLetter } from '../schemas/deadLetter.ts'
import type { Conversion } from '../schemas/conversion.ts'
import type { InputEvent } from '../schemas/events.ts'
import type { CardEvent } from '../schemas/cardEvent.ts'
import type { Effect, Moment, Operator, OperatorContext } from '../operators/types.ts'
import { OPERATORS } from '../operators/index.ts'
import { foldProfile, initialProfile } from '../operators/profile.ts'
import { foldFacts, initialFacts, recordAlert } from '../operators/facts.ts'
import { decide, initialPolicyState } from './policy.ts'
import { deadLetter, type SourceCoordinates } from './decode.ts'
import { alertId } from './ids.ts'
import { admit, closeEnded, nextWindowEnd, observe, openWindow, tracked } from './conversions.ts'
import { TimerHeap, type TimerEntry } from './timers.ts'
import type { CustomerRecord, StateStore } from './store/types.ts'
import type { OutboxRow, PendingWebhook } from '../schemas/outbox.ts'

/**
 * Runs the operators and the decision step over one partition's stream, in event time.
 * Per batch: load what it needs in one round trip, apply events and due timers in order, then
 * commit state, timers, the applied offset and the outbox in one atomic step.
 */

export type StreamMessage =
  | {
      /** Position in this partition's stream; strictly increasing. */
      offset: string
      event: InputEvent
      /** `event.occurredAt` in epoch ms. */
      at: number
      /** Where the event was first read, for dead letters of late events. */
      source: SourceCoordinates
    }
  /** Bad input passes through so that its ClickHouse row is committed with the partition's outbox. */
  | { offset: string; deadLetter: DeadLetter }

type EventMessage = Extract<StreamMessage, { event: InputEvent }>

export interface ProcessorOptions {
  partition: number
  store: StateStore
  catalog: () => Catalog
  /** Events older than the newest event by more than this are late: dead-lettered, not applied. */
  allowedLateness: number
  /** `replay` decides at event time; `run` at wall-clock time. */
  mode: 'run' | 'replay'
  clock?: () => number
  /**
   * What the commit puts in the store's outbox for sinks to drain. `deadLetters`: late events'
   * dead letters, for the live pipeline's dead-letter topic (default none).
   */
  outbox: { webhooks: boolean; alerts: boolean; rows: boolean; deadLetters?: boolean }
  operators?: readonly Operator<any, any>[]
  /** Most event ids remembered per customer for deduplication (the newest are kept). */
  seenPerCustomer?: number
  /** Customers kept in the write-through cache before the oldest are dropped. */
  maxCachedCustomers?: number
}

export interface BatchOutput {
  decisions: Decision[]
  alerts: RiskAlert[]
  /** Dead letters made here: late events. */
  deadLetters: DeadLetter[]
  /**
   * Bad input dead-lettered at ingest, passed through for its ClickHouse row only: ingest has
   * already published and counted it.
   */
  passedThrough: DeadLetter[]
  /** New states of conversion rows: goal reached, or window ended. */
  conversions: Conversion[]
  applied: number
  skipped: number
  duplicates: number
  late: number
  timersFired: number
}

const NO_WATERMARK = -8.64e15
const TIMER_SEPARATOR = '|'
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

export class PartitionProcessor {
  private readonly cache = new Map<string, CustomerRecord>()
  private appliedOffset: string | null = null
  private wm = NO_WATERMARK
  private loaded = false
  private paramsFor?: { catalog: Catalog; params: readonly unknown[] }
  private readonly operators: readonly Operator<any, any>[]

  constructor(private readonly opts: ProcessorOptions) {
    this.operators = opts.operators ?? OPERATORS
  }

  get partition() {
    return this.opts.partition
  }

  get watermark() {
    return this.wm
  }

  /** Drops cached state, e.g. when the partition is revoked; the store stays the truth. */
  reset() {
    this.cache.clear()
    this.loaded = false
  }

  async process(messages: StreamMessage[]): Promise<BatchOutput> {
    let maxEventTime = NO_WATERMARK
    const customerIds: string[] = []
    for (const m of messages) {
      if (!('event' in m)) continue
      if (m.at > maxEventTime) maxEventTime = m.at
      customerIds.push(m.event.customerId)
    }
    const batch = await this.begin(customerIds, Math.max(this.wm, watermarkAfter(maxEventTime, this.opts.allowedLateness)))
    // Offsets increase, so what was applied before (a batch redelivered after a crash) is a prefix.
    let first = 0
    if (this.appliedOffset !== null) {
      const applied = BigInt(this.appliedOffset)
      while (first < messages.length && BigInt(messages[first].offset) <= applied) first++
    }
    batch.out.skipped = first
    for (let i = first; i < messages.length; i++) {
      const m = messages[i]
      if ('event' in m) batch.applyEvent(m)
      else batch.out.passedThrough.push(m.deadLetter)
    }
    batch.fireTimers(this.wm)
    return this.commit(batch, messages.length ? messages[messages.length - 1].offset : this.appliedOffset)
  }

  /** Moves the watermark forward with no event (end of input, or an idle live partition). */
  async advanceTo(watermark: number): Promise<BatchOutput> {
    const batch = await this.begin([], Math.max(this.wm, watermark))
    this.wm = Math.max(this.wm, watermark)
    batch.fireTimers(this.wm)
    return this.commit(batch, this.appliedOffset)
  }

  private async begin(customerIds: string[], timersUpTo: number): Promise<Batch> {
    const { store, partition } = this.opts
    const missing = [...new Set(customerIds)].filter((id) => !this.cache.has(id))
    const loaded = await store.load(partition, missing, timersUpTo)
    if (!this.loaded) {
      this.appliedOffset = loaded.appliedOffset
      this.wm = Math.max(loaded.watermark, NO_WATERMARK)
      this.loaded = true
    }
    for (const [id, rec] of loaded.customers) this.cache.set(id, rec)
    // Timers may belong to customers with no event in this batch: fetch those too.
    const timerOwners = [...new Set(loaded.timers.map((t) => customerOf(t.member)))].filter((id) => !this.cache.has(id))
    if (timerOwners.length) {
      const more = await store.load(partition, timerOwners, NO_WATERMARK)
      for (const [id, rec] of more.customers) this.cache.set(id, rec)
    }
    return new Batch(this, loaded.timers)
  }

  private async commit(batch: Batch, offset: string | null): Promise<BatchOutput> {
    const { store, partition, outbox } = this.opts
    const timersSet: TimerEntry[] = []
    const timersRemoved: string[] = []
    for (const [member, at] of batch.timerChanges) at === null ? timersRemoved.push(member) : timersSet.push({ member, at })
    const customers = new Map<string, CustomerRecord>()
    for (const id of batch.changed) customers.set(id, this.cache.get(id)!)
    const out = batch.out
    const webhooks: PendingWebhook[] = outbox.webhooks
      ? out.decisions.filter((d) => d.outcome === 'send').map((decision) => ({ decision, attempts: 0, dueAt: Date.parse(decision.sendAt!) }))
      : []
    const rows: OutboxRow[] = outbox.rows
      ? [
          ...out.decisions.map((row) => ({ table: 'decisions', row })),
          ...out.alerts.map((row) => ({ table: 'alerts', row })),
          ...[...out.passedThrough, ...out.deadLetters].map((row) => ({ table: 'dead_letters', row })),
          ...out.conversions.map((row) => ({ table: 'conversions', row })),
          ...batch.cardEvents.map((row) => ({ table: 'card_events', row })),
          ...batch.volumeRows(partition),
        ]
      : []
    const deadLetters = outbox.deadLetters ? out.deadLetters : []
    // A watermark that moved with nothing else need not be written: timers at or before it are gone.
    const nothingChanged =
      offset === this.appliedOffset && !customers.size && !timersSet.length && !timersRemoved.length && !rows.length && !deadLetters.length
    if (!nothingChanged) {
      await store.commit({
        partition,
        expectedOffset: this.appliedOffset,
        offset,
        watermark: this.wm,
        customers,
        timersSet,
        timersRemoved,
        webhooks,
        alerts: outbox.alerts ? out.alerts : [],
        deadLetters,
        rows,
      })
    }
    this.appliedOffset = offset
    this.evictIfFull()
    return out
  }

  private evictIfFull() {
    const max = this.opts.maxCachedCustomers ?? 200_000
    if (this.cache.size <= max) return
    const drop = this.cache.size - Math.floor(max * 0.9)
    let i = 0
    for (const id of this.cache.keys()) {
      if (i++ >= drop) break
      this.cache.delete(id)
    }
  }

  // ——— used by Batch ———

  record(customerId: string): CustomerRecord {
    let rec = this.cache.get(customerId)
    if (!rec) {
      rec = { v: 1, seen: [], profile: initialProfile(), facts: initialFacts(), policy: initialPolicyState(), ops: {} }
      this.cache.set(customerId, rec)
    }
    return rec
  }

  setWatermark(wm: number) {
    this.wm = Math.max(this.wm, wm)
  }

  get options() {
    return this.opts
  }

  get ops() {
    return this.operators
  }

  /**
   * Each operator's params (by index) from the catalogue in force, or undefined where its entry is
   * disabled or absent. Parsed once per catalogue version.
   */
  params(): readonly unknown[] {
    const catalog = this.opts.catalog()
    if (this.paramsFor?.catalog !== catalog)
      this.paramsFor = {
        catalog,
        params: this.operators.map((op) => {
          const entry = catalog.triggers[op.uses] ?? catalog.signals[op.uses]
          return entry && entry.enabled ? op.parseParams(entry.params) : undefined
        }),
      }
    return this.paramsFor.params
  }

  /** The index of the operator that owns a timer. */
  indexOf(name: string): number {
    return (this.byName ??= new Map(this.operators.map((op, i) => [op.name, i]))).get(name) ?? -1
  }

  private byName?: Map<string, number>

  /** The operator's initial state, made once: operators never change the state they are given. */
  initial(index: number): unknown {
    return (this.initials[index] ??= Object.freeze(this.operators[index].initial()))
  }

  private readonly initials: unknown[] = []
}

/** The working set of one batch: timers due, what changed, and what it produced. */
class Batch {
  readonly out: BatchOutput = { decisions: [], alerts: [], deadLetters: [], passedThrough: [], conversions: [], applied: 0, skipped: 0, duplicates: 0, late: 0, timersFired: 0 }
  readonly changed = new Set<string>()
  /** Final timer state per member touched in this batch: due time, or null when removed. */
  readonly timerChanges = new Map<string, number | null>()
  private readonly timers = new TimerHeap()
  private readonly volume = new Map<string, { hour: number; type: string; events: number; firstOffset: string }>()
  /** The card funnel's milestones, for ClickHouse only. */
  readonly cardEvents: CardEvent[] = []

  constructor(
    private readonly p: PartitionProcessor,
    due: TimerEntry[],
  ) {
    for (const t of due) this.timers.set(t.member, t.at)
  }

  /**
   * Takes an event in: checks it is new and not late, then holds it in the customer's inbox
   * until the watermark passes its event time. Operators therefore see each customer's events
   * and timers in event-time order whatever order they arrived in within the allowed lateness
   * (the sort-by-watermark of Flink's CEP library); the price is that effects lag events by that
   * lateness, which decisions already did.
   */
  applyEvent(m: EventMessage) {
    const { event } = m
    const opts = this.p.options
    const rec = this.p.record(event.customerId)
    if (rec.seen.some(([id]) => id === event.eventId)) {
      this.out.duplicates++
      return
    }
    const { at } = m
    if (at <= this.p.watermark) {
      this.out.late++
      const reason = `event time ${event.occurredAt} is behind the watermark ${new Date(this.p.watermark).toISOString()} by more than the allowed lateness`
      this.out.deadLetters.push(deadLetter(Buffer.from(JSON.stringify(event)), m.source, 'late_event', reason, '$.occurredAt', opts.mode === 'run' ? (opts.clock ?? Date.now)() : null))
      return
    }
    this.out.applied++
    this.countVolume(event, at, m.offset)
    // An id need only be remembered while its event could still be applied: a repeat older than
    // the watermark is late, and dead-lettered as such, so it is never applied twice either.
    const wm = this.p.watermark
    if (rec.seen.some(([, t]) => t <= wm)) rec.seen = rec.seen.filter(([, t]) => t > wm)
    rec.seen.push([event.eventId, at])
    if (rec.seen.length > (opts.seenPerCustomer ?? 64)) rec.seen.shift()
    this.changed.add(event.customerId)
    const inbox = (rec.inbox ??= [])
    let i = inbox.length
    while (i > 0 && inboxOrder(inbox[i - 1], event, at) > 0) i--
    inbox.splice(i, 0, event)
    this.arm(event.customerId, APPLY, i === 0 ? at : Date.parse(inbox[0].occurredAt))
    this.p.setWatermark(watermarkAfter(at, opts.allowedLateness))
    this.fireTimers(this.p.watermark)
  }

  /** Applies the customer's held events of instant `at` to the facts and every operator. */
  private applyDue(customerId: string, at: number) {
    const rec = this.p.record(customerId)
    const inbox = rec.inbox ?? []
    const times = inbox.map((e) => Date.parse(e.occurredAt))
    let n = 0
    while (n < inbox.length && times[n] <= at) n++
    const due = inbox.splice(0, n)
    if (inbox.length) this.arm(customerId, APPLY, times[n])
    else delete rec.inbox
    for (let i = 0; i < due.length; i++) this.applyNow(due[i], times[i], rec)
  }

  private applyNow(event: InputEvent, at: number, rec: CustomerRecord) {
    rec.profile = foldProfile(rec.profile, event)
    const before = rec.facts
    rec.facts = foldFacts(rec.facts, event, at, rec.profile.timezone)
    if (this.p.options.outbox.rows) this.noteMilestone(event, before, rec)
    this.changed.add(event.customerId)
    if (rec.conversions) rec.conversions = observe(rec.conversions, event, at, rec.facts, rec.profile, event.customerId, this.out.conversions)
    const moments: Moment[] = []
    const ops = this.p.ops
    const params = this.p.params()
    for (let i = 0; i < ops.length; i++) {
      if (params[i] === undefined) continue
      const op = ops[i]
      const ctx = this.context(event.customerId, rec, params[i])
      const result = op.onEvent(rec.ops[op.name] ?? this.p.initial(i), event, at, ctx)
      keepState(rec, op.name, result.state)
      this.effects(op, event.customerId, rec, result.effects, moments, event.eventId)
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

  /** Fires every timer due by `upTo`, earliest first; timers may set new ones that are due too. */
  fireTimers(upTo: number) {
    let t: TimerEntry | undefined
    while ((t = this.timers.popDue(upTo))) {
      this.out.timersFired++
      this.timerChanges.set(t.member, null)
      const customerId = customerOf(t.member)
      const rest = t.member.slice(customerId.length + 1)
      const opName = rest.slice(0, rest.indexOf(':'))
      const key = rest.slice(opName.length + 1)
      if (opName === APPLY) {
        this.applyDue(customerId, t.at)
        continue
      }
      if (opName === DECIDE) {
        this.decideDue(customerId, t.at)
        continue
      }
      if (opName === CONVERT) {
        this.closeWindows(customerId, t.at)
        continue
      }
      const i = this.p.indexOf(opName)
      const op = this.p.ops[i]
      const params = this.p.params()[i]
      if (!op?.onTimer || params === undefined) continue
      const rec = this.p.record(customerId)
      const ctx = this.context(customerId, rec, params)
      const result = op.onTimer(rec.ops[op.name] ?? this.p.initial(i), { key, at: t.at }, ctx)
      keepState(rec, op.name, result.state)
      this.changed.add(customerId)
      const moments: Moment[] = []
      this.effects(op, customerId, rec, result.effects, moments)
      this.queue(customerId, rec, moments)
    }
  }

  /**
   * Moments wait for the watermark to pass their event time before the contact policy decides
   * them, so that decisions are made in event-time order whatever order events arrived in within
   * the allowed lateness (the price: decisions lag events by that lateness). A per-customer
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

  private arm(customerId: string, name: string, at: number | undefined) {
    const member = `${customerId}${TIMER_SEPARATOR}${name}:`
    if (at === undefined) this.timers.delete(member)
    else this.timers.set(member, at)
    this.timerChanges.set(member, at ?? null)
  }

  /** Opens the attribution windows of the send and control decisions just made. */
  private openWindows(customerId: string, rec: CustomerRecord, decisions: Decision[]) {
    const catalog = this.p.options.catalog()
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
    const rec = this.p.record(customerId)
    const open = closeEnded(rec.conversions ?? [], at, customerId, this.out.conversions)
    if (open.length) rec.conversions = open
    else delete rec.conversions
    this.changed.add(customerId)
    this.arm(customerId, CONVERT, nextWindowEnd(open))
  }

  private decideDue(customerId: string, at: number) {
    const rec = this.p.record(customerId)
    const due = (rec.pending ?? []).filter((m) => m.eventTime <= at)
    rec.pending = (rec.pending ?? []).filter((m) => m.eventTime > at)
    if (!rec.pending.length) delete rec.pending
    this.changed.add(customerId)
    this.decide(customerId, rec, due)
    this.armDecide(customerId, rec)
  }

  private context(customerId: string, rec: CustomerRecord, params: unknown): OperatorContext {
    rec.facts ??= initialFacts() // records written before facts existed
    // One object per batch, refilled per call: operators must not keep the context (as in Flink).
    const ctx = this.ctx
    ctx.customerId = customerId
    ctx.profile = rec.profile
    ctx.facts = rec.facts
    ctx.params = params
    return ctx
  }

  private readonly ctx: OperatorContext = { customerId: '', profile: initialProfile(), facts: initialFacts(), params: undefined }

  private effects(op: Operator, customerId: string, rec: CustomerRecord, effects: Effect[] | undefined, moments: Moment[], cause?: string) {
    if (!effects) return
    const catalog = this.p.options.catalog()
    for (const e of effects) {
      if (e.kind === 'setTimer' || e.kind === 'cancelTimer') {
        const member = `${customerId}${TIMER_SEPARATOR}${op.name}:${e.key}`
        if (e.kind === 'setTimer') this.timers.set(member, e.at)
        else this.timers.delete(member)
        this.timerChanges.set(member, e.kind === 'setTimer' ? e.at : null)
      } else if (e.kind === 'moment') {
        moments.push(cause ? { ...e, causeEventId: cause } : e)
      } else {
        const severity = catalog.signals[e.alertKind]?.severity ?? e.severity
        const alert: RiskAlert = {
          id: alertId(e.alertKind, customerId, e.occurrence),
          kind: e.alertKind,
          severity,
          score: e.score,
          customerId,
          ...(e.cardId ? { cardId: e.cardId } : {}),
          eventTime: new Date(e.eventTime).toISOString(),
          detectedAt: new Date(this.decisionTime(e.eventTime)).toISOString(),
          evidence: e.evidence,
          ruleVersion: catalog.version,
        }
        this.out.alerts.push(alert)
        rec.facts = recordAlert(rec.facts, e.eventTime, severity)
        if (severity === 'high' || severity === 'critical') {
          // Holds marketing from the alerting event on, including moments that event itself caused;
          // an alert inside a running hold extends it, one after it starts a new one.
          const until = e.eventTime + catalog.policy.riskHold
          const { riskHoldFrom: from, riskHoldUntil: to } = rec.policy
          const extends_ = to !== undefined && e.eventTime < to
          rec.policy = {
            ...rec.policy,
            riskHoldFrom: extends_ ? Math.min(from ?? e.eventTime, e.eventTime) : e.eventTime,
            riskHoldUntil: extends_ ? Math.max(to, until) : until,
          }
        }
      }
    }
  }

  private decide(customerId: string, rec: CustomerRecord, moments: Moment[]) {
    if (!moments.length) return
    const opts = this.p.options
    const { state, decisions } = decide(rec.policy, moments, {
      customerId,
      profile: rec.profile,
      facts: rec.facts,
      catalog: opts.catalog(),
      now: opts.mode === 'run' ? (opts.clock ?? Date.now)() : undefined,
    })
    rec.policy = state
    this.out.decisions.push(...decisions)
    this.openWindows(customerId, rec, decisions)
  }

  private decisionTime(eventTime: number) {
    const opts = this.p.options
    return opts.mode === 'run' ? (opts.clock ?? Date.now)() : eventTime
  }

  private countVolume(event: InputEvent, at: number, offset: string) {
    const hour = Math.floor(at / 3_600_000)
    const key = `${hour}|${event.type}`
    const v = this.volume.get(key)
    if (v) v.events++
    else this.volume.set(key, { hour, type: event.type, events: 1, firstOffset: offset })
  }

  volumeRows(partition: number): OutboxRow[] {
    return [...this.volume.values()].map((v) => {
      const hour = new Date(v.hour * 3_600_000).toISOString()
      return { table: 'event_volume', row: { id: `${partition}:${v.firstOffset}:${hour}:${v.type}`, hour, type: v.type, events: v.events } }
    })
  }
}

/** Stores an operator's state; an empty one is left out, as most customers trip most rules never. */
function keepState(rec: CustomerRecord, name: string, state: unknown) {
  if (state === rec.ops[name]) return
  if (state && typeof state === 'object' && !Array.isArray(state) && isEmpty(state)) delete rec.ops[name]
  else rec.ops[name] = state
}

function isEmpty(o: object): boolean {
  for (const _ in o) return false
  return true
}

/**
 * The watermark says every event at or before it has arrived; timers at or before it fire. Events
 * up to `allowedLateness` older than the newest are still accepted, so it trails by one more ms
 * (Flink's bounded-out-of-orderness watermark).
 */
function watermarkAfter(eventTime: number, allowedLateness: number) {
  return eventTime - allowedLateness - 1
}

function inboxOrder(a: InputEvent, b: InputEvent, bAt: number): number {
  return Date.parse(a.occurredAt) - bAt || STREAM_RANK[a.type] - STREAM_RANK[b.type] || (a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0)
}

function customerOf(member: string): string {
  return member.slice(0, member.indexOf(TIMER_SEPARATOR))
}
