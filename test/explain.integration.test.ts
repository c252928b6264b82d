import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Admin, Producer } from 'kafkajs'
import type { RunningPipeline } from '../commands/run.ts'
import { holdoutBucket } from '../pipeline/ids.ts'
import { eventsPartitionOf } from '../pipeline/kafka/partitioner.ts'
import { REDIS_URL, kafka, createTopics, freshTopics, testCatalogYaml, uniqueId, waitFor, webhookReceiver, startTestPipeline } from './helpers/services.ts'

/**
 * `cardpulse explain` on the live pipeline: `run` on the real Kafka broker, Redis and embedded
 * ClickHouse makes a send, a control and a cooldown suppression; the HTTP endpoint and then the
 * command line explain each from Redis state and ClickHouse rows.
 */

const CLI = fileURLToPath(new URL('../bin/cardpulse.js', import.meta.url))
const HOUR = 3_600_000
const id = uniqueId()
const topics = freshTopics(`t-${id}`)
const dir = mkdtempSync(join(tmpdir(), 'cardpulse-explain-it-'))
const catalogFile = join(dir, 'catalog.yaml')
writeFileSync(catalogFile, testCatalogYaml({ holdoutPercent: 50 }))
const prefix = `cp-explain-${id}`
const database = `cp_explain_${id}`
const dataDir = join(dir, 'data')

// Customers on either side of activation_reminder's 50% holdout, named for what they will get.
const candidates = (name: string) => Array.from({ length: 100 }, (_, i) => `${name}_${id}_${i}`)
const treated = (c: string) => holdoutBucket(c, 'activation_reminder') >= 5000
const sent = candidates('cust_send').find(treated)!
const control = candidates('cust_ctrl').find((c) => !treated(c))!
const cooled = candidates('cust_cool').find(treated)!

let admin: Admin
let producer: Producer
let receiver: Awaited<ReturnType<typeof webhookReceiver>>
let pipeline: RunningPipeline | undefined

const iso = (ms: number) => new Date(ms).toISOString()
const approved = (customerId: string, cardId: string, at: number) => ({
  key: customerId,
  value: JSON.stringify({ type: 'lifecycle', eventId: `${customerId}-${cardId}`, occurredAt: iso(at), customerId, cardId, stage: 'approved' }),
})

function cardpulse(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, 'explain', ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, HOME: process.env.HOME, REDIS_URL, REDIS_PREFIX: prefix, CLICKHOUSE_DATABASE: database, DATA_DIR: dataDir, CATALOG_FILE: catalogFile, LOG_LEVEL: 'warn' },
    timeout: 60_000,
  })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

beforeAll(async () => {
  const k = kafka()
  admin = k.admin()
  await admin.connect()
  await createTopics(admin, Object.values(topics))
  producer = k.producer()
  await producer.connect()
  receiver = await webhookReceiver()
  // Approved 80 h ago and never activated: a reminder was due 8 h ago. The second card of the last
  // customer is due an hour later, inside the first reminder's cooldown. Waiting in the topic when
  // the pipeline starts: sent later, once its sources are idle and its clock is the wall clock, such
  // old events would be late.
  const now = Date.now()
  await producer.send({
    topic: topics.lifecycleTopic,
    messages: [approved(sent, 'tok_s', now - 80 * HOUR), approved(control, 'tok_c', now - 80 * HOUR), approved(cooled, 'tok_a', now - 80 * HOUR), approved(cooled, 'tok_b', now - 79 * HOUR)],
  })
  pipeline = await startTestPipeline({
    redisPrefix: prefix,
    groupId: `g-${id}`,
    ...topics,
    partitions: '3',
    catalogFile,
    webhookUrl: `${receiver.url}/hooks`,
    clickhouseDatabase: database,
    dataDir,
  })
})

afterAll(async () => {
  await pipeline?.stop()
  await producer?.disconnect()
  await admin?.disconnect()
  await receiver?.close()
})

