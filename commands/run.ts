import { join } from 'node:path'
import { Gauge } from 'prom-client'
import { kafkaSecurity, type RunConfig } from './config.ts'
import { httpSettings, openClickHouse, outboxDelivery, serveHttp, shutDownInOrder, stopSignal, watchedCatalog, watchedShadowCatalog, type HttpServer } from './wiring.ts'
import { connectAdmin, createKafkaClient } from '../pipeline/kafka/client.ts'
import type { KafkaAdmin, KafkaProducer } from '../pipeline/kafka/types.ts'
import { IngestStage } from '../pipeline/kafka/ingest.ts'
import { StateStage } from '../pipeline/kafka/stateStage.ts'
import { StateThreads } from '../pipeline/kafka/stateThreads.ts'
import { outboxUrgent } from '../pipeline/stream.ts'
import { alertPublisher, deadLetterPublisher } from '../pipeline/kafka/publish.ts'
import { RedisStore, type RoundTrips } from '../pipeline/store/redis.ts'
import type { ClickHouseSink } from '../sinks/clickhouse.ts'
import { explainCustomer, liveSource } from '../pipeline/explainSources.ts'
import type { OutboxDrain } from '../sinks/outbox.ts'
import type { DeliveryMonitor } from '../sinks/monitor.ts'
import type { WebhookSender } from '../sinks/webhook/sender.ts'
import { createMetrics, type Metrics } from '../core/metrics.ts'
import { errText, Instrumentation } from '../core/instrumentation.ts'
import type { Logger } from '../core/log.ts'

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
  metrics: Metrics
  /** The pipeline's instrumentation events, for a caller that watches them (the latency benchmark). */
  events: Instrumentation
  /** The partitions of the events topic whose state this process steps now. */
  partitions(): number[]
  /** The state stage's Redis round trips so far, on every thread. */
  stateRoundTrips(): RoundTrips
  /** Rejects if a part of the pipeline stops on its own (a state thread that died): `run` then shuts down. */
  failed: Promise<never>
  stop(): Promise<void>
}

/** What `stop` shuts down: each part is recorded as soon as it exists, so a failed start closes what it opened. */
interface Parts {
  store: RedisStore
  admin: KafkaAdmin
  clickhouse: ClickHouseSink
  producer: KafkaProducer
  ingest: IngestStage
  state: StateStage | StateThreads
  delivery: { drain: OutboxDrain; sender: WebhookSender; monitor: DeliveryMonitor }
  http: HttpServer
}

