import { loadCatalogFile } from '../../pipeline/catalog/index.ts'
import { foldFacts, initialFacts, recordAlert, type CustomerFacts } from '../../operators/facts.ts'
import { foldProfile, initialProfile } from '../../operators/profile.ts'
import type { AlertEffect, CustomerProfile, Effect, Moment, Operator, OperatorContext, OperatorResult } from '../../operators/types.ts'
import type { Catalog } from '../../schemas/catalog.ts'
import { InputEvent } from '../../schemas/events.ts'

/**
 * Drives one operator for one customer in event time, with no processor and no store, in the
 * spirit of Flink's ProcessFunctionTestHarnesses and Kafka's TopologyTestDriver: feed events,
 * advance time, read the state, the moments, the alerts and the pending timers.
 *
 * It keeps the runtime's order: the profile and facts are folded from an event before the operator
 * sees it; the events of an instant come before that instant's timers; timers fire in (at, key)
 * order. Every state handed to the operator is frozen, so a mutation throws, and so does a reaction
 * to an event of a type the operator does not declare in `eventTypes`. An event earlier than
 * the harness's time is applied as given (the runtime would dead-letter it): use that to test an
 * operator's own robustness to order.
 */

export interface OperatorHarnessOptions<S> {
  /** Raw params, parsed by the operator; absent, the operator's entry in `catalog`. */
  params?: Record<string, unknown>
  /** Where params and alert severities come from; the shipped default catalogue unless given. */
  catalog?: Catalog
  profile?: Partial<CustomerProfile>
  facts?: CustomerFacts
  /** The operator's state to start from, instead of its initial one, and its pending timers. */
  state?: S
  timers?: PendingTimer[]
  customerId?: string
}

export interface PendingTimer {
  key: string
  at: number
}

export class OperatorHarness<S, P> {
  readonly params: P
  readonly customerId: string
  profile: CustomerProfile
  facts: CustomerFacts
  readonly moments: Moment[] = []
  readonly alerts: AlertEffect[] = []
  /** Every effect, in the order the operator returned them. */
  readonly effects: Effect[] = []
  /** The harness's time: the latest event time or time advanced to. */
  time = -Infinity
  private current: S
  private readonly pending = new Map<string, number>()
  private readonly catalog: Catalog

  constructor(
    readonly op: Operator<S, P>,
    opts: OperatorHarnessOptions<S> = {},
  ) {
    this.catalog = opts.catalog ?? defaultCatalog()
    const entry = this.catalog.triggers[op.uses] ?? this.catalog.signals[op.uses]
    if (!opts.params && !entry) throw new Error(`no params given and no catalogue entry ${op.uses} for operator ${op.name}`)
    this.params = op.parseParams(opts.params ?? entry!.params)
    this.customerId = opts.customerId ?? 'c'
    this.profile = { ...initialProfile(), ...opts.profile }
    this.facts = opts.facts ?? initialFacts()
    this.current = deepFreeze(opts.state ?? op.initial())
    for (const t of opts.timers ?? []) this.pending.set(t.key, t.at)
  }

  get state(): S {
    return this.current
  }

  /** Pending timers, in the order they would fire. */
  get timers(): PendingTimer[] {
    return [...this.pending].map(([key, at]) => ({ key, at })).sort(byDue)
  }

  /**
   * Feeds one input event (validated as at the edge) at its event time, after the timers due
   * before it; returns the effects of the operator's call.
   */
  event(raw: Record<string, unknown>): Effect[] {
    const event = InputEvent.parse(raw)
    const at = Date.parse(event.occurredAt)
    this.advanceTo(at - 1)
    this.time = Math.max(this.time, at)
    this.profile = foldProfile(this.profile, event)
    this.facts = foldFacts(this.facts, event, at, this.profile.timezone)
    const result = this.op.onEvent(this.current, event, at, this.context())
    // The runtime hands an operator only the event types it declares: an undeclared one must change nothing.
    if (this.op.eventTypes && !this.op.eventTypes.includes(event.type) && (result.state !== this.current || result.effects?.length))
      throw new Error(`operator ${this.op.name} declares eventTypes ${this.op.eventTypes.join(', ')} but reacted to a ${event.type} event`)
    return this.apply(result)
  }

  /** Feeds events in the order given. */
  events(...raws: Record<string, unknown>[]): Effect[] {
    return raws.flatMap((raw) => this.event(raw))
  }

  /** Fires every timer due at or before `time`, earliest first; returns their effects. */
  advanceTo(time: number | string): Effect[] {
    const upTo = typeof time === 'number' ? time : Date.parse(time)
    const out: Effect[] = []
    for (let next = this.timers[0]; next && next.at <= upTo; next = this.timers[0]) {
      out.push(...this.fire(next))
    }
    this.time = Math.max(this.time, upTo)
    return out
  }

  /** Calls the operator's onTimer for `timer` whether or not it is pending, as a repeated delivery would. */
  fire(timer: PendingTimer): Effect[] {
    this.pending.delete(timer.key)
    this.time = Math.max(this.time, timer.at)
    return this.op.onTimer ? this.apply(this.op.onTimer(this.current, timer, this.context())) : []
  }

  private context(): OperatorContext<P> {
    return { customerId: this.customerId, profile: this.profile, facts: this.facts, params: this.params }
  }

  private apply(result: OperatorResult<S>): Effect[] {
    this.current = deepFreeze(result.state)
    const effects = result.effects ?? []
    for (const e of effects) {
      this.effects.push(e)
      if (e.kind === 'setTimer') this.pending.set(e.key, e.at)
      else if (e.kind === 'cancelTimer') this.pending.delete(e.key)
      else if (e.kind === 'moment') this.moments.push(e)
      else {
        this.alerts.push(e)
        // As the runtime does: the catalogue's severity for the signal wins over the operator's.
        this.facts = recordAlert(this.facts, e.eventTime, this.catalog.signals[e.alertKind]?.severity ?? e.severity)
      }
    }
    return effects
  }
}

let shipped: Catalog | undefined
const defaultCatalog = () => (shipped ??= loadCatalogFile())

const byDue = (a: PendingTimer, b: PendingTimer) => a.at - b.at || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o)
    for (const v of Object.values(o)) deepFreeze(v)
  }
  return o
}