describe('cardpulse explain on the live pipeline', () => {
  it('explains a send, a control and a cooldown over HTTP, from Redis state and ClickHouse', async () => {
    const base = `http://127.0.0.1:${pipeline!.port}`
    const explained = (customer: string, decisions: number) =>
      waitFor(`${decisions} decisions of ${customer} in ClickHouse`, async () => {
        const res = await fetch(`${base}/api/customers/${customer}/explain`)
        if (res.status !== 200) return false
        const doc = await res.json()
        return doc.decisions.total === decisions && doc.decisions.items.every((d: { outcome: string; delivery?: unknown }) => d.outcome !== 'send' || d.delivery) && doc
      })

    const s = await explained(sent, 1)
    expect(s.state).toMatchObject({ available: true, partition: eventsPartitionOf(sent, 3), cards: [{ cardId: 'tok_s', stage: 'approved' }], openWindows: [{ trigger: 'activation_reminder', outcome: 'send' }] })
    expect(s.state.timers.length).toBeGreaterThan(0)
    expect(s.decisions.items[0]).toMatchObject({ trigger: 'activation_reminder', outcome: 'send', rule: { rule: 'sent' }, delivery: { status: 'delivered' }, catalogVersion: 'test-1' })

    const c = await explained(control, 1)
    expect(c.decisions.items[0]).toMatchObject({ outcome: 'control', rule: { rule: 'holdout', group: 'trigger', percent: 50 } })

    const k = await explained(cooled, 2)
    const [suppressed, first] = k.decisions.items
    expect(first).toMatchObject({ outcome: 'send', cardId: 'tok_a' })
    expect(suppressed).toMatchObject({ outcome: 'suppressed', suppressedBy: 'cooldown', cardId: 'tok_b', rule: { rule: 'cooldown', cooldown: '7 days', previous: { id: first.id } } })

    const unknown = await fetch(`${base}/api/customers/c-123/explain`)
    expect(unknown.status).toBe(404)
    expect((await unknown.json()).error).toMatch(new RegExp(`^no customer c-123 in Redis redis://\\S+ \\(prefix ${prefix}, partition \\d of 3\\) and ClickHouse database ${database}`))
    expect((await fetch(`${base}/api/customers/4111111111111111/explain`)).status).toBe(400)
  })

  it('explains them on the command line, once the pipeline has stopped', async () => {
    await pipeline!.stop()
    pipeline = undefined

    const s = cardpulse(['--customer', cooled])
    expect(s.code, s.stderr).toBe(0)
    expect(s.stdout).toContain(`Customer ${cooled}`)
    expect(s.stdout).toMatch(/lifecycle stage +approved/)
    expect(s.stdout).toMatch(/tok_a +approved/)
    expect(s.stdout).toContain('Recent decisions (2 of 2, newest first)')
    expect(s.stdout).toMatch(/activation_reminder {2}SUPPRESSED by cooldown\n {4}why +Suppressed by the cooldown: activation_reminder was already decided \(send, d_[0-9a-f]+\) at .*, and its cooldown of 7 days runs until /)
    expect(s.stdout).toMatch(/hours without activation +72/)
    expect(s.stdout).toMatch(/delivery +delivered at .* after 1 attempt \(HTTP 200\)/)
    expect(s.stdout).toMatch(/catalogue +test-1/)

    const c = cardpulse(['--customer', control, '--json'])
    expect(c.code, c.stderr).toBe(0)
    expect(JSON.parse(c.stdout).decisions.items[0]).toMatchObject({ outcome: 'control', why: expect.stringContaining("activation_reminder's control group (50% of customers") })

    const unknown = cardpulse(['--customer', 'c-123'])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(new RegExp(`^cardpulse: no customer c-123 in Redis redis://\\S+ \\(prefix ${prefix}, partition \\d of 3\\) and ClickHouse database ${database} \\(searched state, decisions, alerts, conversions\\)\\n$`))

    const down = cardpulse(['--customer', cooled, '--redis-url', 'redis://127.0.0.1:1', '--connect-timeout', '1s'])
    expect(down.code).toBe(1)
    expect(down.stderr).toBe('cardpulse: cannot reach Redis at redis://127.0.0.1:1 (ECONNREFUSED): start Redis or set REDIS_URL\n')
  })
})
