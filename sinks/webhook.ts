import { performance } from 'node:perf_hooks'
import { Agent, request, type Dispatcher } from 'undici'
import type { Logger } from 'pino'
import { Counter, Histogram, type Registry } from 'prom-client'
import { webhookBodyOf, type Decision } from '../schemas/decision.ts'
import type { Channel } from '../schemas/events.ts'
import type { OutboxRow, PendingWebhook } from '../schemas/outbox.ts'
import { nextRetryDelay, type RetryPolicy } from './retry.ts'
import { IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signWebhook } from './webhookSignature.ts'

/**
 * Webhook delivery (CONTRACT.md §2.1): one signed POST per attempt (signatures in
 * webhookSignature.ts), and the dispatcher that drains the state store's outbox with retries,
 * expiry and the delivery dead-letter rows.
 */

// ---------------------------------------------------------------------------------------------
// Sending one attempt

/** Raised at construction for configuration a person must fix; retrying cannot help. */
export class WebhookConfigError extends Error {
  readonly retriable = false
  override readonly name = 'WebhookConfigError'
}

/** Endpoint per channel; `default` serves every channel without its own URL. */
export type WebhookUrls = { default?: string } & Partial<Record<Channel, string>>

export interface WebhookSenderOptions {
  urls: WebhookUrls
  secret: string
  /** Whole-attempt deadline (connect, headers and body). Default 10 000. */
  timeoutMs?: number
  /** A shared undici dispatcher; by default the sender owns a keep-alive Agent and `close()` closes it. */
  dispatcher?: Dispatcher
  /** Wall clock (epoch ms) for the signature timestamp and HTTP-date `Retry-After`. Default `Date.now`. */
  now?: () => number
}

/**
 * What one attempt came to. `attempted` is false when no HTTP request was made (no URL for the
 * channel, or a decision that is not a send), so it does not count as a delivery attempt.
 * `error` is short and never carries the request body.
 */
export type SendResult =
  | { outcome: 'delivered'; attempted: true; httpStatus: number; latencyMs: number; error: null; retryAfterMs: null }
  | { outcome: 'retriable'; attempted: true; httpStatus: number | null; latencyMs: number; error: string; retryAfterMs: number | null }
  | { outcome: 'permanent'; attempted: boolean; httpStatus: number | null; latencyMs: number | null; error: string; retryAfterMs: null }

/** What the dispatcher needs of a sender; lets tests and other transports stand in. */
export interface WebhookTransport {
  send(decision: Decision): Promise<SendResult>
}

