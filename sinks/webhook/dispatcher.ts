import type { Decision } from '../../schemas/decision.ts'
import type { Channel } from '../../schemas/events.ts'
import type { OutboxRow, PendingWebhook } from '../../schemas/outbox.ts'
import { nextRetryDelay, type RetryPolicy } from '../../core/backoff.ts'
import { errText, type Instrumentation } from '../../core/instrumentation.ts'
import { WebhookConfigError, type WebhookTransport } from './sender.ts'

/**
 * The webhook dispatcher: drains the outbox's due webhooks, sends each through a transport, and
 * records retries, expiry and the delivery dead-letter rows.
 */

export type DeliveryStatus = 'delivered' | 'failed' | 'expired' | 'cancelled'

/**
 * One row of the `deliveries` table; rows with status failed/expired are the delivery dead letters.
 * A `cancelled` row is written by the state stage's commit (pipeline/processor.ts), not here.
 */
export interface DeliveryRow extends Record<string, unknown> {
  decisionId: string
  trigger: string
  customerId: string
  channel: Channel | null
  status: DeliveryStatus
  /** HTTP attempts made. */
  attempts: number
  httpStatus: number | null
  /** Of the last attempt. */
  latencyMs: number | null
  error: string | null
  deliveredAt: string | null
  eventTime: string
  decidedAt: string
  finishedAt: string
  /** Why a `cancelled` touchpoint was: goal_reached, consent_withdrawn or risk_alert. */
  cancelReason?: string
  /** The eventId or alert id that cancelled it. */
  cancelledBy?: string
}

export interface DispatchCounts {
  delivered: number
  retried: number
  failed: number
  expired: number
}

/** The webhooks' part of the outbox: what is due, and how an attempt's outcome is recorded. */
export interface WebhookOutbox {
  /** Webhooks due by `now`, oldest first. */
  dueWebhooks(partition: number, now: number, max: number): Promise<PendingWebhook[]>
  /** Ends a webhook (delivered, expired or dead) and records its delivery row, atomically. */
  finishWebhook(partition: number, decisionId: string, row: OutboxRow): Promise<void>
  /** Reschedules a webhook after a retriable failure. */
  retryWebhook(partition: number, pending: PendingWebhook): Promise<void>
  /**
   * Claims due webhooks before they are sent and returns the ids still pending, now claimed: a
   * cancellation that comes while one is being sent waits for the attempt's outcome
   * (docs/webhooks.md). A webhook cancelled before its claim is not returned: it is not sent.
   */
  claimWebhooks?(partition: number, decisionIds: string[]): Promise<string[]>
}

export interface WebhookDispatcherOptions {
  store: WebhookOutbox
  sender: WebhookTransport
  /** The partitions this instance owns now; read on every run, so rebalances take effect. */
  partitions: () => number[]
  /** Epoch ms; decides what is due and what has expired. */
  clock: () => number
  retry: RetryPolicy
  /** Most webhooks taken per partition per run. */
  batchSize: number
  /** Most HTTP attempts in flight at once. */
  concurrency: number
  /** Where deliveries, retries and attempts are logged and counted. */
  instrumentation?: Instrumentation
  /** Jitter source; default Math.random. */
  random?: () => number
}

interface Attempt {
  attempts: number
  httpStatus: number | null
  latencyMs: number | null
  error: string | null
}

export class WebhookDispatcher {
  private inFlight: Promise<DispatchCounts> | null = null
  private timer: NodeJS.Timeout | undefined
  private running = false
  /** A partition had more due than one batch: poll again at once instead of waiting. */
  private backlog = false
  /** Nudged while a pass was under way: that pass may have looked before the new webhooks were committed, so run again at once. */
  private nudged = false
  private intervalMs = 1_000

  constructor(private readonly opts: WebhookDispatcherOptions) {
    if (!(opts.batchSize >= 1)) throw new WebhookConfigError(`webhook batchSize must be at least 1, got ${opts.batchSize}`)
    if (!(opts.concurrency >= 1)) throw new WebhookConfigError(`webhook concurrency must be at least 1, got ${opts.concurrency}`)
  }

  /**
   * One pass over the owned partitions' due webhooks. Runs never overlap: a call while one is in
   * progress joins it, so the same webhook is never sent twice at once by this instance.
   * Rejects (after every started attempt has settled) if the store fails; unrecorded webhooks
   * stay in the outbox and are tried again, and the Idempotency-Key lets receivers drop repeats.
   */
  runOnce(): Promise<DispatchCounts> {
    if (this.inFlight) return this.inFlight
    const run = this.drain().finally(() => {
      if (this.inFlight === run) this.inFlight = null
    })
    this.inFlight = run
    return run
  }

  /** Polls every `intervalMs` (sooner while there is a backlog, or when nudged) until `stop()`. */
  start(intervalMs = 1_000): void {
    if (this.running) return
    this.running = true
    this.intervalMs = intervalMs
    this.schedule(0)
  }

