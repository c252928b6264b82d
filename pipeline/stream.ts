import type { Decision } from '../schemas/decision.ts'
import type { RiskAlert } from '../schemas/alert.ts'
import type { DeadLetter } from '../schemas/deadLetter.ts'
import type { Conversion } from '../schemas/conversion.ts'
import type { Channel, InputEvent } from '../schemas/events.ts'
import type { SourceCoordinates } from './decode.ts'
import type { Marks } from './sourceMarks.ts'

/** What one partition's stream carries into the processor, and what a batch of it gives out. */

export type StreamMessage =
  | {
      /** Position in this partition's stream; never decreasing (the events of one record share it). */
      offset: string
      event: InputEvent
      /** `event.occurredAt` in epoch ms. */
      at: number
      /** Where the event was first read, for dead letters of late events. */
      source: SourceCoordinates
    }
  /** Bad input passes through so that its ClickHouse row is committed with the partition's outbox. */
  | { offset: string; deadLetter: DeadLetter }
  /** A watermark record: how far each input partition the sender owns has come (pipeline/sourceMarks.ts). */
  | { offset: string; marks: Marks }

export type EventMessage = Extract<StreamMessage, { event: InputEvent }>

/** An event that arrived behind the watermark: by how much (ms), and whether it was still applied. */
export interface LateEvent {
  ms: number
  applied: boolean
}

/** Why a waiting touchpoint is cancelled (CONTRACT §2.1). */
export type CancelReason = 'goal_reached' | 'consent_withdrawn' | 'risk_alert'

/** A touchpoint the batch asks the commit to cancel if it is still waiting in the outbox. */
export interface Cancellation {
  decisionId: string
  trigger: string
  customerId: string
  channel: Channel
  /** The decision's event time (ms). */
  eventTime: number
  /** Event time (ms) of what caused the cancellation. */
  at: number
  reason: CancelReason
  /** The eventId that reached the goal or withdrew consent, or the alert's id. */
  cause: string
}

export interface BatchOutput {
  decisions: Decision[]
  /** A draft catalogue's decisions on the same moments (shadow catalogue): recorded, never sent. */
  shadowDecisions: Decision[]
  alerts: RiskAlert[]
  /** Dead letters made here: events later than the allowed lateness. */
  deadLetters: DeadLetter[]
  /**
   * Bad input dead-lettered at ingest, passed through for its ClickHouse row only: ingest has
   * already published and counted it.
   */
  passedThrough: DeadLetter[]
  /** New states of conversion rows: goal reached, or window ended. */
  conversions: Conversion[]
  /** Touchpoints asked to be cancelled, if still waiting (only the live and demo outboxes act on them). */
  cancellations: Cancellation[]
  /** Those the commit cancelled at once (set after it). */
  cancelled: Cancellation[]
  /** Events taken in (held until the watermark passes them, or applied at once when late). */
  applied: number
  skipped: number
  duplicates: number
  /** Events later than the allowed lateness: dead-lettered, not applied. */
  late: number
  /** Every event that arrived behind the watermark, applied or not. */
  lateness: LateEvent[]
  timersFired: number
}

export const emptyOutput = (): BatchOutput => ({
  decisions: [],
  shadowDecisions: [],
  alerts: [],
  deadLetters: [],
  passedThrough: [],
  conversions: [],
  cancellations: [],
  cancelled: [],
  applied: 0,
  skipped: 0,
  duplicates: 0,
  late: 0,
  lateness: [],
  timersFired: 0,
})

/** Whether a step put something in the outbox that should leave now: an alert, a dead letter or a webhook to send. */
export const outboxUrgent = (out: BatchOutput) => out.alerts.length > 0 || out.deadLetters.length > 0 || out.decisions.some((d) => d.outcome === 'send')