/** `Retry-After` as ms from `nowMs`: delta-seconds or an HTTP-date; null when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | null | undefined, nowMs: number): number | null {
  const v = (Array.isArray(value) ? value[0] : value)?.trim()
  if (!v) return null
  if (/^\d+$/.test(v)) return Number(v) * 1000
  // Every HTTP-date form starts with a day name; checking it keeps Date.parse's leniency from
  // reading "1.5" or similar junk as a date.
  if (!/^[A-Za-z]{3}/.test(v)) return null
  const at = Date.parse(v)
  return Number.isNaN(at) ? null : Math.max(0, at - nowMs)
}

const PERMANENT_ERROR_CODES = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED', 'ERR_INVALID_URL', 'ERR_INVALID_ARG_TYPE'])
const TIMEOUT_ERROR_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

function isRetriableStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500
}

function checkUrl(label: string, url: string): void {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new WebhookConfigError(`webhook URL for ${label} is not a valid URL`)
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new WebhookConfigError(`webhook URL for ${label} must be http or https, got ${parsed.protocol}`)
  }
}

export class WebhookSender implements WebhookTransport {
  private readonly urls: WebhookUrls
  private readonly secret: string
  private readonly timeoutMs: number
  private readonly dispatcher: Dispatcher
  private readonly ownsDispatcher: boolean
  private readonly now: () => number

  constructor(opts: WebhookSenderOptions) {
    if (!opts.secret) throw new WebhookConfigError('webhook secret is empty; receivers could not verify signatures')
    for (const [label, url] of Object.entries(opts.urls)) if (url !== undefined) checkUrl(label, url)
    const timeoutMs = opts.timeoutMs ?? 10_000
    if (!(timeoutMs > 0 && Number.isFinite(timeoutMs))) throw new WebhookConfigError(`webhook timeoutMs must be a positive number, got ${timeoutMs}`)
    this.urls = { ...opts.urls }
    this.secret = opts.secret
    this.timeoutMs = timeoutMs
    this.now = opts.now ?? Date.now
    this.ownsDispatcher = !opts.dispatcher
    // Keep-alive connections per receiver; undici's own timeouts back up the per-attempt signal.
    this.dispatcher =
      opts.dispatcher ??
      new Agent({ keepAliveTimeout: 30_000, connect: { timeout: timeoutMs }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
  }

  /** The endpoint for a channel, or undefined when neither it nor a default is configured. */
  urlFor(channel: Channel): string | undefined {
    return this.urls[channel] ?? this.urls.default
  }

  async send(decision: Decision): Promise<SendResult> {
    const notAttempted = (error: string): SendResult => ({ outcome: 'permanent', attempted: false, httpStatus: null, latencyMs: null, error, retryAfterMs: null })
    if (!decision.channel) return notAttempted(`decision ${decision.id} has no channel`)
    const url = this.urlFor(decision.channel)
    if (!url) return notAttempted(`no webhook URL configured for channel ${decision.channel} (and no default URL)`)
    let body: string
    try {
      body = JSON.stringify(webhookBodyOf(decision))
    } catch {
      return notAttempted(`decision ${decision.id} is not a send (outcome ${decision.outcome})`)
    }

    const timestamp = Math.floor(this.now() / 1000)
    const headers = {
      'Content-Type': 'application/json',
      [IDEMPOTENCY_HEADER]: decision.id,
      [TIMESTAMP_HEADER]: String(timestamp),
      [SIGNATURE_HEADER]: signWebhook(this.secret, timestamp, body),
    }
    const signal = AbortSignal.timeout(this.timeoutMs)
    const started = performance.now()
    const elapsed = () => Math.round(performance.now() - started)

    let status: number
    let retryAfterHeader: string | string[] | undefined
    try {
      const res = await request(url, { method: 'POST', headers, body, dispatcher: this.dispatcher, signal })
      status = res.statusCode
      retryAfterHeader = res.headers['retry-after']
      try {
        // Drain the response so the connection goes back to the pool; its content is not needed.
        await res.body.dump()
      } catch {
        // The status is already known; a response body cut short does not change the outcome.
      }
    } catch (err) {
      const latencyMs = elapsed()
      const code = (err as { code?: unknown }).code
      const name = (err as { name?: unknown }).name
      if (signal.aborted || name === 'TimeoutError' || (typeof code === 'string' && TIMEOUT_ERROR_CODES.has(code))) {
        return { outcome: 'retriable', attempted: true, httpStatus: null, latencyMs, error: `timed out after ${this.timeoutMs} ms`, retryAfterMs: null }
      }
      const error = describeError(err)
      if (typeof code === 'string' && PERMANENT_ERROR_CODES.has(code)) {
        return { outcome: 'permanent', attempted: true, httpStatus: null, latencyMs, error, retryAfterMs: null }
      }
      // Connection refused or reset, DNS, TLS: the receiver may be back soon.
      return { outcome: 'retriable', attempted: true, httpStatus: null, latencyMs, error, retryAfterMs: null }
    }

    const latencyMs = elapsed()
    if (status >= 200 && status < 300) return { outcome: 'delivered', attempted: true, httpStatus: status, latencyMs, error: null, retryAfterMs: null }
    if (isRetriableStatus(status)) {
      return { outcome: 'retriable', attempted: true, httpStatus: status, latencyMs, error: `HTTP ${status}`, retryAfterMs: parseRetryAfter(retryAfterHeader, this.now()) }
    }
    // Redirects are not followed: re-posting a signed body elsewhere is a configuration change.
    const note = status >= 300 && status < 400 ? ' (redirects are not followed)' : ''
    return { outcome: 'permanent', attempted: true, httpStatus: status, latencyMs, error: `HTTP ${status}${note}`, retryAfterMs: null }
  }

  /** Closes the keep-alive connections, if the sender created them. */
  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close()
  }
}

