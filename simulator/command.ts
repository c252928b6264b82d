import { z } from 'zod'
import { Kafka, logLevel } from 'kafkajs'
import { parseConfig } from '../pipeline/config.ts'
import { simulateBank } from './bank.ts'
import { writeStreams } from './write.ts'
import { produceStreams } from './produce.ts'
import type { Logger } from '../pipeline/log.ts'
import { progressBar } from '../pipeline/progress.ts'

const SimulateConfig = z
  .object({
    customers: z.coerce.number().int().min(1).max(10_000_000).default(1000),
    days: z.coerce.number().int().min(1).max(3660).default(90),
    start: z.iso.date().default('2026-09-01'),
    seed: z.coerce.number().int().default(1),
    out: z.string().optional(),
    kafkaBrokers: z.string().optional(),
    transactionsTopic: z.string().default('cards.transactions'),
    appEventsTopic: z.string().default('cards.app-events'),
    lifecycleTopic: z.string().default('cards.lifecycle'),
  })
  .refine((c) => c.out || c.kafkaBrokers, { message: 'needs --out DIR or --kafka-brokers LIST', path: ['out'] })

/** `cardpulse simulate`: the synthetic bank's events to files or to the input topics. */
export async function simulateCommand(raw: Record<string, unknown>, log: Logger) {
  const c = parseConfig(SimulateConfig, raw)
  const events = simulateBank({ customers: c.customers, days: c.days, start: new Date(`${c.start}T00:00:00Z`), seed: c.seed })
  if (c.out) {
    const files = await writeStreams(c.out, events)
    log.info({ events: events.length, files }, `wrote ${events.length} events for ${c.customers} customers to ${c.out}`)
    return
  }
  const kafka = new Kafka({ clientId: 'cardpulse-simulate', brokers: c.kafkaBrokers!.split(','), logLevel: logLevel.NOTHING })
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  const topics = { transaction: c.transactionsTopic, app: c.appEventsTopic, lifecycle: c.lifecycleTopic }
  const bar = progressBar('simulate', events.length)
  bar.start()
  try {
    await produceStreams(producer, topics, events, (sent) => {
      bar.events(sent)
      bar.bytes(sent)
    })
  } finally {
    bar.stop()
    await producer.disconnect()
  }
  log.info({ events: events.length }, `produced ${events.length} events for ${c.customers} customers`)
}
