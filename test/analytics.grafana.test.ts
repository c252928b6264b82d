import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'
import YAML from 'yaml'
import type { ClickHouseClient } from '@clickhouse/client'
import { ClickHouseSink, connectClickHouse } from '../sinks/clickhouse.ts'
import { DASHBOARD_FILE, DATASOURCE, dashboardJson } from '../dashboards/grafana/build.ts'
import { roiByTrigger } from '../pipeline/analytics/roi.ts'
import { deliveryHealth } from '../pipeline/analytics/queries.ts'
import { Economics } from '../schemas/catalog.ts'

/**
 * The Grafana dashboard without Grafana: every panel's SQL, with Grafana's macros and variables
 * replaced by concrete values as Grafana would, runs on embedded ClickHouse against the migrated
 * schema and gives the same figures as the query module.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8'))
let client: ClickHouseClient
let sink: ClickHouseSink

const ch = (ms: number) => new Date(ms).toISOString().replace('T', ' ').replace('Z', '')
const START = Date.parse('2026-03-01T00:00:00Z')
const HOUR = 3_600_000

/** What Grafana sends for a dashboard range of March 2026, 1-day intervals, and the given variables. */
function interpolate(sql: string, vars: { trigger: string; segment: string }) {
  const constants = Object.fromEntries(dashboard.templating.list.filter((v: { type: string }) => v.type === 'constant').map((v: { name: string; query: string }) => [v.name, v.query]))
  const quote = (v: string) => (v === '' ? "''" : `'${v.replaceAll("'", "''")}'`) // '' is the variables' custom "All" value
  const out = sql
    .replaceAll('$__fromTime', `toDateTime(${Math.floor(START / 1000)})`)
    .replaceAll('$__toTime', `toDateTime(${Math.floor(Date.parse('2026-04-01T00:00:00Z') / 1000)})`)
    .replaceAll('$__interval_s', '86400')
    .replaceAll('${trigger:sqlstring}', quote(vars.trigger))
    .replaceAll('${segment:sqlstring}', quote(vars.segment))
    .replace(/\$\{([a-z_]+)\}/g, (_, name: string) => {
      if (!(name in constants)) throw new Error(`unknown dashboard variable ${name}`)
      return constants[name]
    })
  expect(out, 'every macro and variable is known').not.toMatch(/\$/)
  return out
}

beforeAll(async () => {
  client = await connectClickHouse({ database: 'cardpulse', embeddedPath: ':memory:' })
  await client.command({ query: 'DROP DATABASE IF EXISTS cardpulse' })
  sink = new ClickHouseSink(client, 'cardpulse')
  await sink.ensureSchema()
  const decisions = []
  const conversions = []
  const deliveries = []
  for (let i = 0; i < 400; i++) {
    const trigger = i % 4 === 0 ? 'dormancy_wakeup' : 'first_swipe_incentive'
    const outcome = i % 5 === 0 ? 'control' : i % 13 === 0 ? 'suppressed' : 'send'
    const t = START + (i % 20) * 24 * HOUR + (i % 7) * HOUR
    const channel = i % 3 === 0 ? 'sms' : 'push'
    decisions.push({ id: `d${i}`, trigger, customer_id: `c${i}`, card_id: `k${i}`, segment: i % 2 ? 'mass' : 'affluent', outcome, suppressed_by: outcome === 'suppressed' ? 'cooldown' : '', holdout: outcome === 'control' ? 'trigger' : '', channel, event_time: ch(t), decided_at: ch(t), send_at: null, expires_at: ch(t + 48 * HOUR), offer_code: 'X', offer_value: 25, offer_currency: 'CNY', reason: '{}', catalog_version: 'v', attribution_window_days: 14 })
    if (outcome === 'suppressed') continue
    const converted = i % 3 === 0 ? 1 : 0
    conversions.push({ decision_id: `d${i}`, trigger, customer_id: `c${i}`, card_id: `k${i}`, outcome, decision_time: ch(t), window_end: ch(t + 14 * 24 * HOUR), converted, converted_at: converted ? ch(t + HOUR) : null, converting_event_id: converted ? `e${i}` : '', engaged: converted, spend: converted ? 100 + (i % 50) : i % 9, pre_spend: i % 200, final: 1, version: 1 })
    if (outcome === 'send') deliveries.push({ decision_id: `d${i}`, trigger, customer_id: `c${i}`, channel, status: i % 17 ? 'delivered' : 'failed', attempts: 1 + (i % 4), http_status: 200, latency_ms: 20 + (i % 80), error: null, delivered_at: ch(t), event_time: ch(t), decided_at: ch(t), finished_at: ch(t) })
  }
  await client.insert({ table: 'cardpulse.decisions', values: decisions, format: 'JSONEachRow' })
  await client.insert({ table: 'cardpulse.conversions', values: conversions, format: 'JSONEachRow' })
  await client.insert({ table: 'cardpulse.deliveries', values: deliveries, format: 'JSONEachRow' })
  await client.insert({
    table: 'cardpulse.alerts',
    format: 'JSONEachRow',
    values: [0, 1, 2].map((i) => ({ id: `a${i}`, kind: i ? 'velocity' : 'card_testing', severity: i ? 'medium' : 'high', score: 0.5, customer_id: `c${i}`, card_id: `k${i}`, event_time: ch(START + i * 24 * HOUR), detected_at: ch(START), evidence: '{}', rule_version: 'r' })),
  })
  await sink.insert(
    ['applied', 'approved', 'activated', 'bound', 'first_purchase'].map((stage, i) => ({ table: 'card_events', row: { customerId: 'c1', cardId: 'k1', stage, eventTime: new Date(START + i * HOUR).toISOString(), eventId: `e-${stage}` } })),
  )
})
afterAll(async () => {
  await client?.close()
})

