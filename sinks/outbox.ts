import type { OutboxEntry, OutboxRow } from '../schemas/outbox.ts'
import type { RiskAlert } from '../schemas/alert.ts'
import type { DeadLetter } from '../schemas/deadLetter.ts'
import type { ClickHouseSink } from './clickhouse.ts'

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
