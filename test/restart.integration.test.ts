import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import type { Admin, Producer } from 'kafkajs'
import type { RiskAlert } from '../schemas/alert.ts'
import YAML from 'yaml'
import { StoreKeys } from '../pipeline/store/keys.ts'
import { RedisStore } from '../pipeline/store/redis.ts'
import { deadLetter } from '../pipeline/decode.ts'
import { DEFAULT_CATALOG_FILE, loadCatalogFile } from '../pipeline/catalog/index.ts'
import { EmbeddedPipeline } from '../pipeline/embedded.ts'
import { simulateBank } from '../simulator/bank.ts'
import { produceStreams } from '../simulator/produce.ts'
import { REDIS_URL, cancelledAmong, cancelledSoFar, createTopics, freshTopics, kafka, sender, spawnRun, testCatalogYaml, uniqueId, waitFor, webhookReceiver } from './helpers/services.ts'

/**
 * Crash safety: `cardpulse run` is killed with SIGKILL after it has written state; a second
 * process must neither repeat the webhook already delivered nor lose the timer still pending.
 */

const HOUR = 3_600_000
const id = uniqueId()
/** Fresh topics, as the environment of `cardpulse run`. */
function topicsEnv(prefix: string) {
  const t = freshTopics(prefix)
  return {
    TRANSACTIONS_TOPIC: t.transactionsTopic,
    APP_EVENTS_TOPIC: t.appEventsTopic,
    LIFECYCLE_TOPIC: t.lifecycleTopic,
    DLQ_TOPIC: t.dlqTopic,
    ALERT_TOPIC: t.alertTopic,
    EVENTS_TOPIC: t.eventsTopic,
  }
}
const topics = topicsEnv(`r-${id}`)
const catchUpTopics = topicsEnv(`rc-${id}`)
const deadTopics = topicsEnv(`rd-${id}`)
const alertTopics = topicsEnv(`ra-${id}`)
const prefix = `cp-restart-${id}`
const dir = mkdtempSync(join(tmpdir(), 'cardpulse-restart-'))
writeFileSync(join(dir, 'catalog.yaml'), testCatalogYaml())

let admin: Admin
let producer: Producer
let redis: Redis
let receiver: Awaited<ReturnType<typeof webhookReceiver>>
const children: ChildProcess[] = []

function startPipeline(env: Record<string, string> = {}): Promise<{ child: ChildProcess; port: number }> {
  return spawnRun(
    {
      ...topics,
      REDIS_PREFIX: prefix,
      GROUP_ID: `g-${id}`,
      PARTITIONS: '2',
      CATALOG_FILE: join(dir, 'catalog.yaml'),
      WEBHOOK_URL: `${receiver.url}/hooks`,
      ALLOWED_LATENESS: '1s',
      IDLE_ADVANCE: '1s',
      SESSION_TIMEOUT: '6s',
      // Killed mid-catch-up on threads; the delivery scenario runs the state stage on the main thread.
      STATE_THREADS: '2',
      CLICKHOUSE_DATABASE: `cp_restart_${id}`,
      DATA_DIR: join(dir, 'data'),
      ...env,
    },
    (child) => children.push(child),
  )
}

const approved = (customerId: string, at: number) => ({
  key: customerId,
  value: JSON.stringify({ type: 'lifecycle', eventId: `${customerId}-approved`, occurredAt: new Date(at).toISOString(), customerId, cardId: `tok_${customerId}`, stage: 'approved' }),
})

beforeAll(async () => {
  admin = kafka().admin()
  await admin.connect()
  await createTopics(admin, [...Object.values(topics), ...Object.values(catchUpTopics), ...Object.values(deadTopics), ...Object.values(alertTopics)], 2)
  producer = kafka().producer()
  await producer.connect()
  redis = new Redis(REDIS_URL)
  receiver = await webhookReceiver()
})

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
  await producer?.disconnect()
  await admin?.disconnect()
  for (const p of [prefix, `${prefix}-c`, `${prefix}-d`, `${prefix}-a`]) {
    const keys = await redis.keys(new StoreKeys(p).pattern())
    if (keys.length) await redis.del(...keys)
  }
  redis?.disconnect()
  await receiver?.close()
})

