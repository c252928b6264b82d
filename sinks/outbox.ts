import type { OutboxEntry, OutboxRow } from '../schemas/outbox.ts'
import type { RiskAlert } from '../schemas/alert.ts'
import type { DeadLetter } from '../schemas/deadLetter.ts'
import type { ClickHouseSink } from './clickhouse.ts'
import type { WebhookDispatcher } from './webhook/dispatcher.ts'
import { errText, type Instrumentation } from '../core/instrumentation.ts'

/**
 * The outbox drain: takes committed entries of a partition in commit order, sends them, and only
 * after the send succeeded acknowledges exactly those entries by id. A crash in between sends them
 * again on the next drain (at least once); each kind carries a deterministic id for its consumer to
 * deduplicate on. A failed send leaves the entries in the outbox and ends the drain with its error.
 */
export interface OutboxQueue<T> {
  peek(partition: number, max: number): Promise<OutboxEntry<T>[]>
  ack(partition: number, ids: string[]): Promise<void>
}

export async function drainOutbox<T>(
  queue: OutboxQueue<T>,
  partitions: number[],
  send: (values: T[], partition: number) => Promise<void>,
  max: number,
  onAcked?: (values: T[], partition: number) => void,
): Promise<number> {
  let total = 0
  for (const p of partitions) {
    for (;;) {
      const entries = await queue.peek(p, max)
      if (!entries.length) break
      const values = entries.map((e) => e.value)
      await send(values, p)
      await queue.ack(p, entries.map((e) => e.id))
      total += entries.length
      onAcked?.(values, p)
    }
  }
  return total
}

/** The outbox as the sinks see it: a queue per kind, each drained in commit order. */
export interface OutboxQueues {
  rows: OutboxQueue<OutboxRow>
  alerts: OutboxQueue<RiskAlert>
  deadLetters: OutboxQueue<DeadLetter>
}

/**
 * Moves committed outbox rows into ClickHouse. Rows are acknowledged only after the insert, so a
 * crash in between inserts them again; ReplacingMergeTree collapses the copies on their ids.
 */
export async function drainRows(
  queue: OutboxQueue<OutboxRow>,
  partitions: number[],
  sink: ClickHouseSink,
  opts: { max?: number; onRows?: (table: string, count: number) => void } = {},
): Promise<number> {
  return drainOutbox(
    queue,
    partitions,
    (rows) => sink.insert(rows),
    opts.max ?? 5000,
    (rows) => {
      if (!opts.onRows) return
      const counts = new Map<string, number>()
      for (const r of rows) counts.set(r.table, (counts.get(r.table) ?? 0) + 1)
      for (const [table, n] of counts) opts.onRows(table, n)
    },
  )
}

export interface OutboxDrainOptions {
  queues: OutboxQueues
  clickhouse: ClickHouseSink
  /** Sends the outbox's due webhooks; on its own loop once started (which a nudge runs at once), else once per pass. */
  webhooks: Pick<WebhookDispatcher, 'runOnce' | 'start' | 'stop' | 'nudge'>
  /** The partitions whose outbox this process drains; read on every pass, so rebalances take effect. */
  partitions: () => number[]
  /** Resolves once the alerts are safely published; without it alerts are not drained (the demo keeps them as rows only). */
  publishAlerts?: (alerts: RiskAlert[]) => Promise<void>
  /** Resolves once late events' dead letters are safely published; without it they are not drained. */
  publishDeadLetters?: (deadLetters: DeadLetter[]) => Promise<void>
  instrumentation: Instrumentation
}

/** Entries taken per send of alerts and dead letters. */
const PUBLISH_MAX = 500

/**
 * Everything that leaves the committed outbox, for `run` and `demo` alike: due webhooks through
 * the dispatcher, alerts and late events' dead letters through the publish functions it is given,
 * rows into ClickHouse. Alerts and dead letters go in one pass, rows in another, so a slow
 * ClickHouse insert never holds up an alert. A pass stops at the first sink that fails; what it did
 * not take stays in the outbox for the next pass. Each sink's failure is reported once, and its
 * recovery.
 */
