import { createHmac } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { pino } from 'pino'
import { Decision, webhookBodyOf } from '../schemas/decision.ts'
import { MemoryStore } from '../pipeline/store/memory.ts'
import type { PendingWebhook } from '../schemas/outbox.ts'
import { DEFAULT_RETRY_POLICY, FAST_RETRY_POLICY, backoffDelay, nextRetryDelay, type BackoffOptions, type RetryPolicy } from '../core/backoff.ts'
import { WebhookConfigError, WebhookSender, parseRetryAfter, type WebhookSenderOptions } from '../sinks/webhook/sender.ts'
import { WebhookDispatcher, type DeliveryRow, type WebhookDispatcherOptions } from '../sinks/webhook/dispatcher.ts'
import { createMetrics } from '../core/metrics.ts'
import { Delivery } from '../schemas/catalog.ts'
import { Instrumentation } from '../core/instrumentation.ts'
import { signWebhook, verifyWebhook } from '../sinks/webhook/signature.ts'
import { OutboxDrain } from '../sinks/outbox.ts'
import type { ClickHouseSink } from '../sinks/clickhouse.ts'
import { outboxQueues } from '../pipeline/store/outbox.ts'
import type { RiskAlert } from '../schemas/alert.ts'
import { RunConfig, parseConfig, webhookSecrets } from '../commands/config.ts'

// ---------------------------------------------------------------------------------------------
// Fixtures

const SECRET = 'test-secret'
const T0 = Date.parse('2025-03-01T10:00:00.000Z')
const HOUR = 3_600_000
/** Put in the decision's reason so tests can check no error or log line repeats the body. */
const BODY_MARKER = 'body-content-marker-7f3a'

function decision(over: Partial<Decision> = {}): Decision {
  return Decision.parse({
    id: 'dec-1',
    trigger: 'activation_reminder',
    customerId: 'cust-1',
    cardId: 'card-1',
    outcome: 'send',
    channel: 'sms',
    eventTime: new Date(T0 - 72 * HOUR).toISOString(),
    decidedAt: new Date(T0).toISOString(),
    sendAt: new Date(T0).toISOString(),
    expiresAt: new Date(T0 + 48 * HOUR).toISOString(),
    offer: { code: 'ACT50', value: 50, currency: 'CNY' },
    reason: { approvedAt: new Date(T0 - 72 * HOUR).toISOString(), hoursWithoutActivation: 72, note: BODY_MARKER },
    catalogVersion: 'test-1',
    attributionWindowDays: 7,
    ...over,
  })
}

interface Received {
  path: string
  method: string
  headers: http.IncomingHttpHeaders
  body: string
}

interface Reply {
  status?: number
  headers?: Record<string, string>
  /** Hold the response this long. */
  delayMs?: number
}

interface TestServer {
  url: string
  received: Received[]
  /** Most requests being handled at the same time. */
  maxConcurrent: number
  close(): Promise<void>
}

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!()
})

/** A real HTTP server on 127.0.0.1; `reply` decides each response by request number (0-based). */
async function startServer(reply: (n: number, req: Received) => Reply = () => ({})): Promise<TestServer> {
  const received: Received[] = []
  let active = 0
  const state = { maxConcurrent: 0 }
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      active++
      state.maxConcurrent = Math.max(state.maxConcurrent, active)
      const r: Received = { path: req.url ?? '', method: req.method ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') }
      const out = reply(received.length, r)
      received.push(r)
      const respond = () => {
        active--
        res.writeHead(out.status ?? 200, out.headers ?? {})
        res.end()
      }
      if (out.delayMs) setTimeout(respond, out.delayMs)
      else respond()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  cleanups.push(close)
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    get maxConcurrent() {
      return state.maxConcurrent
    },
    close,
  }
}

/** A port nothing listens on: bind, note it, close. */
async function refusedUrl(): Promise<string> {
  const s = http.createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as AddressInfo
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return `http://127.0.0.1:${port}/hook`
}

function sender(opts: Partial<WebhookSenderOptions> & Pick<WebhookSenderOptions, 'urls'>): WebhookSender {
  const s = new WebhookSender({ secret: SECRET, timeoutMs: 2_000, ...opts })
  cleanups.push(() => s.close())
  return s
}

/** A MemoryStore, a fake clock and commits of pending webhooks, as the pipeline would make them. */
function harness() {
  const store = new MemoryStore()
  const clock = { now: T0 }
  const offsets = new Map<number, number>()
  const commit = async (partition: number, webhooks: PendingWebhook[]) => {
    const prev = offsets.get(partition) ?? null
    const next = (prev ?? 0) + 1
    offsets.set(partition, next)
    await store.commit({
      partition,
      expectedOffset: prev === null ? null : String(prev),
      offset: String(next),
      watermark: clock.now,
      customers: new Map(),
      timersSet: [],
      timersRemoved: [],
      webhooks,
      alerts: [],
      deadLetters: [],
      rows: [],
    })
  }
  const rows = async (partition = 0) => (await store.peekRows(partition, 1000)).map(({ value: r }) => ({ table: r.table, ...(r.row as DeliveryRow) }))
  const pending = async (partition = 0) => store.dueWebhooks(partition, Number.MAX_SAFE_INTEGER, 1000)
  return { store, clock, commit, rows, pending }
}

const pendingOf = (d: Decision, attempts = 0): PendingWebhook => ({ decision: d, attempts, dueAt: Date.parse(d.sendAt!) })