describe('a pipeline killed with SIGKILL', () => {
  it('neither repeats a delivered webhook nor loses a pending timer after a restart', async () => {
    const first = await startPipeline({ STATE_THREADS: '0' })
    const now = Date.now()
    await producer.send({
      topic: topics.LIFECYCLE_TOPIC,
      messages: [
        approved('cust_due', now - 73 * HOUR), // due an hour ago: fires in the first process
        approved('cust_pending', now - 72 * HOUR + 25_000), // due in 25 s: must survive the crash
      ],
    })

    await waitFor('the first webhook', () => receiver.received.length === 1, 60_000)
    expect(receiver.received[0].body.customerId).toBe('cust_due')

    // Wait until the first process has committed the delivery and holds the other timer in Redis.
    const keys = new StoreKeys(prefix)
    const partitions = [keys.partition(0), keys.partition(1)]
    await waitFor('delivery recorded and timer stored', async () => {
      let pendingWebhooks = 0
      let timers: string[] = []
      for (const k of partitions) {
        pendingWebhooks += await redis.zcard(k.webhooksDue)
        timers = timers.concat(await redis.zrange(k.timers, '0', '-1'))
      }
      return pendingWebhooks === 0 && timers.some((t) => t.startsWith('cust_pending|'))
    })
    first.child.kill('SIGKILL')
    await new Promise((r) => first.child.once('exit', r))

    const second = await startPipeline({ STATE_THREADS: '0' })
    await waitFor('the pending reminder from the second process', () => receiver.received.length >= 2, 90_000)
    await new Promise((r) => setTimeout(r, 3000)) // anything repeated would arrive now

    const ids = receiver.received.map((w) => w.body.id)
    expect(receiver.received.map((w) => w.body.customerId)).toEqual(['cust_due', 'cust_pending'])
    expect(new Set(ids).size).toBe(ids.length)
    expect(receiver.received.every((w) => w.verified)).toBe(true)

    const summary = await waitFor('both decisions in ClickHouse', async () => {
      const s = await (await fetch(`http://127.0.0.1:${second.port}/api/summary`)).json()
      return s.recent?.length === 2 && s
    })
    expect(summary.recent.map((d: { id: string }) => d.id).sort()).toEqual([...ids].sort())
    second.child.kill('SIGTERM')
    expect(await new Promise((r) => second.child.once('exit', r))).toBe(0)
  })
})

describe('a pipeline killed with SIGKILL while catching up on a backlog', () => {
  it('ends with every decision the replay makes, sent or cancelled, and any webhook sent twice carries the same id', async () => {
    // A month of a small bank: two thirds wait in the topics, the first process is killed a third of
    // the way in (or, on a machine fast enough to apply them before it is seen, after the two
    // thirds), and the rest arrives before the second starts.
    const simulated = simulateBank({ customers: 800, days: 30, start: new Date(0), seed: 5 })
    const shift = Date.now() - 60_000 - Date.parse(simulated[simulated.length - 1].occurredAt)
    const events = simulated.map((e) => ({ ...e, occurredAt: new Date(Date.parse(e.occurredAt) + shift).toISOString() }))
    const lastEventTime = Date.parse(events[events.length - 1].occurredAt)
    const raw = YAML.parse(readFileSync(DEFAULT_CATALOG_FILE, 'utf8'))
    raw.policy = { ...raw.policy, ttl: '1000d', quietHours: null }
    const catalogFile = join(dir, 'catch-up.yaml')
    writeFileSync(catalogFile, YAML.stringify(raw))

    const expected: { id: string; customerId: string }[] = []
    const catalog = loadCatalogFile(catalogFile)
    const engine = new EmbeddedPipeline({
      catalog: () => catalog,
      maxDisorder: 0,
      allowedLateness: 6 * 3_600_000,
      outbox: { webhooks: false, alerts: false, rows: false },
      onOutput: (o) => void expected.push(...o.decisions.filter((d) => d.outcome === 'send').map(({ id, customerId }) => ({ id, customerId }))),
      onDeadLetter: () => {},
    })
    for (const event of events) await engine.push({ ok: true, event, at: Date.parse(event.occurredAt), source: { topic: 'replay', partition: 0, offset: '0' } })
    await engine.finish()
    expect(expected.length).toBeGreaterThan(50)

    const streams = { transaction: catchUpTopics.TRANSACTIONS_TOPIC, app: catchUpTopics.APP_EVENTS_TOPIC, lifecycle: catchUpTopics.LIFECYCLE_TOPIC }
    const twoThirds = Math.floor((events.length * 2) / 3)
    await produceStreams(sender(producer), streams, events.slice(0, twoThirds))
    const received = receiver.received.length
    const env = { ...catchUpTopics, REDIS_PREFIX: `${prefix}-c`, GROUP_ID: `gc-${id}`, CATALOG_FILE: catalogFile, IDLE_ADVANCE: '2s', CLICKHOUSE_DATABASE: `cp_catchup_${id}` }
    const applied = async (port: number) => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
      return Number(/cardpulse_events_total\{type="all",result="applied"\} (\d+)/.exec(text)?.[1] ?? 0)
    }
    const first = await startPipeline(env)
    const appliedWhenKilled = await waitFor('a third of the events applied', async () => {
      const n = await applied(first.port)
      return n >= events.length / 3 && n
    }, 60_000, 20)
    first.child.kill('SIGKILL')
    await new Promise((r) => first.child.once('exit', r))
    await produceStreams(sender(producer), streams, events.slice(twoThirds))

    const second = await startPipeline(env)
    try {
      // Past the last event, the live pipeline's clock runs on (idle partitions follow the wall clock).
      const ours = () => receiver.received.slice(received).filter((w) => Date.parse(w.body.eventTime as string) <= lastEventTime).map((w) => w.body.id as string)
      // Catching up, a touchpoint may still wait when its customer's next events reach its goal (or
      // withdraw consent, or raise a high alert): it is then cancelled, not sent (docs/webhooks.md).
      await waitFor('every decision the replay sends, delivered or cancelled', async () => new Set(ours()).size + (await cancelledSoFar(second.port, lastEventTime)) >= expected.length, 120_000, 500)
      await new Promise((r) => setTimeout(r, 3000)) // anything extra would arrive now
      expect(appliedWhenKilled).toBeLessThan(events.length)
      expect(receiver.received.slice(received).every((w) => w.verified)).toBe(true)
      // Each decision ends once: sent, or cancelled as the pipeline records it; a webhook in flight at
      // the kill is sent again with its id (the Idempotency-Key): a repeat the receiver can drop.
      const sent = new Set(ours())
      const missing = expected.filter((d) => !sent.has(d.id))
      const cancelled = await cancelledAmong(second.port, missing)
      expect(cancelled.sort()).toEqual(missing.map((d) => d.id).sort())
      expect(sent.size + (await cancelledSoFar(second.port, lastEventTime))).toBe(expected.length)
      expect([...sent].every((id) => expected.some((d) => d.id === id))).toBe(true)
      second.child.kill('SIGTERM')
      expect(await new Promise((r) => second.child.once('exit', r))).toBe(0)
    } finally {
      // A failure here must not leave it holding the data folder the next cases use.
      if (second.child.exitCode === null) second.child.kill('SIGKILL')
    }
  }, 240_000)
})

