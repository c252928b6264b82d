import { spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Decision } from '../schemas/decision.ts'
import { RedisStore } from '../pipeline/store/redis.ts'
import { outboxQueues } from '../pipeline/store/outbox.ts'
import { openClickHouse } from '../commands/wiring.ts'
import { eventsPartitionOf } from '../pipeline/kafka/partitioner.ts'
import { drainRows } from '../sinks/outbox.ts'
import { WebhookSender } from '../sinks/webhook/sender.ts'
import { WebhookDispatcher } from '../sinks/webhook/dispatcher.ts'
import { FAST_RETRY_POLICY } from '../core/backoff.ts'
import { StoreKeys } from '../pipeline/store/keys.ts'
import { REDIS_URL, WEBHOOK_SECRET, createTopics, freshTopics, kafka, spawnRun, testCatalogYaml, uniqueId, waitFor, webhookReceiver } from './helpers/services.ts'

/**
 * `cardpulse deliveries` and `deliveries resend` as an operator runs them, against what the
 * delivery side of `cardpulse run` wrote: the outbox in Redis, the deliveries in the embedded
 * ClickHouse in DATA_DIR, webhooks to a local receiver.
 */

const CLI = fileURLToPath(new URL('../bin/cardpulse.js', import.meta.url))
const PARTITIONS = 2

