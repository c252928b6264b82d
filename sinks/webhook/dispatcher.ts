import type { Decision } from '../../schemas/decision.ts'
import { Channel } from '../../schemas/events.ts'
import { Delivery } from '../../schemas/catalog.ts'
import type { OutboxRow, PendingWebhook } from '../../schemas/outbox.ts'
import { nextRetryDelay, type RetryPolicy } from '../../core/backoff.ts'
import { errText, type Instrumentation } from '../../core/instrumentation.ts'
import { WebhookConfigError, type WebhookTransport } from './sender.ts'
import { CircuitBreaker, Slots, TokenBucket, type CircuitChange, type CircuitState } from './endpoint.ts'

/**
 * The webhook dispatcher: drains the outbox's due webhooks, sends each through a transport, and
 * records retries, expiry and the delivery dead-letter rows. Each channel's endpoint has its own
 * concurrency, rate and circuit breaker (the catalogue's `delivery` section): a due webhook its
 * endpoint cannot take now is set aside in the outbox (parked, by channel, keeping its due time,
 * attempts and expiry) rather than held in memory, so one endpoint that is down or slow holds up
 * neither the other channels nor the process's memory.
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
  /** Webhooks due by `now` and not set aside, oldest first. */
  dueWebhooks(partition: number, now: number, max: number): Promise<PendingWebhook[]>
  /** Ends a webhook (delivered, expired or dead) and records its delivery row, atomically. */
  finishWebhook(partition: number, decisionId: string, row: OutboxRow): Promise<void>
  /** Reschedules a webhook after a retriable failure. */
  retryWebhook(partition: number, pending: PendingWebhook): Promise<void>
  /** Sets due webhooks of one channel aside (still pending, same due time) while its endpoint cannot take them. */
  parkWebhooks(partition: number, channel: Channel, decisionIds: string[]): Promise<void>
  /** Moves up to `max` of a channel's set-aside webhooks back among the due ones, oldest first; `parked`: how many stay aside. */
  unparkWebhooks(partition: number, channel: Channel, max: number): Promise<{ moved: number; parked: number }>
  /**
   * Claims due webhooks before they are sent and returns the ids still pending, now claimed: a
   * cancellation that comes while one is being sent waits for the attempt's outcome
   * (docs/webhooks.md). A webhook cancelled before its claim is not returned: it is not sent.
   */
  claimWebhooks?(partition: number, decisionIds: string[]): Promise<string[]>
}

/** The per-channel limits and the circuit breaker in force (the catalogue's `delivery` section). */
export type DeliveryLimits = Pick<Delivery, 'channels' | 'circuitBreaker'>

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
  /** Most HTTP attempts in flight at once, over every endpoint. */
  concurrency: number
  /** Per-channel concurrency and rate, and the breaker; read before every run, so a catalogue reload applies. Default: the catalogue defaults. */
  limits?: () => DeliveryLimits
  /** Real time (epoch ms) for rates and the breaker, which must not follow a simulated `clock`. Default Date.now. */
  wallClock?: () => number
  /** Where deliveries, retries and attempts are logged and counted. */
  instrumentation?: Instrumentation
  /** Jitter source; default Math.random. */
  random?: () => number
}

/** How one endpoint stands, for health and metrics. */
export interface EndpointStatus {
  channel: Channel
  /** host[:port] of the channel's webhook URL, or "none". */
  endpoint: string
  circuit: CircuitState
  /** Wall clock ms since which the circuit has been open (half-open included), or null. */
  openSince: number | null
  /** Attempts admitted and not finished. */
  inFlight: number
  /** Due webhooks set aside for this channel, as last seen per partition. */
  parked: number
}

interface Attempt {
  attempts: number
  httpStatus: number | null
  latencyMs: number | null
  error: string | null
}

/** One channel's endpoint: its breaker, rate, concurrency and what is set aside for it. */
interface Lane {
  channel: Channel
  endpoint: string
  breaker: CircuitBreaker
  bucket: TokenBucket
  slots: Slots
  /** Admitted and not settled (waiting for a slot or attempting). */
  outstanding: number
  /** Parked webhooks per partition as last seen; a partition not in it may hold some (not looked at yet). */
  parked: Map<number, number>
}

