import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SimulatedBank } from '../simulator/bank.ts'
import { startPipeline, type RunningPipeline } from '../commands/run.ts'
import { RunConfig, parseConfig } from '../commands/config.ts'
import { createLogger } from '../core/log.ts'
import { removeBenchData } from './cleanup.ts'
import { connectAdmin, createKafkaClient } from '../pipeline/kafka/client.ts'
import type { GroupConsumer, KafkaClientKind, ProducedMessage } from '../pipeline/kafka/types.ts'
import type { InputEvent } from '../schemas/events.ts'
import type { RiskAlert } from '../schemas/alert.ts'

/**
 * Latency of `cardpulse run` under a steady live load: one process, real Kafka and Redis,
 * embedded ClickHouse, a webhook receiver on 127.0.0.1 that answers 200. A simulated bank's
 * events are appended to the input topics at a steady rate, each with `occurredAt` set to the
 * moment it is handed to the producer, so "append → X" is X's wall time less the event time:
 *
 *  - alert on the alert topic: a consumer of the alert topic has it (alert `eventTime` is the
 *    causing event's time);
 *  - decision committed: the state stage's commit that holds it has returned (`pipeline.batch_end`);
 *  - webhook sent: the receiver has the request (decisions not deferred by quiet hours only:
 *    `sendAt` equal to `decidedAt`).
 *
 * Events appended in the first `warmupSeconds` and the last `tailSeconds` of the run are not
 * measured (group joins and JIT at the start; at the end, nothing follows the last events to move
 * the watermark past them). The producer runs in this process, on the pipeline's event loop.
 */

export interface LatencyOptions {
  /** Events per second appended to the input topics. */
  rate: number
  /** How long events are appended. */
  seconds: number
  warmupSeconds: number
  tailSeconds: number
  customers: number
  seed: number
  brokers: string
  kafkaClient: KafkaClientKind
  redisUrl: string
  partitions: number
  /** The pipeline's MAX_DISORDER and SOURCE_IDLENESS, e.g. '0s' and '2s'; its defaults when absent. */
  maxDisorder?: string
  sourceIdleness?: string
  /** STATE_THREADS of the pipeline; its default when absent. */
  stateThreads?: number
}

export interface Distribution {
  count: number
  p50: number
  p99: number
  max: number
}

