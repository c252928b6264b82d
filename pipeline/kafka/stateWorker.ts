import { parentPort, workerData } from 'node:worker_threads'
import { getHeapStatistics } from 'node:v8'
import { pino } from 'pino'
import { createKafkaClient } from './client.ts'
import type { KafkaAdmin } from './types.ts'
import { StateStage } from './stateStage.ts'
import { RedisStore } from '../store/redis.ts'
import { outboxUrgent } from '../stream.ts'
import type { Catalog } from '../../schemas/catalog.ts'
import { errText, Instrumentation, type EventName, type InstrumentationEvents } from '../../core/instrumentation.ts'
import type { StateThreadMessage, StateThreadOptions } from './stateThreadMessages.ts'

/**
 * One thread of the state stage (pipeline/kafka/stateThreads.ts): a member of the state stage's
 * consumer group with its own Kafka client and Redis connection, so the partitions it is assigned
 * are stepped on this thread's core. Its instrumentation events go to the main thread, which logs
 * and counts them with everything else.
 */

const options = workerData as StateThreadOptions
const port = parentPort!
const post = (m: StateThreadMessage) => port.postMessage(m)

/** Emits to the main thread instead of logging here. */
class Relayed extends Instrumentation {
  override emit<K extends EventName>(name: K, event: InstrumentationEvents[K]): void {
    post({ type: 'event', name, event: name === 'pipeline.batch_end' ? countedOnly(event as InstrumentationEvents['pipeline.batch_end']) : event })
  }
  override child(): Instrumentation {
    return this
  }
}

/** A batch's output holds whole decisions and alerts; the main thread needs what it counts. */
function countedOnly(e: InstrumentationEvents['pipeline.batch_end']): InstrumentationEvents['pipeline.batch_end'] {
  return {
    partition: e.partition,
    applied: e.applied,
    duplicates: e.duplicates,
    late: e.late,
    lateness: e.lateness,
    timersFired: e.timersFired,
    seconds: e.seconds,
    decisions: e.decisions.map(({ trigger, outcome, suppressedBy, customerId, eventTime }) => ({ trigger, outcome, suppressedBy, customerId, eventTime })),
    alerts: e.alerts.map(({ kind, severity }) => ({ kind, severity })),
    deadLetters: e.deadLetters.map(({ error }) => ({ error: { code: error.code } })),
    cancelled: e.cancelled?.map(({ channel, reason }) => ({ channel, reason })),
    shadowDecisions: e.shadowDecisions?.map(({ trigger, outcome, suppressedBy }) => ({ trigger, outcome, suppressedBy })),
  }
}

/** This thread's own heap: the customers it caches live here, not in the main thread's. */
function ownHeap() {
  const h = getHeapStatistics()
  return { used: h.used_heap_size, committed: h.total_heap_size }
}

const events = new Relayed(pino({ level: 'silent' }))
let catalog: Catalog = options.catalog
let shadowCatalog: Catalog | undefined = options.shadowCatalog
let stage: StateStage | undefined
let store: RedisStore | undefined
let admin: KafkaAdmin | undefined

port.on('message', (m: { type: 'catalog' | 'shadowCatalog'; catalog: Catalog } | { type: 'stop' }) => {
  if (m.type === 'catalog') catalog = m.catalog
  else if (m.type === 'shadowCatalog') shadowCatalog = m.catalog
  else void stop()
})

async function stop() {
  await stage?.stop().catch((e) => events.emit('shutdown.step_failed', { step: 'state thread', err: errText(e) }))
  await admin?.close().catch(() => {})
  await store?.close().catch(() => {})
  post({ type: 'stopped' })
  port.close()
}

try {
  store = await RedisStore.connect(options.redisUrl, {
    prefix: options.redisPrefix,
    readyTimeoutMs: options.connectTimeout,
    onError: (err) => events.emit('redis.error', { err: errText(err) }),
    onReconnected: (ms) => events.emit('redis.reconnected', { downSeconds: Math.round(ms / 100) / 10 }),
  })
  const kafka = createKafkaClient({ kind: options.kafkaClient, clientId: `cardpulse-state-${options.thread}`, brokers: options.brokers, security: options.kafkaSecurity, connectTimeoutMs: options.connectTimeout, instrumentation: events })
  admin = await kafka.admin()
  const committed = store
  stage = new StateStage({
    ...options.stage,
    kafka,
    admin,
    store: committed,
    catalog: () => catalog,
    shadowCatalog: () => shadowCatalog,
    instrumentation: events,
    onCommitted: (partition, out) =>
      post({
        type: 'committed',
        partition,
        nudge: outboxUrgent(out),
        roundTrips: committed.roundTrips,
        heap: ownHeap(),
      }),
  })
  await stage.start()
  post({ type: 'started' })
} catch (e) {
  post({ type: 'failed', message: errText(e) })
}
