import { createHmac, timingSafeEqual } from 'node:crypto'

/**
 * Webhook signatures (CONTRACT.md §2.1), for cardpulse and for the systems that receive its
 * webhooks: `import { verifyWebhook } from 'cardpulse/webhooks'`. Depends on node:crypto alone.
 */

export const SIGNATURE_HEADER = 'X-Cardpulse-Signature'
export const TIMESTAMP_HEADER = 'X-Cardpulse-Timestamp'
export const IDEMPOTENCY_HEADER = 'Idempotency-Key'

/** How far a timestamp may be from the receiver's clock, either way, by default: 5 minutes. */
export const DEFAULT_TOLERANCE_SECONDS = 300

/**
 * The signature header: `v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`, the timestamp in
 * whole unix seconds. With several secrets (a rotation under way), one `v1=` per secret, the
 * current first, separated by commas — a receiver that knows any of them verifies. With one secret
 * the header is exactly the single `v1=` of CONTRACT.md §2.1.
 */
export function signWebhook(secret: string | readonly string[], timestampSeconds: number, rawBody: string | Uint8Array): string {
  if (!Number.isSafeInteger(timestampSeconds)) throw new TypeError('timestampSeconds must be an integer number of seconds')
  const secrets = typeof secret === 'string' ? [secret] : secret
  if (secrets.length === 0 || secrets.some((s) => !s)) throw new TypeError('a webhook secret must not be empty')
  return secrets.map((s) => `v1=${mac(s, timestampSeconds, rawBody).toString('hex')}`).join(',')
}

function mac(secret: string, timestampSeconds: number, rawBody: string | Uint8Array): Buffer {
  return createHmac('sha256', secret).update(`${timestampSeconds}.`).update(rawBody).digest()
}

/** Node's `req.headers`, or a fetch-style `Headers`. */
export type HeaderSource = { get(name: string): string | null } | Record<string, string | string[] | undefined>

export interface VerifyOptions {
  /** How far the timestamp may be from `now`, either way (old or in the future); bounds replays of a captured request. Default 300. */
  toleranceSeconds?: number
  /** Epoch ms; default `Date.now()`. */
  now?: number
}

export type VerifyFailure = 'missing_timestamp' | 'missing_signature' | 'malformed_timestamp' | 'stale_timestamp' | 'bad_signature'
export type VerifyResult = { ok: true; timestamp: number } | { ok: false; reason: VerifyFailure }

function headerValue(headers: HeaderSource, name: string): string | undefined {
  if (typeof headers.get === 'function') return (headers as { get(name: string): string | null }).get(name) ?? undefined
  const record = headers as Record<string, string | string[] | undefined>
  const lower = name.toLowerCase()
  let v = record[lower]
  if (v === undefined) {
    // Plain objects built by hand may keep the original case.
    for (const key of Object.keys(record)) if (key.toLowerCase() === lower) v = record[key]
  }
  return Array.isArray(v) ? v.join(',') : v
}

/**
 * For receivers: checks a request's signature against the raw body bytes as received (not a
 * re-serialised object), and that its timestamp is within `toleranceSeconds` of now, either way.
 * `secret` may be several (the current and the previous while rotating); the header may carry
 * several `v1=` signatures, comma-separated (cardpulse signs with each of its active secrets). Any
 * signature made with any of the secrets passes.
 */
export function verifyWebhook(secret: string | readonly string[], headers: HeaderSource, rawBody: string | Uint8Array, opts: VerifyOptions = {}): VerifyResult {
  const tolerance = opts.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS
  const now = opts.now ?? Date.now()
  const secrets = (typeof secret === 'string' ? [secret] : secret).filter(Boolean)
  if (secrets.length === 0) throw new TypeError('verifyWebhook needs at least one non-empty secret')
  const tsText = headerValue(headers, TIMESTAMP_HEADER)?.trim()
  if (!tsText) return { ok: false, reason: 'missing_timestamp' }
  const sigText = headerValue(headers, SIGNATURE_HEADER)
  if (!sigText) return { ok: false, reason: 'missing_signature' }
  if (!/^\d{1,15}$/.test(tsText)) return { ok: false, reason: 'malformed_timestamp' }
  const timestamp = Number(tsText)
  if (Math.abs(now / 1000 - timestamp) > tolerance) return { ok: false, reason: 'stale_timestamp' }

  const expected = secrets.map((s) => mac(s, timestamp, rawBody))
  const given = sigText.split(',').flatMap((part) => {
    const m = /^v1=([0-9a-fA-F]{64})$/.exec(part.trim())
    return m ? [Buffer.from(m[1], 'hex')] : []
  })
  // Same length by construction, so timingSafeEqual never throws and leaks nothing but "no".
  for (const g of given) for (const e of expected) if (timingSafeEqual(g, e)) return { ok: true, timestamp }
  return { ok: false, reason: 'bad_signature' }
}
