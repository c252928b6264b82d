import { spawn } from 'node:child_process'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { SimulatedBank } from '../simulator/bank.ts'
import { connectAdmin, createKafkaClient } from '../pipeline/kafka/client.ts'
import type { ProducedMessage } from '../pipeline/kafka/types.ts'
import type { InputEvent } from '../schemas/events.ts'
import { removeBenchData } from './cleanup.ts'
import { metricSum, portOf } from './scaleOut.ts'

/**
 * Endurance: one `cardpulse run` process (as a user starts it) under a steady live load for a long
 * time — a simulated bank's events appended at `rate` per second, dated as they are appended —
 * while the process's resident memory and the Redis memory of its keys (MEMORY USAGE of each) are
 * sampled every `sampleSeconds`. Memory that is flat once the customers have all been seen is
 * what a bank needs; the report gives the samples and the change from the second quarter of the
 * run to the last.
 */

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'cardpulse.js')

export interface SoakOptions {
  minutes: number
  rate: number
  customers: number
  seed: number
  brokers: string
  redisUrl: string
  partitions: number
  sampleSeconds: number
}

export interface SoakSample {
  minute: number
  applied: number
  rssBytes: number
  /** V8 heap committed on the main thread (ingest, outbox, HTTP). */
  mainHeapBytes: number
  /** V8 heap committed on the state threads, summed: the customers they cache. */
  threadHeapBytes: number
  /** MEMORY USAGE of every key of the run's prefix. */
  redisBytes: number
  /** Customers with at least one event appended so far. */
  customers: number
  /** CPU time the `run` process (all its threads) has used so far. */
  cpuSeconds: number
}