describe('Grafana dashboard', () => {
  it('is the file dashboards/grafana/build.ts builds from the query module', () => {
    expect(readFileSync(DASHBOARD_FILE, 'utf8')).toBe(dashboardJson())
  })

  it('runs every panel on ClickHouse, for All and for one trigger and segment', async () => {
    const titles: string[] = []
    for (const panel of dashboard.panels) {
      for (const target of panel.targets) {
        expect(target.datasource).toEqual(DATASOURCE)
        for (const vars of [{ trigger: '', segment: '' }, { trigger: 'first_swipe_incentive', segment: 'mass' }]) {
          const rows = await sink.query(interpolate(target.rawSql, vars))
          expect(rows.length, `${panel.title} with ${JSON.stringify(vars)}`).toBeGreaterThan(0)
        }
      }
      titles.push(panel.title)
    }
    expect(titles).toEqual(expect.arrayContaining(['ROI by trigger', 'Card funnel', 'Decisions over time', 'Risk alerts by kind and severity', 'Webhook delivery health']))
  })

  it("shows the query module's figures", async () => {
    const economics = Economics.parse({})
    const sqlOf = (title: string) => dashboard.panels.find((p: { title: string }) => p.title === title).targets[0].rawSql
    const roi = await sink.query<Record<string, unknown>>(interpolate(sqlOf('ROI by trigger'), { trigger: '', segment: '' }))
    const module = await roiByTrigger(sink, { from: '2026-03-01', to: '2026-04-01' }, economics)
    expect(roi.map((r) => r.trigger)).toEqual(module.map((r) => r.trigger))
    for (const r of module) {
      const g = roi.find((x) => x.trigger === r.trigger)!
      expect([Number(g.treated), Number(g.control), Number(g.treated_conversions), Number(g.control_conversions)]).toEqual([r.treated, r.control, r.treatedConversions, r.controlConversions])
      expect(Number(g.lift_low)).toBeCloseTo(r.liftCi95![0], 6)
      expect(Number(g.lift_high)).toBeCloseTo(r.liftCi95![1], 6)
      expect(Number(g.cost)).toBeCloseTo(r.cost, 2)
      expect(Number(g.roi)).toBeCloseTo(r.roi!, 5)
    }
    const health = await sink.query<Record<string, unknown>>(interpolate(sqlOf('Webhook delivery health'), { trigger: '', segment: '' }))
    const moduleHealth = await deliveryHealth(sink, { from: '2026-03-01', to: '2026-04-01' })
    expect(health.map((h) => [h.channel, Number(h.delivered), Number(h.p95_ms)])).toEqual(moduleHealth.map((h) => [h.channel, h.delivered, h.p95Ms]))
  })

  it('has variables whose queries run, with All as no filter', async () => {
    for (const v of dashboard.templating.list.filter((x: { type: string }) => x.type === 'query')) {
      expect(v.allValue).toBe("''")
      expect((await sink.query(v.query)).length).toBeGreaterThan(0)
    }
  })

  it('is provisioned in the compose stack: data source, dashboard provider, a Grafana service', () => {
    const ds = YAML.parse(readFileSync(join(ROOT, 'dashboards/grafana/provisioning/datasources/clickhouse.yaml'), 'utf8')).datasources[0]
    expect([ds.uid, ds.type, ds.jsonData.host, ds.jsonData.port, ds.jsonData.defaultDatabase]).toEqual([DATASOURCE.uid, DATASOURCE.type, 'clickhouse', 8123, 'cardpulse'])
    const provider = YAML.parse(readFileSync(join(ROOT, 'dashboards/grafana/provisioning/dashboards/cardpulse.yaml'), 'utf8')).providers[0]
    const compose = YAML.parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'))
    const grafana = compose.services.grafana
    expect(grafana.environment.GF_INSTALL_PLUGINS).toBe('grafana-clickhouse-datasource')
    expect(grafana.ports).toContain('127.0.0.1:3000:3000')
    expect(grafana.healthcheck.test.join(' ')).toMatch(/api\/health/)
    expect(grafana.depends_on.clickhouse.condition).toBe('service_healthy')
    const mounts = Object.fromEntries(grafana.volumes.map((v: string) => v.split(':').slice(0, 2).reverse()))
    expect(mounts['/etc/grafana/provisioning']).toBe('./dashboards/grafana/provisioning')
    expect(existsSync(join(ROOT, mounts[provider.options.path]))).toBe(true)
    expect(existsSync(join(ROOT, mounts[provider.options.path], 'cardpulse.json'))).toBe(true)
    expect(dirname(DASHBOARD_FILE)).toBe(join(ROOT, 'dashboards/grafana/dashboards'))
  })
})
