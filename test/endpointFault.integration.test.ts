import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { Decision } from '../schemas/decision.ts'
import { Delivery } from '../schemas/catalog.ts'
import type { PendingWebhook } from '../schemas/outbox.ts'
import { RedisStore } from '../pipeline/store/redis.ts'
import { WebhookSender } from '../sinks/webhook/sender.ts'
import { WebhookDispatcher } from '../sinks/webhook/dispatcher.ts'
import { DeliveryMonitor } from '../sinks/monitor.ts'
import { Instrumentation, type InstrumentationEvents } from '../core/instrumentation.ts'
import { createMetrics } from '../core/metrics.ts'
import { REDIS_URL, WEBHOOK_SECRET, uniqueId, waitFor } from './helpers/services.ts'

/**
 * One channel's endpoint down for a long stretch (connection refused, then 503) while another
 * channel keeps delivering: the healthy endpoint's webhooks go out while the dead one's circuit is
 * open, the dead one's wait in the outbox (set aside in Redis, not in memory) and go out once each
 * when it is back.
 */

const cleanups: (() => Promise<unknown>)[] = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {})
})

/** A receiver on a fixed port that counts what it got per decision id, answering `status()`. */
async function receiver(port = 0, status: () => number = () => 200) {
  const got = new Map<string, number>()
  const server: Server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      const code = status()
      if (code < 300) {
        const id = String(req.headers['idempotency-key'])
        got.set(id, (got.get(id) ?? 0) + 1)
      }
      res.writeHead(code).end()
    })
  })
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r))
  return { got, port: (server.address() as AddressInfo).port, close: () => new Promise((r) => server.close(r)) }
}

function pendingFor(id: string, channel: 'sms' | 'push', now: number): PendingWebhook {
  const decision = Decision.parse({
    id,
    trigger: 'activation_reminder',
    customerId: `cust-${id}`,
    cardId: 'card-1',
    outcome: 'send',
    channel,
    eventTime: new Date(now - 1000).toISOString(),
    decidedAt: new Date(now).toISOString(),
    sendAt: new Date(now).toISOString(),
    expiresAt: new Date(now + 3_600_000).toISOString(),
    reason: {},
    catalogVersion: 'fault-1',
    attributionWindowDays: 7,
  })
  return { decision, attempts: 0, dueAt: now }
}

