import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, readFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { simulateBank } from '../simulator/bank.ts'
import { produceStreams } from '../simulator/produce.ts'
import { startPipeline, type RunningPipeline } from '../commands/run.ts'
import { RunConfig, parseConfig } from '../commands/config.ts'
import { createLogger } from '../core/log.ts'
import { removeBenchData } from './cleanup.ts'
import { readCeiling } from './ceiling.ts'
import { catchUpProcesses, type ScaleOutRun } from './scaleOut.ts'
import { producePoisoned } from './poison.ts'
import { connectAdmin, createKafkaClient } from '../pipeline/kafka/client.ts'
import type { KafkaClientKind } from '../pipeline/kafka/types.ts'
import type { RoundTrips } from '../pipeline/store/redis.ts'

/**
 * `cardpulse run` catching up on a simulated bank waiting in the input topics, against the raw
 * ceiling of reading those topics, for each Kafka client asked for. The bank is produced once;
 * then each of `runs` rounds, for each client in turn, reads it with a bare consumer of that
 * client (ceiling.ts) and with one `cardpulse run` on that client (real Kafka and Redis, embedded
 * ClickHouse, a webhook receiver that answers 200), each in a fresh consumer group, and the
 * pipeline with a fresh Redis prefix, ClickHouse database and internal topics: the input topics
 * are only read. A catch-up is timed from start until every event has been applied (or found
 * late) by the state stage. Clients alternate within a round, so a machine that slows down weighs
 * on both alike.
 */

export interface LiveOptions {
  customers: number
  days: number
  seed: number
  brokers: string
  redisUrl: string
  partitions: number
  runs: number
  kafkaClients: KafkaClientKind[]
  /** STATE_THREADS of the pipeline; its default when absent. */
  stateThreads?: number
  /** Above 1: also this many `cardpulse run` processes in one group catching up together (scale-out), on the first client. */
  processes?: number
  /** Above 0: also a catch-up, on the first client, of the same bank with this many poison messages after each event. */
  poison?: number
}

export interface CeilingRun {
  messages: number
  seconds: number
  eventsPerSecond: number
  megabytesPerSecond: number
}

export interface CatchUpRun {
  events: number
  seconds: number
  eventsPerSecond: number
  late: number
  /** State-stage batches read from Kafka (the batch-duration histogram's count). */
  batches: number
  eventsPerBatch: number
  /** The store's round trips until caught up; `load` and `commit` are the state stage's. */
  roundTrips: RoundTrips
  roundTripsPerBatch: number
  roundTripsPerEvent: number
  /** Resident set of this process (the pipeline, the harness and its heap) before start and at most during the catch-up, sampled every 250 ms. */
  rssBeforeBytes: number
  maxRssBytes: number
  /** CPU time of this process (every thread: the pipeline's stages and the harness) and of Redis (INFO cpu) per event applied, µs. */
  cpuMicrosPerEvent: number
  redisCpuMicrosPerEvent: number
  /** The Kafka broker's CPU per event applied, µs, when it runs on this machine (found by its port); else null. */
  brokerCpuMicrosPerEvent: number | null
  /** After the catch-up: MEMORY USAGE of the partitions' customer hashes over the customers they hold. */
  redisCustomers: number
  redisBytesPerCustomer: number
}

export interface ClientLiveReport {
  client: KafkaClientKind
  ceiling: CeilingRun[]
  runs: CatchUpRun[]
  median: { ceilingEventsPerSecond: number; runEventsPerSecond: number; ratio: number; roundTripsPerBatch: number; roundTripsPerEvent: number; eventsPerBatch: number; maxRssBytes: number; redisBytesPerCustomer: number; cpuMicrosPerEvent: number; redisCpuMicrosPerEvent: number; brokerCpuMicrosPerEvent: number | null }
}

export interface LiveReport {
  events: number
  messages: number
  partitions: number
  produceSeconds: number
  clients: ClientLiveReport[]
  /** A scale-out catch-up of `processes` processes each round; empty without `processes`. */
  scaleOut: ScaleOutRun[]
  /** Catch-ups of the bank flooded with poison, each round; absent without `poison`. */
  poisoned?: { perEvent: number; messages: number; runs: CatchUpRun[] }
}

export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

