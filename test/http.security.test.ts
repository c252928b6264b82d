import { afterEach, describe, expect, it } from 'vitest'
import { request as httpRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startHttp, type HttpOptions } from '../pipeline/http.ts'
import { RateLimiter, isLoopback, sameToken } from '../pipeline/httpGuard.ts'
import { Instrumentation } from '../core/instrumentation.ts'
import { createMetrics } from '../core/metrics.ts'
import { createLogger } from '../core/log.ts'
import { ConfigError } from '../core/errors.ts'
import { DemoConfig, RunConfig, parseConfig } from '../commands/config.ts'
import type { Explanation } from '../pipeline/explain.ts'

/** The HTTP surface's guard: bearer tokens, the metrics token, loopback by default, body and rate limits. */

const TOKEN = 'admin-token-0123456789abcdef'
const METRICS = 'metrics-token-0123456789abcdef'
let server: Server | undefined

afterEach(async () => {
  await new Promise((r) => (server ? server.close(r) : r(undefined)))
  server = undefined
})

async function serve(extra: Partial<HttpOptions> = {}): Promise<string> {
  let reloads = 0
  server = await startHttp({
    port: 0,
    metrics: createMetrics(),
    events: new Instrumentation(createLogger('silent')),
    clickhouse: () => undefined,
    health: () => ({ ok: true, partitions: [0, 1], mode: 'test' }),
    info: () => ({}),
    reloadCatalog: () => ({ ok: true, version: `v${++reloads}` }),
    explain: async (r) => ({ customerId: r.customerId }) as unknown as Explanation,
    ...extra,
  })
  const { address, port } = server.address() as AddressInfo
  return `http://${address}:${port}`
}

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } })

describe('HTTP access with HTTP_TOKEN set', () => {
  it('answers the API 401 without a token or with a wrong one, and 200 with it', async () => {
    const base = await serve({ access: { token: TOKEN } })
    const url = `${base}/api/customers/cust_1/explain`
    const none = await fetch(url)
    expect(none.status).toBe(401)
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/)
    expect((await none.json()).error).toMatch(/bearer token is required/)
    const wrong = await fetch(url, bearer(`${TOKEN}x`))
    expect([wrong.status, (await wrong.json()).error]).toEqual([401, 'the bearer token is not valid'])
    const right = await fetch(url, bearer(TOKEN))
    expect([right.status, await right.json()]).toEqual([200, { customerId: 'cust_1' }])
  })

  it('reloads the catalogue only with the token', async () => {
    const base = await serve({ access: { token: TOKEN } })
    expect((await fetch(`${base}/api/catalog/reload`, { method: 'POST' })).status).toBe(401)
    const ok = await fetch(`${base}/api/catalog/reload`, { method: 'POST', ...bearer(TOKEN) })
    expect([ok.status, await ok.json()]).toEqual([200, { ok: true, version: 'v1' }])
  })

  it('serves the page and /healthz to anyone, /healthz without its details unless the token is given', async () => {
    const base = await serve({ access: { token: TOKEN } })
    const page = await fetch(`${base}/`)
    expect(page.status).toBe(200)
    expect(await page.text()).toContain('id="accessForm"')
    expect((await fetch(`${base}/assets/echarts.min.js`)).status).toBe(200)
    const open = await fetch(`${base}/healthz`)
    expect([open.status, await open.json()]).toEqual([200, { status: 'ok' }])
    expect(await (await fetch(`${base}/healthz`, bearer(TOKEN))).json()).toEqual({ status: 'ok', live: true, ok: true, partitions: [0, 1], mode: 'test', degraded: [] })
  })

  it('opens /metrics to the metrics token or the admin token, and the API to the admin token alone', async () => {
    const base = await serve({ access: { token: TOKEN, metricsToken: METRICS } })
    expect((await fetch(`${base}/metrics`)).status).toBe(401)
    expect((await fetch(`${base}/metrics`, bearer('not-the-token-at-all'))).status).toBe(401)
    const scraped = await fetch(`${base}/metrics`, bearer(METRICS))
    expect(scraped.status).toBe(200)
    expect(await scraped.text()).toMatch(/# HELP/)
    expect((await fetch(`${base}/metrics`, bearer(TOKEN))).status).toBe(200)
    expect((await fetch(`${base}/api/customers/c/explain`, bearer(METRICS))).status).toBe(401)
  })

  it('needs the metrics token for /metrics when only it is set, and leaves the rest as without a token', async () => {
    const base = await serve({ access: { metricsToken: METRICS } })
    expect((await fetch(`${base}/metrics`)).status).toBe(401)
    expect((await fetch(`${base}/metrics`, bearer(METRICS))).status).toBe(200)
    expect((await fetch(`${base}/api/customers/c/explain`)).status).toBe(200)
  })

  it('lets the paths the caller names as open through without a token', async () => {
    const base = await serve({
      access: { token: TOKEN, openPrefixes: ['/demo/webhooks'] },
      routes: (req, res) => {
        if (!req.url?.startsWith('/demo/webhooks')) return false
        res.end('received')
        return true
      },
    })
    expect(await (await fetch(`${base}/demo/webhooks`, { method: 'POST', body: '{}' })).text()).toBe('received')
    expect((await fetch(`${base}/demo/other`, { method: 'POST', body: '{}' })).status).toBe(401)
  })
})