describe('cardpulse deliveries', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'cardpulse-deliveries-'))
  const prefix = `cardpulse-deliveries-${uniqueId()}`
  const env = { DATA_DIR: dataDir, REDIS_URL, REDIS_PREFIX: prefix, PARTITIONS: String(PARTITIONS) }
  let store: RedisStore
  let answer = 400
  let receiver: Awaited<ReturnType<typeof webhookReceiver>>
  let sender: WebhookSender
  let dispatcher: WebhookDispatcher
  const now = Date.now()

  const decision = (id: string, customerId: string, channel: 'sms' | 'push', expiresAt: number) =>
    Decision.parse({
      id,
      trigger: channel === 'sms' ? 'activation_reminder' : 'dormancy_wakeup',
      customerId,
      cardId: 'tok_1',
      outcome: 'send',
      channel,
      eventTime: new Date(now - 3_600_000).toISOString(),
      decidedAt: new Date(now - 3_600_000).toISOString(),
      sendAt: new Date(now - 60_000).toISOString(),
      expiresAt: new Date(expiresAt).toISOString(),
      offer: { code: 'ACT50', value: 50, currency: 'CNY' },
      reason: { hoursWithoutActivation: 72 },
      catalogVersion: 'deliveries-1',
      attributionWindowDays: 7,
    })

  /** Moves the outbox's rows (decisions, deliveries) into ClickHouse, as run's drain does, and lets the engine go. */
  const flushRows = async () => {
    const sink = await openClickHouse({ database: 'cardpulse', embeddedPath: join(dataDir, 'clickhouse') })
    try {
      await drainRows(outboxQueues(store).rows, [0, 1], sink)
    } finally {
      await sink.close()
    }
  }

  const cardpulse = (args: string[]) => {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_FORMAT: 'json', LOG_LEVEL: 'warn', ...env }, timeout: 60_000 })
    return { code: r.status, stdout: r.stdout, stderr: r.stderr }
  }

  beforeAll(async () => {
    store = await RedisStore.connect(REDIS_URL, { prefix, readyTimeoutMs: 5000 })
    receiver = await webhookReceiver(() => answer)
    sender = new WebhookSender({ urls: { default: `${receiver.url}/hooks` }, secret: WEBHOOK_SECRET })
    dispatcher = new WebhookDispatcher({ store, sender, partitions: () => [0, 1], clock: Date.now, retry: FAST_RETRY_POLICY, batchSize: 50, concurrency: 4 })
    // Two decisions sent and refused (failed), one whose time ran out before it went (expired).
    const sent = [decision('d_refused_sms', 'cust_a', 'sms', now + 86_400_000), decision('d_refused_push', 'cust_b', 'push', now + 86_400_000), decision('d_too_late', 'cust_c', 'sms', now - 1)]
    for (const p of [0, 1]) {
      const mine = sent.filter((d) => eventsPartitionOf(d.customerId, PARTITIONS) === p)
      await store.commit({
        partition: p,
        expectedOffset: null,
        offset: '1',
        watermark: now,
        customers: new Map(),
        timersSet: [],
        timersRemoved: [],
        webhooks: mine.map((d) => ({ decision: d, attempts: 0, dueAt: now - 60_000 })),
        alerts: [],
        deadLetters: [],
        rows: mine.map((d) => ({ table: 'decisions', row: d })),
      })
    }
    expect(await dispatcher.runOnce()).toMatchObject({ failed: 2, expired: 1 })
    await flushRows()
  }, 60_000)

  afterAll(async () => {
    await sender?.close()
    await receiver?.close()
    if (store) {
      const keys = await store.redis.keys(store.keys.pattern())
      if (keys.length) await store.redis.del(...keys)
      await store.close()
    }
    rmSync(dataDir, { recursive: true, force: true })
  })

  it('lists failed and expired deliveries as a table, or NDJSON with filters', () => {
    const table = cardpulse(['deliveries'])
    expect(table.code).toBe(0)
    expect(table.stdout).toMatch(/^finished\s+status\s+decision\s+trigger\s+channel\s+customer\s+attempts\s+error/)
    for (const id of ['d_refused_sms', 'd_refused_push', 'd_too_late']) expect(table.stdout).toContain(id)
    expect(table.stdout).toContain('3 deliveries')

    const failedSms = cardpulse(['deliveries', '--json', '--status', 'failed', '--channel', 'sms'])
    expect(failedSms.code).toBe(0)
    const lines = failedSms.stdout.trim().split('\n').map((l) => JSON.parse(l))
    expect(lines).toEqual([expect.objectContaining({ decisionId: 'd_refused_sms', status: 'failed', channel: 'sms', customerId: 'cust_a', attempts: 1, httpStatus: 400 })])
    expect(cardpulse(['deliveries', '--json', '--status', 'expired']).stdout.trim().split('\n').map((l) => JSON.parse(l).decisionId)).toEqual(['d_too_late'])
    const recent = cardpulse(['deliveries', '--json', '--trigger', 'dormancy_wakeup', '--since', '1h'])
    expect(recent.stdout.trim().split('\n').map((l) => JSON.parse(l).decisionId)).toEqual(['d_refused_push'])
    expect(cardpulse(['deliveries', '--customer', 'nobody']).stdout).toBe('no failed or expired deliveries match\n')
    const bad = cardpulse(['deliveries', '--since', 'yesterday'])
    expect([bad.code, bad.stderr]).toEqual([2, 'cardpulse: DELIVERIES_SINCE (--since) must be a duration back from now (24h, 7d) or a date-time like 2026-12-01T00:00:00Z\n'])
  }, 60_000)

  it('sends chosen dead deliveries again with the same decision id and a fresh expiry; an unknown id gets one line', async () => {
    answer = 200
    const until = new Date(Date.now() + 2 * 3_600_000).toISOString()
    const r = cardpulse(['deliveries', 'resend', '--id', 'd_refused_sms', 'd_too_late', 'd_nope', '--until', until])
    expect(r.code).toBe(0)
    expect(r.stdout.split('\n').filter(Boolean).sort()).toEqual(['queued d_refused_sms', 'queued d_too_late', 'unknown d_nope: no failed or expired delivery with this decision id'])
    // Asked again while they wait: left as they are, not queued twice.
    expect(cardpulse(['deliveries', 'resend', '--id', 'd_refused_sms']).stdout).toBe('pending already d_refused_sms: left as it is\n')

    receiver.received.length = 0
    expect(await dispatcher.runOnce()).toMatchObject({ delivered: 2, failed: 0, expired: 0 })
    const got = receiver.received.map((w) => ({ key: w.headers['idempotency-key'], id: w.body.id, expiresAt: w.body.expiresAt, verified: w.verified }))
    expect(got.sort((a, b) => String(a.id).localeCompare(String(b.id)))).toEqual([
      { key: 'd_refused_sms', id: 'd_refused_sms', expiresAt: until, verified: true },
      { key: 'd_too_late', id: 'd_too_late', expiresAt: until, verified: true },
    ])
    await flushRows()
    // Delivered now: no longer a dead letter; the other failed one still is, and --all-failed takes it.
    expect(cardpulse(['deliveries', '--json']).stdout.trim().split('\n').map((l) => JSON.parse(l).decisionId)).toEqual(['d_refused_push'])
    expect(cardpulse(['deliveries', 'resend', '--all-failed', '--channel', 'push']).stdout).toBe('queued d_refused_push\n')
    receiver.received.length = 0
    expect((await dispatcher.runOnce()).delivered).toBe(1)
    expect(receiver.received.map((w) => w.headers['idempotency-key'])).toEqual(['d_refused_push'])
    // A fresh window of the decision's own length (its expiry less its event time: 25 h here).
    expect(Date.parse(String(receiver.received[0].body.expiresAt))).toBeGreaterThan(Date.now() + 24 * 3_600_000)
  }, 90_000)
})

