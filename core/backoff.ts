/**
 * The one backoff policy of the project: exponential, capped, jittered. Everything that waits
 * before trying again — webhook attempts, Redis and Kafka reconnects — asks this module how long,
 * so the behaviour is tuned in one place. Pure: randomness is passed in, the clock is never read.
 */

/**
 * - `full`: uniform in [0, base). Spreads retries of many clients best (no synchronised waves).
 * - `equal`: uniform in [base/2, base). Keeps a floor, so a receiver that just failed is not
 *   hit again at once, while still spreading retries.
 * - `none`: exactly `base`; for deterministic tests and tools.
 */
export type Jitter = 'full' | 'equal' | 'none'

export interface BackoffOptions {
  /** Base delay before the first retry. */
  initialMs: number
  /** Upper bound of any single delay, before jitter. */
  maxMs: number
  /** Growth per attempt. */
  factor: number
  jitter: Jitter
}

export interface RetryPolicy extends BackoffOptions {
  /** Total attempts, the first one included; after this many failures, give up. */
  maxAttempts: number
}

/**
 * Production defaults. With equal jitter, the 11 waits between 12 attempts add up to 9 to 19
 * minutes (1 s, 2 s, 4 s, … capped at 5 min): long enough to ride out a receiver's restart or
 * deploy, short next to a trigger's default 48 h time to live.
 */
export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  initialMs: 1_000,
  factor: 2,
  maxMs: 5 * 60_000,
  maxAttempts: 12,
  jitter: 'equal',
})

/** For tests: the same shape of curve, in milliseconds instead of minutes. */
export const FAST_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({
  initialMs: 10,
  factor: 2,
  maxMs: 100,
  maxAttempts: 5,
  jitter: 'equal',
})

/**
 * Reconnecting to Redis or a Kafka broker: short waits (300 ms doubling to 2 s), so a server that
 * is starting up or restarting is found again about as soon as it is back; for Kafka the connect
 * timeout sets how many tries there are, Redis tries until the owner stops it.
 */
export const RECONNECT_POLICY: Readonly<BackoffOptions> = Object.freeze({
  initialMs: 300,
  factor: 2,
  maxMs: 2_000,
  jitter: 'equal',
})

/**
 * Delay before the next try, after `attempt` failed attempts (1 = the first try failed).
 * The result is an integer number of ms in [0, maxMs]. `random` must return values in [0, 1).
 */
export function backoffDelay(attempt: number, opts: BackoffOptions, random: () => number = Math.random): number {
  const n = Number.isFinite(attempt) ? Math.max(1, Math.floor(attempt)) : 1
  const initial = Math.max(0, opts.initialMs)
  const max = Math.max(0, opts.maxMs)
  // factor ** (n - 1) may overflow to Infinity for large n; Math.min caps it all the same.
  const raw = initial * Math.max(1, opts.factor) ** (n - 1)
  const base = Math.min(max, Number.isFinite(raw) ? raw : max)
  // Clamp a misbehaving random source so the bounds hold whatever it returns.
  const r = Math.min(Math.max(random(), 0), 1)
  let delay: number
  switch (opts.jitter) {
    case 'full':
      delay = base * r
      break
    case 'equal':
      delay = base / 2 + (base / 2) * r
      break
    case 'none':
      delay = base
      break
  }
  return Math.min(max, Math.floor(delay))
}

/**
 * When to try again after `attemptsMade` failed attempts: the backoff, or the receiver's own
 * `Retry-After` if that asks for longer. `null` when the policy's attempts are used up.
 */
export function nextRetryDelay(
  attemptsMade: number,
  policy: RetryPolicy,
  retryAfterMs: number | null = null,
  random: () => number = Math.random,
): number | null {
  if (attemptsMade >= policy.maxAttempts) return null
  return Math.max(backoffDelay(attemptsMade, policy, random), retryAfterMs ?? 0)
}
