import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ClickHouseSink, connectClickHouse } from '../sinks/clickhouse.ts'
import { pseudonymiseBase64, pseudonymiseText, pseudonymiser } from '../sinks/pseudonym.ts'
import { EmbeddedPipeline } from '../pipeline/embedded.ts'
import { readNdjsonBatches } from '../pipeline/sources/ndjson.ts'
import { loadCatalogFile as loadCatalog } from '../pipeline/catalog/index.ts'
import { VIEWS } from '../pipeline/analytics/queries.ts'
import { roiFromRows } from '../pipeline/analytics/roiFromRows.ts'
import { clickhouseRecords } from '../pipeline/explainSources.ts'
import type { OutboxRow } from '../schemas/outbox.ts'
import type { Decision } from '../schemas/decision.ts'
import type { Conversion } from '../schemas/conversion.ts'
import type { DeadLetter } from '../schemas/deadLetter.ts'

/**
 * CLICKHOUSE_PSEUDONYMISE_KEY: the sample bank's rows written to ClickHouse twice, as they are and
 * with the key. With it no table holds a customer id, and every analysis — ROI, the funnel, the
 * explanation of one customer — comes out the same.
 */

const KEY = 'pseudonymise-key-for-tests-0123'
const SAMPLE = fileURLToPath(new URL('../simulator/sample/', import.meta.url))
const CUSTOMER_ID = /cust_\d{6}/
let client: Awaited<ReturnType<typeof connectClickHouse>>
let plain: ClickHouseSink
let keyed: ClickHouseSink
const decisions: Decision[] = []
const conversions: Conversion[] = []

beforeAll(async () => {
  const catalog = loadCatalog()
  // Bad input with a customer id in it, as the dead letters keep it.
  const dir = mkdtempSync(join(tmpdir(), 'cardpulse-pseudonymise-'))
  writeFileSync(join(dir, 'bad.ndjson'), '{"type":"transaction","eventId":"bad-1","occurredAt":"2026-09-03T10:00:00Z","customerId":"cust_000203","amount":"lots"}\n')
  const deadLetters: DeadLetter[] = []
  const engine = new EmbeddedPipeline({
    catalog: () => catalog,
    partitions: 2,
    maxDisorder: 0,
    outbox: { webhooks: false, alerts: false, rows: true },
    onOutput: (o) => void decisions.push(...o.decisions),
    onDeadLetter: (q) => void deadLetters.push(q),
  })
  const files = [...readdirSync(SAMPLE).map((f) => join(SAMPLE, f)), join(dir, 'bad.ndjson')]
  for await (const batch of readNdjsonBatches(files, { now: null })) await engine.pushAll(batch)
  await engine.finish()

  const rows: OutboxRow[] = deadLetters.map((row) => ({ table: 'dead_letters', row }))
  for (const p of engine.processors) rows.push(...(await engine.store.peekRows(p.partition, 1_000_000)).map((e) => e.value))
  for (const r of rows) if (r.table === 'conversions') conversions.push(r.row as unknown as Conversion)
  rows.push(...engine.openConversions().map((row) => ({ table: 'conversions', row })))
  conversions.push(...engine.openConversions())
  // Deliveries as the dispatcher records them, one per send.
  for (const d of decisions.filter((d) => d.outcome === 'send'))
    rows.push({
      table: 'deliveries',
      row: { decisionId: d.id, trigger: d.trigger, customerId: d.customerId, channel: d.channel, status: 'delivered', attempts: 1, httpStatus: 200, latencyMs: 12, error: null, deliveredAt: d.eventTime, eventTime: d.eventTime, decidedAt: d.decidedAt, finishedAt: d.eventTime },
    })
  expect(new Set(rows.map((r) => r.table))).toEqual(new Set(['dead_letters', 'decisions', 'alerts', 'conversions', 'card_events', 'event_volume', 'deliveries']))

  client = await connectClickHouse({ database: 'plain', embeddedPath: ':memory:' })
  plain = new ClickHouseSink(client, 'plain')
  keyed = new ClickHouseSink(client, 'keyed', pseudonymiser(KEY))
  for (const sink of [plain, keyed]) {
    await sink.ensureSchema()
    await sink.insert(rows)
  }
}, 120_000)

afterAll(async () => {
  await client?.close()
})