function dispatcher(h: ReturnType<typeof harness>, s: WebhookSender, over: Partial<WebhookDispatcherOptions> = {}): WebhookDispatcher {
  return new WebhookDispatcher({
    store: h.store,
    sender: s,
    partitions: () => [0],
    clock: () => h.clock.now,
    retry: FAST_RETRY_POLICY,
    batchSize: 50,
    concurrency: 4,
    ...over,
  })
}

function capturingLogger() {
  const lines: Record<string, unknown>[] = []
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) })
  return { logger, lines }
}

// ---------------------------------------------------------------------------------------------
// Backoff

describe('backoffDelay', () => {
  const noJitter: BackoffOptions = { initialMs: 1_000, factor: 2, maxMs: 300_000, jitter: 'none' }

  it('grows exponentially from initialMs and is capped at maxMs', () => {
    expect([1, 2, 3, 4, 5].map((a) => backoffDelay(a, noJitter))).toEqual([1_000, 2_000, 4_000, 8_000, 16_000])
    expect(backoffDelay(9, noJitter)).toBe(256_000)
    expect(backoffDelay(10, noJitter)).toBe(300_000)
    expect(backoffDelay(1_000, noJitter)).toBe(300_000)
    expect(backoffDelay(0, noJitter)).toBe(1_000)
  })

  it('full jitter spans [0, base), equal jitter [base/2, base]', () => {
    const full = { ...noJitter, jitter: 'full' as const }
    const equal = { ...noJitter, jitter: 'equal' as const }
    expect(backoffDelay(3, full, () => 0)).toBe(0)
    expect(backoffDelay(3, full, () => 0.5)).toBe(2_000)
    expect(backoffDelay(3, full, () => 0.999999)).toBeLessThan(4_000)
    expect(backoffDelay(3, equal, () => 0)).toBe(2_000)
    expect(backoffDelay(3, equal, () => 0.999999)).toBeLessThanOrEqual(4_000)
    expect(backoffDelay(20, equal, () => 0)).toBe(150_000)
  })

  it('has the documented defaults and a fast preset', () => {
    expect(DEFAULT_RETRY_POLICY).toMatchObject({ initialMs: 1_000, factor: 2, maxMs: 300_000, maxAttempts: 12 })
    expect(FAST_RETRY_POLICY.maxMs).toBeLessThanOrEqual(1_000)
  })

  it('property: integer delays within [0, min(maxMs, initial·factor^(n-1))], and at least half of it with equal jitter', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 0, max: 60_000 }),
        fc.double({ min: 1, max: 10, noNaN: true }),
        fc.integer({ min: 0, max: 3_600_000 }),
        fc.constantFrom('full' as const, 'equal' as const, 'none' as const),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, initialMs, factor, maxMs, jitter, r) => {
          const opts = { initialMs, factor, maxMs, jitter }
          const d = backoffDelay(attempt, opts, () => r)
          const base = Math.min(maxMs, initialMs * factor ** (attempt - 1))
          expect(Number.isInteger(d)).toBe(true)
          expect(d).toBeGreaterThanOrEqual(0)
          expect(d).toBeLessThanOrEqual(maxMs)
          expect(d).toBeLessThanOrEqual(base)
          if (jitter === 'equal') expect(d).toBeGreaterThanOrEqual(Math.floor(base / 2))
          if (jitter === 'none') expect(d).toBe(Math.floor(base))
        },
      ),
    )
  })

  it('nextRetryDelay honours a longer Retry-After and stops after maxAttempts', () => {
    const policy: RetryPolicy = { ...noJitter, maxAttempts: 3 }
    expect(nextRetryDelay(1, policy)).toBe(1_000)
    expect(nextRetryDelay(1, policy, 5_000)).toBe(5_000)
    expect(nextRetryDelay(2, policy, 500)).toBe(2_000)
    expect(nextRetryDelay(3, policy)).toBeNull()
  })
})

// ---------------------------------------------------------------------------------------------
// Signing

