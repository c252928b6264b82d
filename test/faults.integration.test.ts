import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtempSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { Kafka, logLevel, type Admin, type Producer } from 'kafkajs'
import type { RunningPipeline } from '../commands/run.ts'
import { KAFKA_CLIENT, createTopics, freshTopics, kafka, uniqueId, waitFor, webhookReceiver } from './helpers/services.ts'
import { bankEvents, counted, endOfInput, expectSameAsReplay, produce, replayed, startLive } from './helpers/liveVsReplay.ts'

/**
 * Faults on the real services, each ending as the run-versus-replay suite ends: the decisions,
 * alerts and conversions of `replay` on the same input, none lost and none twice.
 */

const events = bankEvents()
const lastEventTime = Date.parse(events[events.length - 1].occurredAt)

let admin: Admin
let producer: Producer
let receiver: Awaited<ReturnType<typeof webhookReceiver>>
let pipeline: RunningPipeline | undefined
let joiner: RunningPipeline | undefined

beforeAll(async () => {
  admin = kafka().admin()
  await admin.connect()
  producer = kafka().producer()
  await producer.connect()
  receiver = await webhookReceiver()
})

afterAll(async () => {
  await pipeline?.stop()
  await joiner?.stop()
  await producer?.disconnect()
  await admin?.disconnect()
  await receiver?.close()
})

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as { port: number }
  await new Promise((r) => server.close(r))
  return port
}

/** A Redis of the test's own, persisting every write to its append-only file, so a restart loses nothing. */
class OwnRedis {
  private child?: ChildProcess
  readonly dir = mkdtempSync(join(tmpdir(), 'cardpulse-redis-'))
  constructor(readonly port: number) {}

  get url() {
    return `redis://127.0.0.1:${this.port}`
  }

  async start() {
    this.child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''], { stdio: 'ignore' })
    await waitFor('redis to answer', async () => {
      const r = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
      r.on('error', () => {})
      try {
        await r.connect()
        return (await r.ping()) === 'PONG'
      } catch {
        return false
      } finally {
        r.disconnect()
      }
    }, 20_000, 100)
  }

  async kill() {
    const child = this.child!
    child.kill('SIGKILL')
    await new Promise((r) => child.once('exit', r))
  }
}

/** A Kafka broker of the test's own (scripts/services.sh with its own state folder and ports), stopped and started at will. */
class OwnKafka {
  readonly state = mkdtempSync(join(tmpdir(), 'cardpulse-kafka-'))
  constructor(readonly port: number, readonly controllerPort: number) {}

  get brokers() {
    return `127.0.0.1:${this.port}`
  }

  private services(command: 'start' | 'stop') {
    const env = { ...process.env, CARDPULSE_STATE: this.state, KAFKA_PORT: String(this.port), KAFKA_CONTROLLER_PORT: String(this.controllerPort), KAFKA_HEAP_OPTS: '-Xms256m -Xmx256m' }
    return promisify(execFile)('bash', ['scripts/services.sh', command, 'kafka'], { env, timeout: 120_000 })
  }

  start() {
    return this.services('start')
  }

  stop() {
    return this.services('stop')
  }
}

