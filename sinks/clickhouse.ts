import { mkdirSync } from 'node:fs'
import { createClient, type ClickHouseClient } from '@clickhouse/client'
import type { OutboxRow } from '../schemas/outbox.ts'
import type { Decision } from '../schemas/decision.ts'
import type { RiskAlert } from '../schemas/alert.ts'
import type { DeadLetter } from '../schemas/deadLetter.ts'
import type { Conversion } from '../schemas/conversion.ts'
import { migrate, type MigrationReport } from './migrations.ts'
import { ConfigError, UnavailableError } from '../core/errors.ts'
import { withoutPassword } from '../core/log.ts'
import { pseudonymiseBase64, pseudonymiseText, type Pseudonymise } from './pseudonym.ts'

/**
 * The analytics store: ClickHouse through @clickhouse/client, either a server (CLICKHOUSE_URL) or
 * the embedded chDB engine. The SQL is the same for both.
 */

export interface ClickHouseOptions {
  /** A server URL such as http://127.0.0.1:8123; absent for embedded chDB. */
  url?: string
  database: string
  /** Embedded data directory (chDB); ':memory:' keeps nothing. */
  embeddedPath?: string
}

export async function connectClickHouse(opts: ClickHouseOptions): Promise<ClickHouseClient> {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(opts.database)) throw new ConfigError(`CLICKHOUSE_DATABASE "${opts.database}" is not a valid database name`)
  if (opts.url) {
    const client = createClient({ url: opts.url, request_timeout: 30_000, clickhouse_settings: { date_time_input_format: 'best_effort' } })
    const ping = await client.ping()
    if (!ping.success) {
      await client.close()
      const reason = (ping as { error?: Error }).error?.message ?? 'no answer'
      // CLICKHOUSE_URL may carry user:password; the line shows neither the password nor a reason quoting it.
      throw new UnavailableError('clickhouse', `cannot reach ClickHouse at ${withoutPassword(opts.url)} (${withoutPassword(reason)})`, 'start it or set CLICKHOUSE_URL')
    }
    return client
  }
  const { createChdbConnection } = await import('chdb/connection')
  const path = opts.embeddedPath ?? ':memory:'
  if (path !== ':memory:') mkdirSync(path, { recursive: true })
  return createClient({ connection: createChdbConnection({ path }), clickhouse_settings: { date_time_input_format: 'best_effort' } } as never)
}

export class ClickHouseSink {
  constructor(
    readonly client: ClickHouseClient,
    readonly database: string,
    /** With CLICKHOUSE_PSEUDONYMISE_KEY: what every customer id written is replaced by (sinks/pseudonym.ts). */
    readonly pseudonymise?: Pseudonymise,
  ) {}

  /** The customer id as the tables hold it: the pseudonym when ids are pseudonymised, else the id itself. For queries by customer. */
  customerIdInTables(customerId: string): string {
    return this.pseudonymise ? this.pseudonymise(customerId) : customerId
  }

  /**
   * Brings the database to the current schema: applies the migrations in
   * dashboards/clickhouse/migrations/ not yet recorded in `{db}.schema_migrations` (sinks/migrations.ts).
   */
  async ensureSchema(): Promise<MigrationReport> {
    return migrate(this.client, this.database)
  }

  /** Inserts outbox rows, grouped per table. Safe to repeat: rows collapse on their ids. */
  async insert(rows: OutboxRow[]) {
    const byTable = new Map<string, Record<string, unknown>[]>()
    for (const { table, row } of rows) {
      const toColumns = COLUMNS[table]
      if (!toColumns) throw new Error(`no ClickHouse table for outbox rows of "${table}"`)
      let list = byTable.get(table)
      if (!list) byTable.set(table, (list = []))
      list.push(this.pseudonymise ? pseudonymised(toColumns(row), this.pseudonymise) : toColumns(row))
    }
    for (const [table, values] of byTable)
      await this.client.insert({ table: `${this.database}.${table}`, values, format: 'JSONEachRow' })
  }

  async query<T = Record<string, unknown>>(query: string, params: Record<string, unknown> = {}): Promise<T[]> {
    const rs = await this.client.query({ query, query_params: params, format: 'JSONEachRow' })
    return (await rs.json()) as T[]
  }

  async close() {
    await this.client.close()
  }
}

/**
 * A row with its customer id replaced by the pseudonym, and, for a dead letter, every customerId
 * in its original bytes and message: no column names a customer.
 */