export interface LatencyReport {
  settings: Record<string, unknown>
  produced: { events: number; seconds: number; rate: number; measured: number; sendMs: Distribution }
  alertOnTopic: Distribution
  decisionCommitted: Distribution
  webhookSent: Distribution & { deferred: number }
  /** After each state-stage batch: wall clock less the partition's watermark. */
  watermarkLag: Distribution
  /** State-stage batches read from Kafka: time to process and commit, and events applied (or found late or repeated). */
  batch: { ms: Distribution; events: Distribution }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Nearest-rank percentiles, in ms. */
export function distribution(values: number[]): Distribution {
  const v = Float64Array.from(values).sort()
  const at = (q: number) => (v.length ? v[Math.min(v.length - 1, Math.ceil(q * v.length) - 1)] : NaN)
  return { count: v.length, p50: at(0.5), p99: at(0.99), max: v.length ? v[v.length - 1] : NaN }
}

export async function benchLatency(o: LatencyOptions): Promise<LatencyReport> {
  const id = `lat-${Date.now().toString(36)}`
  const topics = {
    transactionsTopic: `${id}.transactions`,
    appEventsTopic: `${id}.app-events`,
    lifecycleTopic: `${id}.lifecycle`,
    dlqTopic: `${id}.dlq`,
    alertTopic: `${id}.alerts`,
    eventsTopic: `${id}.events`,
  }
  const topicOf: Record<InputEvent['type'], string> = { transaction: topics.transactionsTopic, app: topics.appEventsTopic, lifecycle: topics.lifecycleTopic }
  const brokers = o.brokers.split(',')
  const kafka = createKafkaClient({ kind: o.kafkaClient, clientId: 'cardpulse-bench-latency', brokers })
  const admin = await connectAdmin(kafka, Object.values(topics), o.partitions)

  // The bank's events in order, taken before the clock starts; their times are rewritten as they are appended.
  const total = Math.ceil(o.rate * o.seconds)
  const events: InputEvent[] = []
  for (const e of new SimulatedBank({ customers: o.customers, days: 3650, start: new Date(Date.UTC(2025, 9, 1)), seed: o.seed }).until(Infinity)) {
    events.push(e)
    if (events.length >= total) break
  }

  const webhooks: number[] = []
  let deferred = 0
  /** Events appended inside the measured window, as `customerId@time`: what a decision or alert may be caused by. */
  const measured = new Set<string>()
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const arrived = Date.now()
      res.end('ok')
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { customerId: string; eventTime: string; decidedAt: string; sendAt: string }
      const at = Date.parse(body.eventTime)
      if (!measured.has(`${body.customerId}@${at}`)) return
      if (body.sendAt !== body.decidedAt) deferred++
      else webhooks.push(arrived - at)
    })
  })
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r))

  const dataDir = mkdtempSync(join(tmpdir(), 'cardpulse-bench-latency-'))
  const config = parseConfig(RunConfig, {
    kafkaBrokers: o.brokers,
    kafkaClient: o.kafkaClient,
    redisUrl: o.redisUrl,
    redisPrefix: id,
    groupId: id,
    ...topics,
    partitions: String(o.partitions),
    httpPort: '0',
    maxDisorder: o.maxDisorder,
    sourceIdleness: o.sourceIdleness,
    stateThreads: o.stateThreads === undefined ? undefined : String(o.stateThreads),
    webhookUrl: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`,
    webhookSecret: 'cardpulse-bench-secret-0000',
    clickhouseDatabase: id.replace(/-/g, '_'),
    dataDir,
    logLevel: 'warn',
  })
  let pipeline: RunningPipeline | undefined
  let alertConsumer: GroupConsumer | undefined
  const producer = await kafka.producer()
  try {
    pipeline = await startPipeline(config, createLogger('warn'))
    let measureFrom = Infinity
    let measureUntil = -Infinity
    const decisions: number[] = []
    const batchMs: number[] = []
    const batchEvents: number[] = []
    pipeline.events.on('pipeline.batch_end', (e) => {
      const committed = Date.now()
      if (e.seconds !== undefined && committed >= measureFrom && committed < measureUntil) {
        batchMs.push(e.seconds * 1000)
        batchEvents.push(e.applied + e.late + e.duplicates)
      }
      for (const d of e.decisions) {
        const at = Date.parse(d.eventTime)
        if (measured.has(`${d.customerId}@${at}`)) decisions.push(committed - at)
      }
    })

    // Diagnostic: how far the state stage's event time trails the wall clock after each batch.
    const watermarkLag: number[] = []
    pipeline.events.on('pipeline.watermark', (e) => {
      if (e.now >= measureFrom && e.now < measureUntil) watermarkLag.push(e.now - e.watermark)
    })
    const alerts: number[] = []
    alertConsumer = kafka.groupConsumer({
      groupId: `${id}-alerts`,
      topics: [topics.alertTopic],
      eachBatch: async (batch) => {
        const arrived = Date.now()
        for (const message of batch.messages) {
          const alert = JSON.parse(message.value!.toString('utf8')) as RiskAlert
          const at = Date.parse(alert.eventTime)
          if (measured.has(`${alert.customerId}@${at}`)) alerts.push(arrived - at)
        }
      },
    })
    await alertConsumer.start()
    // Both stages and the alert consumer own their partitions before the clock starts.
    const assigned = Date.now()
    while ((await fetch(`http://127.0.0.1:${pipeline.port}/healthz`).then((r) => r.json() as Promise<{ partitions: number[] }>)).partitions.length < o.partitions) {
      if (Date.now() - assigned > 60_000) throw new Error('the state stage owned no partitions within 60 s')
      await sleep(100)
    }
    await sleep(3000)

    // Appends at the rate, one produce request at a time, each event dated when its request is made.
    const last = new Map<string, number>()
    const sendMs: number[] = []
    const started = Date.now()
    measureFrom = started + o.warmupSeconds * 1000
    measureUntil = started + (o.seconds - o.tailSeconds) * 1000
    let sent = 0
    while (sent < events.length) {
      const now = Date.now()
      if (now - started >= o.seconds * 1000) break
      const due = Math.min(events.length, Math.floor(((now - started) * o.rate) / 1000), sent + 2000)
      if (due <= sent) {
        await sleep(1)
        continue
      }
      const byTopic = new Map<string, ProducedMessage[]>()
      for (let i = sent; i < due; i++) {
        const e = events[i]
        // Strictly increasing per customer, so each customer's events keep their order.
        const at = Math.max(now, (last.get(e.customerId) ?? 0) + 1)
        last.set(e.customerId, at)
        if (at >= measureFrom && at < measureUntil) measured.add(`${e.customerId}@${at}`)
        const topic = topicOf[e.type]
        let list = byTopic.get(topic)
        if (!list) byTopic.set(topic, (list = []))
        list.push({ key: e.customerId, value: JSON.stringify({ ...e, occurredAt: new Date(at).toISOString() }) })
      }
      const t = performance.now()
      await producer.send([...byTopic].map(([topic, messages]) => ({ topic, messages })))
      sendMs.push(performance.now() - t)
      sent = due
    }
    const producedSeconds = (Date.now() - started) / 1000

    // What was appended last is decided once the watermark passes it: when the sources go idle, or by the idle advance.
    await sleep(config.sourceIdleness + config.idleAdvance + 5000)

    return {
      settings: {
        rate: o.rate,
        seconds: o.seconds,
        warmupSeconds: o.warmupSeconds,
        tailSeconds: o.tailSeconds,
        customers: o.customers,
        partitions: o.partitions,
        maxDisorderMs: config.maxDisorder,
        sourceIdlenessMs: config.sourceIdleness,
        idleAdvanceMs: config.idleAdvance,
        kafkaClient: o.kafkaClient,
      },
      produced: { events: sent, seconds: producedSeconds, rate: sent / producedSeconds, measured: measured.size, sendMs: distribution(sendMs) },
      alertOnTopic: distribution(alerts),
      decisionCommitted: distribution(decisions),
      webhookSent: { ...distribution(webhooks), deferred },
      watermarkLag: distribution(watermarkLag),
      batch: { ms: distribution(batchMs), events: distribution(batchEvents) },
    }
  } finally {
    await alertConsumer?.stop().catch(() => {})
    await pipeline?.stop().catch(() => {})
    await producer.close().catch(() => {})
    receiver.closeAllConnections()
    await new Promise((r) => receiver.close(r))
    await removeBenchData({ admin, topics: Object.values(topics), redisUrl: o.redisUrl, prefix: id, dataDir })
  }
}

