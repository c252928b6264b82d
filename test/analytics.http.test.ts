import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { ClickHouseSink, connectClickHouse } from '../sinks/clickhouse.ts'
import { startHttp } from '../pipeline/http.ts'
import { Instrumentation } from '../core/instrumentation.ts'
import { createMetrics } from '../core/metrics.ts'
import { createLogger } from '../core/log.ts'

/** The analytics views over HTTP: GET /api/analytics/:view with the filter in the query string. */

let sink: ClickHouseSink
let server: Server
let base: string

beforeAll(async () => {
  sink = new ClickHouseSink(await connectClickHouse({ database: 'analytics_http', embeddedPath: ':memory:' }), 'analytics_http')
  await sink.ensureSchema()
  await sink.client.insert({
    table: 'analytics_http.decisions',
    format: 'JSONEachRow',
    values: ['send', 'send', 'control'].map((outcome, i) => ({ id: `d${i}`, trigger: 'birthday_greeting', customer_id: `c${i}`, card_id: '', segment: 'mass', outcome, suppressed_by: '', holdout: outcome === 'control' ? 'trigger' : '', channel: 'sms', event_time: '2026-03-01 09:00:00.000', decided_at: '2026-03-01 09:00:00.000', send_at: null, expires_at: '2026-03-03 09:00:00.000', offer_code: 'B', offer_value: 20, offer_currency: 'CNY', reason: '{}', catalog_version: 'v', attribution_window_days: 7 })),
  })
  server = await startHttp({ port: 0, metrics: createMetrics(), events: new Instrumentation(createLogger('silent')), clickhouse: () => sink, health: () => ({ ok: true }), info: () => ({}), economics: () => ({ currency: 'CNY', interchangeRate: 0.01, channelCost: { sms: 0.1, push: 0, call: 3, app_banner: 0 } }) })
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(async () => {
  await new Promise((r) => server?.close(r))
  await sink?.close()
})

describe('GET /api/analytics/:view', () => {
  it('answers a view with the filter from the query string, using the catalogue economics', async () => {
    const r = await fetch(`${base}/api/analytics/roi?from=2026-03-01&to=2026-03-02&segment=mass`)
    expect(r.status).toBe(200)
    const [row] = await r.json()
    expect([row.trigger, row.treated, row.control, row.delivered, row.channelCost]).toEqual(['birthday_greeting', 2, 1, 0, 0])
    expect(await (await fetch(`${base}/api/analytics/outcomes?trigger=birthday_greeting`)).json()).toHaveLength(2)
  })

  it('answers a bad filter with 400 and the reason, and an unknown view with 404', async () => {
    const bad = await fetch(`${base}/api/analytics/roi?from=soon`)
    expect(bad.status).toBe(400)
    expect((await bad.json()).error).toMatch(/^bad filter: from must be a date/)
    const unknown = await fetch(`${base}/api/analytics/roi?limit=5`)
    expect([unknown.status, (await unknown.json()).error]).toEqual([400, 'bad filter: unknown filter "limit" (use from, to, trigger, segment)'])
    const none = await fetch(`${base}/api/analytics/nothing`)
    expect(none.status).toBe(404)
    expect((await none.json()).error).toMatch(/views: roi, roiDaily, programme, funnel/)
  })
})