export async function startPipeline(config: RunConfig, log: Logger): Promise<RunningPipeline> {
  const httpAt = httpSettings(config)
  const kafkaSecurityAt = kafkaSecurity(config)
  const metrics = createMetrics()
  const events = new Instrumentation(log, metrics)
  const p: Partial<Parts> = {}
  const catalog = watchedCatalog(config.catalogFile, events.child({ component: 'catalog' }), (c) => p.state instanceof StateThreads && p.state.setCatalog(c))
  const shadowCatalog = watchedShadowCatalog(config.shadowCatalog, events.child({ component: 'shadow-catalog' }), (c) => p.state instanceof StateThreads && p.state.setShadowCatalog(c))
  let fail: (e: Error) => void = () => {}
  const failed = new Promise<never>((_, reject) => (fail = reject))
  failed.catch(() => {})
  let consuming = true
  // Input stops first, then the state stage commits what it has, then the outbox drains it once more.
  const stop = async () => {
    consuming = false
    await shutDownInOrder(events, [
      ['ingest', () => p.ingest?.stop()],
      ['state stage', () => p.state?.stop()],
      ['outbox drain', () => p.delivery?.drain.stop()],
      ['outbox monitor', () => p.delivery?.monitor.stop()],
      ['kafka producer', () => p.producer?.close()],
      ['kafka admin', () => p.admin?.close()],
      ['webhook sender', () => p.delivery?.sender.close()],
      ['catalog', () => catalog.close()],
      ['shadow catalogue', () => shadowCatalog.close()],
      ['http', () => p.http?.close()],
      ['redis', () => p.store?.close()],
      ['clickhouse', () => p.clickhouse?.close()],
    ])
  }

  try {
    const brokers = config.kafkaBrokers
    // First, so that a client that is not installed is said before anything connects.
    const kafka = createKafkaClient({ kind: config.kafkaClient, clientId: 'cardpulse', brokers, security: kafkaSecurityAt, connectTimeoutMs: config.connectTimeout, instrumentation: events.child({ component: 'kafka' }) })
    const store = (p.store = await RedisStore.connect(config.redisUrl, {
      prefix: config.redisPrefix,
      readyTimeoutMs: config.connectTimeout,
      onError: (err) => events.emit('redis.error', { err: errText(err) }),
      onReconnected: (ms) => events.emit('redis.reconnected', { downSeconds: Math.round(ms / 100) / 10 }),
    }))
    const topics = [config.transactionsTopic, config.appEventsTopic, config.lifecycleTopic, config.eventsTopic, config.dlqTopic, config.alertTopic]
    const admin = (p.admin = await connectAdmin(kafka, topics, config.partitions))
    const clickhouse = (p.clickhouse = await openClickHouse({ url: config.clickhouseUrl, database: config.clickhouseDatabase, embeddedPath: join(config.dataDir, 'clickhouse'), pseudonymiseKey: config.clickhousePseudonymiseKey }))
    const producer = (p.producer = await kafka.producer({ idempotent: true, allowAutoTopicCreation: false }))

    const stageOptions = { kafka, admin, sessionTimeout: config.sessionTimeout }
    const ingest = (p.ingest = new IngestStage({
      ...stageOptions,
      producer,
      topics: config,
      groupId: `${config.groupId}-ingest`,
      maxDisorder: config.maxDisorder,
      sourceIdleness: config.sourceIdleness,
      maxClockSkew: config.maxClockSkew,
      instrumentation: events.child({ component: 'ingest' }),
    }))
    await ingest.start()
    // node-rdkafka's native module loads on the main thread only: on librdkafka the state stage stays there.
    const stateThreads = config.kafkaClient === 'rdkafka' ? 0 : config.stateThreads
    const stage = {
      cachedCustomers: Math.floor(config.stateCacheCustomers / Math.max(1, stateThreads)),
      groupId: config.groupId,
      eventsTopic: config.eventsTopic,
      sessionTimeout: config.sessionTimeout,
      inputTopics: [config.transactionsTopic, config.appEventsTopic, config.lifecycleTopic],
      allowedLateness: config.allowedLateness,
      idleAdvance: config.idleAdvance,
    }
    // What a commit put in the outbox for a receiver or the broker goes now, not at the drain's next tick.
    const nudge = () => p.delivery?.drain.nudge()
    const state = (p.state =
      stateThreads > 0
        ? new StateThreads({
            threads: stateThreads,
            kafkaClient: config.kafkaClient,
            brokers,
            kafkaSecurity: kafkaSecurityAt,
            redisUrl: config.redisUrl,
            redisPrefix: config.redisPrefix,
            connectTimeout: config.connectTimeout,
            catalog: catalog.current(),
            shadowCatalog: shadowCatalog.current(),
            stage,
            instrumentation: events.child({ component: 'state' }),
            onOutbox: nudge,
            onFailed: (e) => fail(e),
          })
        : new StateStage({
            ...stage,
            kafka,
            admin,
            store,
            catalog: catalog.current,
            shadowCatalog: shadowCatalog.current,
            instrumentation: events.child({ component: 'state' }),
            onCommitted: (_, out) => outboxUrgent(out) && nudge(),
          }))
    await state.start()
    if (state instanceof StateThreads) watchThreadHeaps(metrics, state)

    // Alerts and late events' dead letters leave the outbox only once the broker has them.
    const { drain, monitor } = (p.delivery = outboxDelivery({
      config,
      store,
      clickhouse,
      partitions: () => state.owned(),
      clock: Date.now,
      batchSize: 200,
      concurrency: 32,
      delivery: () => catalog.current().delivery,
      publishAlerts: alertPublisher(producer, config.alertTopic),
      publishDeadLetters: deadLetterPublisher(producer, config.dlqTopic),
      events: events.child({ component: 'outbox' }),
    }))
    drain.start()
    monitor.start()

    const http = (p.http = await serveHttp({
      ...httpAt,
      metrics,
      events: events.child({ component: 'http' }),
      clickhouse: () => clickhouse,
      health: () => ({ ok: consuming, partitions: state.owned(), ...drain.health(), degraded: monitor.degraded() }),
      info: () => ({ mode: 'run', catalogVersion: catalog.current().version, status: `partitions ${state.owned().join(',') || 'none yet'}` }),
      reloadCatalog: () => catalog.reload(),
      economics: () => catalog.current().economics,
      explain: (request) => explainCustomer(liveSource({ redis: store.redis, redisUrl: config.redisUrl, prefix: config.redisPrefix, clickhouse }), { ...request, catalog: catalog.current() }),
    }))
    log.info({ brokers, kafkaClient: kafka.kind, port: http.port, catalog: catalog.current().version }, `cardpulse running; dashboard and /metrics on port ${http.port}`)
    const stateRoundTrips = () => (state instanceof StateThreads ? state.roundTrips() : store.roundTrips)
    return { port: http.port, clickhouse, store, metrics, events, partitions: () => state.owned(), stateRoundTrips, failed, stop }
  } catch (e) {
    await stop().catch(() => {})
    throw e
  }
}

/** Each state thread's heap on /metrics: the customers a thread caches live in its own heap, outside the process's heap figures. */
function watchThreadHeaps(metrics: Metrics, threads: StateThreads) {
  new Gauge({
    name: 'cardpulse_state_thread_heap_bytes',
    help: "V8 heap of each state thread at its last commit, in use and committed (the process's nodejs_heap metrics cover the main thread only)",
    labelNames: ['thread', 'kind'],
    registers: [metrics.registry],
    collect() {
      threads.heaps().forEach((heap, thread) => {
        this.set({ thread: String(thread), kind: 'used' }, heap.used)
        this.set({ thread: String(thread), kind: 'committed' }, heap.committed)
      })
    },
  })
}

/** The CLI entry: runs until SIGINT/SIGTERM, then stops cleanly. */
export async function runPipeline(config: RunConfig, log: Logger) {
  const running = await startPipeline(config, log)
  const failure = await Promise.race([stopSignal().then(() => undefined), running.failed.catch((e: Error) => e)])
  log.info('stopping')
  await running.stop()
  if (failure) throw failure
}