  /**
   * New webhooks were committed: pass over the outbox now instead of at the next poll. Nudges
   * coalesce: with a pass under way, one more follows it, however many nudges came. Webhooks due
   * later (quiet hours, retries) still wait for their time. Does nothing unless started.
   */
  nudge(): void {
    if (!this.running) return
    this.nudged = true
    // Waiting for the next poll: poll now. A pass under way runs again as soon as it ends (tick).
    if (this.timer) {
      clearTimeout(this.timer)
      this.schedule(0)
    }
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => void this.tick(), delayMs)
  }

  private async tick(): Promise<void> {
    this.timer = undefined
    if (!this.running) return
    this.nudged = false
    try {
      await this.runOnce()
    } catch (err) {
      this.opts.instrumentation?.emit('webhook.dispatch_failed', { err: errText(err) })
    }
    if (this.running && !this.timer) this.schedule(this.backlog || this.nudged ? 0 : this.intervalMs)
  }

  /** Stops polling and waits for the attempts in flight to be sent and recorded. */
  async stop(): Promise<void> {
    this.running = false
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    await this.inFlight?.catch(() => undefined)
  }

  private async drain(): Promise<DispatchCounts> {
    const { store, clock, batchSize, concurrency } = this.opts
    const counts: DispatchCounts = { delivered: 0, retried: 0, failed: 0, expired: 0 }
    this.backlog = false
    const now = clock()
    const batches = await Promise.all(
      this.opts.partitions().map(async (partition) => ({ partition, due: await this.claimed(partition, await store.dueWebhooks(partition, now, batchSize)) })),
    )
    const work: { partition: number; pending: PendingWebhook }[] = []
    for (const { partition, due } of batches) {
      if (due.length >= batchSize) this.backlog = true
      for (const pending of due) work.push({ partition, pending })
    }
    await forEachLimit(work, concurrency, ({ partition, pending }) => this.handle(partition, pending, counts))
    return counts
  }

  /** The due webhooks the store lets this pass send: those not cancelled meanwhile. */
  private async claimed(partition: number, due: PendingWebhook[]): Promise<PendingWebhook[]> {
    const { store } = this.opts
    if (!due.length || !store.claimWebhooks) return due
    const claimed = new Set(await store.claimWebhooks(partition, due.map((w) => w.decision.id)))
    return due.filter((w) => claimed.has(w.decision.id))
  }

  private async handle(partition: number, pending: PendingWebhook, counts: DispatchCounts): Promise<void> {
    const { store, sender, clock, retry, instrumentation } = this.opts
    const { decision } = pending
    const expiresAt = Date.parse(decision.expiresAt)
    // Past its expiry a touchpoint is stale (the moment is gone); record it and never send.
    if (!(clock() < expiresAt)) {
      await this.finish(partition, decision, 'expired', {
        attempts: pending.attempts,
        httpStatus: null,
        latencyMs: null,
        error: `not delivered by expiresAt ${decision.expiresAt}`,
      })
      counts.expired++
      return
    }

    const result = await sender.send(decision)
    const attempts = pending.attempts + (result.attempted ? 1 : 0)
    const channel = decision.channel ?? 'none'
    if (result.attempted && result.latencyMs !== null) instrumentation?.emit('webhook.attempt', { outcome: result.outcome, channel, latencyMs: result.latencyMs })
    const attempt: Attempt = { attempts, httpStatus: result.httpStatus, latencyMs: result.latencyMs, error: result.error }

    if (result.outcome === 'delivered') {
      await this.finish(partition, decision, 'delivered', attempt)
      counts.delivered++
      return
    }
    if (result.outcome === 'retriable') {
      const delay = nextRetryDelay(attempts, retry, result.retryAfterMs, this.opts.random)
      const now = clock()
      if (delay !== null && now + delay < expiresAt) {
        await store.retryWebhook(partition, { decision, attempts, dueAt: now + delay })
        instrumentation?.emit('webhook.retry', {
          decisionId: decision.id,
          trigger: decision.trigger,
          channel,
          attempts,
          httpStatus: result.httpStatus,
          latencyMs: result.latencyMs,
          delayMs: delay,
        })
        counts.retried++
        return
      }
      if (delay !== null) {
        // It cannot be delivered before expiresAt: the contract records that as expired.
        attempt.error = `${result.error}; next attempt would fall after expiresAt`
        await this.finish(partition, decision, 'expired', attempt)
        counts.expired++
        return
      }
      attempt.error = `${result.error}; gave up after ${attempts} attempts`
    }
    await this.finish(partition, decision, 'failed', attempt)
    counts.failed++
  }

  private async finish(partition: number, decision: Decision, status: Exclude<DeliveryStatus, 'cancelled'>, a: Attempt): Promise<void> {
    const now = new Date(this.opts.clock()).toISOString()
    const row: DeliveryRow = {
      decisionId: decision.id,
      trigger: decision.trigger,
      customerId: decision.customerId,
      channel: decision.channel ?? null,
      status,
      attempts: a.attempts,
      httpStatus: a.httpStatus,
      latencyMs: a.latencyMs,
      error: a.error,
      deliveredAt: status === 'delivered' ? now : null,
      eventTime: decision.eventTime,
      decidedAt: decision.decidedAt,
      finishedAt: now,
    }
    const outbox: OutboxRow = { table: 'deliveries', row }
    await this.opts.store.finishWebhook(partition, decision.id, outbox)
    const delivery = { decisionId: decision.id, trigger: decision.trigger, channel: decision.channel ?? 'none', attempts: a.attempts, httpStatus: a.httpStatus, latencyMs: a.latencyMs }
    if (status === 'delivered') this.opts.instrumentation?.emit('webhook.delivered', delivery)
    else this.opts.instrumentation?.emit(`webhook.${status}`, { ...delivery, reason: a.error })
  }
}

/** Runs `fn` over `items` with at most `limit` at once; every item settles before any error is thrown. */
async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  const errors: unknown[] = []
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]
      try {
        await fn(item)
      } catch (err) {
        errors.push(err)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  if (errors.length === 1) throw errors[0]
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} webhooks could not be recorded`)
}