const DEFAULT_LIMITS: DeliveryLimits = Delivery.parse({})

/** How often every owned partition is looked at again for set-aside webhooks (ms). */
const RECHECK_MS = 10_000

/** Parked webhooks moved back per channel and partition in one run: a slice of a batch, so other channels still fit. */
const UNPARK_SHARE = 4

export class WebhookDispatcher {
  private passing: Promise<{ counts: DispatchCounts; started: Promise<void>[] }> | null = null
  private readonly settling = new Set<Promise<void>>()
  private timer: NodeJS.Timeout | undefined
  private running = false
  /** A partition had more due than one batch, or parked webhooks can go now: poll again soon instead of waiting. */
  private backlog = false
  /** When to look again at the earliest for a rate-limited channel (ms), if sooner than the poll. */
  private wakeInMs: number | null = null
  /** Nudged while a pass was under way: that pass may have looked before the new webhooks were committed, so run again at once. */
  private nudged = false
  private intervalMs = 1_000
  /** Webhooks admitted and not settled, by decision id: never taken twice at once. */
  private readonly inFlight = new Set<string>()
  private readonly lanes: Map<Channel, Lane>
  private readonly global: Slots
  private readonly wallClock: () => number
  /** When to look at every partition again for set-aside webhooks (wall clock ms). */
  private recheckAt = 0

  constructor(private readonly opts: WebhookDispatcherOptions) {
    if (!(opts.batchSize >= 1)) throw new WebhookConfigError(`webhook batchSize must be at least 1, got ${opts.batchSize}`)
    if (!(opts.concurrency >= 1)) throw new WebhookConfigError(`webhook concurrency must be at least 1, got ${opts.concurrency}`)
    this.wallClock = opts.wallClock ?? Date.now
    this.global = new Slots(() => opts.concurrency)
    this.lanes = new Map(
      Channel.options.map((channel) => [
        channel,
        {
          channel,
          endpoint: endpointLabel(opts.sender.urlFor?.(channel)),
          breaker: new CircuitBreaker(() => this.limits().circuitBreaker, this.wallClock),
          bucket: new TokenBucket(this.wallClock),
          slots: new Slots(() => this.limits().channels[channel].concurrency),
          outstanding: 0,
          parked: new Map(),
        },
      ]),
    )
  }

  private limits(): DeliveryLimits {
    return this.opts.limits?.() ?? DEFAULT_LIMITS
  }

  /** Every channel's endpoint as it stands. */
  endpoints(): EndpointStatus[] {
    return [...this.lanes.values()].map((lane) => ({
      channel: lane.channel,
      endpoint: lane.endpoint,
      circuit: lane.breaker.state((c) => this.report(lane, c)),
      openSince: lane.breaker.openSince,
      inFlight: lane.outstanding,
      parked: [...lane.parked.values()].reduce((a, b) => a + b, 0),
    }))
  }