export interface SoakReport {
  settings: SoakOptions
  samples: SoakSample[]
  appliedPerSecond: number
  /** Last quarter's mean over the second quarter's mean (1.00 = flat). */
  rssGrowth: number
  redisGrowth: number
  /** CPU time of the `run` process per event applied, between the first and the last sample. */
  cpuMicrosPerEvent: number
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export async function benchSoak(o: SoakOptions): Promise<SoakReport> {
  const id = `soak-${Date.now().toString(36)}`
  const topics = { TRANSACTIONS_TOPIC: `${id}.transactions`, APP_EVENTS_TOPIC: `${id}.app-events`, LIFECYCLE_TOPIC: `${id}.lifecycle`, DLQ_TOPIC: `${id}.dlq`, ALERT_TOPIC: `${id}.alerts`, EVENTS_TOPIC: `${id}.events` }
  const topicOf: Record<InputEvent['type'], string> = { transaction: topics.TRANSACTIONS_TOPIC, app: topics.APP_EVENTS_TOPIC, lifecycle: topics.LIFECYCLE_TOPIC }
  const kafka = createKafkaClient({ clientId: 'cardpulse-bench-soak', brokers: o.brokers.split(',') })
  const admin = await connectAdmin(kafka, Object.values(topics), o.partitions)
  const dataDir = mkdtempSync(join(tmpdir(), 'cardpulse-bench-soak-'))
  const redis = new Redis(o.redisUrl)
  const producer = await kafka.producer()
  // A marketing system that takes every webhook: a receiver that refused them would grow the outbox, not the pipeline.
  const receiver = createServer((req, res) => req.resume().on('end', () => res.end('ok')))
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r))
  const child = spawn(process.execPath, [CLI, 'run'], {
    env: {
      ...process.env,
      ...topics,
      KAFKA_BROKERS: o.brokers,
      REDIS_URL: o.redisUrl,
      REDIS_PREFIX: id,
      GROUP_ID: id,
      PARTITIONS: String(o.partitions),
      HTTP_PORT: '0',
      WEBHOOK_URL: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`,
      WEBHOOK_SECRET: 'cardpulse-bench-secret-0000',
      CLICKHOUSE_DATABASE: id.replace(/-/g, '_'),
      DATA_DIR: dataDir,
      LOG_FORMAT: 'json',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  try {
    const port = await portOf(child)
    child.stdout!.resume()
    child.stderr!.resume()
    const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0) * 1024
    // utime and stime, in clock ticks (100 a second on Linux), after the command name in parentheses
    const cpuSeconds = () => {
      const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')
      return (Number(fields[11]) + Number(fields[12])) / 100
    }
    const redisUsed = async () => {
      let bytes = 0
      for await (const keys of redis.scanStream({ match: `${id}*`, count: 1000 }) as AsyncIterable<string[]>)
        for (const key of keys) bytes += Number((await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) ?? 0)
      return bytes
    }
    const samples: SoakSample[] = []
    const started = Date.now()
    const last = new Map<string, number>()
    const mib = (b: number) => (b / 1048576).toFixed(0)
    const sample = async () => {
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
      const s = {
        minute: (Date.now() - started) / 60_000,
        applied: metricSum(metrics, 'cardpulse_events_total', 'result="applied"'),
        rssBytes: rss(),
        mainHeapBytes: metricSum(metrics, 'cardpulse_process_nodejs_heap_size_total_bytes'),
        threadHeapBytes: metricSum(metrics, 'cardpulse_state_thread_heap_bytes', 'kind="committed"'),
        redisBytes: await redisUsed(),
        customers: last.size,
        cpuSeconds: cpuSeconds(),
      }
      samples.push(s)
      console.error(`soak ${s.minute.toFixed(1)} min: ${s.applied} applied, ${s.customers} customers, RSS ${mib(s.rssBytes)} MiB (V8 heaps: main ${mib(s.mainHeapBytes)}, state threads ${mib(s.threadHeapBytes)}), Redis ${mib(s.redisBytes)} MiB`)
    }
    await sample()
    // The bank streams: ten years of it is more than any soak appends.
    const bank = new SimulatedBank({ customers: o.customers, days: 3650, start: new Date(Date.UTC(2025, 9, 1)), seed: o.seed }).until(Infinity)
    let sent = 0
    let nextSample = started + o.sampleSeconds * 1000
    while (Date.now() - started < o.minutes * 60_000) {
      const now = Date.now()
      const due = Math.floor(((now - started) * o.rate) / 1000)
      if (due > sent) {
        const byTopic = new Map<string, ProducedMessage[]>()
        for (; sent < due; sent++) {
          const e = bank.next().value as InputEvent
          const at = Math.max(now, (last.get(e.customerId) ?? 0) + 1)
          last.set(e.customerId, at)
          const topic = topicOf[e.type]
          let list = byTopic.get(topic)
          if (!list) byTopic.set(topic, (list = []))
          list.push({ key: e.customerId, value: JSON.stringify({ ...e, occurredAt: new Date(at).toISOString() }) })
        }
        await producer.send([...byTopic].map(([topic, messages]) => ({ topic, messages })))
      }
      if (Date.now() >= nextSample) {
        await sample()
        nextSample += o.sampleSeconds * 1000
      }
      await sleep(20)
    }
    await sleep(5000)
    await sample()
    const quarter = (q: number) => {
      const from = (o.minutes * q) / 4
      const s = samples.filter((x) => x.minute >= from && x.minute < from + o.minutes / 4)
      return { rss: s.reduce((n, x) => n + x.rssBytes, 0) / Math.max(1, s.length), redis: s.reduce((n, x) => n + x.redisBytes, 0) / Math.max(1, s.length) }
    }
    const [second, fourth] = [quarter(1), quarter(3)]
    const first = samples[0]
    const end = samples[samples.length - 1]
    return {
      settings: o,
      samples,
      appliedPerSecond: (end.applied - first.applied) / ((end.minute - first.minute) * 60),
      rssGrowth: fourth.rss / second.rss,
      cpuMicrosPerEvent: ((end.cpuSeconds - first.cpuSeconds) * 1e6) / Math.max(1, end.applied - first.applied),
      redisGrowth: fourth.redis / second.redis,
    }
  } finally {
    child.kill('SIGTERM')
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)))
    await producer.close().catch(() => {})
    redis.disconnect()
    receiver.closeAllConnections()
    receiver.close()
    await removeBenchData({ admin, topics: Object.values(topics), redisUrl: o.redisUrl, prefix: id, dataDir })
  }
}