/** Every row of every table of the database, as text. */
async function everything(sink: ClickHouseSink): Promise<Record<string, string>> {
  const tables = await sink.query<{ name: string }>(`SELECT name FROM system.tables WHERE database = {db:String} AND engine NOT LIKE '%View' ORDER BY name`, { db: sink.database })
  const out: Record<string, string> = {}
  for (const { name } of tables) out[name] = JSON.stringify(await sink.query(`SELECT * FROM ${sink.database}.${name}`))
  return out
}

describe('pseudonymised customer ids in ClickHouse', () => {
  it('leaves no customer id in any table, where the plain tables have them', async () => {
    const withKey = await everything(keyed)
    const without = await everything(plain)
    expect(Object.keys(withKey)).toEqual(expect.arrayContaining(['alerts', 'card_events', 'conversions', 'dead_letters', 'decisions', 'deliveries']))
    for (const table of ['alerts', 'card_events', 'conversions', 'dead_letters', 'decisions', 'deliveries']) expect(without[table], table).toMatch(CUSTOMER_ID)
    for (const [table, text] of Object.entries(withKey)) expect(text, table).not.toMatch(CUSTOMER_ID)
    const originals = await keyed.query<{ original: string }>(`SELECT original FROM keyed.dead_letters WHERE code = 'schema_violation'`)
    expect(originals.map((r) => r.original).join('\n')).toContain(`"customerId":"${pseudonymiser(KEY)('cust_000203')}"`)
  })

  it('gives one customer one pseudonym in every table, so joins hold', async () => {
    const id = decisions.find((d) => d.outcome === 'send')!.customerId
    const p = pseudonymiser(KEY)(id)
    expect(p).toMatch(/^p_[0-9a-f]{32}$/)
    for (const table of ['decisions', 'conversions', 'deliveries', 'card_events']) {
      const [row] = await keyed.query<{ n: string }>(`SELECT count() AS n FROM keyed.${table} WHERE customer_id = {c:String}`, { c: p })
      const [raw] = await plain.query<{ n: string }>(`SELECT count() AS n FROM plain.${table} WHERE customer_id = {c:String}`, { c: id })
      expect(Number(row.n), table).toBe(Number(raw.n))
      expect(Number(row.n), table).toBeGreaterThan(0)
    }
  })

  it('computes the same ROI, funnel and delivery health with and without the key', async () => {
    const economics = loadCatalog().economics
    for (const view of ['roi', 'roiDaily', 'programme', 'funnel', 'outcomes', 'deliveryHealth', 'alerts'] as const) {
      expect(await VIEWS[view](keyed, {}, economics), view).toEqual(await VIEWS[view](plain, {}, economics))
    }
    const roi = await VIEWS.roi(plain, {}, economics)
    expect(roi.some((r) => r.treated > 0 && r.control > 0)).toBe(true)
    // replay's summary.json, computed through a pseudonymising sink, is the same too.
    expect(await roiFromRows({ decisions, conversions, catalog: { economics }, clickhouse: keyed })).toEqual(await roiFromRows({ decisions, conversions, catalog: { economics }, clickhouse: plain }))
  })

  it('explains a customer by the real id, finding the pseudonymised rows', async () => {
    const id = decisions.find((d) => d.outcome === 'send')!.customerId
    const range = { limit: 100 }
    const fromKeyed = await clickhouseRecords(keyed, id, range)
    expect(fromKeyed.decisions.length).toBeGreaterThan(0)
    expect(fromKeyed).toEqual(await clickhouseRecords(plain, id, range))
  })

  it('pseudonymises customer ids in JSON text and in base64 bytes, and nothing else', () => {
    const p = pseudonymiser(KEY)
    expect(pseudonymiser('another-key-0123456789')('cust_1')).not.toBe(p('cust_1'))
    expect(pseudonymiseText('{"customerId": "cust_1","cardId":"tok_1","x":"cust_1"}', p)).toBe(`{"customerId": "${p('cust_1')}","cardId":"tok_1","x":"cust_1"}`)
    const bytes = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"customerId":"cust_2"}')])
    expect(Buffer.from(pseudonymiseBase64(bytes.toString('base64'), p), 'base64')).toEqual(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(`{"customerId":"${p('cust_2')}"}`)]))
  })
})