describe('HTTP without a token', () => {
  it('binds to 127.0.0.1 and answers everything, as the tests and the demo expect', async () => {
    const base = await serve()
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:/)
    expect((await fetch(`${base}/api/customers/c/explain`)).status).toBe(200)
    expect((await fetch(`${base}/metrics`)).status).toBe(200)
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'ok', live: true, ok: true, partitions: [0, 1], mode: 'test', degraded: [] })
  })

  it('refuses to listen on 0.0.0.0 without a token, saying what to set; listens with one, or when explicitly allowed', async () => {
    const refused = await serve({ host: '0.0.0.0' }).catch((e) => e)
    expect(refused).toBeInstanceOf(ConfigError)
    expect(refused.oneLine).toMatch(/^HTTP_HOST 0\.0\.0\.0 is not a loopback address and no HTTP_TOKEN is set: set HTTP_TOKEN/)
    expect(refused.oneLine).not.toContain('\n')
    expect(server).toBeUndefined()
    expect(await serve({ host: '0.0.0.0', access: { token: TOKEN } })).toMatch(/^http:\/\/0\.0\.0\.0:/)
    await new Promise((r) => server!.close(r))
    expect(await serve({ host: '0.0.0.0', allowUnauthenticated: true })).toMatch(/^http:\/\/0\.0\.0\.0:/)
  })

  it('tells loopback addresses from others', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) expect(isLoopback(h), h).toBe(true)
    for (const h of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.1', 'example.com', '128.0.0.1']) expect(isLoopback(h), h).toBe(false)
  })
})