export class OutboxDrain {
  private ticker?: NodeJS.Timeout
  private running = false
  /** The pass publishing alerts and dead letters, and whether another must follow it (a nudge came meanwhile). */
  private publishing?: Promise<void>
  private publishQueued = false
  /** The pass inserting ClickHouse rows. */
  private inserting?: Promise<void>
  /** Sinks whose last pass failed, and since when (wall clock ms). */
  private readonly failing = new Map<string, number>()

  constructor(private readonly opts: OutboxDrainOptions) {}

  /**
   * Drains on its own: webhooks every `webhooksEveryMs`, the other sinks every `everyMs`, and
   * webhooks, alerts and dead letters at once on a `nudge`.
   */
  start({ everyMs = 500, webhooksEveryMs = 250 } = {}): void {
    this.running = true
    this.opts.webhooks.start(webhooksEveryMs)
    this.ticker = setInterval(() => {
      this.publish()
      // A slow sink must not stack passes up: a tick while one runs is skipped.
      if (this.inserting) return
      this.inserting = this.reported('clickhouse', () => this.drainRows())
        .catch(() => {})
        .finally(() => (this.inserting = undefined))
    }, everyMs)
  }

  /**
   * A commit put webhooks, alerts or dead letters in the outbox: send them now rather than at the
   * next tick. Nudges coalesce: at most one pass of each kind is under way and one more waits
   * behind it, however many commits nudged. ClickHouse rows keep to the timer. Does nothing
   * unless started.
   */
  nudge(): void {
    if (!this.running) return
    this.opts.webhooks.nudge()
    this.publish()
  }

  /** One pass over every sink, webhooks first (a drain that was not started); rejects with the first failure. */
  async runOnce(): Promise<void> {
    await this.opts.webhooks.runOnce()
    await this.drainQueues()
  }

  /** For /healthz: whether the last pass reached every sink. */
  health(): { clickhouse: boolean } {
    return { clickhouse: this.failing.size === 0 }
  }

  /** Since when each failing sink has been failing (wall clock ms). */
  failingSince(): ReadonlyMap<string, number> {
    return this.failing
  }

  /** Stops draining and drains once more, for what the last batches committed; what fails stays for the next start. */
  async stop(): Promise<void> {
    this.running = false
    clearInterval(this.ticker)
    this.publishQueued = false
    await Promise.all([this.publishing, this.inserting])
    await this.opts.webhooks.stop()
    await this.drainQueues().catch(() => {})
  }

  /** Starts a pass over alerts and dead letters, or queues one behind the pass under way. */
  private publish(): void {
    if (this.publishing) {
      this.publishQueued = true
      return
    }
    this.publishQueued = false
    this.publishing = this.drainPublished()
      .catch(() => {})
      .finally(() => {
        this.publishing = undefined
        if (this.publishQueued && this.running) this.publish()
      })
  }

  private async drainQueues(): Promise<void> {
    await this.drainPublished()
    await this.reported('clickhouse', () => this.drainRows())
  }

  private async drainPublished(): Promise<void> {
    const { queues, publishAlerts, publishDeadLetters } = this.opts
    const partitions = this.opts.partitions()
    if (publishAlerts) await this.reported('alerts', () => drainOutbox(queues.alerts, partitions, publishAlerts, PUBLISH_MAX))
    if (publishDeadLetters) await this.reported('dead_letters', () => drainOutbox(queues.deadLetters, partitions, publishDeadLetters, PUBLISH_MAX))
  }

  private drainRows(): Promise<number> {
    const { queues, clickhouse, instrumentation } = this.opts
    return drainRows(queues.rows, this.opts.partitions(), clickhouse, { onRows: (table, rows) => instrumentation.emit('sink.rows_written', { table, rows }) })
  }

  private async reported(sink: string, drain: () => Promise<unknown>): Promise<void> {
    try {
      await drain()
    } catch (e) {
      if (!this.failing.has(sink)) this.opts.instrumentation.emit('sink.failed', { sink, err: errText(e) })
      if (!this.failing.has(sink)) this.failing.set(sink, Date.now())
      throw e
    }
    if (this.failing.delete(sink)) this.opts.instrumentation.emit('sink.recovered', { sink })
  }
}