function pseudonymised(columns: Record<string, unknown>, pseudonymise: Pseudonymise): Record<string, unknown> {
  const out = { ...columns }
  if (typeof out.customer_id === 'string' && out.customer_id) out.customer_id = pseudonymise(out.customer_id)
  if (typeof out.original === 'string') out.original = out.original_encoding === 'base64' ? pseudonymiseBase64(out.original, pseudonymise) : pseudonymiseText(out.original, pseudonymise)
  if (typeof out.message === 'string') out.message = pseudonymiseText(out.message, pseudonymise)
  return out
}

const ts = (iso: string | undefined | null) => (iso ? iso.replace('T', ' ').replace('Z', '') : null)

/** Maps each outbox row kind to its table's columns. */
const COLUMNS: Record<string, (row: any) => Record<string, unknown>> = {
  decisions: (d: Decision) => ({
    id: d.id,
    trigger: d.trigger,
    customer_id: d.customerId,
    card_id: d.cardId ?? '',
    outcome: d.outcome,
    suppressed_by: d.suppressedBy ?? '',
    holdout: d.holdout ?? '', // 'trigger' | 'global' on a control
    segment: d.segment ?? '',
    channel: d.channel ?? '',
    event_time: ts(d.eventTime),
    decided_at: ts(d.decidedAt),
    send_at: ts(d.sendAt),
    expires_at: ts(d.expiresAt),
    offer_code: d.offer?.code ?? '',
    offer_value: d.offer?.value ?? 0,
    offer_currency: d.offer?.currency ?? '',
    reason: JSON.stringify(d.reason),
    catalog_version: d.catalogVersion,
    attribution_window_days: d.attributionWindowDays,
  }),
  /** A shadow catalogue's decision (docs/analytics.md): the decision's columns and its channel's cost under the draft. */
  shadow_decisions: (d: Decision & { channelCost: number }) => ({ ...COLUMNS.decisions(d), channel_cost: d.channelCost }),
  alerts: (a: RiskAlert) => ({
    id: a.id,
    kind: a.kind,
    severity: a.severity,
    score: a.score,
    customer_id: a.customerId,
    card_id: a.cardId ?? '',
    event_time: ts(a.eventTime),
    detected_at: ts(a.detectedAt),
    evidence: JSON.stringify(a.evidence),
    rule_version: a.ruleVersion,
  }),
  dead_letters: (q: DeadLetter) => ({
    id: q.id,
    topic: q.source.topic,
    partition: q.source.partition,
    offset: q.source.offset,
    code: q.error.code,
    message: q.error.message,
    path: q.error.path,
    original: q.original,
    original_encoding: q.originalEncoding,
    original_bytes: q.originalBytes,
    original_truncated: q.originalTruncated ? 1 : 0,
    received_at: ts(q.receivedAt),
  }),
  deliveries: (r) => ({
    decision_id: r.decisionId,
    trigger: r.trigger,
    customer_id: r.customerId,
    channel: r.channel,
    status: r.status,
    attempts: r.attempts,
    http_status: r.httpStatus ?? null,
    latency_ms: r.latencyMs ?? null,
    error: r.error ?? null,
    delivered_at: ts(r.deliveredAt),
    event_time: ts(r.eventTime),
    decided_at: ts(r.decidedAt),
    finished_at: ts(r.finishedAt),
    cancel_reason: r.cancelReason ?? '',
    cancelled_by: r.cancelledBy ?? '',
  }),
  conversions: (c: Conversion) => ({
    decision_id: c.decisionId,
    trigger: c.trigger,
    customer_id: c.customerId,
    card_id: c.cardId ?? '',
    outcome: c.outcome,
    decision_time: ts(c.decisionTime),
    window_end: ts(c.windowEnd),
    converted: c.converted ? 1 : 0,
    converted_at: ts(c.convertedAt),
    converting_event_id: c.convertingEventId ?? '',
    engaged: c.engaged ? 1 : 0,
    spend: c.spend,
    pre_spend: c.preSpend,
    final: c.final ? 1 : 0,
    version: c.version,
  }),
  card_events: (r) => ({
    customer_id: r.customerId,
    card_id: r.cardId ?? '',
    stage: r.stage,
    event_time: ts(r.eventTime),
    event_id: r.eventId,
    segment: r.segment ?? '',
  }),
  event_volume: (r) => ({ id: r.id, hour: ts(r.hour)!.slice(0, 19), type: r.type, events: r.events }),
}