describe('a pipeline killed between a batch\'s commit and the publish of its late events', () => {
  it('publishes the dead letters that batch committed, from the outbox, after a restart', async () => {
    // What the killed process left: a committed batch whose late event is not on the DLQ topic yet.
    const late = deadLetter(
      Buffer.from(JSON.stringify({ type: 'app', eventId: 'late-1' })),
      { topic: deadTopics.APP_EVENTS_TOPIC, partition: 1, offset: '7' },
      'late_event',
      'event time is behind the watermark by more than the allowed lateness',
      '$.occurredAt',
      Date.now(),
    )
    const store = await RedisStore.connect(REDIS_URL, { prefix: `${prefix}-d` })
    await store.commit({
      partition: 1,
      expectedOffset: null,
      offset: null,
      watermark: Date.now() - HOUR,
      customers: new Map(),
      timersSet: [],
      timersRemoved: [],
      webhooks: [],
      alerts: [],
      deadLetters: [late],
      rows: [],
    })
    await store.close()

    const consumer = kafka().consumer({ groupId: `read-dlq-${id}` })
    await consumer.connect()
    await consumer.subscribe({ topic: deadTopics.DLQ_TOPIC, fromBeginning: true })
    const onTopic: { key: string; value: Record<string, unknown> }[] = []
    await consumer.run({ eachMessage: async ({ message }) => void onTopic.push({ key: message.key!.toString(), value: JSON.parse(message.value!.toString()) }) })
    const second = await startPipeline({ ...deadTopics, REDIS_PREFIX: `${prefix}-d`, GROUP_ID: `gd-${id}`, CLICKHOUSE_DATABASE: `cp_dead_${id}` })
    try {
      await waitFor('the late event on the dead-letter topic', () => onTopic.length >= 1, 60_000)
      await waitFor('the outbox emptied', async () => (await redis.xlen(new StoreKeys(`${prefix}-d`).partition(1).deadLetters)) === 0, 10_000)
      await new Promise((r) => setTimeout(r, 1500)) // a second copy would arrive now
    } finally {
      await consumer.disconnect()
    }
    expect(onTopic).toEqual([{ key: `${deadTopics.APP_EVENTS_TOPIC}:1:7`, value: late }])
    second.child.kill('SIGTERM')
    expect(await new Promise((r) => second.child.once('exit', r))).toBe(0)
  }, 120_000)
})