describe('signWebhook / verifyWebhook', () => {
  it('signs v1=hex HMAC-SHA256 of "<timestamp>.<raw body>"', () => {
    const body = '{"id":"x"}'
    const expected = createHmac('sha256', SECRET).update(`1700000000.${body}`).digest('hex')
    expect(signWebhook(SECRET, 1_700_000_000, body)).toBe(`v1=${expected}`)
    expect(signWebhook(SECRET, 1_700_000_000, Buffer.from(body))).toBe(`v1=${expected}`)
  })

  it('verifies a real request, and rejects a wrong secret, a tampered body and a stale timestamp', async () => {
    const server = await startServer()
    const s = sender({ urls: { default: `${server.url}/hook` } })
    expect((await s.send(decision())).outcome).toBe('delivered')
    const [req] = server.received
    // Relative to the signed (whole-second) timestamp, so the stale bounds never straddle a second.
    const now = Number(req.headers['x-cardpulse-timestamp']) * 1000

    expect(verifyWebhook(SECRET, req.headers, req.body, { now })).toMatchObject({ ok: true })
    expect(verifyWebhook(SECRET, new Headers(req.headers as Record<string, string>), req.body, { now })).toMatchObject({ ok: true })
    expect(verifyWebhook('other-secret', req.headers, req.body, { now })).toEqual({ ok: false, reason: 'bad_signature' })
    expect(verifyWebhook(SECRET, req.headers, req.body.replace('"cust-1"', '"cust-2"'), { now })).toEqual({ ok: false, reason: 'bad_signature' })
    expect(verifyWebhook(SECRET, req.headers, req.body, { now: now + 301_000 })).toEqual({ ok: false, reason: 'stale_timestamp' })
    expect(verifyWebhook(SECRET, req.headers, req.body, { now: now - 301_000 })).toEqual({ ok: false, reason: 'stale_timestamp' })
    expect(verifyWebhook(SECRET, req.headers, req.body, { now: now + 3_000_000, toleranceSeconds: 3_600 })).toMatchObject({ ok: true })
  })

  it('rejects a re-signed old timestamp, missing headers and garbage', () => {
    const body = '{"id":"x"}'
    const now = T0
    const ts = Math.floor(now / 1000)
    const good = { 'x-cardpulse-timestamp': String(ts), 'x-cardpulse-signature': signWebhook(SECRET, ts, body) }
    expect(verifyWebhook(SECRET, good, body, { now })).toEqual({ ok: true, timestamp: ts })
    // A captured signature does not verify under another timestamp.
    expect(verifyWebhook(SECRET, { ...good, 'x-cardpulse-timestamp': String(ts + 1) }, body, { now })).toEqual({ ok: false, reason: 'bad_signature' })
    expect(verifyWebhook(SECRET, { 'x-cardpulse-signature': good['x-cardpulse-signature'] }, body, { now })).toEqual({ ok: false, reason: 'missing_timestamp' })
    expect(verifyWebhook(SECRET, { 'x-cardpulse-timestamp': String(ts) }, body, { now })).toEqual({ ok: false, reason: 'missing_signature' })
    expect(verifyWebhook(SECRET, { ...good, 'x-cardpulse-timestamp': '12e9' }, body, { now })).toEqual({ ok: false, reason: 'malformed_timestamp' })
    expect(verifyWebhook(SECRET, { ...good, 'x-cardpulse-signature': 'v1=zz' }, body, { now })).toEqual({ ok: false, reason: 'bad_signature' })
    // Several signatures (secret rotation): any match passes; original header case works too.
    const rotated = { 'X-Cardpulse-Timestamp': String(ts), 'X-Cardpulse-Signature': `${signWebhook('old', ts, body)}, ${signWebhook(SECRET, ts, body)}` }
    expect(verifyWebhook(SECRET, rotated, body, { now })).toMatchObject({ ok: true })
  })
})

describe('webhook signatures: tolerance and secret rotation', () => {
  const CURRENT = 'current-secret-0123456789'
  const PREVIOUS = 'previous-secret-0123456789'
  const OTHER = 'another-secret-0123456789'
  const body = '{"id":"d_1","customerId":"cust_1"}'
  const ts = Math.floor(T0 / 1000)
  const hex = (secret: string) => createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex')
  const headersOf = (signature: string) => ({ 'x-cardpulse-timestamp': String(ts), 'x-cardpulse-signature': signature })

  it('accepts a timestamp within 5 minutes either way, and rejects an older or a future one', () => {
    const h = headersOf(signWebhook(CURRENT, ts, body))
    for (const drift of [0, 299_000, -299_000, 300_000, -300_000]) expect(verifyWebhook(CURRENT, h, body, { now: T0 + drift }), `${drift}`).toEqual({ ok: true, timestamp: ts })
    // Receiver's clock 5 min 1 s later: a replay of an old request.
    expect(verifyWebhook(CURRENT, h, body, { now: T0 + 301_000 })).toEqual({ ok: false, reason: 'stale_timestamp' })
    // Receiver's clock 5 min 1 s earlier: a timestamp from the future.
    expect(verifyWebhook(CURRENT, h, body, { now: T0 - 301_000 })).toEqual({ ok: false, reason: 'stale_timestamp' })
    expect(verifyWebhook(CURRENT, h, body, { now: T0 + 61_000, toleranceSeconds: 60 })).toEqual({ ok: false, reason: 'stale_timestamp' })
  })

  it('signs with every active secret, the current first, and either secret verifies; a third does not', () => {
    const header = signWebhook([CURRENT, PREVIOUS], ts, body)
    expect(header).toBe(`v1=${hex(CURRENT)},v1=${hex(PREVIOUS)}`)
    const h = headersOf(header)
    expect(verifyWebhook(CURRENT, h, body, { now: T0 })).toMatchObject({ ok: true })
    expect(verifyWebhook(PREVIOUS, h, body, { now: T0 })).toMatchObject({ ok: true })
    expect(verifyWebhook(OTHER, h, body, { now: T0 })).toEqual({ ok: false, reason: 'bad_signature' })
    // A receiver rotating on its side holds both of its secrets; any match of any passes.
    expect(verifyWebhook([OTHER, PREVIOUS], h, body, { now: T0 })).toMatchObject({ ok: true })
    expect(verifyWebhook([OTHER, PREVIOUS], headersOf(signWebhook(CURRENT, ts, body)), body, { now: T0 })).toEqual({ ok: false, reason: 'bad_signature' })
    expect(verifyWebhook([CURRENT, PREVIOUS], headersOf(signWebhook(OTHER, ts, body)), body, { now: T0 })).toEqual({ ok: false, reason: 'bad_signature' })
  })

  it('sends the contract header, one v1= and nothing else, with one secret; one per secret while rotating', async () => {
    const server = await startServer(() => ({ status: 204 }))
    await sender({ urls: { default: `${server.url}/hook` }, secret: CURRENT }).send(decision())
    await sender({ urls: { default: `${server.url}/hook` }, secret: [CURRENT] }).send(decision())
    await sender({ urls: { default: `${server.url}/hook` }, secret: [CURRENT, PREVIOUS] }).send(decision())
    const [one, listOfOne, two] = server.received.map((r) => {
      const t = r.headers['x-cardpulse-timestamp']
      const mac = (secret: string) => createHmac('sha256', secret).update(`${t}.${r.body}`).digest('hex')
      return { header: r.headers['x-cardpulse-signature'], current: mac(CURRENT), previous: mac(PREVIOUS) }
    })
    expect(one.header).toBe(`v1=${one.current}`)
    expect(listOfOne.header).toBe(`v1=${listOfOne.current}`)
    expect(two.header).toBe(`v1=${two.current},v1=${two.previous}`)
    expect(() => new WebhookSender({ urls: {}, secret: [] })).toThrow(WebhookConfigError)
  })

  it('takes the previous secret from WEBHOOK_SECRET_PREVIOUS or its file, and signs with one secret when it is the current one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardpulse-secret-'))
    writeFileSync(join(dir, 'current'), `${CURRENT}\n`)
    writeFileSync(join(dir, 'previous'), `${PREVIOUS}\n`)
    const base = { kafkaBrokers: '127.0.0.1:9092', redisUrl: 'redis://127.0.0.1:6379' }
    const rotating = parseConfig(RunConfig, { ...base, webhookSecretFile: join(dir, 'current'), webhookSecretPreviousFile: join(dir, 'previous') })
    expect(webhookSecrets(rotating)).toEqual([CURRENT, PREVIOUS])
    expect(webhookSecrets(parseConfig(RunConfig, { ...base, webhookSecret: CURRENT, webhookSecretPrevious: PREVIOUS }))).toEqual([CURRENT, PREVIOUS])
    expect(webhookSecrets(parseConfig(RunConfig, { ...base, webhookSecret: CURRENT }))).toEqual([CURRENT])
    expect(webhookSecrets(parseConfig(RunConfig, { ...base, webhookSecret: CURRENT, webhookSecretPrevious: CURRENT }))).toEqual([CURRENT])
    expect(() => parseConfig(RunConfig, { ...base, webhookSecret: CURRENT, webhookSecretPrevious: 'short' })).toThrow('WEBHOOK_SECRET_PREVIOUS (--webhook-secret-previous) must be at least 16 characters')
  })
})