export async function benchLive(opts: LiveOptions): Promise<LiveReport> {
  const id = `bench-${Date.now().toString(36)}`
  const inputs = { transactionsTopic: `${id}.transactions`, appEventsTopic: `${id}.app-events`, lifecycleTopic: `${id}.lifecycle` }
  const brokers = opts.brokers.split(',')
  const clients = opts.kafkaClients.map((kind) => createKafkaClient({ kind, clientId: 'cardpulse-bench', brokers }))
  const admin = await connectAdmin(clients[0], Object.values(inputs), opts.partitions)
  const dataDir = mkdtempSync(join(tmpdir(), 'cardpulse-bench-live-'))
  const receiver = createServer((req, res) => req.resume().on('end', () => res.end('ok')))
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r))
  const ceiling = new Map<KafkaClientKind, CeilingRun[]>(opts.kafkaClients.map((k) => [k, []]))
  const runs = new Map<KafkaClientKind, CatchUpRun[]>(opts.kafkaClients.map((k) => [k, []]))
  const scaleOut: ScaleOutRun[] = []
  const poisonedInputs = { transactionsTopic: `${id}p.transactions`, appEventsTopic: `${id}p.app-events`, lifecycleTopic: `${id}p.lifecycle` }
  const poisoned = opts.poison ? { perEvent: opts.poison, messages: 0, runs: [] as CatchUpRun[] } : undefined
  if (poisoned) await connectAdmin(clients[0], Object.values(poisonedInputs), opts.partitions).then((a) => a.close())
  let events = 0
  let messages = 0
  let produceSeconds = 0
  try {
    {
      // The bank goes out of scope once produced, so it does not weigh on the catch-ups' RSS.
      const bank = simulateBank({ customers: opts.customers, days: opts.days, start: new Date(Date.UTC(2025, 9, 1)), seed: opts.seed })
      events = bank.length
      const t = process.hrtime.bigint()
      const producer = await clients[0].producer()
      await produceStreams(producer, { transaction: inputs.transactionsTopic, app: inputs.appEventsTopic, lifecycle: inputs.lifecycleTopic }, bank)
      if (poisoned) poisoned.messages = await producePoisoned(producer, { transaction: poisonedInputs.transactionsTopic, app: poisonedInputs.appEventsTopic, lifecycle: poisonedInputs.lifecycleTopic }, bank, poisoned.perEvent)
      await producer.close()
      produceSeconds = Number(process.hrtime.bigint() - t) / 1e9
    }
    for (const topic of Object.values(inputs)) for (const p of await admin.topicOffsets(topic)) messages += Number(p.high) - Number(p.low)
    console.error(`produced ${events} events (${messages} messages) in ${produceSeconds.toFixed(1)} s`)

    for (let i = 0; i < opts.runs; i++) {
      for (const kafka of clients) {
        const c = await readCeiling({ kafka, topics: Object.values(inputs), groupId: `${id}-ceiling-${kafka.kind}-${i}`, messages })
        ceiling.get(kafka.kind)!.push(c)
        console.error(`run ${i + 1}/${opts.runs}, ${kafka.kind}: ceiling ${Math.round(c.eventsPerSecond)} events/s`)
        const r = await catchUp({ ...opts, id, run: i, client: kafka.kind, inputs, events, dataDir, webhookPort: (receiver.address() as AddressInfo).port })
        runs.get(kafka.kind)!.push(r)
        console.error(`run ${i + 1}/${opts.runs}, ${kafka.kind}: run ${Math.round(r.eventsPerSecond)} events/s, ${r.roundTripsPerBatch.toFixed(2)} round trips per batch`)
      }
      if (poisoned) {
        const kind = opts.kafkaClients[0]
        const r = await catchUp({ ...opts, id: `${id}p`, run: i, client: kind, inputs: poisonedInputs, events, dataDir, webhookPort: (receiver.address() as AddressInfo).port })
        poisoned.runs.push(r)
        console.error(`run ${i + 1}/${opts.runs}, ${kind}, ${poisoned.perEvent} poison messages per event: run ${Math.round(r.eventsPerSecond)} valid events/s`)
      }
      if ((opts.processes ?? 1) > 1) {
        const s = await scaleOutRun({ ...opts, processes: opts.processes!, client: opts.kafkaClients[0], id, run: i, inputs, events, dataDir, webhookPort: (receiver.address() as AddressInfo).port })
        scaleOut.push(s)
        console.error(`run ${i + 1}/${opts.runs}: ${s.processes} processes ${Math.round(s.eventsPerSecond)} events/s (applied ${s.appliedPerProcess.join(' / ')})`)
      }
    }
  } finally {
    receiver.close()
    await removeBenchData({ admin, topics: [...Object.values(inputs), ...(poisoned ? Object.values(poisonedInputs) : [])], redisUrl: opts.redisUrl, prefix: id, dataDir })
  }
  return {
    events,
    messages,
    partitions: opts.partitions,
    produceSeconds,
    clients: opts.kafkaClients.map((client) => clientReport(client, ceiling.get(client)!, runs.get(client)!)),
    scaleOut,
    poisoned,
  }
}

