import { spawn, type ChildProcess } from 'node:child_process'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import { Kafka, logLevel, type Admin, type Producer } from 'kafkajs'
import { verifyWebhook } from '../../sinks/webhook/signature.ts'
import type { KafkaClientKind } from '../../pipeline/kafka/types.ts'
import type { TopicSender } from '../../simulator/produce.ts'
import { startPipeline, type RunningPipeline } from '../../commands/run.ts'
import { RunConfig, parseConfig } from '../../commands/config.ts'
import { createLogger, type Logger } from '../../core/log.ts'

/** Real services for integration tests: the Kafka broker and Redis that .ci/run starts. */

export const KAFKA_BROKERS = process.env.KAFKA_BROKERS ?? '127.0.0.1:19092'
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
/** A ClickHouse server (test/setup/containers.ts starts one in Docker); unset, the pipelines embed chDB. */
export const CLICKHOUSE_URL = process.env.CLICKHOUSE_URL || undefined
export const WEBHOOK_SECRET = 'integration-test-secret-0123456789'
/**
 * The Kafka client of the pipeline under test (KAFKA_CLIENT; CI runs the integration suites once
 * per client). The suites' own producers and readers stay on KafkaJS: the outside world.
 */
export const KAFKA_CLIENT: KafkaClientKind = process.env.KAFKA_CLIENT === 'rdkafka' ? 'rdkafka' : 'kafkajs'

/**
 * `cardpulse run` in the test's process on the real services (ClickHouse: the server of
 * CLICKHOUSE_URL, or embedded), with what every suite sets alike; `settings` name the suite's own
 * topics, Redis prefix, group, database and data folder, and override the rest.
 */
export function startTestPipeline(settings: Record<string, string>, logger: Logger = createLogger('warn')): Promise<RunningPipeline> {
  const config = parseConfig(RunConfig, {
    kafkaBrokers: KAFKA_BROKERS,
    kafkaClient: KAFKA_CLIENT,
    redisUrl: REDIS_URL,
    clickhouseUrl: CLICKHOUSE_URL,
    httpPort: '0',
    webhookSecret: WEBHOOK_SECRET,
    allowedLateness: '1s',
    idleAdvance: '1s',
    logLevel: 'warn',
    ...settings,
  })
  return startPipeline(config, logger)
}

/** A fresh name per test, so suites can run again on a dirty machine. */
export const uniqueId = () => `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`

/** Fresh topic names for one suite, keyed like the pipeline's settings. */
export function freshTopics(prefix: string) {
  return {
    transactionsTopic: `${prefix}.transactions`,
    appEventsTopic: `${prefix}.app-events`,
    lifecycleTopic: `${prefix}.lifecycle`,
    dlqTopic: `${prefix}.dlq`,
    alertTopic: `${prefix}.alerts`,
    eventsTopic: `${prefix}.events`,
  }
}

export function kafka() {
  return new Kafka({ clientId: 'cardpulse-test', brokers: KAFKA_BROKERS.split(','), logLevel: logLevel.NOTHING })
}

/** A KafkaJS producer as the simulator's sender of keyed messages. */
export const sender = (producer: Producer): TopicSender => ({ send: async (topicMessages) => void (await producer.sendBatch({ topicMessages })) })

export async function createTopics(admin: Admin, topics: string[], partitions = 3) {
  await admin.createTopics({ waitForLeaders: true, topics: topics.map((topic) => ({ topic, numPartitions: partitions })) })
}

export interface ReceivedWebhook {
  path: string
  headers: IncomingHttpHeaders
  body: Record<string, unknown>
  raw: string
  verified: boolean
}

/** A marketing system's webhook endpoint on 127.0.0.1 that records what it receives. */
export async function webhookReceiver(status: (n: number) => number = () => 200) {
  const received: ReceivedWebhook[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8')
      received.push({ path: req.url ?? '', headers: req.headers, body: JSON.parse(raw), raw, verified: verifyWebhook(WEBHOOK_SECRET, req.headers, raw).ok })
      res.writeHead(status(received.length)).end()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return { url, received, close: () => new Promise((r) => server.close(r)) }
}

export async function waitFor<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 60_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

/** A catalogue for tests: the defaults with no quiet hours and no holdout, unless overridden. */
export function testCatalogYaml(overrides: { quietHours?: string; holdoutPercent?: number; version?: string } = {}) {
  return `version: "${overrides.version ?? 'test-1'}"
policy:
  quietHours: ${overrides.quietHours ?? 'null'}
  holdoutPercent: ${overrides.holdoutPercent ?? 0}
triggers:
  activation_reminder:
    priority: 90
    params: { delay: 72h }
    channels: [sms, push]
    offer: { code: ACTIVATE50, value: 50, currency: CNY }
    goal: { kind: lifecycle, stage: activated }
    attributionWindow: 7d
`
}

const CLI = fileURLToPath(new URL('../../bin/cardpulse.js', import.meta.url))

/**
 * `cardpulse run` as its own process, as a user starts it, on the test services with JSON logs;
 * resolves with the HTTP port once it serves. `env` adds or overrides settings; `track` gets the
 * process at once, so a test can kill it even if it never becomes ready.
 */
export function spawnRun(env: Record<string, string>, track: (child: ChildProcess) => void): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [CLI, 'run'], {
    env: { ...process.env, KAFKA_BROKERS, REDIS_URL, WEBHOOK_SECRET, HTTP_PORT: '0', LOG_FORMAT: 'json', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  track(child)
  let output = ''
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      const m = /"port":(\d+)/.exec(output)
      if (m) resolve({ child, port: Number(m[1]) })
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    child.once('exit', (code) => reject(new Error(`cardpulse run exited with ${code} before it was ready:\n${output}`)))
  })
}

/**
 * Touchpoints a `cardpulse run` serving on `port` has cancelled so far: still waiting when their
 * goal was reached, consent withdrawn or a high alert raised (docs/webhooks.md), so never sent;
 * with `upTo`, those of decisions at or before that event time.
 */
export async function cancelledSoFar(port: number, upTo?: number): Promise<number> {
  const to = upTo === undefined ? '' : `?to=${encodeURIComponent(new Date(upTo + 1).toISOString())}`
  const health = (await (await fetch(`http://127.0.0.1:${port}/api/analytics/deliveryHealth${to}`)).json()) as { cancelled: number }[]
  return health.reduce((n, r) => n + r.cancelled, 0)
}

/** Which of these send decisions a `cardpulse run` serving on `port` says were cancelled (its explain endpoint, from its ClickHouse). */
export async function cancelledAmong(port: number, sends: { id: string; customerId: string }[]): Promise<string[]> {
  const wanted = new Set(sends.map((d) => d.id))
  const cancelled: string[] = []
  for (const customerId of new Set(sends.map((d) => d.customerId))) {
    const doc = (await (await fetch(`http://127.0.0.1:${port}/api/customers/${customerId}/explain?limit=1000`)).json()) as { decisions: { items: { id: string; delivery?: { status: string } }[] } }
    for (const d of doc.decisions.items) if (wanted.has(d.id) && d.delivery?.status === 'cancelled') cancelled.push(d.id)
  }
  return cancelled
}
