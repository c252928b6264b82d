import { randomUUID } from 'node:crypto'
import type { Decision } from '../../schemas/decision.ts'
import type { Catalog } from '../../schemas/catalog.ts'
import type { OutboxRow } from '../store/types.ts'
import { ClickHouseSink, connectClickHouse } from '../../sinks/clickhouse.ts'
import { roiByTrigger, type RoiRow } from './queries.ts'

/**
 * ROI from rows in memory, computed by ClickHouse itself: the rows are loaded into embedded chDB
 * (or a scratch database of a given connection), migrated to the same schema the live pipeline
 * writes, and read with the same query the dashboards use (queries.ts, roiByTrigger). This is how
 * `cardpulse replay` fills summary.json's `roi`.
 */

/** A conversion-window row, as the stream emits it (`{ table: 'conversions', row }`). */
export interface ConversionRow {
  decisionId: string
  trigger: string
  customerId: string
  cardId?: string
  outcome: 'send' | 'control'
  decisionTime: string
  windowEnd: string
  converted: boolean
  convertedAt?: string
  convertingEventId?: string
  engaged: boolean
  spend: number
  preSpend: number
  final: boolean
  version: number
}

/** A finished webhook delivery, as the live pipeline writes it (`{ table: 'deliveries', row }`). */
export interface DeliveryRow {
  decisionId: string
  trigger: string
  customerId: string
  channel: string
  status: 'delivered' | 'failed' | 'expired'
  attempts: number
  httpStatus?: number
  latencyMs?: number
  error?: string
  deliveredAt?: string
  eventTime: string
  decidedAt: string
  finishedAt: string
}

export interface RoiFromRowsInput {
  decisions: Decision[]
  conversions: ConversionRow[]
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
    ? new ClickHouseSink(input.clickhouse.client, database)
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