function clientReport(client: KafkaClientKind, ceiling: CeilingRun[], runs: CatchUpRun[]): ClientLiveReport {
  const ceilingMedian = median(ceiling.map((c) => c.eventsPerSecond))
  const runMedian = median(runs.map((r) => r.eventsPerSecond))
  return {
    client,
    ceiling,
    runs,
    median: {
      ceilingEventsPerSecond: ceilingMedian,
      runEventsPerSecond: runMedian,
      ratio: runMedian / ceilingMedian,
      roundTripsPerBatch: median(runs.map((r) => r.roundTripsPerBatch)),
      roundTripsPerEvent: median(runs.map((r) => r.roundTripsPerEvent)),
      eventsPerBatch: median(runs.map((r) => r.eventsPerBatch)),
      maxRssBytes: median(runs.map((r) => r.maxRssBytes)),
      redisBytesPerCustomer: median(runs.map((r) => r.redisBytesPerCustomer)),
      cpuMicrosPerEvent: median(runs.map((r) => r.cpuMicrosPerEvent)),
      redisCpuMicrosPerEvent: median(runs.map((r) => r.redisCpuMicrosPerEvent)),
      brokerCpuMicrosPerEvent: runs.every((r) => r.brokerCpuMicrosPerEvent !== null) ? median(runs.map((r) => r.brokerCpuMicrosPerEvent!)) : null,
    },
  }
}