describe('cardpulse deliveries against what cardpulse run wrote', () => {
  it('lists the webhook run could not deliver, and a second run delivers it after a resend, with the same id', async () => {
    const id = uniqueId()
    const dataDir = mkdtempSync(join(tmpdir(), 'cardpulse-deliveries-run-'))
    const t = freshTopics(`dl-${id}`)
    const prefix = `cp-deliveries-run-${id}`
    writeFileSync(join(dataDir, 'catalog.yaml'), testCatalogYaml())
    let answer = 400
    const receiver = await webhookReceiver(() => answer)
    const admin = kafka().admin()
    await admin.connect()
    await createTopics(admin, Object.values(t), 2)
    const producer = kafka().producer()
    await producer.connect()
    const children: ChildProcess[] = []
    // As an operator would have it: the settings of run, the database and data directory by default.
    const shared = { DATA_DIR: join(dataDir, 'data'), REDIS_URL, REDIS_PREFIX: prefix, PARTITIONS: '2' }
    const runEnv = {
      ...shared,
      TRANSACTIONS_TOPIC: t.transactionsTopic,
      APP_EVENTS_TOPIC: t.appEventsTopic,
      LIFECYCLE_TOPIC: t.lifecycleTopic,
      DLQ_TOPIC: t.dlqTopic,
      ALERT_TOPIC: t.alertTopic,
      EVENTS_TOPIC: t.eventsTopic,
      GROUP_ID: `g-${id}`,
      CATALOG_FILE: join(dataDir, 'catalog.yaml'),
      WEBHOOK_URL: `${receiver.url}/hooks`,
      IDLE_ADVANCE: '1s',
      STATE_THREADS: '0',
    }
    const cli = (args: string[]) => {
      const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_FORMAT: 'json', LOG_LEVEL: 'warn', ...shared }, timeout: 60_000 })
      return { code: r.status, stdout: r.stdout, stderr: r.stderr }
    }
    const stop = async (child: ChildProcess) => {
      child.kill('SIGTERM')
      expect(await new Promise((r) => child.once('exit', r))).toBe(0)
    }
    try {
      const first = await spawnRun(runEnv, (c) => children.push(c))
      const approvedAt = Date.now() - 73 * 3_600_000
      await producer.send({
        topic: t.lifecycleTopic,
        messages: [{ key: 'cust_dl', value: JSON.stringify({ type: 'lifecycle', eventId: 'cust_dl-approved', occurredAt: new Date(approvedAt).toISOString(), customerId: 'cust_dl', cardId: 'tok_dl', stage: 'approved' }) }],
      })
      // The receiver refuses it (400): a delivery dead letter.
      await waitFor('the refused webhook', () => receiver.received.length === 1, 60_000)
      const decisionId = String(receiver.received[0].body.id)
      await waitFor('the failed delivery in ClickHouse', async () => {
        const summary = await (await fetch(`http://127.0.0.1:${first.port}/api/summary`)).json()
        return summary.deliveries?.some((d: { status: string }) => d.status === 'failed')
      }, 30_000)
      await stop(first.child)

      const listed = cli(['deliveries', '--json'])
      expect(listed.code).toBe(0)
      expect(listed.stdout.trim().split('\n').map((l) => JSON.parse(l))).toEqual([
        expect.objectContaining({ decisionId, status: 'failed', trigger: 'activation_reminder', customerId: 'cust_dl', httpStatus: 400, attempts: 1 }),
      ])
      const resent = cli(['deliveries', 'resend', '--id', decisionId, 'd_not_there'])
      expect([resent.code, resent.stdout]).toEqual([0, `queued ${decisionId}\nunknown d_not_there: no failed or expired delivery with this decision id\n`])

      answer = 200
      const second = await spawnRun(runEnv, (c) => children.push(c))
      await waitFor('the webhook sent again', () => receiver.received.length === 2, 60_000)
      await new Promise((r) => setTimeout(r, 1500)) // a repeat would arrive now
      expect(receiver.received).toHaveLength(2)
      expect(receiver.received[1].headers['idempotency-key']).toBe(decisionId)
      expect(receiver.received[1].verified).toBe(true)
      expect(receiver.received[1].body).toMatchObject({ id: decisionId, customerId: 'cust_dl', trigger: 'activation_reminder' })
      await waitFor('the delivery recorded', async () => {
        const summary = await (await fetch(`http://127.0.0.1:${second.port}/api/summary`)).json()
        return summary.deliveries?.some((d: { status: string }) => d.status === 'delivered')
      }, 30_000)
      await stop(second.child)
      expect(cli(['deliveries']).stdout).toBe('no failed or expired deliveries match\n')
    } finally {
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL')
      await producer.disconnect()
      await admin.disconnect()
      await receiver.close()
      const redis = (await RedisStore.connect(REDIS_URL, { prefix, readyTimeoutMs: 5000 })).redis
      const keys = await redis.keys(new StoreKeys(prefix).pattern())
      if (keys.length) await redis.del(...keys)
      redis.disconnect()
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 180_000)
})