  /**
   * One pass over the owned partitions' due webhooks, waiting for the attempts it started.
   * Passes never overlap, and a webhook in flight is never taken again, so the same webhook is
   * never sent twice at once by this instance. Rejects (after every started attempt has settled)
   * if the store fails; unrecorded webhooks stay in the outbox and are tried again, and the
   * Idempotency-Key lets receivers drop repeats.
   */
  async runOnce(): Promise<DispatchCounts> {
    const { counts, started } = await this.pass()
    await settleAll(started)
    return counts
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

  /** A polled pass starts attempts and does not wait for them: a slow endpoint holds up no other. */
  private async tick(): Promise<void> {
    this.timer = undefined
    if (!this.running) return
    this.nudged = false
    try {
      const { started } = await this.pass()
      for (const attempt of started) {
        const settled = attempt.catch((err) => this.opts.instrumentation?.emit('webhook.dispatch_failed', { err: errText(err) }))
        this.settling.add(settled)
        void settled.finally(() => this.settling.delete(settled))
      }
    } catch (err) {
      this.opts.instrumentation?.emit('webhook.dispatch_failed', { err: errText(err) })
    }
    if (this.running && !this.timer) {
      const delay = this.backlog || this.nudged ? 0 : Math.min(this.intervalMs, this.wakeInMs ?? Infinity)
      this.schedule(delay)
    }
  }

  /** Stops polling and waits for the attempts in flight to be sent and recorded. */
  async stop(): Promise<void> {
    this.running = false
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    await this.passing?.catch(() => undefined)
    await Promise.all([...this.settling])
  }

  private pass(): Promise<{ counts: DispatchCounts; started: Promise<void>[] }> {
    if (this.passing) return this.passing
    const run = this.look().finally(() => {
      if (this.passing === run) this.passing = null
    })
    this.passing = run
    return run
  }

  /** How many more webhooks a channel may take now: held in memory at most twice its concurrency (or a batch). */
  private room(lane: Lane): number {
    const state = lane.breaker.state((c) => this.report(lane, c))
    if (state === 'open') return 0
    if (state === 'half_open') return lane.outstanding ? 0 : 1
    return Math.max(0, Math.max(2 * this.limits().channels[lane.channel].concurrency, this.opts.batchSize) - lane.outstanding)
  }

  /** Moves back what a channel that can take webhooks again has set aside, then takes what is due and admits or parks each. */
  private async look(): Promise<{ counts: DispatchCounts; started: Promise<void>[] }> {
    const { store, clock, batchSize } = this.opts
    const counts: DispatchCounts = { delivered: 0, retried: 0, failed: 0, expired: 0 }
    const started: Promise<void>[] = []
    this.backlog = false
    this.wakeInMs = null
    const partitions = this.opts.partitions()
    const limits = this.limits()

    // Now and then look at every partition again: during a rebalance a former owner may have set
    // webhooks aside in a partition this one had seen empty.
    const recheck = this.wallClock() >= this.recheckAt
    if (recheck) this.recheckAt = this.wallClock() + RECHECK_MS
    for (const lane of this.lanes.values()) {
      // What a partition no longer owned holds is its new owner's to send.
      for (const [p, n] of lane.parked) if (!partitions.includes(p) || (recheck && n === 0)) lane.parked.delete(p)
      const rate = limits.channels[lane.channel].ratePerSecond
      // No more back than can start now: the rest would only be set aside again.
      let room = Math.min(this.room(lane), Math.ceil(batchSize / UNPARK_SHARE), lane.breaker.state() === 'closed' ? lane.bucket.available(rate) : 1)
      for (const p of partitions) {
        if (room <= 0) break
        if (lane.parked.get(p) === 0) continue
        const { moved, parked } = await store.unparkWebhooks(p, lane.channel, room)
        lane.parked.set(p, parked)
        room -= moved
        if (parked > 0 && lane.bucket.waitMs(rate) === 0) this.backlog = true
      }
    }

    const now = clock()
    const batches = await Promise.all(partitions.map(async (partition) => ({ partition, due: await store.dueWebhooks(partition, now, batchSize) })))
    const toPark = new Map<string, { partition: number; channel: Channel; ids: string[] }>()
    for (const { partition, due } of batches) {
      if (due.length >= batchSize) this.backlog = true
      for (const pending of due) {
        const { decision } = pending
        if (this.inFlight.has(decision.id)) continue
        const lane = decision.channel ? this.lanes.get(decision.channel) : undefined
        // Expired, or without a channel: recorded without an attempt, whatever the endpoint's state.
        if (!lane || !(now < Date.parse(decision.expiresAt))) {
          started.push(this.attempt(partition, pending, counts, undefined, false))
          continue
        }
        const admitted = this.admit(lane, limits)
        if (admitted.ok) {
          started.push(this.attempt(partition, pending, counts, lane, admitted.probe))
          continue
        }
        const key = `${partition}:${lane.channel}`
        let group = toPark.get(key)
        if (!group) toPark.set(key, (group = { partition, channel: lane.channel, ids: [] }))
        group.ids.push(decision.id)
      }
    }
    for (const { partition, channel, ids } of toPark.values()) {
      await store.parkWebhooks(partition, channel, ids)
      const lane = this.lanes.get(channel)!
      lane.parked.set(partition, (lane.parked.get(partition) ?? 0) + ids.length)
      this.opts.instrumentation?.emit('webhook.parked', { channel, endpoint: lane.endpoint, webhooks: ids.length, circuit: lane.breaker.state() })
    }
    for (const lane of this.lanes.values()) {
      const rate = limits.channels[lane.channel].ratePerSecond
      const waiting = [...lane.parked.values()].some((n) => n > 0)
      if (waiting && lane.breaker.state() === 'closed') {
        const wait = lane.bucket.waitMs(rate)
        if (wait > 0) this.wakeInMs = Math.min(this.wakeInMs ?? Infinity, wait)
      }
    }
    return { counts, started }
  }

  private admit(lane: Lane, limits: DeliveryLimits): { ok: boolean; probe: boolean } {
    if (this.room(lane) <= 0) return { ok: false, probe: false }
    const state = lane.breaker.state((c) => this.report(lane, c))
    if (state === 'closed' && !lane.bucket.take(limits.channels[lane.channel].ratePerSecond)) return { ok: false, probe: false }
    return lane.breaker.admit((c) => this.report(lane, c))
  }

  /** Waits for a slot of its endpoint and of the process, then handles the webhook; one that lost its chance meanwhile stays pending. */
  private async attempt(partition: number, pending: PendingWebhook, counts: DispatchCounts, lane: Lane | undefined, probe: boolean): Promise<void> {
    const id = pending.decision.id
    this.inFlight.add(id)
    if (lane) lane.outstanding++
    try {
      if (lane) await lane.slots.acquire()
      await this.global.acquire()
      try {
        // The circuit opened while this waited: it stays in the outbox, no attempt counted.
        if (lane && !probe && lane.breaker.state() !== 'closed') return
        // Claimed just before it is sent: one cancelled until now is not sent at all.
        if (!(await this.claimed(partition, [pending])).length) return
        await this.handle(partition, pending, counts, lane)
      } finally {
        this.global.release()
        lane?.slots.release()
      }
    } finally {
      if (probe && lane?.breaker.state() === 'half_open') lane.breaker.releaseProbe()
      this.inFlight.delete(id)
      if (lane) {
        lane.outstanding--
        // Something of this channel is set aside: now there is room for it.
        if (this.running && [...lane.parked.values()].some((n) => n > 0)) this.nudge()
      }
    }
  }

  private report(lane: Lane, change: CircuitChange): void {
    const i = this.opts.instrumentation
    if (!i) return
    const at = { channel: lane.channel, endpoint: lane.endpoint }
    const openForMs = this.limits().circuitBreaker.openFor
    // A probe that fails opens the circuit again: the outage goes on, it is no news worth a warning.
    if (change.to === 'open') i.emit(change.reopened ? 'webhook.circuit_reopened' : 'webhook.circuit_opened', { ...at, failures: change.failures, openForMs })
    else if (change.to === 'half_open') i.emit('webhook.circuit_half_open', at)
    else i.emit('webhook.circuit_closed', { ...at, openMs: change.openMs })
  }

  /** The due webhooks the store lets this pass send: those not cancelled meanwhile. */
  private async claimed(partition: number, due: PendingWebhook[]): Promise<PendingWebhook[]> {
    const { store } = this.opts
    if (!due.length || !store.claimWebhooks) return due
    const claimed = new Set(await store.claimWebhooks(partition, due.map((w) => w.decision.id)))
    return due.filter((w) => claimed.has(w.decision.id))
  }

  private async handle(partition: number, pending: PendingWebhook, counts: DispatchCounts, lane: Lane | undefined): Promise<void> {
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
    if (lane && result.attempted) {
      // Any answer but a retriable one shows the endpoint is up.
      if (result.outcome === 'retriable') lane.breaker.failed((c) => this.report(lane, c))
      else lane.breaker.succeeded((c) => this.report(lane, c))
    }
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

/** host[:port] of a webhook URL: names the endpoint in logs and metrics without its path or query, which may carry tokens. */
function endpointLabel(url: string | undefined): string {
  if (!url) return 'none'
  try {
    return new URL(url).host
  } catch {
    return 'invalid'
  }
}

/** Waits for every attempt; throws the first failure, or all of them. */
async function settleAll(started: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(started)
  const errors = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason)
  if (errors.length === 1) throw errors[0]
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} webhooks could not be recorded`)
}
