import { randomUUID } from 'node:crypto'
import type { Decision } from '../../schemas/decision.ts'
import type { Catalog } from '../../schemas/catalog.ts'
import type { OutboxRow } from '../../schemas/outbox.ts'
import type { Conversion } from '../../schemas/conversion.ts'
import type { DeliveryRow } from '../../sinks/webhook/dispatcher.ts'
import { ClickHouseSink, connectClickHouse } from '../../sinks/clickhouse.ts'
import { roiByTrigger, type RoiRow } from './roi.ts'

/**
 * ROI from rows in memory, computed by ClickHouse itself: the rows are loaded into embedded chDB
 * (or a scratch database of a given connection), migrated to the same schema the live pipeline
 * writes, and read with the same query the dashboards use (roi.ts, roiByTrigger). This is how
 * `cardpulse replay` fills summary.json's `roi`.
 */

export interface RoiFromRowsInput {
  decisions: Decision[]
  conversions: Conversion[]
  /**
   * Webhook deliveries. Without them (a replay sends nothing) every send decision counts as
   * delivered, so cost = channel cost per send decision + offer value of converted treated.
   */
  deliveries?: DeliveryRow[]
  catalog: Pick<Catalog, 'economics'>
  /** A connection to use (a scratch database is made in it and dropped); default: embedded chDB in memory. */
  clickhouse?: ClickHouseSink
}

export async function roiFromRows(input: RoiFromRowsInput): Promise<RoiRow[]> {
  const database = `cardpulse_roi_${randomUUID().replaceAll('-', '')}`
  const own = !input.clickhouse
  const sink = input.clickhouse
    ? new ClickHouseSink(input.clickhouse.client, database, input.clickhouse.pseudonymise)
    : new ClickHouseSink(await connectClickHouse({ database, embeddedPath: ':memory:' }), database)
  try {
    await sink.ensureSchema()
    const as = (table: string) => (row: object): OutboxRow => ({ table, row: row as Record<string, unknown> })
    const rows: OutboxRow[] = [
      // Only send and control decisions enter the ROI; suppressed ones are left out to save the copy.
      ...input.decisions.filter((d) => d.outcome !== 'suppressed').map(as('decisions')),
      ...input.conversions.map(as('conversions')),
      ...(input.deliveries ?? []).map(as('deliveries')),
    ]
    for (let i = 0; i < rows.length; i += 50_000) await sink.insert(rows.slice(i, i + 50_000))
    return await roiByTrigger(sink, {}, input.catalog.economics, { delivered: input.deliveries ? 'deliveries' : 'sends' })
  } finally {
    await sink.client.command({ query: `DROP DATABASE IF EXISTS ${database}` }).catch(() => {})
    if (own) await sink.close()
  }
}
