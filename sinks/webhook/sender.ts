import { performance } from 'node:perf_hooks'
import { Agent, request, type Dispatcher } from 'undici'
import { webhookBodyOf, type Decision } from '../../schemas/decision.ts'
import type { Channel } from '../../schemas/events.ts'
import { ConfigError } from '../../core/errors.ts'
import { IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signWebhook } from './signature.ts'

/** One signed webhook POST per attempt (CONTRACT.md §2.1), and what it came to. */

/** Raised at construction for configuration a person must fix; retrying cannot help. */
export class WebhookConfigError extends ConfigError {}

/** Endpoint per channel; `default` serves every channel without its own URL. */
export type WebhookUrls = { default?: string } & Partial<Record<Channel, string>>

export interface WebhookSenderOptions {
  urls: WebhookUrls
  /** The signing secret, or the active secrets while one is rotated (the current first): each signs. */
  secret: string | readonly string[]
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
  /** The endpoint a channel's webhooks go to, when the transport knows one (it names the endpoint in logs and metrics). */
  urlFor?(channel: Channel): string | undefined
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
  private readonly secret: string | readonly string[]
  private readonly timeoutMs: number
  private readonly dispatcher: Dispatcher
  private readonly ownsDispatcher: boolean
  private readonly now: () => number

  constructor(opts: WebhookSenderOptions) {
    if (!opts.secret || (typeof opts.secret !== 'string' && (opts.secret.length === 0 || opts.secret.some((s) => !s)))) throw new WebhookConfigError('webhook secret is empty; receivers could not verify signatures')
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
