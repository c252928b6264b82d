import { join } from 'node:path'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Kafka, logLevel, CompressionTypes, type Admin, type EachBatchPayload, type LogEntry } from 'kafkajs'
import type { RunConfig } from './config.ts'
import { webhookEndpoints } from './config.ts'
import { CatalogHolder, DEFAULT_CATALOG_FILE } from './catalog/index.ts'
import { decode } from './decode.ts'
import { PartitionProcessor, type StreamMessage } from './processor.ts'
import { RedisStore } from './store/redis.ts'
import { FencedError } from './store/types.ts'
import { createMetrics } from './metrics.ts'
import { countBatch, countDeadLetter } from './observe.ts'
import { startHttp } from './http.ts'
import type { Logger } from './log.ts'
import type { EventType } from '../schemas/events.ts'
import type { DeadLetter } from '../schemas/deadLetter.ts'
import { ClickHouseSink, connectClickHouse } from '../sinks/clickhouse.ts'
import { drainRows } from '../sinks/outbox.ts'
import { WebhookDispatcher, WebhookSender } from '../sinks/webhook.ts'
import { DEFAULT_RETRY_POLICY } from '../sinks/retry.ts'

/**
 * `cardpulse run`: the live pipeline.
 *
 *  input topics ─► ingest (decode, validate) ─► cardpulse.events (keyed by customer) ─► state stage
 *                      └─ bad ─► cardpulse.dlq                                          (operators,
 *  decisions, timers, state, applied offset and outbox committed to Redis in one step    decisions)
 *  outbox ─► signed webhooks · alert topic · ClickHouse
 *
 * The ingest hop re-keys every event by customerId, so input keyed otherwise (or not at all) is
 * still processed per customer, and one partition of the internal topic carries all three
 * streams of its customers in order.
 */

export interface RunningPipeline {
  port: number
  clickhouse: ClickHouseSink
  store: RedisStore
  metrics: ReturnType<typeof createMetrics>
  stop(): Promise<void>
}

/** An error whose message is the whole story for the person running the command. */
export class StartupError extends Error {
  readonly oneLine = true
}

