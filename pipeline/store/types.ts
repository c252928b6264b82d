import type { Decision } from '../../schemas/decision.ts'
import type { RiskAlert } from '../../schemas/alert.ts'
import type { CustomerProfile, Moment } from '../../operators/types.ts'
import type { CustomerFacts } from '../../operators/facts.ts'
import type { PolicyState } from '../policy.ts'
import type { InputEvent } from '../../schemas/events.ts'
import type { DeadLetter } from '../../schemas/deadLetter.ts'
import type { OpenWindow } from '../conversions.ts'
import type { TimerEntry } from '../timers.ts'
import type { SourceStates } from '../sourceMarks.ts'
import type { OutboxEntry, OutboxRow, PendingWebhook, WebhookCancellation } from '../../schemas/outbox.ts'
import type { WebhookOutbox } from '../../sinks/webhook/dispatcher.ts'
import { Channel } from '../../schemas/events.ts'
import type { OutboxBacklog } from '../../sinks/monitor.ts'

export const CHANNELS: readonly Channel[] = Channel.options

/**
 * Durable keyed state, owned by partition. One implementation keeps it in Redis (the live pipeline),
 * one in memory (demo, replay, tests); both pass the same contract suite (test/store.contract.test.ts).
 */

export interface CustomerRecord {
  v: 1
  /** Ids and event times of events still within the allowed lateness, newest last: a repeated eventId is processed once. */
  seen: [string, number][]
  profile: CustomerProfile
  facts: CustomerFacts
  policy: PolicyState
  /**
   * The shadow catalogue's contact-policy ledger (cooldowns, caps, risk hold), apart from the live
   * one; absent without a shadow catalogue.
   */
  shadow?: PolicyState
  /** Events taken in but not yet applied: held, in event-time order, until the watermark passes them. */
  inbox?: InputEvent[]
  /** Moments waiting for the watermark to pass their event time before they are decided. */
  pending?: Moment[]
  /**
   * Attribution windows of the customer's send and control decisions still open (at most
   * MAX_OPEN_WINDOWS), absent when none: conversion tracking (pipeline/conversions.ts).
   */
  conversions?: OpenWindow[]
  /** Each operator's own state, by operator name. */
  ops: Record<string, unknown>
  /**
   * The state version of each operator's state above version 1, by operator name; absent when
   * all are at 1, so records do not grow. Older ones are migrated on load (pipeline/operatorHost.ts).
   */
  opv?: Record<string, number>
}

export interface PartitionMeta {
  /** The last source offset whose effects are committed; events at or below it are skipped. */
  appliedOffset: string | null
  /** Commits to the partition so far (0 for one never committed): what a commit is fenced on. */
  version: number
  watermark: number
  /**
   * What the partition last heard from each input partition (the live pipeline's source
   * watermarks); absent until a commit stores some.
   */
  sources?: SourceStates
}

export interface LoadedBatch extends PartitionMeta {
  customers: Map<string, CustomerRecord>
  /** Timers due at or before the requested time, ordered by (at, member). */
  timers: TimerEntry[]
}

export interface BatchCommit {
  partition: number
  /** The applied offset this commit expects to replace: a mismatch means another owner moved on. */
  expectedOffset: string | null
  /** The version this commit expects to find (it leaves version + 1); absent, only the offset is checked. */
  expectedVersion?: number
  offset: string | null
  watermark: number
  /** The sources' marks as of this batch; left as stored when absent. */
  sources?: SourceStates
  customers: Map<string, CustomerRecord>
  timersSet: TimerEntry[]
  timersRemoved: string[]
  webhooks: PendingWebhook[]
  /** Touchpoints to cancel if still waiting, applied after `webhooks` (absent: none). */
  cancellations?: WebhookCancellation[]
  alerts: RiskAlert[]
  /** Late events' dead letters, for the dead-letter topic. */
  deadLetters: DeadLetter[]
  rows: OutboxRow[]
}

export interface CommitOutcome {
  /** Touchpoints cancelled by this commit (waiting, not claimed by a dispatcher). */
  cancelled: string[]
}

/** The webhook dispatcher's part of the outbox (due webhooks, finishing and retrying them) comes from WebhookOutbox. */
export interface StateStore extends WebhookOutbox {
  /** Partition metadata, the customers asked for (absent ones are new) and the timers due by `timersUpTo`. */
  load(partition: number, customerIds: string[], timersUpTo: number): Promise<LoadedBatch>
  /**
   * Writes everything of one batch atomically, or nothing (FencedError on an offset mismatch).
   * Returns the decision ids of the cancellations that took effect at once.
   */
  commit(batch: BatchCommit): Promise<CommitOutcome>

  /**
   * Outbox: ClickHouse rows, alerts and late-event dead letters, each in commit order. `peek` takes
   * nothing; `ack` removes exactly the entries of those ids (unknown ids are ignored), so two owners
   * draining one partition during a rebalance send an entry twice at worst, and never drop one.
   */
  peekRows(partition: number, max: number): Promise<OutboxEntry<OutboxRow>[]>
  ackRows(partition: number, ids: string[]): Promise<void>
  peekAlerts(partition: number, max: number): Promise<OutboxEntry<RiskAlert>[]>
  ackAlerts(partition: number, ids: string[]): Promise<void>
  peekDeadLetters(partition: number, max: number): Promise<OutboxEntry<DeadLetter>[]>
  ackDeadLetters(partition: number, ids: string[]): Promise<void>

  /** Puts a delivery dead letter back into the outbox with its decision id; false when it is pending already. */
  requeueWebhook(partition: number, pending: PendingWebhook): Promise<boolean>
  /** How much waits in a partition's outbox, by kind and channel. */
  outboxBacklog(partition: number, now: number): Promise<OutboxBacklog>

  close(): Promise<void>
}
