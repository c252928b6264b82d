import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { simulateBank } from '../simulator/bank.ts'
import { produceStreams } from '../simulator/produce.ts'
import { startPipeline } from '../commands/run.ts'
import { RunConfig, parseConfig } from '../commands/config.ts'
import { createLogger } from '../core/log.ts'
import { removeBenchData } from './cleanup.ts'
import { connectAdmin, connectProducer, createKafka } from '../pipeline/kafka/client.ts'

/**
 * `cardpulse run` catching up on a simulated bank waiting in the input topics: one process, real
 * Kafka and Redis, embedded ClickHouse, a webhook receiver that answers 200. Measures the time
 * from start until every event has been applied by the state stage.
 */
export async function benchLive(opts: { customers: number; days: number; seed: number; brokers: string; redisUrl: string; partitions: number }) {
  const id = `bench-${Date.now().toString(36)}`
  const topics = {
    transactionsTopic: `${id}.transactions`,
    appEventsTopic: `${id}.app-events`,
    lifecycleTopic: `${id}.lifecycle`,
    dlqTopic: `${id}.dlq`,
    alertTopic: `${id}.alerts`,
    eventsTopic: `${id}.events`,
  }
  const brokers = opts.brokers.split(',')
  const kafka = createKafka({ clientId: 'cardpulse-bench', brokers })
  const admin = await connectAdmin(kafka, brokers, Object.values(topics), opts.partitions)
  const events = simulateBank({ customers: opts.customers, days: opts.days, start: new Date(Date.UTC(2025, 9, 1)), seed: opts.seed })
  const producer = await connectProducer(kafka, brokers)
  await produceStreams(producer, { transaction: topics.transactionsTopic, app: topics.appEventsTopic, lifecycle: topics.lifecycleTopic }, events)
  await producer.disconnect()

  const receiver = createServer((req, res) => req.resume().on('end', () => res.end('ok')))
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r))
  const dataDir = mkdtempSync(join(tmpdir(), 'cardpulse-bench-live-'))
  const started = process.hrtime.bigint()
  const pipeline = await startPipeline(
    parseConfig(RunConfig, {
      kafkaBrokers: opts.brokers,
      redisUrl: opts.redisUrl,
      redisPrefix: id,
      groupId: id,
      ...topics,
      partitions: String(opts.partitions),
      httpPort: '0',
      webhookUrl: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`,
      webhookSecret: 'cardpulse-bench-secret-0000',
      clickhouseDatabase: id.replace(/-/g, '_'),
      dataDir,
      logLevel: 'warn',
    }),
    createLogger('warn'),
  )
  const counted = async (result: string) => (await pipeline.metrics.events.get()).values.filter((v) => v.labels.result === result).reduce((n, v) => n + v.value, 0)
  while ((await counted('applied')) + (await counted('late')) < events.length) await new Promise((r) => setTimeout(r, 100))
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  const late = await counted('late')

  await pipeline.stop()
  receiver.close()
  await removeBenchData({ admin, topics: Object.values(topics), redisUrl: opts.redisUrl, prefix: id, dataDir })
  return { events: events.length, seconds, late }
}
