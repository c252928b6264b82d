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
  /** Sends the outbox's due webhooks; on its own loop once started, else once per pass. */
  webhooks: Pick<WebhookDispatcher, 'runOnce' | 'start' | 'stop'>
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
 * rows into ClickHouse. A pass stops at the first sink that fails; what it did not take stays in
 * the outbox for the next pass. Each sink's failure is reported once, and its recovery.
 */
export class OutboxDrain {
  private ticker?: NodeJS.Timeout
  private inFlight?: Promise<void>
  private readonly failing = new Set<string>()

  constructor(private readonly opts: OutboxDrainOptions) {}

  /** Drains on its own: webhooks every `webhooksEveryMs`, the other sinks every `everyMs`. */
  start({ everyMs = 500, webhooksEveryMs = 250 } = {}): void {
    this.opts.webhooks.start(webhooksEveryMs)
    this.ticker = setInterval(() => {
      // A slow sink must not stack passes up: a tick while one runs is skipped.
      if (this.inFlight) return
      this.inFlight = this.drainQueues()
        .catch(() => {})
        .finally(() => (this.inFlight = undefined))
    }, everyMs)
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

  /** Stops draining and drains once more, for what the last batches committed; what fails stays for the next start. */
  async stop(): Promise<void> {
    clearInterval(this.ticker)
    await this.inFlight
    await this.opts.webhooks.stop()
    await this.drainQueues().catch(() => {})
  }

  private async drainQueues(): Promise<void> {
    const { queues, clickhouse, publishAlerts, publishDeadLetters, instrumentation } = this.opts
    const partitions = this.opts.partitions()
    if (publishAlerts) await this.reported('alerts', () => drainOutbox(queues.alerts, partitions, publishAlerts, PUBLISH_MAX))
    if (publishDeadLetters) await this.reported('dead_letters', () => drainOutbox(queues.deadLetters, partitions, publishDeadLetters, PUBLISH_MAX))
    await this.reported('clickhouse', () => drainRows(queues.rows, partitions, clickhouse, { onRows: (table, rows) => instrumentation.emit('sink.rows_written', { table, rows }) }))
  }

  private async reported(sink: string, drain: () => Promise<unknown>): Promise<void> {
    try {
      await drain()
    } catch (e) {
      if (!this.failing.has(sink)) this.opts.instrumentation.emit('sink.failed', { sink, err: errText(e) })
      this.failing.add(sink)
      throw e
    }
    if (this.failing.delete(sink)) this.opts.instrumentation.emit('sink.recovered', { sink })
  }
}
