import type { StateStore } from '../pipeline/store/types.ts'
import type { ClickHouseSink } from './clickhouse.ts'

/**
 * Moves committed outbox rows into ClickHouse. Rows are acknowledged only after the insert, so a
 * crash in between inserts them again; ReplacingMergeTree collapses the copies on their ids.
 */
export async function drainRows(
  store: StateStore,
  partitions: number[],
  sink: ClickHouseSink,
  opts: { max?: number; onRows?: (table: string, count: number) => void } = {},
): Promise<number> {
  let total = 0
  for (const p of partitions) {
    for (;;) {
      const rows = await store.peekRows(p, opts.max ?? 5000)
      if (!rows.length) break
      await sink.insert(rows)
      await store.ackRows(p, rows.length)
      total += rows.length
      if (opts.onRows) {
        const counts = new Map<string, number>()
        for (const r of rows) counts.set(r.table, (counts.get(r.table) ?? 0) + 1)
        for (const [table, n] of counts) opts.onRows(table, n)
      }
    }
  }
  return total
}