const ms = (d: Distribution) => (d.count ? `${fmt(d.p50)} / ${fmt(d.p99)} / ${fmt(d.max)} ms (${d.count.toLocaleString('en-US')})` : 'none measured')
const fmt = (n: number) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1))

/** The report as a Markdown table. */
export function latencyTable(r: LatencyReport): [string, string][] {
  const s = r.settings
  return [
    ['load', `${r.produced.events.toLocaleString('en-US')} events in ${r.produced.seconds.toFixed(1)} s: ${Math.round(r.produced.rate).toLocaleString('en-US')} events/s (asked ${Number(s.rate).toLocaleString('en-US')}), ${s.customers} customers, ${s.partitions} partitions per topic; ${r.produced.measured.toLocaleString('en-US')} measured (from ${s.warmupSeconds} s to ${Number(s.seconds) - Number(s.tailSeconds)} s)`],
    ['settings', `MAX_DISORDER ${s.maxDisorderMs} ms, SOURCE_IDLENESS ${s.sourceIdlenessMs} ms, IDLE_ADVANCE ${s.idleAdvanceMs} ms, Kafka client ${s.kafkaClient}`],
    ['produce request (p50 / p99 / max, requests)', ms(r.produced.sendMs)],
    ['state-stage batch: process and commit (p50 / p99 / max, batches)', ms(r.batch.ms)],
    ['state-stage batch: events (p50 / p99 / max)', `${r.batch.events.p50} / ${r.batch.events.p99} / ${r.batch.events.max}`],
    ['state stage: wall clock − watermark after a batch (p50 / p99 / max, batches)', ms(r.watermarkLag)],
    ['append → alert on the alert topic (p50 / p99 / max, alerts)', ms(r.alertOnTopic)],
    ['append → decision committed (p50 / p99 / max, decisions)', ms(r.decisionCommitted)],
    ['append → webhook sent (p50 / p99 / max, webhooks)', `${ms(r.webhookSent)}; ${r.webhookSent.deferred} deferred by quiet hours, not counted`],
  ]
}