export async function startPipeline(config: RunConfig, log: Logger): Promise<RunningPipeline> {
  const metrics = createMetrics()
  const catalog = new CatalogHolder(config.catalogFile ?? DEFAULT_CATALOG_FILE, (r) =>
    r.ok ? log.info({ version: r.version }, 'catalog.reloaded') : log.error({ error: r.error }, 'catalog.rejected: the previous catalogue stays in force'),
  )
  catalog.watch()

  const store = await RedisStore.connect(config.redisUrl, {
    prefix: config.redisPrefix,
    readyTimeoutMs: config.connectTimeout,
    onError: (err) => log.warn({ err: err.message }, 'redis.error'),
  })
  const kafka = new Kafka({
    clientId: 'cardpulse',
    brokers: config.kafkaBrokers,
    connectionTimeout: 3000,
    retry: { initialRetryTime: 300, maxRetryTime: 2000, retries: Math.max(3, Math.ceil(config.connectTimeout / 2000)) },
    logLevel: logLevel.WARN,
    logCreator: () => (entry: LogEntry) => kafkaLog(log, entry),
  })
  const admin = kafka.admin()
  try {
    await admin.connect()
    await ensureTopics(admin, config)
  } catch (e) {
    await admin.disconnect().catch(() => {})
    await store.close()
    throw new StartupError(`cannot reach Kafka at ${config.kafkaBrokers.join(',')} (${(e as Error).message}): start Kafka or set KAFKA_BROKERS`)
  }
  await admin.disconnect()

  let clickhouse: ClickHouseSink
  try {
    clickhouse = new ClickHouseSink(
      await connectClickHouse({ url: config.clickhouseUrl, database: config.clickhouseDatabase, embeddedPath: join(config.dataDir, 'clickhouse') }),
      config.clickhouseDatabase,
    )
    await clickhouse.ensureSchema()
  } catch (e) {
    await store.close()
    throw new StartupError((e as Error).message)
  }

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false })
  await producer.connect()

  // ——— ingest: decode and validate, re-key by customer ———
  const topicTypes = new Map<string, EventType>([
    [config.transactionsTopic, 'transaction'],
    [config.appEventsTopic, 'app'],
    [config.lifecycleTopic, 'lifecycle'],
  ])
  const ingest = kafka.consumer({ groupId: `${config.groupId}-ingest`, allowAutoTopicCreation: false, maxBytesPerPartition: 1 << 20, sessionTimeout: config.sessionTimeout })
  await ingest.connect()
  await ingest.subscribe({ topics: [...topicTypes.keys()], fromBeginning: true })
  await ingest.run({
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale }: EachBatchPayload) => {
      if (!isRunning() || isStale()) return
      const expected = topicTypes.get(batch.topic)
      const events: { key: string; value: string }[] = []
      const deadLetters: DeadLetter[] = []
      for (const m of batch.messages) {
        const source = { topic: batch.topic, partition: batch.partition, offset: m.offset }
        const decoded = decode(m.value ?? Buffer.alloc(0), source, expected)
        if (decoded.ok) {
          metrics.events.inc({ type: decoded.event.type, result: 'valid' })
          events.push({ key: decoded.event.customerId, value: JSON.stringify({ event: decoded.event, source }) })
        } else {
          countDeadLetter(metrics, decoded.deadLetter)
          deadLetters.push(decoded.deadLetter)
          // Its ClickHouse row travels with the state stage's outbox, like every other row.
          events.push({ key: `${batch.topic}:${batch.partition}`, value: JSON.stringify({ deadLetter: decoded.deadLetter }) })
        }
      }
      await producer.sendBatch({
        acks: -1,
        compression: CompressionTypes.None,
        topicMessages: [
          { topic: config.eventsTopic, messages: events },
          { topic: config.dlqTopic, messages: deadLetters.map((q) => ({ key: `${q.source.topic}:${q.source.partition}:${q.source.offset}`, value: JSON.stringify(q) })) },
        ].filter((t) => t.messages.length),
      })
      resolveOffset(batch.lastOffset())
      await commitOffsetsIfNecessary()
      await heartbeat()
    },
  })

  // ——— state stage: operators, decisions, atomic commit to Redis ———
  const processors = new Map<number, PartitionProcessor>()
  const locks = new Map<number, Promise<unknown>>()
  const lastActivity = new Map<number, number>()
  /** Whether the partition's last batch reached the end of the topic (no consumer lag). */
  const caughtUp = new Map<number, boolean>()
  let owned: number[] = []
  const processorFor = (partition: number) => {
    let p = processors.get(partition)
    if (!p) {
      p = new PartitionProcessor({
        partition,
        store,
        catalog: catalog.current,
        allowedLateness: config.allowedLateness,
        mode: 'run',
        outbox: { webhooks: true, alerts: true, rows: true },
      })
      processors.set(partition, p)
    }
    return p
  }
  /** Batches and idle advances of one partition never overlap. */
  const withPartition = <T>(partition: number, fn: () => Promise<T>): Promise<T> => {
    const run = (locks.get(partition) ?? Promise.resolve()).catch(() => {}).then(fn)
    locks.set(partition, run)
    return run
  }
  const afterCommit = async (out: Awaited<ReturnType<PartitionProcessor['process']>>) => {
    countBatch(metrics, out)
    const late = out.deadLetters.filter((q) => q.error.code === 'late_event')
    if (late.length)
      await producer.send({ topic: config.dlqTopic, acks: -1, messages: late.map((q) => ({ key: `${q.source.topic}:${q.source.partition}:${q.source.offset}`, value: JSON.stringify(q) })) })
  }
  const onFenced = (partition: number, e: unknown) => {
    if (!(e instanceof FencedError)) throw e
    log.warn({ partition, err: e.message }, 'partition.fenced')
    processors.get(partition)?.reset()
  }

  const state = kafka.consumer({ groupId: config.groupId, allowAutoTopicCreation: false, maxBytesPerPartition: 1 << 20, sessionTimeout: config.sessionTimeout })
  state.on(state.events.GROUP_JOIN, (e) => {
    owned = (e.payload.memberAssignment[config.eventsTopic] ?? []).slice().sort((a, b) => a - b)
    // State may have moved while another consumer owned a partition: reload it from Redis.
    for (const p of processors.values()) p.reset()
    // A partition with no batch since the assignment counts as idle once IDLE_ADVANCE has passed.
    for (const partition of owned) {
      lastActivity.set(partition, Date.now())
      caughtUp.set(partition, true)
    }
    log.info({ partitions: owned }, 'pipeline.assigned')
  })
  await state.connect()
  await state.subscribe({ topic: config.eventsTopic, fromBeginning: true })
  await state.run({
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale }: EachBatchPayload) => {
      if (!isRunning() || isStale() || !batch.messages.length) return
      const messages: StreamMessage[] = batch.messages.map((m) => {
        const value = JSON.parse(m.value!.toString('utf8'))
        return value.event
          ? { offset: m.offset, event: value.event, at: Date.parse(value.event.occurredAt), source: value.source }
          : { offset: m.offset, deadLetter: value.deadLetter }
      })
      const end = metrics.batchSeconds.startTimer()
      await withPartition(batch.partition, async () => {
        try {
          await afterCommit(await processorFor(batch.partition).process(messages))
        } catch (e) {
          onFenced(batch.partition, e)
        }
      })
      end()
      lastActivity.set(batch.partition, Date.now())
      caughtUp.set(batch.partition, batch.offsetLag() === '0')
      metrics.watermarkLag.set({ partition: String(batch.partition) }, (Date.now() - processorFor(batch.partition).watermark) / 1000)
      resolveOffset(batch.lastOffset())
      await commitOffsetsIfNecessary()
      await heartbeat()
    },
  })

  // An idle partition's event time follows the wall clock, so timers still fire. Only a partition
  // that has caught up counts as idle: one still working through a backlog keeps its own clock.
  const idleTicker = setInterval(() => {
    const now = Date.now()
    for (const partition of owned) {
      if (now - (lastActivity.get(partition) ?? 0) < config.idleAdvance || caughtUp.get(partition) === false) continue
      lastActivity.set(partition, now)
      withPartition(partition, async () => {
        try {
          await afterCommit(await processorFor(partition).advanceTo(now - config.allowedLateness))
        } catch (e) {
          onFenced(partition, e)
        }
      }).catch((e) => log.warn({ partition, err: (e as Error).message }, 'partition.advance_failed'))
    }
  }, 500)

  // ——— sinks: webhooks, alerts, ClickHouse, all from the committed outbox ———
  const sender = new WebhookSender({ urls: webhookEndpoints(config), secret: config.webhookSecret, timeoutMs: config.webhookTimeout })
  const dispatcher = new WebhookDispatcher({
    store,
    sender,
    partitions: () => owned,
    clock: Date.now,
    retry: DEFAULT_RETRY_POLICY,
    batchSize: 200,
    concurrency: 32,
    logger: log,
    metrics: metrics.webhooks,
  })
  dispatcher.start(250)
  let sinksBusy = false
  let clickhouseHealthy = true
  const sinkTicker = setInterval(async () => {
    if (sinksBusy) return
    sinksBusy = true
    try {
      for (const partition of owned) {
        for (;;) {
          const alerts = await store.peekAlerts(partition, 500)
          if (!alerts.length) break
          await producer.send({ topic: config.alertTopic, acks: -1, messages: alerts.map((a) => ({ key: a.customerId, value: JSON.stringify(a) })) })
          await store.ackAlerts(partition, alerts.length)
        }
      }
      await drainRows(store, owned, clickhouse, { onRows: (table, n) => metrics.outboxRows.inc({ table }, n) })
      if (!clickhouseHealthy) log.info('clickhouse.recovered')
      clickhouseHealthy = true
    } catch (e) {
      // Rows and alerts stay in the outbox and go out on a later tick.
      if (clickhouseHealthy) log.warn({ err: (e as Error).message }, 'sink.failed: will retry')
      clickhouseHealthy = false
    } finally {
      sinksBusy = false
    }
  }, 500)

  let consuming = true
  let server: Server
  try {
    server = await startHttp({
      port: config.httpPort,
      metrics,
      log,
      clickhouse: () => clickhouse,
      health: () => ({ ok: consuming, partitions: owned, clickhouse: clickhouseHealthy }),
      info: () => ({ mode: 'run', catalogVersion: catalog.current().version, status: `partitions ${owned.join(',') || 'none yet'}` }),
      reloadCatalog: () => catalog.reload(),
    })
  } catch (e) {
    throw new StartupError((e as Error).message)
  }
  const port = (server.address() as AddressInfo).port
  log.info({ brokers: config.kafkaBrokers, port, catalog: catalog.current().version }, `cardpulse running; dashboard and /metrics on port ${port}`)

  return {
    port,
    clickhouse,
    store,
    metrics,
    async stop() {
      consuming = false
      clearInterval(idleTicker)
      clearInterval(sinkTicker)
      await ingest.disconnect()
      await state.disconnect()
      await Promise.all([...locks.values()].map((l) => l.catch(() => {})))
      await dispatcher.stop()
      await drainRows(store, owned, clickhouse).catch(() => {})
      await producer.disconnect()
      await sender.close()
      catalog.close()
      await new Promise((r) => server.close(r))
      await store.close()
      await clickhouse.close()
    },
  }
}

/** The CLI entry: runs until SIGINT/SIGTERM, then stops cleanly. */
export async function runPipeline(config: RunConfig, log: Logger) {
  const running = await startPipeline(config, log)
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  log.info('stopping')
  await running.stop()
}

async function ensureTopics(admin: Admin, c: RunConfig) {
  const existing = new Set(await admin.listTopics())
  const wanted = [c.transactionsTopic, c.appEventsTopic, c.lifecycleTopic, c.eventsTopic, c.dlqTopic, c.alertTopic]
  const missing = [...new Set(wanted)].filter((t) => !existing.has(t))
  if (missing.length) await admin.createTopics({ waitForLeaders: true, topics: missing.map((topic) => ({ topic, numPartitions: c.partitions })) })
}

function kafkaLog(log: Logger, { level, log: entry }: LogEntry) {
  const { message, ...rest } = entry
  const fields = { kafka: rest.logger ?? 'kafkajs', err: (rest as { error?: string }).error }
  if (level <= logLevel.ERROR) log.error(fields, `kafka: ${message}`)
  else if (level === logLevel.WARN) log.warn(fields, `kafka: ${message}`)
}
