import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import type { Admin, Producer } from 'kafkajs'
import { StoreKeys } from '../pipeline/store/keys.ts'
import { KAFKA_BROKERS, REDIS_URL, WEBHOOK_SECRET, createTopics, freshTopics, kafka, testCatalogYaml, uniqueId, waitFor, webhookReceiver } from './helpers/services.ts'

/**
 * Crash safety: `cardpulse run` is killed with SIGKILL after it has written state; a second
 * process must neither repeat the webhook already delivered nor lose the timer still pending.
 */

const HOUR = 3_600_000
const CLI = fileURLToPath(new URL('../bin/cardpulse.js', import.meta.url))
const id = uniqueId()
const t = freshTopics(`r-${id}`)
const topics = {
  TRANSACTIONS_TOPIC: t.transactionsTopic,
  APP_EVENTS_TOPIC: t.appEventsTopic,
  LIFECYCLE_TOPIC: t.lifecycleTopic,
  DLQ_TOPIC: t.dlqTopic,
  ALERT_TOPIC: t.alertTopic,
  EVENTS_TOPIC: t.eventsTopic,
}
const prefix = `cp-restart-${id}`
const dir = mkdtempSync(join(tmpdir(), 'cardpulse-restart-'))
writeFileSync(join(dir, 'catalog.yaml'), testCatalogYaml())

let admin: Admin
let producer: Producer
let redis: Redis
let receiver: Awaited<ReturnType<typeof webhookReceiver>>
const children: ChildProcess[] = []

function startPipeline(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [CLI, 'run'], {
    env: {
      ...process.env,
      ...topics,
      KAFKA_BROKERS,
      REDIS_URL,
      REDIS_PREFIX: prefix,
      GROUP_ID: `g-${id}`,
      PARTITIONS: '2',
      HTTP_PORT: '0',
      CATALOG_FILE: join(dir, 'catalog.yaml'),
      WEBHOOK_URL: `${receiver.url}/hooks`,
      WEBHOOK_SECRET,
      ALLOWED_LATENESS: '1s',
      IDLE_ADVANCE: '1s',
      SESSION_TIMEOUT: '6s',
      CLICKHOUSE_DATABASE: `cp_restart_${id}`,
      DATA_DIR: join(dir, 'data'),
      LOG_FORMAT: 'json',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.push(child)
  let output = ''
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      const m = /"port":(\d+)/.exec(output)
      if (m) resolve({ child, port: Number(m[1]) })
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    child.once('exit', (code) => reject(new Error(`cardpulse run exited with ${code} before it was ready:\n${output}`)))
  })
}

const approved = (customerId: string, at: number) => ({
  key: customerId,
  value: JSON.stringify({ type: 'lifecycle', eventId: `${customerId}-approved`, occurredAt: new Date(at).toISOString(), customerId, cardId: `tok_${customerId}`, stage: 'approved' }),
})

beforeAll(async () => {
  admin = kafka().admin()
  await admin.connect()
  await createTopics(admin, Object.values(topics), 2)
  producer = kafka().producer()
  await producer.connect()
  redis = new Redis(REDIS_URL)
  receiver = await webhookReceiver()
})

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
  await producer?.disconnect()
  await admin?.disconnect()
  const keys = await redis.keys(new StoreKeys(prefix).pattern())
  if (keys.length) await redis.del(...keys)
  redis?.disconnect()
  await receiver?.close()
})

describe('a pipeline killed with SIGKILL', () => {
  it('neither repeats a delivered webhook nor loses a pending timer after a restart', async () => {
    const first = await startPipeline()
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

    const second = await startPipeline()
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