// ---------------------------------------------------------------------------------------------
// Sender

describe('WebhookSender', () => {
  it('POSTs the contract body with exactly the contract headers', async () => {
    const server = await startServer(() => ({ status: 204 }))
    const s = sender({ urls: { default: `${server.url}/hook` } })
    const d = decision()
    const before = Math.floor(Date.now() / 1000)
    const result = await s.send(d)
    const after = Math.floor(Date.now() / 1000)

    expect(result).toMatchObject({ outcome: 'delivered', attempted: true, httpStatus: 204, error: null })
    expect(result.latencyMs).toBeGreaterThanOrEqual(0)
    const [req] = server.received
    expect(req.method).toBe('POST')
    expect(req.path).toBe('/hook')
    expect(req.headers['content-type']).toBe('application/json')
    expect(req.headers['idempotency-key']).toBe(d.id)
    const ts = Number(req.headers['x-cardpulse-timestamp'])
    expect(req.headers['x-cardpulse-timestamp']).toMatch(/^\d+$/)
    expect(ts).toBeGreaterThanOrEqual(before)
    expect(ts).toBeLessThanOrEqual(after)
    expect(req.headers['x-cardpulse-signature']).toBe(signWebhook(SECRET, ts, req.body))
    expect(req.body).toBe(JSON.stringify(webhookBodyOf(d)))
    expect(JSON.parse(req.body)).toMatchObject({ id: d.id, group: 'treatment', channel: 'sms', attributionWindowDays: 7 })
  })

  it('classifies responses: 2xx delivered; 408, 429, 5xx retriable; other 4xx and 3xx permanent', async () => {
    const statuses = [200, 201, 408, 429, 500, 502, 503, 400, 401, 404, 410, 422, 301]
    const server = await startServer((n) => ({ status: statuses[n] }))
    const s = sender({ urls: { default: `${server.url}/hook` } })
    const outcomes: Record<number, string> = {}
    for (const status of statuses) {
      const r = await s.send(decision())
      expect(r.httpStatus).toBe(status)
      outcomes[status] = r.outcome
      // Errors name the status only: nothing of the body.
      expect(r.error ?? '').not.toContain(BODY_MARKER)
    }
    expect(outcomes).toEqual({
      200: 'delivered', 201: 'delivered',
      408: 'retriable', 429: 'retriable', 500: 'retriable', 502: 'retriable', 503: 'retriable',
      400: 'permanent', 401: 'permanent', 404: 'permanent', 410: 'permanent', 422: 'permanent', 301: 'permanent',
    })
  })

  it('carries Retry-After as ms, in seconds or as an HTTP-date', async () => {
    const now = T0
    const server = await startServer((n) =>
      n === 0
        ? { status: 429, headers: { 'Retry-After': '2' } }
        : { status: 503, headers: { 'Retry-After': new Date(now + 30_000).toUTCString() } },
    )
    const s = sender({ urls: { default: `${server.url}/hook` }, now: () => now })
    expect(await s.send(decision())).toMatchObject({ outcome: 'retriable', httpStatus: 429, retryAfterMs: 2_000 })
    expect(await s.send(decision())).toMatchObject({ outcome: 'retriable', httpStatus: 503, retryAfterMs: 30_000 })
    expect(parseRetryAfter(undefined, now)).toBeNull()
    expect(parseRetryAfter('soon', now)).toBeNull()
    expect(parseRetryAfter('1.5', now)).toBeNull()
    expect(parseRetryAfter(new Date(now - 5_000).toUTCString(), now)).toBe(0)
  })

  it('treats a refused connection as retriable', async () => {
    const s = sender({ urls: { default: await refusedUrl() } })
    const r = await s.send(decision())
    expect(r).toMatchObject({ outcome: 'retriable', attempted: true, httpStatus: null })
    expect(r.error).toMatch(/ECONNREFUSED/)
  })

  it('treats a timeout as retriable', async () => {
    const server = await startServer(() => ({ delayMs: 2_000 }))
    const s = sender({ urls: { default: `${server.url}/hook` }, timeoutMs: 150 })
    const r = await s.send(decision())
    expect(r).toMatchObject({ outcome: 'retriable', attempted: true, httpStatus: null, error: 'timed out after 150 ms' })
    expect(r.latencyMs).toBeGreaterThanOrEqual(100)
    expect(r.latencyMs).toBeLessThan(1_500)
  })

  it('routes by channel, falling back to the default URL', async () => {
    const server = await startServer()
    const s = sender({ urls: { default: `${server.url}/all`, sms: `${server.url}/sms`, app_banner: `${server.url}/banner` } })
    for (const channel of ['sms', 'push', 'call', 'app_banner'] as const) await s.send(decision({ id: `d-${channel}`, channel }))
    expect(server.received.map((r) => [r.headers['idempotency-key'], r.path])).toEqual([
      ['d-sms', '/sms'],
      ['d-push', '/all'],
      ['d-call', '/all'],
      ['d-app_banner', '/banner'],
    ])
  })

  it('fails permanently, without a request, when no URL serves the channel', async () => {
    const server = await startServer()
    const s = sender({ urls: { sms: `${server.url}/sms` } })
    const r = await s.send(decision({ channel: 'push' }))
    expect(r).toMatchObject({ outcome: 'permanent', attempted: false, httpStatus: null, latencyMs: null })
    expect(r.error).toMatch(/no webhook URL configured for channel push/)
    expect(await s.send(decision({ outcome: 'control' }))).toMatchObject({ outcome: 'permanent', attempted: false })
    expect(server.received).toHaveLength(0)
  })

  it('rejects bad configuration at construction, as not retriable', () => {
    expect(() => new WebhookSender({ urls: { default: 'not a url' }, secret: SECRET })).toThrow(WebhookConfigError)
    expect(() => new WebhookSender({ urls: { sms: 'ftp://example.com/x' }, secret: SECRET })).toThrow(/http or https/)
    expect(() => new WebhookSender({ urls: {}, secret: '' })).toThrow(/secret/)
    try {
      new WebhookSender({ urls: {}, secret: '' })
    } catch (err) {
      expect((err as WebhookConfigError).retriable).toBe(false)
    }
  })
})

