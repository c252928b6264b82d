/**
 * What protects one webhook endpoint: a circuit breaker that stops sending to an endpoint that
 * keeps failing, and a token bucket that keeps to its rate. Both run on the wall clock given.
 */

export type CircuitState = 'closed' | 'open' | 'half_open'

export interface BreakerSettings {
  /** Consecutive retriable failures that open the circuit. */
  failures: number
  /** How long an open circuit waits before one probe attempt (ms). */
  openFor: number
}

/** A change of state, for the caller to report. */
export type CircuitChange =
  | { to: 'open'; failures: number; reopened: boolean }
  | { to: 'half_open' }
  | { to: 'closed'; openMs: number }

/**
 * Closed: every attempt may go; `failures` retriable failures in a row open it. Open: nothing goes
 * for `openFor`, then it is half-open: one probe goes; its success closes the circuit, its failure
 * opens it for another `openFor`. An answer that is not retriable (2xx, other 4xx) shows the
 * endpoint is up, so it counts as a success here.
 */
export class CircuitBreaker {
  private current: CircuitState = 'closed'
  private consecutive = 0
  private openedAt = 0
  /** When the present outage began (the first opening), for how long an endpoint has been down. */
  private downSince: number | null = null
  private probing = false

  constructor(
    private readonly settings: () => BreakerSettings,
    private readonly now: () => number,
  ) {}

  /** The state now; an open circuit whose time is up becomes half-open (reported through `onChange`). */
  state(onChange?: (c: CircuitChange) => void): CircuitState {
    if (this.current === 'open' && this.now() - this.openedAt >= this.settings().openFor) {
      this.current = 'half_open'
      this.probing = false
      onChange?.({ to: 'half_open' })
    }
    return this.current
  }

  /** Since when (wall clock ms) the endpoint has been down, or null while closed. */
  get openSince(): number | null {
    return this.downSince
  }

  /**
   * Whether an attempt may start now: always while closed, the one probe while half-open (`probe`
   * true), never while open.
   */
  admit(onChange?: (c: CircuitChange) => void): { ok: boolean; probe: boolean } {
    const state = this.state(onChange)
    if (state === 'closed') return { ok: true, probe: false }
    if (state === 'half_open' && !this.probing) {
      this.probing = true
      return { ok: true, probe: true }
    }
    return { ok: false, probe: false }
  }

  /** A probe that was admitted but not attempted (its webhook was finished meanwhile): another may go. */
  releaseProbe(): void {
    this.probing = false
  }

  succeeded(onChange?: (c: CircuitChange) => void): void {
    this.consecutive = 0
    if (this.current === 'closed') return
    const openMs = this.downSince === null ? 0 : this.now() - this.downSince
    this.current = 'closed'
    this.probing = false
    this.downSince = null
    onChange?.({ to: 'closed', openMs })
  }

  failed(onChange?: (c: CircuitChange) => void): void {
    this.consecutive++
    if (this.current === 'half_open') return this.open(true, onChange)
    if (this.current === 'closed' && this.consecutive >= this.settings().failures) this.open(false, onChange)
  }

  private open(reopened: boolean, onChange?: (c: CircuitChange) => void): void {
    this.current = 'open'
    this.probing = false
    this.openedAt = this.now()
    this.downSince ??= this.openedAt
    onChange?.({ to: 'open', failures: this.consecutive, reopened })
  }
}

/** At most `rate` starts a second on average, with bursts of up to one second's worth; no rate: no limit. */
export class TokenBucket {
  private tokens: number | null = null
  private last = 0

  constructor(private readonly now: () => number) {}

  /** Takes a token if one is there. */
  take(rate: number | undefined): boolean {
    if (rate === undefined) return true
    this.refill(rate)
    if (this.tokens! < 1) return false
    this.tokens! -= 1
    return true
  }

  /** Whole tokens there now (Infinity with no limit). */
  available(rate: number | undefined): number {
    if (rate === undefined) return Infinity
    this.refill(rate)
    return Math.floor(this.tokens!)
  }

  /** Ms until the next token (0 when there is one, or no limit). */
  waitMs(rate: number | undefined): number {
    if (rate === undefined) return 0
    this.refill(rate)
    return this.tokens! >= 1 ? 0 : Math.ceil(((1 - this.tokens!) / rate) * 1000)
  }

  private refill(rate: number): void {
    const now = this.now()
    const burst = Math.max(1, rate)
    this.tokens = this.tokens === null ? burst : Math.min(burst, this.tokens + ((now - this.last) / 1000) * rate)
    this.last = now
  }
}

/** At most `limit()` holders at once (the limit may change between calls); the others wait in order. */
export class Slots {
  private active = 0
  private readonly waiting: (() => void)[] = []

  constructor(private readonly limit: () => number) {}

  async acquire(): Promise<void> {
    if (this.active < this.limit()) {
      this.active++
      return
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve))
  }

  release(): void {
    this.active--
    while (this.waiting.length && this.active < this.limit()) {
      this.active++
      this.waiting.shift()!()
    }
  }
}