describe('HTTP limits', () => {
  it('answers a body over the limit with 413, declared or streamed', async () => {
    const base = await serve({ access: { maxBodyBytes: 1024 } })
    const declared = await fetch(`${base}/api/catalog/reload`, { method: 'POST', body: 'x'.repeat(2048) })
    expect([declared.status, (await declared.json()).error]).toEqual([413, 'request body over 1024 bytes'])
    // Chunked, with no Content-Length: counted as it arrives.
    const { port } = server!.address() as AddressInfo
    const streamed = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ port, host: '127.0.0.1', method: 'POST', path: '/api/catalog/reload' }, (res) => resolve(res.statusCode!))
      req.on('error', reject)
      req.write('x'.repeat(800))
      req.write('x'.repeat(800))
      req.end()
    })
    expect(streamed).toBe(413)
    expect((await fetch(`${base}/api/catalog/reload`, { method: 'POST', body: 'x'.repeat(1000) })).status).toBe(200)
  })

  it('answers 429 with Retry-After once a client is over its rate on the API, and not elsewhere', async () => {
    const base = await serve({ access: { rateLimitPerMinute: 3 } })
    const statuses = []
    for (let i = 0; i < 4; i++) statuses.push((await fetch(`${base}/api/customers/c/explain`)).status)
    expect(statuses).toEqual([200, 200, 200, 429])
    const limited = await fetch(`${base}/api/customers/c/explain`)
    expect(limited.status).toBe(429)
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    expect((await fetch(`${base}/healthz`)).status).toBe(200)
  })

  it('refills a client bucket over time, per client', () => {
    let now = 0
    const limiter = new RateLimiter(60, () => now)
    for (let i = 0; i < 60; i++) expect(limiter.take('a')).toBe(0)
    expect(limiter.take('a')).toBe(1)
    expect(limiter.take('b')).toBe(0)
    now += 1000
    expect(limiter.take('a')).toBe(0)
    expect(limiter.take('a')).toBeGreaterThanOrEqual(1)
  })

  it('keeps a bounded number of clients', () => {
    let now = 0
    const limiter = new RateLimiter(10, () => now, 100)
    for (let i = 0; i < 1000; i++) limiter.take(`client${i}`)
    now += 60_000
    limiter.take('late')
    expect((limiter as unknown as { buckets: Map<string, unknown> }).buckets.size).toBeLessThanOrEqual(100)
  })

  it('compares tokens by value only', () => {
    expect(sameToken(TOKEN, TOKEN)).toBe(true)
    expect(sameToken(TOKEN, `${TOKEN}x`)).toBe(false)
    expect(sameToken('', TOKEN)).toBe(false)
  })
})

describe('HTTP settings', () => {
  const base = { kafkaBrokers: '127.0.0.1:9092', redisUrl: 'redis://127.0.0.1:6379', webhookSecret: 'a-secret-of-16-chars' }

  it('defaults to 127.0.0.1, no token and 600 requests a minute', () => {
    const c = parseConfig(RunConfig, base)
    expect([c.httpHost, c.httpToken, c.metricsToken, c.httpAllowUnauthenticated, c.httpRateLimit]).toEqual(['127.0.0.1', undefined, undefined, false, 600])
  })

  it('reads tokens from files, without the final line break', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardpulse-token-'))
    writeFileSync(join(dir, 'token'), `${TOKEN}\n`)
    writeFileSync(join(dir, 'metrics'), METRICS)
    const c = parseConfig(DemoConfig, { httpTokenFile: join(dir, 'token'), metricsTokenFile: join(dir, 'metrics') })
    expect([c.httpToken, c.metricsToken]).toEqual([TOKEN, METRICS])
  })

  it('says in one line, never quoting the value, what is wrong with a token setting', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardpulse-token-'))
    writeFileSync(join(dir, 'short'), 'short-secret\n')
    const message = (raw: Record<string, unknown>) => {
      try {
        parseConfig(DemoConfig, raw)
        return 'accepted'
      } catch (e) {
        return (e as ConfigError).oneLine
      }
    }
    expect(message({ httpTokenFile: join(dir, 'short') })).toBe('HTTP_TOKEN_FILE (--http-token-file) must be at least 16 characters')
    expect(message({ httpTokenFile: join(dir, 'absent') })).toBe(`HTTP_TOKEN_FILE (--http-token-file) names a file that cannot be read (ENOENT): ${join(dir, 'absent')}`)
    expect(message({ httpToken: TOKEN, httpTokenFile: join(dir, 'short') })).toBe('HTTP_TOKEN (--http-token) and HTTP_TOKEN_FILE (--http-token-file) are both set: set one of them')
    expect(message({ httpToken: 'short-secret' })).toBe('HTTP_TOKEN (--http-token) must be at least 16 characters')
    expect(message({ httpAllowUnauthenticated: 'yes' })).toBe('HTTP_ALLOW_UNAUTHENTICATED (--http-allow-unauthenticated) must be true or false')
  })
})
