import type { InputEvent, EventType, Profile, Channel } from '../schemas/events.ts'
import type { AlertKind, Severity } from '../schemas/alert.ts'
import type { CustomerFacts } from './facts.ts'

/**
 * The operator shape: pure functions of (state, event | timer, ctx) → (state', effects).
 * Operators never touch Kafka, Redis, HTTP or the clock; the runtime executes their effects.
 */

/** A trigger occurrence detected by an operator, handed to the decision step. */
export interface Moment {
  kind: 'moment'
  trigger: string
  /** Identifies this occurrence among all of the trigger's for the customer; feeds the decision id. */
  occurrence: string
  eventTime: number
  cardId?: string
  reason: Record<string, unknown>
  /** The event that caused it (absent when a timer did). */
  causeEventId?: string
}

export interface AlertEffect {
  kind: 'alert'
  alertKind: AlertKind
  severity: Severity
  score: number
  occurrence: string
  eventTime: number
  cardId?: string
  evidence: { eventIds: string[] } & Record<string, unknown>
}

export interface SetTimer {
  kind: 'setTimer'
  /** Unique within the operator for this customer; setting it again moves the timer. */
  key: string
  at: number
}

export interface CancelTimer {
  kind: 'cancelTimer'
  key: string
}

export type Effect = Moment | AlertEffect | SetTimer | CancelTimer

export interface OperatorResult<S> {
  state: S
  effects?: Effect[]
}

/** What an operator may read besides its own state: profile, facts, and its own params. */
export interface OperatorContext<P = unknown> {
  customerId: string
  profile: CustomerProfile
  /** Folded from every event up to and including the current one. */
  facts: CustomerFacts
  params: P
}

export interface CustomerProfile extends Omit<Profile, 'timezone' | 'homeCountry'> {
  timezone: string
  homeCountry: string
  consent: Partial<Record<Channel, boolean>>
}

export interface TimerFire {
  key: string
  at: number
}

export interface Operator<S = unknown, P = unknown> {
  /**
   * Names its state and timers; equal to `uses`, so an operator, its catalogue entry, its state and
   * its timers carry one name. State is stored under it: a rename keeps the old one in `formerNames`.
   */
  name: string
  /** The catalogue entry (a trigger or a signal) whose params it reads; disabled with it. */
  uses: string
  /**
   * The types of event it reacts to, when not all: the runtime hands it no others, since its
   * `onEvent` would give them back the state unchanged and no effects.
   */
  eventTypes?: readonly EventType[]
  /** Names this operator's state and timers were stored under by earlier releases; never reused. */
  formerNames?: readonly string[]
  /**
   * The shape of its state; raise it when the shape changes, and give `migrate`, which the runtime
   * calls on a state stored under an older version before the operator sees it. Default 1.
   */
  version?: number
  migrate?(state: unknown, fromVersion: number): S
  initial(): S
  parseParams(raw: Record<string, unknown>): P
  onEvent(state: S, event: InputEvent, at: number, ctx: OperatorContext<P>): OperatorResult<S>
  onTimer?(state: S, timer: TimerFire, ctx: OperatorContext<P>): OperatorResult<S>
}
