import { join } from 'node:path'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Kafka, logLevel, CompressionTypes, type Admin, type EachBatchPayload, type LogEntry } from 'kafkajs'
import type { RunConfig } from './config.ts'
import { webhookEndpoints } from './config.ts'
import { CatalogHolder, DEFAULT_CATALOG_FILE } from './catalog/index.ts'
import { decode, type Decoded, type SourceCoordinates } from './decode.ts'
import { PartitionProcessor, type StreamMessage } from './processor.ts'
import { InputAlignment, type Released } from './alignment.ts'
import { RedisStore } from './store/redis.ts'
import { FencedError } from './store/types.ts'
import { createMetrics } from './metrics.ts'
import { countBatch, countDeadLetter } from './observe.ts'
import { startHttp } from './http.ts'
import type { Logger } from './log.ts'
import type { EventType } from '../schemas/events.ts'
import type { DeadLetter } from '../schemas/deadLetter.ts'
import { ClickHouseSink, connectClickHouse } from '../sinks/clickhouse.ts'
import { drainOutbox, drainRows } from '../sinks/outbox.ts'
import { outboxQueues } from './store/outbox.ts'
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

  let clickhouse: ClickHouseSink
  try {
    clickhouse = new ClickHouseSink(
      await connectClickHouse({ url: config.clickhouseUrl, database: config.clickhouseDatabase, embeddedPath: join(config.dataDir, 'clickhouse') }),
      config.clickhouseDatabase,
    )
    await clickhouse.ensureSchema()
  } catch (e) {
    await admin.disconnect()
    await store.close()
    throw new StartupError((e as Error).message)
  }

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false })
  await producer.connect()

  // ——— ingest: decode and validate, re-key by customer, align the streams in event time ———
  const topicTypes = new Map<string, EventType>([
    [config.transactionsTopic, 'transaction'],
    [config.appEventsTopic, 'app'],
    [config.lifecycleTopic, 'lifecycle'],
  ])
  const ingestGroup = `${config.groupId}-ingest`
  // Offsets are committed as events are forwarded, not as they are fetched: a fetched batch may
  // wait in the alignment, and what waits must be fetched again after a crash.
  const ingest = kafka.consumer({ groupId: ingestGroup, allowAutoTopicCreation: false, maxBytesPerPartition: 1 << 20, sessionTimeout: config.sessionTimeout })
  // Half the allowed lateness for streams running apart, half for disorder within a stream.
  const alignment = new InputAlignment<{ source: SourceCoordinates; decoded: Decoded }>(config.allowedLateness / 2)
  const topicPartition = (key: string) => ({ topic: key.slice(0, key.lastIndexOf('|')), partitions: [Number(key.slice(key.lastIndexOf('|') + 1))] })
  /** Forwarding is one step at a time: batches, the grace ticker and rebalances take turns. */
  let forwarding: Promise<unknown> = Promise.resolve()
  const inTurn = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = forwarding.catch(() => {}).then(fn)
    forwarding = next
    return next
  }
  /**
   * Sends what the alignment releases, commits the input offsets it covers, and fetches again the
   * partitions it emptied. What fails to go stays held and goes on a later batch or tick.
   */
  const forward = async () => {
    const released = alignment.release()
    if (!released.length) return
    try {
      await publish(released)
    } catch (e) {
      alignment.restore(released)
      log.warn({ err: (e as Error).message }, 'ingest.forward_failed: will retry')
      return
    }
    metrics.ingestHeld.set(alignment.heldCount())
    const emptied = [...new Set(released.map((r) => r.key))].filter((key) => !alignment.holding(key))
    if (emptied.length) ingest.resume(emptied.map(topicPartition))
  }
  /**
   * Re-publishes released input to the internal topic (bad input to the dead-letter topic too), in
   * requests well under Kafka's default 1 MiB message limit, then commits the input offsets it covers.
   */
  const publish = async (released: Released<{ source: SourceCoordinates; decoded: Decoded }>[]) => {
    let events: { key: string; value: string }[] = []
    let deadLetters: { key: string; value: string }[] = []
    let bytes = 0
    const send = async () => {
      const topicMessages = [
        { topic: config.eventsTopic, messages: events },
        { topic: config.dlqTopic, messages: deadLetters },
      ].filter((t) => t.messages.length)
      if (topicMessages.length) await producer.sendBatch({ acks: -1, compression: CompressionTypes.None, topicMessages })
      events = []
      deadLetters = []
      bytes = 0
    }
    const offsets = new Map<string, string>()
    for (const { key, item } of released) {
      const { source, decoded } = item
      offsets.set(key, source.offset)
      if (decoded.ok) {
        events.push({ key: decoded.event.customerId, value: JSON.stringify({ event: decoded.event, source }) })
      } else {
        const q = decoded.deadLetter
        deadLetters.push({ key: `${q.source.topic}:${q.source.partition}:${q.source.offset}`, value: JSON.stringify(q) })
        // Its ClickHouse row travels with the state stage's outbox, like every other row.
        events.push({ key: `${source.topic}:${source.partition}`, value: JSON.stringify({ deadLetter: q }) })
        bytes += deadLetters[deadLetters.length - 1].value.length
      }
      bytes += events[events.length - 1].value.length
      if (bytes >= PUBLISH_BYTES) await send()
    }
    await send()
    await ingest.commitOffsets(
      [...offsets].map(([key, offset]) => {
        const { topic, partitions } = topicPartition(key)
        return { topic, partition: partitions[0], offset: String(BigInt(offset) + 1n) }
      }),
    )
    for (const { item } of released) {
      if (item.decoded.ok) metrics.events.inc({ type: item.decoded.event.type, result: 'valid' })
      else countDeadLetter(metrics, item.decoded.deadLetter)
    }
  }
  ingest.on(ingest.events.GROUP_JOIN, (e) => {
    const assignment = e.payload.memberAssignment as Record<string, number[]>
    void inTurn(async () => {
      // What was held is fetched again from the committed offsets: start with nothing paused.
      ingest.resume(Object.entries(assignment).map(([topic, partitions]) => ({ topic, partitions })))
      const committed = new Map<string, bigint>(
        (await admin.fetchOffsets({ groupId: ingestGroup, topics: Object.keys(assignment) })).flatMap(({ topic, partitions }) =>
          partitions.map((p) => [`${topic}|${p.partition}`, BigInt(p.offset)] as const),
        ),
      )
      const positions: { key: string; backlog: boolean }[] = []
      for (const [topic, partitions] of Object.entries(assignment)) {
        const ends = await admin.fetchTopicOffsets(topic)
        for (const partition of partitions) {
          const key = `${topic}|${partition}`
          const end = ends.find((o) => o.partition === partition)
          const from = committed.get(key) ?? -1n
          positions.push({ key, backlog: end !== undefined && BigInt(end.high) > (from < 0n ? BigInt(end.low) : from) })
        }
      }
      alignment.assign(positions)
    }).catch((err) => {
      // Without the backlog figures, every partition counts as having one until its first batch.
      alignment.assign([])
      log.warn({ err: (err as Error).message }, 'ingest.backlog_unknown')
    })
  })
  await ingest.connect()
  await ingest.subscribe({ topics: [...topicTypes.keys()], fromBeginning: true })
  await ingest.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale, pause }: EachBatchPayload) => {
      if (!isRunning() || isStale()) return
      const expected = topicTypes.get(batch.topic)
      const held = batch.messages.map((m) => {
        const source = { topic: batch.topic, partition: batch.partition, offset: m.offset }
        const decoded = decode(m.value ?? Buffer.alloc(0), source, expected)
        return { at: decoded.ok ? Date.parse(decoded.event.occurredAt) : undefined, item: { source, decoded } }
      })
      const key = `${batch.topic}|${batch.partition}`
      await inTurn(async () => {
        alignment.add(key, held, BigInt(batch.lastOffset()) + 1n >= BigInt(batch.highWatermark))
        metrics.ingestHeld.set(alignment.heldCount())
        // Fetching goes on from after this batch, once all of it has gone.
        resolveOffset(batch.lastOffset())
        await forward()
        if (alignment.holding(key)) pause()
      })
      await heartbeat()
    },
  })
  // A partition that never sends its first batch stops holding the others after a grace period.
  const alignmentTicker = setInterval(() => void inTurn(forward).catch((err) => log.error({ err }, 'ingest.forward_failed')), 1000)

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
        decisionTime: () => Date.now(),
        receivedAt: Date.now,
        outbox: { webhooks: true, alerts: true, rows: true, deadLetters: true },
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
  // Bad input passed through from ingest was published and counted there; late events are the
  // state stage's own dead letters, committed to the outbox with their batch and drained below.
  const afterCommit = async (out: Awaited<ReturnType<PartitionProcessor['process']>>) => {
    countBatch(metrics, out)
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
  // that has caught up counts as idle, and only while the input has no backlog either: one still
  // working through a backlog keeps its own clock.
  const idleTicker = setInterval(() => {
    const now = Date.now()
    for (const partition of owned) {
      if (now - (lastActivity.get(partition) ?? 0) < config.idleAdvance || caughtUp.get(partition) === false || !alignment.caughtUp()) continue
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
  // Alerts and late-event dead letters leave the outbox only once the broker has them: a crash in
  // between publishes them again, under the same alert id and dead-letter id.
  const queues = outboxQueues(store)
  const drainToKafka = async (partitions: number[]) => {
    await drainOutbox(
      queues.alerts,
      partitions,
      async (alerts) => void (await producer.send({ topic: config.alertTopic, acks: -1, messages: alerts.map((a) => ({ key: a.customerId, value: JSON.stringify(a) })) })),
      500,
    )
    await drainOutbox(
      queues.deadLetters,
      partitions,
      async (late) =>
        void (await producer.send({
          topic: config.dlqTopic,
          acks: -1,
          messages: late.map((q) => ({ key: `${q.source.topic}:${q.source.partition}:${q.source.offset}`, value: JSON.stringify(q) })),
        })),
      500,
    )
  }
  const sinkTicker = setInterval(async () => {
    if (sinksBusy) return
    sinksBusy = true
    try {
      await drainToKafka(owned)
      await drainRows(queues.rows, owned, clickhouse, { onRows: (table, n) => metrics.outboxRows.inc({ table }, n) })
      if (!clickhouseHealthy) log.info('clickhouse.recovered')
      clickhouseHealthy = true
    } catch (e) {
      // Rows, alerts and dead letters stay in the outbox and go out on a later tick.
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
      economics: () => catalog.current().economics,
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
      clearInterval(alignmentTicker)
      clearInterval(sinkTicker)
      await ingest.disconnect()
      await state.disconnect()
      await Promise.all([...locks.values()].map((l) => l.catch(() => {})))
      await dispatcher.stop()
      await drainToKafka(owned).catch(() => {})
      await drainRows(queues.rows, owned, clickhouse).catch(() => {})
      await producer.disconnect()
      await admin.disconnect()
      await sender.close()
      catalog.close()
      // A dashboard left open in a browser keeps connections alive; they must not hold up a shutdown.
      const closed = new Promise((r) => server.close(r))
      server.closeAllConnections()
      await closed
      await store.close()
      await clickhouse.close()
    },
  }
}

/** Bytes of re-published events per produce request: a quarter of Kafka's default message size limit. */
const PUBLISH_BYTES = 256 * 1024

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