/** `CODE: message`, one line, bounded; no stack. */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err).slice(0, 200)
  const code = (err as { code?: unknown }).code
  const causeCode = (err.cause as { code?: unknown } | undefined)?.code
  const label = typeof code === 'string' ? code : typeof causeCode === 'string' ? causeCode : err.name
  return `${label}: ${err.message}`.replace(/\s+/g, ' ').slice(0, 200)
}

// ---------------------------------------------------------------------------------------------
// Metrics

export interface WebhookMetrics {
  /** Finished deliveries; labels `status` (delivered|failed|expired) and `channel`. */
  deliveries: Counter<'status' | 'channel'>
  /** Attempts rescheduled after a retriable failure; label `channel`. */
  retries: Counter<'channel'>
  /** Duration of each HTTP attempt in seconds; labels `outcome` (delivered|retriable|permanent) and `channel`. */
  latency: Histogram<'outcome' | 'channel'>
}

/** Creates the metrics with the label names the dispatcher uses, in the caller's registry. */
export function createWebhookMetrics(registry: Registry): WebhookMetrics {
  return {
    deliveries: new Counter({
      name: 'cardpulse_webhook_deliveries_total',
      help: 'Webhook deliveries finished, by status and channel',
      labelNames: ['status', 'channel'] as const,
      registers: [registry],
    }),
    retries: new Counter({
      name: 'cardpulse_webhook_retries_total',
      help: 'Webhook attempts rescheduled after a retriable failure',
      labelNames: ['channel'] as const,
      registers: [registry],
    }),
    latency: new Histogram({
      name: 'cardpulse_webhook_latency_seconds',
      help: 'Duration of webhook HTTP attempts',
      labelNames: ['outcome', 'channel'] as const,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
  }
}

// ---------------------------------------------------------------------------------------------
// Dispatching from the outbox

export type DeliveryStatus = 'delivered' | 'failed' | 'expired'

/** One row of the `deliveries` table; rows with status failed/expired are the delivery dead letters. */
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
  logger?: Logger
  metrics?: WebhookMetrics
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

  /** Polls every `intervalMs` (sooner while there is a backlog) until `stop()`. */
  start(intervalMs = 1_000): void {
    if (this.running) return
    this.running = true
    const tick = async () => {
      this.timer = undefined
      if (!this.running) return
      try {
        await this.runOnce()
      } catch (err) {
        this.opts.logger?.error({ event: 'webhook.dispatch_error', err }, 'webhook dispatch run failed; will retry')
      }
      if (this.running) this.timer = setTimeout(tick, this.backlog ? 0 : intervalMs)
    }
    this.timer = setTimeout(tick, 0)
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
      this.opts.partitions().map(async (partition) => ({ partition, due: await store.dueWebhooks(partition, now, batchSize) })),
    )
    const work: { partition: number; pending: PendingWebhook }[] = []
    for (const { partition, due } of batches) {
      if (due.length >= batchSize) this.backlog = true
      for (const pending of due) work.push({ partition, pending })
    }
    await forEachLimit(work, concurrency, ({ partition, pending }) => this.handle(partition, pending, counts))
    return counts
  }

  private async handle(partition: number, pending: PendingWebhook, counts: DispatchCounts): Promise<void> {
    const { store, sender, clock, retry, metrics } = this.opts
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
    if (result.attempted && result.latencyMs !== null) metrics?.latency.observe({ outcome: result.outcome, channel }, result.latencyMs / 1000)
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
        metrics?.retries.inc({ channel })
        this.opts.logger?.debug(
          { event: 'webhook.retry', decisionId: decision.id, attempts, httpStatus: result.httpStatus, error: result.error, delayMs: delay },
          'webhook attempt failed; retry scheduled',
        )
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

  private async finish(partition: number, decision: Decision, status: DeliveryStatus, a: Attempt): Promise<void> {
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
    this.opts.metrics?.deliveries.inc({ status, channel: decision.channel ?? 'none' })
    const log = { event: `webhook.${status}`, decisionId: decision.id, trigger: decision.trigger, channel: row.channel, attempts: a.attempts, httpStatus: a.httpStatus }
    if (status === 'delivered') this.opts.logger?.debug({ ...log, latencyMs: a.latencyMs }, 'webhook delivered')
    else this.opts.logger?.warn({ ...log, reason: a.error }, `webhook ${status}; recorded as a delivery dead letter`)
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