// ---------------------------------------------------------------------------------------------
// Dispatcher

describe('WebhookDispatcher', () => {
  it('delivers a due webhook and records the delivery row', async () => {
    const server = await startServer()
    const h = harness()
    const d = decision()
    await h.commit(0, [pendingOf(d)])
    const metrics = createMetrics()
    const disp = dispatcher(h, sender({ urls: { default: `${server.url}/hook` } }), { instrumentation: new Instrumentation(pino({ level: 'silent' }), metrics) })

    h.clock.now = T0 + 5_000
    expect(await disp.runOnce()).toEqual({ delivered: 1, retried: 0, failed: 0, expired: 0 })
    const [row, ...more] = await h.rows()
    expect(more).toHaveLength(0)
    expect(row).toMatchObject({
      table: 'deliveries',
      decisionId: d.id,
      trigger: d.trigger,
      customerId: d.customerId,
      channel: 'sms',
      status: 'delivered',
      attempts: 1,
      httpStatus: 200,
      error: null,
      deliveredAt: new Date(T0 + 5_000).toISOString(),
      finishedAt: new Date(T0 + 5_000).toISOString(),
      eventTime: d.eventTime,
      decidedAt: d.decidedAt,
    })
    expect(typeof row.latencyMs).toBe('number')
    expect(await h.pending()).toHaveLength(0)
    expect((await metrics.webhooks.deliveries.get()).values).toContainEqual(expect.objectContaining({ labels: { status: 'delivered', channel: 'sms' }, value: 1 }))
    expect(await metrics.registry.metrics()).toContain('cardpulse_webhook_latency_seconds_count{outcome="delivered",channel="sms"} 1')
  })

  it('does not send before sendAt', async () => {
    const server = await startServer()
    const h = harness()
    await h.commit(0, [pendingOf(decision({ sendAt: new Date(T0 + HOUR).toISOString() }))])
    const disp = dispatcher(h, sender({ urls: { default: `${server.url}/hook` } }))
    expect(await disp.runOnce()).toEqual({ delivered: 0, retried: 0, failed: 0, expired: 0 })
    h.clock.now = T0 + HOUR
    expect((await disp.runOnce()).delivered).toBe(1)
    expect(server.received).toHaveLength(1)
  })

  it('retries a 500 and delivers once, with the same Idempotency-Key', async () => {
    const server = await startServer((n) => ({ status: n === 0 ? 500 : 200 }))
    const h = harness()
    const d = decision()
    await h.commit(0, [pendingOf(d)])
    const disp = dispatcher(h, sender({ urls: { default: `${server.url}/hook` } }))

    expect(await disp.runOnce()).toEqual({ delivered: 0, retried: 1, failed: 0, expired: 0 })
    const [p] = await h.pending()
    expect(p.attempts).toBe(1)
    // Equal jitter of the first backoff step: between half and all of initialMs.
    expect(p.dueAt).toBeGreaterThanOrEqual(T0 + FAST_RETRY_POLICY.initialMs / 2)
    expect(p.dueAt).toBeLessThanOrEqual(T0 + FAST_RETRY_POLICY.initialMs)
    expect(await h.rows()).toHaveLength(0)

    // Not due yet: nothing is sent.
    expect(await disp.runOnce()).toEqual({ delivered: 0, retried: 0, failed: 0, expired: 0 })
    expect(server.received).toHaveLength(1)
    h.clock.now = p.dueAt
    expect(await disp.runOnce()).toEqual({ delivered: 1, retried: 0, failed: 0, expired: 0 })
    h.clock.now += HOUR
    expect(await disp.runOnce()).toEqual({ delivered: 0, retried: 0, failed: 0, expired: 0 })

    expect(server.received.map((r) => r.headers['idempotency-key'])).toEqual([d.id, d.id])
    const rows = await h.rows()
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({ status: 'delivered', attempts: 2, httpStatus: 200 })
  })

  it('honours Retry-After: 2 on a 429', async () => {
    const server = await startServer((n) => (n === 0 ? { status: 429, headers: { 'Retry-After': '2' } } : {}))
    const h = harness()
    await h.commit(0, [pendingOf(decision())])
    const disp = dispatcher(h, sender({ urls: { default: `${server.url}/hook` } }))

    expect((await disp.runOnce()).retried).toBe(1)
    const [p] = await h.pending()
    expect(p.dueAt).toBeGreaterThanOrEqual(T0 + 2_000)
    h.clock.now = T0 + 1_999
    await disp.runOnce()
    expect(server.received).toHaveLength(1)
    h.clock.now = T0 + 2_000
    expect((await disp.runOnce()).delivered).toBe(1)
  })

  it('fails a 400 at once, without retry, and logs a warning with the decision id', async () => {
    const server = await startServer(() => ({ status: 400 }))
    const h = harness()
    const d = decision()
    await h.commit(0, [pendingOf(d)])
    const { logger, lines } = capturingLogger()
    const disp = dispatcher(h, sender({ urls: { default: `${server.url}/hook` } }), { instrumentation: new Instrumentation(logger) })

    expect(await disp.runOnce()).toEqual({ delivered: 0, retried: 0, failed: 1, expired: 0 })
    h.clock.now += HOUR
    await disp.runOnce()
    expect(server.received).toHaveLength(1)
    expect(await h.pending()).toHaveLength(0)
    expect(await h.rows()).toEqual([
      expect.objectContaining({ status: 'failed', attempts: 1, httpStatus: 400, error: 'HTTP 400', deliveredAt: null }),
    ])
    const warn = lines.find((l) => l.level === 40)
    expect(warn).toMatchObject({ event: 'webhook.failed', decisionId: d.id, reason: 'HTTP 400' })
    expect(JSON.stringify(lines)).not.toContain(BODY_MARKER)
  })

  it('reschedules after a refused connection', async () => {
    const h = harness()
    await h.commit(0, [pendingOf(decision())])
    const disp = dispatcher(h, sender({ urls: { default: await refusedUrl() } }))
    expect(await disp.runOnce()).toEqual({ delivered: 0, retried: 1, failed: 0, expired: 0 })
    expect(await h.pending()).toEqual([expect.objectContaining({ attempts: 1 })])
  })

  it('reschedules after a timeout', async () => {
    const server = await startServer((n) => (n === 0 ? { delayMs: 2_000 } : {}))
    const h = harness()
    await h.commit(0, [pendingOf(decision())])
    const disp = dispatcher(h, sender({ urls: { default: `${server.url}/hook` }, timeoutMs: 150 }))
    expect(await disp.runOnce()).toEqual({ delivered: 0, retried: 1, failed: 0, expired: 0 })
    const [p] = await h.pending()
    h.clock.now = p.dueAt
    expect((await disp.runOnce()).delivered).toBe(1)
    expect((await h.rows())[0]).toMatchObject({ status: 'delivered', attempts: 2 })
  })

  it('gives up after maxAttempts and dead-letters the delivery', async () => {
    const server = await startServer(() => ({ status: 503 }))
    const h = harness()
    await h.commit(0, [pendingOf(decision())])
    const disp = dispatcher(h, sender({ urls: { default: `${server.url}/hook` } }), { retry: { ...FAST_RETRY_POLICY, maxAttempts: 3 } })
    const totals = { delivered: 0, retried: 0, failed: 0, expired: 0 }
    for (let i = 0; i < 5; i++) {
      const c = await disp.runOnce()
      for (const k of Object.keys(totals) as (keyof typeof totals)[]) totals[k] += c[k]
      h.clock.now += 10_000
    }
    expect(totals).toEqual({ delivered: 0, retried: 2, failed: 1, expired: 0 })
    expect(server.received).toHaveLength(3)
    const [row] = await h.rows()
    expect(row).toMatchObject({ status: 'failed', attempts: 3, httpStatus: 503 })
    expect(row.error).toMatch(/HTTP 503; gave up after 3 attempts/)
  })

  it('records as expired, rather than schedules, a retry that would fall after expiresAt', async () => {
    const server = await startServer(() => ({ status: 429, headers: { 'Retry-After': '120' } }))
    const h = harness()
    await h.commit(0, [pendingOf(decision({ expiresAt: new Date(T0 + 60_000).toISOString() }))])
    const disp = dispatcher(h, sender({ urls: { default: `${server.url}/hook` } }))
    expect(await disp.runOnce()).toEqual({ delivered: 0, retried: 0, failed: 0, expired: 1 })
    expect((await h.rows())[0]).toMatchObject({ status: 'expired', attempts: 1, httpStatus: 429 })
    expect((await h.rows())[0].error).toMatch(/after expiresAt/)
  })

  it('records an expired webhook without sending it', async () => {
    const server = await startServer()
    const h = harness()
    const d = decision({ id: 'dec-expired', expiresAt: new Date(T0 + HOUR).toISOString() })
    await h.commit(0, [pendingOf(d, 2)])
    const { logger, lines } = capturingLogger()
    const disp = dispatcher(h, sender({ urls: { default: `${server.url}/hook` } }), { instrumentation: new Instrumentation(logger) })
    h.clock.now = T0 + HOUR
    expect(await disp.runOnce()).toEqual({ delivered: 0, retried: 0, failed: 0, expired: 1 })
    expect(server.received).toHaveLength(0)
    expect(await h.rows()).toEqual([
      expect.objectContaining({ decisionId: d.id, status: 'expired', attempts: 2, httpStatus: null, latencyMs: null, deliveredAt: null }),
    ])
    expect(lines.find((l) => l.level === 40)).toMatchObject({ event: 'webhook.expired', decisionId: d.id })
  })

  it('fails a channel with no URL, making no attempt', async () => {
    const server = await startServer()
    const h = harness()
    await h.commit(0, [pendingOf(decision({ channel: 'call' }))])
    const disp = dispatcher(h, sender({ urls: { sms: `${server.url}/sms` } }))
    expect(await disp.runOnce()).toEqual({ delivered: 0, retried: 0, failed: 1, expired: 0 })
    expect((await h.rows())[0]).toMatchObject({ status: 'failed', attempts: 0, httpStatus: null, channel: 'call' })
    expect((await h.rows())[0].error).toMatch(/no webhook URL configured for channel call/)
    expect(server.received).toHaveLength(0)
  })

  it('works over several partitions, at most `concurrency` requests at once', async () => {
    const server = await startServer(() => ({ delayMs: 30 }))
    const h = harness()
    for (const p of [0, 1, 2]) await h.commit(p, Array.from({ length: 4 }, (_, i) => pendingOf(decision({ id: `d-${p}-${i}` }))))
    const disp = dispatcher(h, sender({ urls: { default: `${server.url}/hook` } }), { partitions: () => [0, 2], concurrency: 3, batchSize: 3 })
    expect((await disp.runOnce()).delivered).toBe(6)
    expect(server.maxConcurrent).toBeLessThanOrEqual(3)
    expect((await disp.runOnce()).delivered).toBe(2)
    // Partition 1 is not ours: untouched.
    expect(await h.pending(1)).toHaveLength(4)
    expect((await h.rows(0)).length + (await h.rows(2)).length).toBe(8)
  })

  it('holds each channel to its own concurrency and rate, and follows new limits at once (a catalogue reload)', async () => {
    const server = await startServer(() => ({ delayMs: 40 }))
    const h = harness()
    await h.commit(0, Array.from({ length: 6 }, (_, i) => pendingOf(decision({ id: `sms-${i}`, channel: 'sms' }))))
    let limits = Delivery.parse({ channels: { sms: { concurrency: 1 } } })
    const disp = dispatcher(h, sender({ urls: { default: `${server.url}/hook` } }), { limits: () => limits, concurrency: 32, batchSize: 2 })
    expect((await disp.runOnce()).delivered).toBe(2) // at most twice its concurrency taken at once; the rest set aside
    expect(server.maxConcurrent).toBe(1)
    limits = Delivery.parse({ channels: { sms: { concurrency: 2 } } })
    // Set-aside webhooks are not due to the store until moved back: count what is delivered.
    while (server.received.length < 6) await disp.runOnce()
    expect(server.maxConcurrent).toBe(2)
    expect(server.received).toHaveLength(6)

    // A rate of 2 a second: a burst of 2, then one every half second.
    limits = Delivery.parse({ channels: { push: { ratePerSecond: 2, concurrency: 8 } } })
    await h.commit(0, Array.from({ length: 4 }, (_, i) => pendingOf(decision({ id: `push-${i}`, channel: 'push' }))))
    const started = Date.now()
    expect((await disp.runOnce()).delivered).toBe(2)
    while (server.received.length < 10) {
      await disp.runOnce()
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(Date.now() - started).toBeGreaterThanOrEqual(900)
    expect(server.received).toHaveLength(10)
  })

  it('looks again now and then for webhooks a former owner set aside in a partition it had seen empty', async () => {
    const server = await startServer()
    const h = harness()
    let wall = 0
    const disp = dispatcher(h, sender({ urls: { default: `${server.url}/hook` } }), { wallClock: () => wall })
    expect((await disp.runOnce()).delivered).toBe(0)
    // A former owner, during a rebalance, set one aside after this one looked.
    await h.commit(0, [pendingOf(decision({ id: 'set-aside' }))])
    await h.store.parkWebhooks(0, 'sms', ['set-aside'])
    wall += 5_000
    expect((await disp.runOnce()).delivered).toBe(0)
    wall += 5_000
    expect((await disp.runOnce()).delivered).toBe(1)
  })

  it('polls with start() and waits for in-flight sends on stop()', async () => {
    let arrived!: () => void
    const firstRequest = new Promise<void>((resolve) => (arrived = resolve))
    const server = await startServer(() => {
      arrived()
      return { delayMs: 100 }
    })
    const h = harness()
    await h.commit(0, [pendingOf(decision())])
    const disp = dispatcher(h, sender({ urls: { default: `${server.url}/hook` } }))
    disp.start(10)
    await firstRequest
    await disp.stop()
    expect(await h.rows()).toEqual([expect.objectContaining({ status: 'delivered' })])
    // Stopped: a new due webhook is left alone.
    await h.commit(0, [pendingOf(decision({ id: 'dec-2' }))])
    await new Promise((r) => setTimeout(r, 50))
    expect(server.received).toHaveLength(1)
  })
})

// ---------------------------------------------------------------------------------------------
// The outbox drain, nudged after a commit

describe('OutboxDrain.nudge', () => {
  const alert = (id: string): RiskAlert => ({
    id,
    kind: 'velocity',
    severity: 'high',
    score: 0.9,
    customerId: 'cust-1',
    eventTime: new Date(T0).toISOString(),
    detectedAt: new Date(T0).toISOString(),
    evidence: { eventIds: ['e-1'] },
    ruleVersion: 'test',
  })
  const commitAlerts = (store: MemoryStore, offset: number, alerts: RiskAlert[], webhooks: PendingWebhook[] = []) =>
    store.commit({
      partition: 0,
      expectedOffset: offset === 1 ? null : String(offset - 1),
      offset: String(offset),
      watermark: T0,
      customers: new Map(),
      timersSet: [],
      timersRemoved: [],
      webhooks,
      alerts,
      deadLetters: [],
      rows: [],
    })
  const silent = () => new Instrumentation(pino({ level: 'silent' }))
  /** Started with timers of an hour: whatever goes out in the test went because of a nudge. */
  function hourlyDrain(store: MemoryStore, publishAlerts: (alerts: RiskAlert[]) => Promise<void>, webhooks: WebhookDispatcher) {
    const drain = new OutboxDrain({
      queues: outboxQueues(store),
      clickhouse: { insert: async () => {} } as unknown as ClickHouseSink,
      webhooks,
      partitions: () => [0],
      publishAlerts,
      instrumentation: silent(),
    })
    drain.start({ everyMs: HOUR, webhooksEveryMs: HOUR })
    cleanups.push(() => drain.stop())
    return drain
  }

  it('sends a committed webhook and publishes a committed alert at once, not at the next tick of an hourly timer', async () => {
    const server = await startServer()
    const h = harness()
    h.clock.now = T0 + 5_000
    const published: string[] = []
    const disp = dispatcher(h, sender({ urls: { default: `${server.url}/hook` } }))
    const drain = hourlyDrain(h.store, async (alerts) => void published.push(...alerts.map((a) => a.id)), disp)
    // The dispatcher's first pass, due at start, finds nothing; the next poll is an hour away.
    await new Promise((r) => setTimeout(r, 20))
    await disp.runOnce()
    expect(server.received).toHaveLength(0)

    await commitAlerts(h.store, 1, [alert('al-1')], [pendingOf(decision())])
    drain.nudge()
    await waitUntil(() => server.received.length === 1 && published.length === 1 && h.store.peekAlerts(0, 10).then((a) => a.length === 0))
    expect(published).toEqual(['al-1'])
    expect((await h.rows()).map((r) => r.status)).toEqual(['delivered'])
    expect(await h.pending()).toHaveLength(0)
  })

  it('coalesces nudges: one pass under way and one queued, and an alert is acknowledged only after it is published', async () => {
    const h = harness()
    const disp = dispatcher(h, sender({ urls: { default: 'http://127.0.0.1:9/unused' } }))
    const calls: string[][] = []
    let inFlight = 0
    let maxInFlight = 0
    let release!: () => void
    const drain = hourlyDrain(
      h.store,
      async (alerts) => {
        calls.push(alerts.map((a) => a.id))
        maxInFlight = Math.max(maxInFlight, ++inFlight)
        if (calls.length === 1) await new Promise<void>((r) => (release = r))
        inFlight--
      },
      disp,
    )
    await commitAlerts(h.store, 1, [alert('al-1')])
    drain.nudge()
    await waitUntil(() => calls.length === 1)
    // Committed while the first pass is under way: many nudges, one more pass.
    await commitAlerts(h.store, 2, [alert('al-2')])
    for (let i = 0; i < 5; i++) drain.nudge()
    // Not acknowledged while its publish has not returned.
    expect((await h.store.peekAlerts(0, 10)).map((e) => e.value.id)).toEqual(['al-1', 'al-2'])
    release()
    await waitUntil(async () => (await h.store.peekAlerts(0, 10)).length === 0)
    expect(calls).toEqual([['al-1'], ['al-2']])
    expect(maxInFlight).toBe(1)
  })

  it('does nothing before start: the demo runs its passes itself', async () => {
    const h = harness()
    const published: string[] = []
    const drain = new OutboxDrain({
      queues: outboxQueues(h.store),
      clickhouse: { insert: async () => {} } as unknown as ClickHouseSink,
      webhooks: dispatcher(h, sender({ urls: { default: 'http://127.0.0.1:9/unused' } })),
      partitions: () => [0],
      publishAlerts: async (alerts) => void published.push(...alerts.map((a) => a.id)),
      instrumentation: silent(),
    })
    await commitAlerts(h.store, 1, [alert('al-1')])
    drain.nudge()
    await drain.runOnce()
    expect(published).toEqual(['al-1'])
  })
})

/** Polls until `cond` holds; the test's timeout bounds it. */
async function waitUntil(cond: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await cond())) await new Promise((r) => setTimeout(r, 10))
}