describe('faults', () => {
  it('Redis killed mid-stream and back 5 s later: the pipeline waits for it and ends with replay\'s decisions, alerts and conversions', async () => {
    const expected = await replayed(events)
    const redis = new OwnRedis(await freePort())
    await redis.start()
    const id = uniqueId()
    const topics = freshTopics(`fr-${id}`)
    await createTopics(admin, Object.values(topics), 3)
    pipeline = await startLive(id, topics, `${receiver.url}/hooks`, { redisUrl: redis.url, sourceIdleness: '10m', stateThreads: '2' })
    const live = pipeline
    const said = { down: 0, back: 0 }
    live.events.on('redis.error', () => said.down++)
    live.events.on('redis.reconnected', () => said.back++)

    // The first half of the history, applied; then Redis dies and the second half arrives meanwhile.
    const half = Math.floor(events.length / 2)
    await produce(producer, topics, events.slice(0, half))
    await waitFor('the first half applied', async () => (await counted(live, 'applied')) >= half * 0.9, 60_000, 100)
    await redis.kill()
    await produce(producer, topics, events.slice(half))
    await endOfInput(producer, topics, lastEventTime)
    await new Promise((r) => setTimeout(r, 2000))
    const appliedWhileDown = await counted(live, 'applied')
    await new Promise((r) => setTimeout(r, 5000))
    expect(await counted(live, 'applied')).toBe(appliedWhileDown) // nothing is applied without the store
    expect(appliedWhileDown).toBeLessThan(events.length)
    await redis.start()

    await expectSameAsReplay(live, expected, lastEventTime)
    // Said once per connection (the main thread's and each state thread's), not at every reconnect attempt.
    // On librdkafka the state stage stays on the main thread (its native module loads there only).
    const connections = KAFKA_CLIENT === 'rdkafka' ? 1 : 1 + 2
    expect(said).toEqual({ down: connections, back: connections })
    await live.stop()
    pipeline = undefined
    await redis.kill()
  }, 300_000)

  // On librdkafka this case recovers when run alone, but after it the test process exits in a
  // later case, and it has failed to recover within 3 min (an open defect, docs/reliability.md):
  // it runs on KafkaJS, the default client.
  it.runIf(KAFKA_CLIENT !== 'rdkafka')('the Kafka broker restarted mid-stream: the pipeline reconnects and ends with replay\'s decisions, alerts and conversions', async () => {
    const expected = await replayed(events)
    const broker = new OwnKafka(await freePort(), await freePort())
    await broker.start()
    const client = new Kafka({ clientId: 'cardpulse-fault-test', brokers: [broker.brokers], logLevel: logLevel.NOTHING })
    const ownAdmin = client.admin()
    await ownAdmin.connect()
    const ownProducer = client.producer()
    await ownProducer.connect()
    try {
      const id = uniqueId()
      const topics = freshTopics(`fk-${id}`)
      await createTopics(ownAdmin, Object.values(topics), 3)
      pipeline = await startLive(id, topics, `${receiver.url}/hooks`, { kafkaBrokers: broker.brokers, sourceIdleness: '10m', stateThreads: '2', connectTimeout: '60s' })
      const live = pipeline
      const half = Math.floor(events.length / 2)
      await produce(ownProducer, topics, events.slice(0, half))
      await waitFor('the first half applied', async () => (await counted(live, 'applied')) >= half * 0.9, 60_000, 100)

      await broker.stop()
      await new Promise((r) => setTimeout(r, 3000))
      await broker.start()
      await produce(ownProducer, topics, events.slice(half))
      await endOfInput(ownProducer, topics, lastEventTime)
      await expectSameAsReplay(live, expected, lastEventTime)
      await live.stop()
      pipeline = undefined
    } finally {
      await ownProducer.disconnect()
      await ownAdmin.disconnect()
      await broker.stop()
    }
  }, 300_000)

  it('duplicated events and a producer whose clock runs a day fast: repeats are applied once, the future events dead-lettered, the rest is replay\'s', async () => {
    const expected = await replayed(events)
    const id = uniqueId()
    const topics = freshTopics(`fd-${id}`)
    await createTopics(admin, Object.values(topics), 3)
    pipeline = await startLive(id, topics, `${receiver.url}/hooks`, { sourceIdleness: '10m', stateThreads: '2' })
    const live = pipeline
    // Every tenth event again, a little later in the stream (a producer retrying after a timeout).
    const withRepeats = events.flatMap((e, i) => (i % 10 === 5 ? [e] : i % 10 === 9 ? [e, events[i - 4]] : [e]))
    await produce(producer, topics, withRepeats)
    // A misconfigured till: a day ahead of the clock, and new event ids.
    const fast = events.slice(0, 20).map((e, i) => ({ ...e, eventId: `skewed-${i}`, occurredAt: new Date(Date.now() + 86_400_000).toISOString() }))
    await produce(producer, topics, fast)
    await endOfInput(producer, topics, lastEventTime)
    await expectSameAsReplay(live, expected, lastEventTime)
    expect(await counted(live, 'duplicate')).toBe(withRepeats.length - events.length)
    const db = live.clickhouse.database
    const future = await waitFor('the future events dead-lettered', async () => {
      const rows = await live.clickhouse.query<{ code: string }>(`SELECT code FROM ${db}.dead_letters FINAL WHERE code = 'future_event'`)
      return rows.length >= fast.length && rows
    })
    expect(future).toHaveLength(fast.length)
    await live.stop()
    pipeline = undefined
  }, 300_000)

  it('ClickHouse unreachable for a while: rows wait in the outbox, /healthz and the backlog metric say so, and they land when it is back, each once', async () => {
    const expected = await replayed(events)
    const id = uniqueId()
    const topics = freshTopics(`fc-${id}`)
    await createTopics(admin, Object.values(topics), 3)
    pipeline = await startLive(id, topics, `${receiver.url}/hooks`, { sourceIdleness: '10m', stateThreads: '2' })
    const live = pipeline
    // The writer's client boundary: while `down`, every insert fails as a refused connection does.
    const client = live.clickhouse.client
    const insert = client.insert.bind(client)
    let down = false
    const inserted = new Map<string, number>()
    client.insert = (async (params: Parameters<typeof insert>[0]) => {
      if (down) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8123'), { code: 'ECONNREFUSED' })
      const result = await insert(params)
      if (String(params.table).endsWith('.decisions')) for (const row of params.values as { id: string }[]) inserted.set(row.id, (inserted.get(row.id) ?? 0) + 1)
      return result
    }) as typeof client.insert
    const health = async () => (await fetch(`http://127.0.0.1:${live.port}/healthz`)).json() as Promise<{ clickhouse: boolean }>

    const half = Math.floor(events.length / 2)
    await produce(producer, topics, events.slice(0, half))
    await waitFor('the first half applied', async () => (await counted(live, 'applied')) >= half * 0.9, 60_000, 100)
    down = true
    await produce(producer, topics, events.slice(half))
    await endOfInput(producer, topics, lastEventTime)
    await waitFor('every event applied meanwhile', async () => (await counted(live, 'applied')) >= events.length, 60_000, 200)
    await waitFor('/healthz to say ClickHouse is failing', async () => (await health()).clickhouse === false, 30_000, 200)
    // The rows waiting are in sight: the outbox backlog metric, sampled every few seconds.
    await waitFor('the backlog of rows in /metrics', async () => {
      const text = await (await fetch(`http://127.0.0.1:${live.port}/metrics`)).text()
      return Number(/^cardpulse_outbox_backlog\{table="rows"\} (\d+)$/m.exec(text)?.[1] ?? 0) > 0
    }, 30_000, 500)
    const rowsWhileDown = inserted.size
    await new Promise((r) => setTimeout(r, 3000))
    expect(inserted.size).toBe(rowsWhileDown)
    down = false

    await expectSameAsReplay(live, expected, lastEventTime)
    await waitFor('/healthz to say ClickHouse is back', async () => (await health()).clickhouse, 30_000, 200)
    expect(inserted.size).toBeGreaterThan(rowsWhileDown)
    // A batch that failed part-way (one table written, the next refused) is inserted again whole:
    // its rows collapse on their ids, so the analysts' tables hold each once.
    const db = live.clickhouse.database
    await live.clickhouse.query(`OPTIMIZE TABLE ${db}.decisions FINAL`)
    const [counts] = await live.clickhouse.query<{ rows: string; ids: string }>(`SELECT count() AS rows, uniqExact(id) AS ids FROM ${db}.decisions`)
    expect(Number(counts.rows)).toBe(Number(counts.ids))
    expect(Number(counts.ids)).toBe(inserted.size)
    await live.stop()
    pipeline = undefined
  }, 300_000)

  it('a second process joins mid-stream and later leaves: partitions move with their state, timers and outbox, and the end is replay\'s', async () => {
    const expected = await replayed(events)
    const id = uniqueId()
    const topics = freshTopics(`fg-${id}`)
    await createTopics(admin, Object.values(topics), 3)
    const settings = { sourceIdleness: '10m', stateThreads: '0', sessionTimeout: '6s' }
    pipeline = await startLive(id, topics, `${receiver.url}/hooks`, settings)
    const live = pipeline
    const third = Math.floor(events.length / 3)
    await produce(producer, topics, events.slice(0, third))
    await waitFor('the first third applied', async () => (await counted(live, 'applied')) >= third * 0.9, 60_000, 100)

    // The same group, Redis prefix and ClickHouse database: another process of the same deployment.
    joiner = await startLive(id, topics, `${receiver.url}/hooks`, settings)
    const second = joiner
    await waitFor('the partitions shared', () => live.partitions().length > 0 && second.partitions().length > 0 && live.partitions().length + second.partitions().length === 3, 60_000, 200)
    await produce(producer, topics, events.slice(third, 2 * third))
    await waitFor('the second process applying', async () => (await counted(second, 'applied')) > 0, 60_000, 200)
    await second.stop()
    joiner = undefined
    await waitFor('every partition back with the first', () => live.partitions().length === 3, 60_000, 200)
    await produce(producer, topics, events.slice(2 * third))
    await endOfInput(producer, topics, lastEventTime)
    await expectSameAsReplay(live, expected, lastEventTime)
  }, 300_000)
})
