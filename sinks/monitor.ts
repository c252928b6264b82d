import type { Channel } from '../schemas/events.ts'
import type { EndpointStatus } from './webhook/dispatcher.ts'
import { errText, type Instrumentation } from '../core/instrumentation.ts'

/**
 * Back-pressure made visible: samples what waits in the outbox of the partitions this process
 * drains (metrics), says once when a channel's webhooks fall behind and once when they catch up,
 * and tells /healthz when an endpoint or a sink has been down long enough to call the process
 * degraded.
 */

/** What waits in one partition's outbox (numbers of entries; times epoch ms on the pipeline clock). */
export interface OutboxBacklog {
  rows: number
  alerts: number
  deadLetters: number
  /** Webhooks due by now and not set aside, and when the oldest of them was due. */
  webhooksDue: number
  oldestDueAt: number | null
  /** Webhooks due later (quiet hours, retries). */
  webhooksScheduled: number
  /** Due webhooks set aside per channel while its endpoint cannot take them. */
  parked: Record<Channel, { count: number; oldestDueAt: number | null }>
}

export interface DeliveryMonitorOptions {
  /** One partition's backlog (the store's `outboxBacklog`). */
  backlog: (partition: number, now: number) => Promise<OutboxBacklog>
  partitions: () => number[]
  endpoints: () => EndpointStatus[]
  /** Since when (wall clock ms) each failing sink has been failing. */
  failingSinks: () => ReadonlyMap<string, number>
  /** `behindAfter`, `degradedAfter` (ms), read at every sample so a catalogue reload applies. */
  settings: () => { behindAfter: number; degradedAfter: number }
  /** The pipeline's clock (epoch ms), which due times follow. */
  clock: () => number
  /** Real time, for how long something has been down. Default Date.now. */
  wallClock?: () => number
  instrumentation: Instrumentation
}

export class DeliveryMonitor {
  private ticker?: NodeJS.Timeout
  private sampling?: Promise<void>
  /** Channels behind, since when (wall clock ms). */
  private readonly behind = new Map<Channel, number>()
  private readonly wallClock: () => number
  /** The last sample failed (Redis unreachable). */
  private failing = false

  constructor(private readonly opts: DeliveryMonitorOptions) {
    this.wallClock = opts.wallClock ?? Date.now
  }

  start(everyMs = 5_000): void {
    if (this.ticker) return
    const tick = () => {
      if (this.sampling) return
      this.sampling = this.sample()
        .then(() => {
          if (this.failing) this.opts.instrumentation.emit('sink.recovered', { sink: 'outbox_backlog' })
          this.failing = false
        })
        .catch((e) => {
          // Said once, like a sink's failure, not at every sample.
          if (!this.failing) this.opts.instrumentation.emit('sink.failed', { sink: 'outbox_backlog', err: errText(e) })
          this.failing = true
        })
        .finally(() => (this.sampling = undefined))
    }
    tick()
    this.ticker = setInterval(tick, everyMs)
    this.ticker.unref()
  }

  async stop(): Promise<void> {
    clearInterval(this.ticker)
    this.ticker = undefined
    await this.sampling
  }

  /** Reads the backlog of every owned partition once, sets the gauges and reports channels falling behind or catching up. */
  async sample(): Promise<void> {
    const { instrumentation } = this.opts
    const now = this.opts.clock()
    const parts = await Promise.all(this.opts.partitions().map((p) => this.opts.backlog(p, now)))
    const tables = { rows: 0, alerts: 0, dead_letters: 0, webhooks_due: 0, webhooks_scheduled: 0 }
    for (const b of parts) {
      tables.rows += b.rows
      tables.alerts += b.alerts
      tables.dead_letters += b.deadLetters
      tables.webhooks_due += b.webhooksDue
      tables.webhooks_scheduled += b.webhooksScheduled
    }
    const { behindAfter } = this.opts.settings()
    const channels = this.opts.endpoints().map((e) => {
      let backlog = e.inFlight
      let oldest: number | null = null
      for (const b of parts) {
        const p = b.parked[e.channel]
        backlog += p.count
        if (p.oldestDueAt !== null) oldest = oldest === null ? p.oldestDueAt : Math.min(oldest, p.oldestDueAt)
      }
      const oldestAgeSeconds = oldest === null ? 0 : Math.max(0, Math.round((now - oldest) / 1000))
      return { ...e, backlog, oldestAgeSeconds }
    })
    instrumentation.emit('outbox.backlog', { tables, channels: channels.map(({ channel, endpoint, backlog, oldestAgeSeconds }) => ({ channel, endpoint, backlog, oldestAgeSeconds })) })

    const wall = this.wallClock()
    for (const c of channels) {
      const isBehind = c.circuit !== 'closed' || (c.backlog > 0 && c.oldestAgeSeconds * 1000 >= behindAfter)
      const since = this.behind.get(c.channel)
      if (isBehind && since === undefined) {
        this.behind.set(c.channel, wall)
        instrumentation.emit('webhook.endpoint_behind', { channel: c.channel, endpoint: c.endpoint, backlog: c.backlog, oldestAgeSeconds: c.oldestAgeSeconds, circuit: c.circuit })
      } else if (!isBehind && since !== undefined) {
        this.behind.delete(c.channel)
        instrumentation.emit('webhook.endpoint_caught_up', { channel: c.channel, endpoint: c.endpoint, behindSeconds: Math.round((wall - since) / 1000) })
      }
    }
  }

  /** For /healthz: why the process is degraded (an endpoint or a sink down longer than `degradedAfter`), or nothing. */
  degraded(): string[] {
    const { degradedAfter } = this.opts.settings()
    const wall = this.wallClock()
    const reasons: string[] = []
    for (const e of this.opts.endpoints()) {
      if (e.openSince !== null && wall - e.openSince >= degradedAfter)
        reasons.push(`${e.channel} endpoint ${e.endpoint} down for ${Math.round((wall - e.openSince) / 1000)}s (circuit ${e.circuit.replace('_', '-')}); ${e.parked} webhooks waiting`)
    }
    for (const [sink, since] of this.opts.failingSinks()) {
      if (wall - since >= degradedAfter) reasons.push(`sink ${sink} failing for ${Math.round((wall - since) / 1000)}s`)
    }
    return reasons
  }
}
