import { createHmac, timingSafeEqual } from 'node:crypto'

/**
 * Webhook signatures (CONTRACT.md §2.1), for cardpulse and for the systems that receive its
 * webhooks: `import { verifyWebhook } from 'cardpulse/webhooks'`. Depends on node:crypto alone.
 */

export const SIGNATURE_HEADER = 'X-Cardpulse-Signature'
export const TIMESTAMP_HEADER = 'X-Cardpulse-Timestamp'
export const IDEMPOTENCY_HEADER = 'Idempotency-Key'

/** `v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`; the timestamp is whole unix seconds. */
export function signWebhook(secret: string, timestampSeconds: number, rawBody: string | Uint8Array): string {
  if (!Number.isSafeInteger(timestampSeconds)) throw new TypeError('timestampSeconds must be an integer number of seconds')
  const mac = createHmac('sha256', secret).update(`${timestampSeconds}.`).update(rawBody).digest('hex')
  return `v1=${mac}`
}

/** Node's `req.headers`, or a fetch-style `Headers`. */
export type HeaderSource = { get(name: string): string | null } | Record<string, string | string[] | undefined>

export interface VerifyOptions {
  /** How far the timestamp may be from `now`, either way; bounds replays of a captured request. Default 300. */
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
 * re-serialised object). The header may list several `v1=` signatures separated by commas; any
 * match passes, which lets a receiver accept both secrets while one is being rotated.
 */
export function verifyWebhook(secret: string, headers: HeaderSource, rawBody: string | Uint8Array, opts: VerifyOptions = {}): VerifyResult {
  const tolerance = opts.toleranceSeconds ?? 300
  const now = opts.now ?? Date.now()
  const tsText = headerValue(headers, TIMESTAMP_HEADER)?.trim()
  if (!tsText) return { ok: false, reason: 'missing_timestamp' }
  const sigText = headerValue(headers, SIGNATURE_HEADER)
  if (!sigText) return { ok: false, reason: 'missing_signature' }
  if (!/^\d{1,15}$/.test(tsText)) return { ok: false, reason: 'malformed_timestamp' }
  const timestamp = Number(tsText)
  if (Math.abs(now / 1000 - timestamp) > tolerance) return { ok: false, reason: 'stale_timestamp' }

  const expected = Buffer.from(signWebhook(secret, timestamp, rawBody).slice(3), 'hex')
  for (const part of sigText.split(',')) {
    const m = /^v1=([0-9a-fA-F]{64})$/.exec(part.trim())
    // Same length by construction, so timingSafeEqual never throws and leaks nothing but "no".
    if (m && timingSafeEqual(Buffer.from(m[1], 'hex'), expected)) return { ok: true, timestamp }
  }
  return { ok: false, reason: 'bad_signature' }
}
