import type { Decision } from './decision.ts'

/**
 * What a batch commits for the sinks to send: the outbox. The state store keeps it; the sinks
 * drain it. Neither side needs more of the other than these shapes.
 */

/** A row for ClickHouse, by table name. */
export interface OutboxRow {
  table: string
  row: Record<string, unknown>
}

/**
 * One item taken from an outbox queue. `id` is unique within the partition's queue and given at
 * commit; acknowledging by id removes exactly what was sent, never an entry appended meanwhile or
 * one another owner took and acknowledged already.
 */
export interface OutboxEntry<T> {
  id: string
  value: T
}

/** A `send` decision waiting in the outbox for its webhook to go out. */
export interface PendingWebhook {
  decision: Decision
  attempts: number
  /** When to try next (epoch ms). */
  dueAt: number
}

/**
 * A request to cancel a touchpoint still waiting in the outbox (for its `sendAt` or a retry):
 * the store removes it and appends `row`, its `deliveries` row with status `cancelled`, in the
 * same commit. A webhook no longer pending (delivered, failed, expired, cancelled already) is left
 * alone; one the dispatcher has claimed and is sending is cancelled only if that attempt does not
 * deliver it (docs/webhooks.md). The store fills the row's `attempts` and `decidedAt` from the
 * pending webhook.
 */
export interface WebhookCancellation {
  decisionId: string
  row: OutboxRow
}
