import type { AddressInfo } from 'node:net'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { startHttp } from '../pipeline/http.ts'
import { createMetrics } from '../core/metrics.ts'
import { Instrumentation } from '../core/instrumentation.ts'

/** /healthz: live or not (the HTTP status readers rely on), and degraded with the reasons. */

const servers: { close(): void }[] = []
afterEach(() => servers.splice(0).forEach((s) => s.close()))

async function healthz(health: () => { ok: boolean; degraded?: string[]; [k: string]: unknown }) {
  const metrics = createMetrics()
  const server = await startHttp({ port: 0, metrics, clickhouse: () => undefined, health, info: () => ({}), events: new Instrumentation(pino({ level: 'silent' }), metrics) })
  servers.push(server)
  const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz`)
  return { status: res.status, body: await res.json() }
}

describe('/healthz', () => {
  it('says ok when live and nothing is down', async () => {
    expect(await healthz(() => ({ ok: true, partitions: [0], clickhouse: true, degraded: [] }))).toEqual({ status: 200, body: { status: 'ok', live: true, ok: true, partitions: [0], clickhouse: true, degraded: [] } })
  })

  it('says degraded, still 200, with why, when an endpoint or sink has been down too long', async () => {
    const reasons = ['sms endpoint gw.example:443 down for 130s (circuit open); 42 webhooks waiting']
    expect(await healthz(() => ({ ok: true, degraded: reasons }))).toEqual({ status: 200, body: { status: 'degraded', live: true, ok: true, degraded: reasons } })
  })

  it('says unavailable with 503 when not live', async () => {
    const r = await healthz(() => ({ ok: false, degraded: ['sink clickhouse failing for 300s'] }))
    expect([r.status, r.body.status, r.body.live]).toEqual([503, 'unavailable', false])
  })
})
