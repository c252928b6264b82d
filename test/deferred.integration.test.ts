import { afterEach, describe, expect, it } from 'vitest'
import { Decision } from '../schemas/decision.ts'
import { RedisStore } from '../pipeline/store/redis.ts'
import { WebhookSender } from '../sinks/webhook/sender.ts'
import { WebhookDispatcher } from '../sinks/webhook/dispatcher.ts'
import { FAST_RETRY_POLICY } from '../core/backoff.ts'
import { REDIS_URL, WEBHOOK_SECRET, uniqueId, waitFor, webhookReceiver } from './helpers/services.ts'

/**
 * A touchpoint deferred by quiet hours waits in Redis, not in the process that decided it: a new
 * process on the same Redis sends it at its time, once, with the same id.
 */

const cleanups: (() => Promise<unknown>)[] = []
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {})
})

describe('a deferred webhook on Redis', () => {
  it('survives a restart of the process holding it and goes out once at its time, not before, with the same id', async () => {
    const prefix = `cardpulse-deferred-${uniqueId()}`
    const receiver = await webhookReceiver()
    cleanups.push(receiver.close)
    const sender = new WebhookSender({ urls: { default: `${receiver.url}/hooks` }, secret: WEBHOOK_SECRET })
    cleanups.push(() => sender.close())
    const startProcess = async () => {
      const store = await RedisStore.connect(REDIS_URL, { prefix, readyTimeoutMs: 5000 })
      const dispatcher = new WebhookDispatcher({ store, sender, partitions: () => [0], clock: Date.now, retry: FAST_RETRY_POLICY, batchSize: 50, concurrency: 4 })
      dispatcher.start(50)
      return { store, dispatcher, stop: async () => (await dispatcher.stop(), await store.close()) }
    }

    // Decided at 20:59 local time, deferred by quiet hours: sendAt is in the future.
    const decidedAt = Date.now()
    const sendAt = decidedAt + 3_000
    const decision = Decision.parse({
      id: 'd_deferred_quiet_hours',
      trigger: 'bind_wallet_nudge',
      customerId: 'cust_q',
      outcome: 'send',
      channel: 'push',
      eventTime: new Date(decidedAt).toISOString(),
      decidedAt: new Date(decidedAt).toISOString(),
      sendAt: new Date(sendAt).toISOString(),
      expiresAt: new Date(decidedAt + 48 * 3_600_000).toISOString(),
      reason: { quietHours: true },
      catalogVersion: 'deferred-1',
      attributionWindowDays: 7,
    })
    const first = await startProcess()
    cleanups.push(async () => {
      const keys = await first.store.redis.keys(first.store.keys.pattern())
      if (keys.length) await first.store.redis.del(...keys)
    })
    await first.store.commit({ partition: 0, expectedOffset: null, offset: '1', watermark: decidedAt, customers: new Map(), timersSet: [], timersRemoved: [], webhooks: [{ decision, attempts: 0, dueAt: sendAt }], alerts: [], deadLetters: [], rows: [] })
    first.dispatcher.nudge()
    await new Promise((r) => setTimeout(r, 500))
    // The process that holds it goes away before its time; nothing went out.
    await first.stop()
    expect(receiver.received).toHaveLength(0)

    const second = await startProcess()
    cleanups.push(second.stop)
    // Still nothing before its time.
    await new Promise((r) => setTimeout(r, Math.max(0, sendAt - Date.now() - 300)))
    expect(receiver.received).toHaveLength(0)
    const got = await waitFor('the deferred webhook', () => receiver.received.length > 0 && receiver.received, 10_000, 20)
    const arrived = Date.now()
    expect(arrived).toBeGreaterThanOrEqual(sendAt)
    await new Promise((r) => setTimeout(r, 500))
    expect(got).toHaveLength(1)
    expect(got[0].headers['idempotency-key']).toBe('d_deferred_quiet_hours')
    expect(got[0].body).toMatchObject({ id: 'd_deferred_quiet_hours', sendAt: new Date(sendAt).toISOString() })
    expect(got[0].verified).toBe(true)
    expect(await second.store.dueWebhooks(0, Infinity, 10)).toEqual([])
  }, 30_000)
})
