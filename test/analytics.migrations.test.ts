import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import type { ClickHouseClient } from '@clickhouse/client'
import { ClickHouseSink, connectClickHouse } from '../sinks/clickhouse.ts'
import { listMigrations, splitStatements } from '../sinks/migrations.ts'

/** The analytics schema's migrations on embedded chDB: a fresh database, a re-run, an upgrade. */

const OLD_SCHEMA = readFileSync(new URL('./fixtures/schema.v0.sql', import.meta.url), 'utf8')

let client: ClickHouseClient
beforeAll(async () => {
  client = await connectClickHouse({ database: 'migrations_fresh', embeddedPath: ':memory:' })
})
afterAll(async () => {
  await client?.close()
})

const rows = async <T = Record<string, unknown>>(sink: ClickHouseSink, sql: string) => sink.query<T>(sql)
const columns = async (sink: ClickHouseSink, table: string) =>
  (await rows<{ name: string; type: string }>(sink, `SELECT name, type FROM system.columns WHERE database = '${sink.database}' AND table = '${table}' ORDER BY position`)).map(
    (c) => `${c.name} ${c.type}`,
  )

const CONVERSIONS = [
  'decision_id String',
  'trigger LowCardinality(String)',
  'customer_id String',
  'card_id String',
  'outcome LowCardinality(String)',
  "decision_time DateTime64(3, 'UTC')",
  "window_end DateTime64(3, 'UTC')",
  'converted UInt8',
  "converted_at Nullable(DateTime64(3, 'UTC'))",
  'converting_event_id String',
  'engaged UInt8',
  'spend Float64',
  'pre_spend Float64',
  'final UInt8',
  'version UInt64',
]