describe('one endpoint down while another keeps delivering', () => {
  it('opens the dead endpoint\'s circuit, delivers the healthy channel meanwhile, and the dead one\'s webhooks once each when it is back', async () => {
    const prefix = `cardpulse-fault-${uniqueId()}`
    const store = await RedisStore.connect(REDIS_URL, { prefix, readyTimeoutMs: 5000 })
    cleanups.push(async () => {
      const keys = await store.redis.keys(store.keys.pattern())
      if (keys.length) await store.redis.del(...keys)
      await store.close()
    })

    const push = await receiver()
    cleanups.push(push.close)
    // The SMS gateway: a port nothing listens on (connection refused) until it comes back.
    const probe = await receiver()
    const smsPort = probe.port
    await probe.close()

    const delivery = Delivery.parse({ circuitBreaker: { failures: 3, openFor: '400ms' }, behindAfter: '300ms', degradedAfter: '1s' })
    const events = new Instrumentation(pino({ level: 'silent' }), createMetrics())
    const seen: { name: string; event: unknown }[] = []
    for (const name of ['webhook.circuit_opened', 'webhook.circuit_closed', 'webhook.endpoint_behind', 'webhook.endpoint_caught_up'] as (keyof InstrumentationEvents)[])
      events.on(name, (event) => void seen.push({ name, event }))
    let smsAttempts = 0
    events.on('webhook.attempt', (e) => void (e.channel === 'sms' && smsAttempts++))

    const sender = new WebhookSender({ urls: { sms: `http://127.0.0.1:${smsPort}/sms`, push: `http://127.0.0.1:${push.port}/push` }, secret: WEBHOOK_SECRET, timeoutMs: 2000 })
    cleanups.push(() => sender.close())
    const partitions = [0, 1]
    const dispatcher = new WebhookDispatcher({
      store,
      sender,
      partitions: () => partitions,
      clock: Date.now,
      retry: { initialMs: 50, factor: 2, maxMs: 200, jitter: 'none', maxAttempts: 1000 },
      batchSize: 50,
      concurrency: 32,
      limits: () => delivery,
      instrumentation: events,
    })
    const monitor = new DeliveryMonitor({
      backlog: (p, now) => store.outboxBacklog(p, now),
      partitions: () => partitions,
      endpoints: () => dispatcher.endpoints(),
      failingSinks: () => new Map(),
      settings: () => delivery,
      clock: Date.now,
      instrumentation: events,
    })
    dispatcher.start(50)
    monitor.start(100)
    cleanups.push(() => monitor.stop())
    cleanups.push(() => dispatcher.stop())

    // Both channels get webhooks at a steady rate, as committed batches do.
    let offset = 0
    const commit = async (partition: number, webhooks: PendingWebhook[]) => {
      const expected = offset === 0 ? null : String(offset)
      offset++
      await store.commit({ partition, expectedOffset: partition === 0 ? expected : null, offset: String(offset), watermark: 0, customers: new Map(), timersSet: [], timersRemoved: [], webhooks, alerts: [], deadLetters: [], rows: [] })
    }
    const smsIds: string[] = []
    const pushIds: string[] = []
    const pushSentAt = new Map<string, number>()
    for (let round = 0; round < 20; round++) {
      const now = Date.now()
      const batch: PendingWebhook[] = []
      for (let i = 0; i < 5; i++) {
        const s = `sms-${round}-${i}`
        const p = `push-${round}-${i}`
        smsIds.push(s)
        pushIds.push(p)
        pushSentAt.set(p, now)
        batch.push(pendingFor(s, 'sms', now), pendingFor(p, 'push', now))
      }
      await commit(0, batch)
      dispatcher.nudge()
      await new Promise((r) => setTimeout(r, 100))
    }

    // The healthy channel kept up: every push webhook delivered once while SMS is down.
    await waitFor('every push webhook', () => pushIds.every((id) => push.got.get(id) === 1), 10_000, 50)
    const breakerOpen = dispatcher.endpoints().find((e) => e.channel === 'sms')!
    expect(breakerOpen.circuit).not.toBe('closed')
    expect(seen.filter((s) => s.name === 'webhook.circuit_opened')).toHaveLength(1)
    // While open, SMS gets one probe per cool-down, not an attempt per webhook.
    expect(smsAttempts).toBeLessThan(20)
    // Its webhooks wait in Redis, not in memory.
    await waitFor('the SMS webhooks set aside', async () => (await store.outboxBacklog(0, Date.now())).parked.sms.count >= 90, 5_000, 50)
    expect(dispatcher.endpoints().find((e) => e.channel === 'sms')!.inFlight).toBeLessThanOrEqual(1)
    await waitFor('degraded', () => monitor.degraded().some((r) => r.startsWith(`sms endpoint 127.0.0.1:${smsPort} down for`)), 5_000, 50)
    expect(monitor.degraded().some((r) => r.startsWith('push'))).toBe(false)

    // The gateway answers again, first with 503 (still down), then 200.
    let answer = 503
    const sms = await receiver(smsPort, () => answer)
    cleanups.push(sms.close)
    await new Promise((r) => setTimeout(r, 1000))
    expect(sms.got.size).toBe(0)
    answer = 200
    await waitFor('every SMS webhook', () => smsIds.every((id) => sms.got.has(id)), 20_000, 50)
    await waitFor('caught up', () => seen.some((s) => s.name === 'webhook.endpoint_caught_up'), 5_000, 50)
    await dispatcher.stop()

    // Once each, none twice, and nothing left behind.
    expect([...sms.got.values()].every((n) => n === 1)).toBe(true)
    expect(sms.got.size).toBe(100)
    expect([...push.got.values()].every((n) => n === 1)).toBe(true)
    const backlog = await store.outboxBacklog(0, Date.now())
    expect([backlog.webhooksDue, backlog.webhooksScheduled, backlog.parked.sms.count]).toEqual([0, 0, 0])
    const rows = (await store.peekRows(0, 1000)).map((e) => e.value.row as { status: string; decisionId: string })
    expect(rows.filter((r) => r.status === 'delivered')).toHaveLength(200)
    // Said once each: behind when it fell behind, caught up when it recovered; the circuit closed once.
    const smsNotes = seen.filter((s) => (s.event as { channel: string }).channel === 'sms').map((s) => s.name)
    expect(smsNotes.filter((n) => n === 'webhook.endpoint_behind')).toHaveLength(1)
    expect(smsNotes.filter((n) => n === 'webhook.endpoint_caught_up')).toHaveLength(1)
    expect(smsNotes.filter((n) => n === 'webhook.circuit_closed')).toHaveLength(1)
    expect(seen.some((s) => (s.event as { channel: string }).channel === 'push' && s.name === 'webhook.endpoint_behind')).toBe(false)
  }, 60_000)
})