/** One `cardpulse run` catching up on the input topics, with its own group, Redis prefix, ClickHouse database and internal topics. */
async function catchUp(o: LiveOptions & { id: string; run: number; client: KafkaClientKind; inputs: Record<string, string>; events: number; dataDir: string; webhookPort: number }): Promise<CatchUpRun> {
  const runId = `${o.id}-${o.client}-r${o.run}`
  const internal = { dlqTopic: `${runId}.dlq`, alertTopic: `${runId}.alerts`, eventsTopic: `${runId}.events` }
  const brokers = o.brokers.split(',')
  const admin = await connectAdmin(createKafkaClient({ clientId: 'cardpulse-bench', brokers }), Object.values(internal), o.partitions)

  let maxRss = 0
  const sample = () => (maxRss = Math.max(maxRss, process.memoryUsage().rss))
  const rssBefore = process.memoryUsage().rss
  const sampler = setInterval(sample, 250)
  let pipeline: RunningPipeline | undefined
  try {
    const redisCpuBefore = await redisCpuSeconds(o.redisUrl)
    const brokerCpuBefore = brokerCpuSeconds(o.brokers)
    const cpuBefore = process.cpuUsage()
    const started = process.hrtime.bigint()
    pipeline = await startPipeline(
      parseConfig(RunConfig, {
        kafkaBrokers: o.brokers,
        kafkaClient: o.client,
        redisUrl: o.redisUrl,
        redisPrefix: runId,
        groupId: runId,
        ...o.inputs,
        ...internal,
        partitions: String(o.partitions),
        httpPort: '0',
        webhookUrl: `http://127.0.0.1:${o.webhookPort}/hooks`,
        webhookSecret: 'cardpulse-bench-secret-0000',
        clickhouseDatabase: runId.replace(/-/g, '_'),
        dataDir: o.dataDir,
        logLevel: 'warn',
        ...(o.stateThreads !== undefined ? { stateThreads: String(o.stateThreads) } : {}),
      }),
      createLogger('warn'),
    )
    const running = pipeline
    const counted = async (result: string) => (await running.metrics.events.get()).values.filter((v) => v.labels.result === result).reduce((n, v) => n + v.value, 0)
    while ((await counted('applied')) + (await counted('late')) < o.events) await new Promise((r) => setTimeout(r, 100))
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    const cpu = process.cpuUsage(cpuBefore)
    const redisCpu = (await redisCpuSeconds(o.redisUrl)) - redisCpuBefore
    const brokerCpuAfter = brokerCpuSeconds(o.brokers)
    sample()
    const roundTrips = running.stateRoundTrips()
    const late = await counted('late')
    const batches = (await running.metrics.batchSeconds.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0
    clearInterval(sampler)

    // Redis memory of the state the catch-up left, per customer held.
    const client = running.store.redis
    let bytes = 0
    let customers = 0
    for (let p = 0; p < o.partitions; p++) {
      const key = running.store.keys.partition(p).customers
      bytes += Number((await client.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) ?? 0)
      customers += await client.hlen(key)
    }
    const state = roundTrips.load + roundTrips.commit
    return {
      events: o.events,
      seconds,
      eventsPerSecond: o.events / seconds,
      late,
      batches,
      eventsPerBatch: o.events / Math.max(1, batches),
      roundTrips,
      roundTripsPerBatch: state / Math.max(1, batches),
      roundTripsPerEvent: state / o.events,
      rssBeforeBytes: rssBefore,
      maxRssBytes: maxRss,
      cpuMicrosPerEvent: (cpu.user + cpu.system) / o.events,
      redisCpuMicrosPerEvent: (redisCpu * 1e6) / o.events,
      brokerCpuMicrosPerEvent: brokerCpuBefore !== null && brokerCpuAfter !== null ? ((brokerCpuAfter - brokerCpuBefore) * 1e6) / o.events : null,
      redisCustomers: customers,
      redisBytesPerCustomer: Math.round(bytes / Math.max(1, customers)),
    }
  } finally {
    clearInterval(sampler)
    await pipeline?.stop()
    // The shared data folder (embedded ClickHouse) stays for the next run; benchLive removes it.
    await removeBenchData({ admin, topics: Object.values(internal), redisUrl: o.redisUrl, prefix: runId, dataDir: join(o.dataDir, 'none') })
  }
}

/** `processes` separate `cardpulse run` processes in one group, on their own group, prefix and internal topics. */
async function scaleOutRun(
  o: LiveOptions & { processes: number; client: KafkaClientKind; id: string; run: number; inputs: Record<string, string>; events: number; dataDir: string; webhookPort: number },
): Promise<ScaleOutRun> {
  const runId = `${o.id}-s${o.run}`
  const internal = { dlqTopic: `${runId}.dlq`, alertTopic: `${runId}.alerts`, eventsTopic: `${runId}.events` }
  const brokers = o.brokers.split(',')
  const admin = await connectAdmin(createKafkaClient({ clientId: 'cardpulse-bench', brokers }), Object.values(internal), o.partitions)
  try {
    return await catchUpProcesses({
      processes: o.processes,
      events: o.events,
      dataDir: join(o.dataDir, runId),
      env: {
        KAFKA_BROKERS: o.brokers,
        KAFKA_CLIENT: o.client,
        REDIS_URL: o.redisUrl,
        REDIS_PREFIX: runId,
        GROUP_ID: runId,
        TRANSACTIONS_TOPIC: o.inputs.transactionsTopic,
        APP_EVENTS_TOPIC: o.inputs.appEventsTopic,
        LIFECYCLE_TOPIC: o.inputs.lifecycleTopic,
        DLQ_TOPIC: internal.dlqTopic,
        ALERT_TOPIC: internal.alertTopic,
        EVENTS_TOPIC: internal.eventsTopic,
        PARTITIONS: String(o.partitions),
        WEBHOOK_URL: `http://127.0.0.1:${o.webhookPort}/hooks`,
        WEBHOOK_SECRET: 'cardpulse-bench-secret-0000',
        CLICKHOUSE_DATABASE: runId.replace(/-/g, '_'),
        ...(o.stateThreads !== undefined ? { STATE_THREADS: String(o.stateThreads) } : {}),
      },
    })
  } finally {
    await removeBenchData({ admin, topics: Object.values(internal), redisUrl: o.redisUrl, prefix: runId, dataDir: join(o.dataDir, 'none') })
  }
}

/** Seconds of CPU the Redis server has used (user and system, its main thread and helpers). */
async function redisCpuSeconds(url: string): Promise<number> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await redis.connect()
    const info = await redis.info('cpu')
    const field = (name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, 'm').exec(info)?.[1] ?? 0)
    return field('used_cpu_user') + field('used_cpu_sys')
  } finally {
    redis.disconnect()
  }
}

/**
 * Seconds of CPU the Kafka broker has used, when there is one broker and it listens on this
 * machine (its process found by its port with `ss`, its time read from /proc); null otherwise.
 */
function brokerCpuSeconds(brokers: string): number | null {
  const port = /^127\.0\.0\.1:(\d+)$/.exec(brokers)?.[1]
  if (!port) return null
  try {
    const listening = execFileSync('ss', ['-Hltnp', `sport = :${port}`], { encoding: 'utf8' })
    const pid = /pid=(\d+)/.exec(listening)?.[1]
    if (!pid) return null
    // Fields after the command name: utime and stime are the 14th and 15th of the line, in clock ticks (100 a second on Linux).
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return null
  }
}