describe('schema migrations', () => {
  it('lists the migration files in order, each numbered once', () => {
    const m = listMigrations()
    expect(m.map((x) => x.version)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    expect(m.map((x) => x.name)).toEqual(['initial', 'conversions_window', 'decisions_holdout_segment', 'dead_letters_original_size', 'card_events', 'analytics_views', 'deliveries_cancelled', 'shadow_decisions'])
    for (const x of m) expect(x.statements.length).toBeGreaterThan(0)
  })

  it('builds a fresh database, and a second run is a no-op', async () => {
    const sink = new ClickHouseSink(client, 'migrations_fresh')
    const first = await sink.ensureSchema()
    expect(first.applied.map((a) => a.version)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    const tables = (await rows<{ name: string }>(sink, `SELECT name FROM system.tables WHERE database = 'migrations_fresh' ORDER BY name`)).map((t) => t.name)
    expect(tables).toEqual(['alerts', 'card_events', 'card_funnel', 'conversions', 'dead_letters', 'decision_outcomes', 'decisions', 'deliveries', 'event_volume', 'event_volume_hourly', 'roi_daily', 'schema_migrations', 'shadow_comparison', 'shadow_decisions'])
    expect(await columns(sink, 'conversions')).toEqual(CONVERSIONS)
    const [engine] = await rows<{ engine_full: string; sorting_key: string }>(sink, `SELECT engine_full, sorting_key FROM system.tables WHERE database = 'migrations_fresh' AND name = 'conversions'`)
    expect(engine.engine_full).toMatch(/^ReplacingMergeTree\(version\)/)
    expect(engine.sorting_key).toBe('trigger, decision_id')
    expect(await columns(sink, 'decisions')).toEqual(expect.arrayContaining(['holdout LowCardinality(String)', 'segment LowCardinality(String)']))
    expect(await columns(sink, 'dead_letters')).toEqual(expect.arrayContaining(['original_truncated UInt8', 'original_bytes UInt64']))
    expect(await columns(sink, 'deliveries')).toEqual(expect.arrayContaining(['cancel_reason LowCardinality(String)', 'cancelled_by String']))
    expect(await columns(sink, 'card_events')).toEqual(['customer_id String', 'card_id String', 'stage LowCardinality(String)', "event_time DateTime64(3, 'UTC')", 'event_id String', 'segment LowCardinality(String)'])

    const again = await sink.ensureSchema()
    expect(again.applied).toEqual([])
    expect(again.alreadyApplied).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    const recorded = await rows<{ version: number; name: string; n: number }>(sink, `SELECT version, any(name) AS name, toUInt32(count()) AS n FROM migrations_fresh.schema_migrations GROUP BY version ORDER BY version`)
    expect(recorded.map((r) => [Number(r.version), r.name, Number(r.n)])).toEqual(listMigrations().map((m) => [m.version, m.name, 1]))
  })

  it('upgrades a database made by the old schema.sql, keeping its rows', async () => {
    const sink = new ClickHouseSink(client, 'migrations_old')
    for (const s of splitStatements(OLD_SCHEMA.replaceAll('{db}', 'migrations_old'))) await client.command({ query: s })
    expect(await columns(sink, 'conversions')).toContain('amount Float64')
    await client.insert({
      table: 'migrations_old.decisions',
      format: 'JSONEachRow',
      values: [{ id: 'd1', trigger: 'activation_reminder', customer_id: 'c1', card_id: 'k1', outcome: 'send', suppressed_by: '', channel: 'sms', event_time: '2026-03-01 10:00:00.000', decided_at: '2026-03-01 10:00:00.000', send_at: null, expires_at: '2026-03-03 10:00:00.000', offer_code: 'A', offer_value: 50, offer_currency: 'CNY', reason: '{}', catalog_version: 'v', attribution_window_days: 7 }],
    })
    await client.insert({ table: 'migrations_old.dead_letters', format: 'JSONEachRow', values: [{ id: 'q1', topic: 't', partition: 0, offset: '1', code: 'invalid_json', message: 'm', path: '', original: 'x', original_encoding: 'utf8', received_at: null }] })

    const report = await sink.ensureSchema()
    expect(report.applied.map((a) => a.version)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    expect(await columns(sink, 'conversions')).toEqual(CONVERSIONS)
    expect(await rows(sink, `SELECT id, holdout, segment FROM migrations_old.decisions FINAL`)).toEqual([{ id: 'd1', holdout: '', segment: '' }])
    expect(await rows(sink, `SELECT id, original_truncated, toUInt32(original_bytes) AS original_bytes FROM migrations_old.dead_letters FINAL`)).toEqual([{ id: 'q1', original_truncated: 0, original_bytes: 0 }])
    // The old decision, without a window row yet, is pending in the ROI view.
    expect(await rows(sink, `SELECT decision_id, has_window, converted, spend FROM migrations_old.decision_outcomes`)).toEqual([{ decision_id: 'd1', has_window: 0, converted: 0, spend: 0 }])
    expect((await sink.ensureSchema()).applied).toEqual([])
  })

  it('maps the stream\'s conversion and card-event rows onto the new tables; the latest version wins', async () => {
    const sink = new ClickHouseSink(client, 'migrations_fresh')
    const base = { decisionId: 'd9', trigger: 'first_swipe_incentive', customerId: 'c9', cardId: 'k9', outcome: 'send', decisionTime: '2026-03-01T10:00:00.000Z', windowEnd: '2026-03-15T10:00:00.000Z', engaged: false, spend: 0, preSpend: 120.5 }
    await sink.insert([
      { table: 'conversions', row: { ...base, converted: false, final: false, spend: 0, version: 1 } },
      { table: 'conversions', row: { ...base, converted: true, convertedAt: '2026-03-02T08:00:00.000Z', convertingEventId: 'e1', engaged: true, spend: 88.8, final: false, version: 2 } },
      { table: 'card_events', row: { customerId: 'c9', cardId: 'k9', stage: 'activated', eventTime: '2026-02-20T00:00:00.000Z', eventId: 'e0', segment: 'young' } },
    ])
    expect(await rows(sink, `SELECT decision_id, converted, converted_at, converting_event_id, engaged, spend, pre_spend, final, toUInt32(version) AS version FROM migrations_fresh.conversions FINAL`)).toEqual([
      { decision_id: 'd9', converted: 1, converted_at: '2026-03-02 08:00:00.000', converting_event_id: 'e1', engaged: 1, spend: 88.8, pre_spend: 120.5, final: 0, version: 2 },
    ])
    expect(await rows(sink, `SELECT customer_id, card_id, segment, activated_at, applied_at FROM migrations_fresh.card_funnel`)).toEqual([
      { customer_id: 'c9', card_id: 'k9', segment: 'young', activated_at: '2026-02-20 00:00:00.000', applied_at: null },
    ])
  })

  it('refuses a badly named migration file', async () => {
    const { mkdtempSync, writeFileSync } = await import('node:fs')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const dir = mkdtempSync(join(tmpdir(), 'cardpulse-migrations-'))
    writeFileSync(join(dir, '001_ok.sql'), 'SELECT 1;')
    writeFileSync(join(dir, 'two.sql'), 'SELECT 2;')
    expect(() => listMigrations(dir)).toThrow(/two\.sql is not named NNN_name\.sql/)
  })
})