describe('the alert topic of a pipeline killed with SIGKILL mid-stream', () => {
  it('carries exactly the replay\'s alerts, keyed by customer; a copy of one is the same message, dropped on its id', async () => {
    const simulated = simulateBank({ customers: 400, days: 30, start: new Date(0), seed: 11 })
    const shift = Date.now() - 60_000 - Date.parse(simulated[simulated.length - 1].occurredAt)
    const events = simulated.map((e) => ({ ...e, occurredAt: new Date(Date.parse(e.occurredAt) + shift).toISOString() }))
    const catalog = loadCatalogFile(DEFAULT_CATALOG_FILE)
    const expected: RiskAlert[] = []
    const engine = new EmbeddedPipeline({
      catalog: () => catalog,
      maxDisorder: 0,
      allowedLateness: 6 * 3_600_000,
      outbox: { webhooks: false, alerts: false, rows: false },
      onOutput: (o) => void expected.push(...o.alerts),
      onDeadLetter: () => {},
    })
    for (const event of events) await engine.push({ ok: true, event, at: Date.parse(event.occurredAt), source: { topic: 'replay', partition: 0, offset: '0' } })
    await engine.finish()
    expect(expected.length).toBeGreaterThan(10)

    const consumer = kafka().consumer({ groupId: `read-alerts-${id}` })
    await consumer.connect()
    await consumer.subscribe({ topic: alertTopics.ALERT_TOPIC, fromBeginning: true })
    const onTopic: { key: string; value: RiskAlert; raw: string }[] = []
    await consumer.run({ eachMessage: async ({ message }) => void onTopic.push({ key: message.key!.toString(), value: JSON.parse(message.value!.toString()), raw: message.value!.toString() }) })
    try {
      await produceStreams(sender(producer), { transaction: alertTopics.TRANSACTIONS_TOPIC, app: alertTopics.APP_EVENTS_TOPIC, lifecycle: alertTopics.LIFECYCLE_TOPIC }, events)
      // Its own data directory: a process an earlier case left running cannot hold this one's engine.
      const env = { ...alertTopics, REDIS_PREFIX: `${prefix}-a`, GROUP_ID: `ga-${id}`, CATALOG_FILE: DEFAULT_CATALOG_FILE, IDLE_ADVANCE: '2s', STATE_THREADS: '0', CLICKHOUSE_DATABASE: `cp_alerts_${id}`, DATA_DIR: join(dir, 'data-alerts') }
      const first = await startPipeline(env)
      // Killed as soon as alerts come out: mid-stream, with most still to come.
      await waitFor('the first alert on the topic', () => onTopic.length >= 1, 60_000, 10)
      first.child.kill('SIGKILL')
      await new Promise((r) => first.child.once('exit', r))
      expect(new Set(onTopic.map((m) => m.value.id)).size).toBeLessThan(expected.length)

      const second = await startPipeline(env)
      await waitFor('every alert of the replay', () => new Set(onTopic.map((m) => m.value.id)).size >= expected.length, 120_000, 200)
      await waitFor('the alert outbox emptied', async () => {
        const k = new StoreKeys(`${prefix}-a`)
        return (await redis.xlen(k.partition(0).alerts)) + (await redis.xlen(k.partition(1).alerts)) === 0
      }, 20_000)
      await new Promise((r) => setTimeout(r, 2000)) // anything more would arrive now
      second.child.kill('SIGTERM')
      expect(await new Promise((r) => second.child.once('exit', r))).toBe(0)
    } finally {
      await consumer.disconnect()
    }

    // Deduplicated on the alert id, the topic holds exactly the replay's alerts, each keyed by its customer.
    const firstCopy = new Map<string, (typeof onTopic)[number]>()
    for (const m of onTopic) {
      const seen = firstCopy.get(m.value.id)
      // A repeat (a publish the kill cut off before the outbox heard of it) is the same message.
      if (seen) expect(m.raw).toBe(seen.raw)
      else firstCopy.set(m.value.id, m)
    }
    // detectedAt is the wall clock live and the event time in the replay; the rest is the same.
    const byId = (list: RiskAlert[]) => [...list].map(({ detectedAt: _, ...a }) => a).sort((a, b) => (a.id < b.id ? -1 : 1))
    expect(byId([...firstCopy.values()].map((m) => m.value))).toEqual(byId(expected))
    for (const m of firstCopy.values()) expect(m.key).toBe(m.value.customerId)
    // Copies come only from the publish the kill interrupted: at most one outbox read's worth.
    expect(onTopic.length - firstCopy.size).toBeLessThanOrEqual(500)
  }, 240_000)
})
