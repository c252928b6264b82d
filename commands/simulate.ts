import { createWriteStream, mkdirSync, writeFileSync, type WriteStream } from 'node:fs'
import { join } from 'node:path'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { z } from 'zod'
import { KafkaClientSetting, KafkaSecuritySettings, kafkaSecurity, number, parseConfig } from './config.ts'
import type { Logger } from '../core/log.ts'
import { dayProgressBar } from './progress.ts'
import { verifyWebhook } from '../sinks/webhook/signature.ts'
import type { EventType } from '../schemas/events.ts'
import { SimulatedBank, type BankMessage } from '../simulator/bank.ts'
import { loadBankConfig } from '../simulator/config.ts'
import { STREAM_FILES } from '../simulator/write.ts'
import { createKafkaClient } from '../pipeline/kafka/client.ts'
import type { KafkaProducer } from '../pipeline/kafka/types.ts'

const HOUR = 3_600_000
const DAY = 24 * HOUR

const SimulateConfig = z
  .object({
    customers: number().int().min(1).max(10_000_000).default(1000),
    days: number().int().min(1).max(3660).default(90),
    start: z.iso.date().optional(),
    seed: number().int().default(1),
    config: z.string().optional(),
    malformed: number().min(0).max(1).optional(),
    out: z.string().optional(),
    kafkaBrokers: z.string().optional(),
    kafkaClient: KafkaClientSetting,
    ...KafkaSecuritySettings,
    transactionsTopic: z.string().default('cards.transactions'),
    appEventsTopic: z.string().default('cards.app-events'),
    lifecycleTopic: z.string().default('cards.lifecycle'),
    rate: number().positive().optional(),
    speed: number().positive().optional(),
    listen: number().int().min(0).max(65535).optional(),
    webhookSecret: z.string().min(16, 'must be at least 16 characters').optional(),
    linger: number().min(0).default(10),
    progress: z.boolean().default(true),
  })
  .refine((c) => c.out || c.kafkaBrokers, { message: 'needs --out DIR or --kafka-brokers LIST', path: ['out'] })
  .refine((c) => c.listen === undefined || c.kafkaBrokers, { message: 'needs --kafka-brokers: --listen runs the bank against a live cardpulse', path: ['kafkaBrokers'] })
  .refine((c) => c.listen === undefined || c.webhookSecret, { message: 'is required with --listen, to verify the webhooks (the secret cardpulse run signs with)', path: ['webhookSecret'] })
export type SimulateConfig = z.infer<typeof SimulateConfig>

/**
 * `cardpulse simulate`: the simulated bank's events to NDJSON files (with truth.ndjson) or to the
 * input topics, as fast as possible, at `--rate` events/s, or at `--speed` simulated seconds per
 * second. `--listen PORT` closes the loop: the bank receives cardpulse's webhooks and its
 * customers react.
 */
export async function simulateCommand(raw: Record<string, unknown>, log: Logger, envNames: Record<string, string> = {}) {
  const c = parseConfig(SimulateConfig, raw, envNames)
  const security = kafkaSecurity(c, envNames)
  const config = loadBankConfig(c.config)
  if (c.malformed !== undefined) config.malformed.share = c.malformed
  const now = Date.now()
  // Closed loop against a live pipeline: by default the period ends now, so its event time meets the wall clock.
  const start = c.start ? Date.parse(`${c.start}T00:00:00Z`) : c.listen !== undefined ? Math.floor((now - c.days * DAY) / HOUR) * HOUR : Date.parse('2026-09-01T00:00:00Z')
  const bank = new SimulatedBank({ customers: c.customers, days: c.days, start, seed: c.seed, config })
  const files = c.out ? new StreamFiles(c.out) : undefined
  const bar = dayProgressBar('simulate', start, c.days, c.progress)
  let producer: KafkaProducer | undefined
  let server: Server | undefined
  const topics: Record<EventType, string> = { transaction: c.transactionsTopic, app: c.appEventsTopic, lifecycle: c.lifecycleTopic }
  const stats = { webhooks: 0, duplicates: 0, rejected: 0, persuaded: 0 }
  let stopping = false
  const stop = () => {
    stopping = true
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  try {
    if (c.kafkaBrokers) {
      const brokers = c.kafkaBrokers.split(',')
      producer = await createKafkaClient({ kind: c.kafkaClient, clientId: 'cardpulse-simulate', brokers, security }).producer({ idempotent: true })
    }
    if (c.listen !== undefined) {
      server = await listen(c.listen, c.webhookSecret!, bank, stats, log)
      log.info({ port: (server.address() as AddressInfo).port }, `receiving webhooks on http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks`)
    }
    const speed = c.speed ?? (c.listen !== undefined ? 3600 : undefined)
    const began = Date.now()
    let sent = 0
    bar.start()
    const step = async (until: number) => {
      const batch: BankMessage[] = []
      for (const m of bank.messages(until)) {
        batch.push(m)
        if (batch.length >= 2000) await flush()
      }
      await flush()
      bar.update(bank.time, sent)
      async function flush() {
        if (!batch.length) return
        const chunk = batch.splice(0)
        files?.write(chunk)
        if (producer) await produce(producer, topics, chunk)
        sent += chunk.length
        if (c.rate && !speed) {
          const ahead = (sent / c.rate) * 1000 - (Date.now() - began)
          if (ahead > 0) await sleep(ahead)
        }
        if (files) await files.drained()
      }
    }
    if (speed) {
      // Simulated time runs at `speed` × the wall clock; the bank reacts to webhooks as they arrive.
      while (!bank.done && !stopping) {
        await step(start + (Date.now() - began) * speed)
        await sleep(100)
      }
    } else {
      for (let day = 1; day <= c.days && !stopping; day++) await step(start + day * DAY - 1)
    }
    bar.stop()
    if (server && !stopping && c.linger > 0) {
      log.info(`the simulated period is over; receiving late webhooks for ${c.linger} s more`)
      for (let i = 0; i < c.linger * 10 && !stopping; i++) await sleep(100)
    }
    if (files) {
      await files.close()
      writeFileSync(join(c.out!, 'truth.ndjson'), bank.truthNdjson())
    }
    const e = bank.emitted
    const total = e.transaction + e.app + e.lifecycle
    log.info(
      { events: total, ...e, customers: c.customers, days: c.days, seconds: (Date.now() - began) / 1000, ...(server ? { webhooks: stats } : {}) },
      `${files ? `wrote ${total} events (${e.malformed} malformed messages) and the truth to ${c.out}` : `produced ${total} events`} for ${c.customers} customers over ${c.days} days${server ? `; ${stats.webhooks} webhooks received, ${stats.persuaded} customers persuaded` : ''}`,
    )
  } finally {
    bar.stop()
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
    if (server) await new Promise((r) => server!.close(r))
    await producer?.close()
  }
}

async function produce(producer: KafkaProducer, topics: Record<EventType, string>, messages: BankMessage[]) {
  await producer.send(
    (Object.keys(topics) as EventType[]).map((type) => ({
      topic: topics[type],
      messages: messages.filter((m) => m.stream === type).map((m) => ({ key: m.key, value: m.value })),
    })),
  )
}

/** The webhook receiver of `--listen`: verifies signatures, deduplicates on Idempotency-Key, hands touchpoints to the bank. */
function listen(port: number, secret: string, bank: SimulatedBank, stats: { webhooks: number; duplicates: number; rejected: number; persuaded: number }, log: Logger): Promise<Server> {
  const seen = new Set<string>()
  const server = createServer((req, res) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'Content-Type': 'application/json' })
      res.end(JSON.stringify(body))
    }
    if (req.method === 'GET' && req.url === '/healthz') return reply(200, { ok: true, time: new Date(Math.max(bank.time, 0)).toISOString(), done: bank.done })
    if (req.method !== 'POST') return reply(405, { error: 'POST webhooks here' })
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const raw = Buffer.concat(chunks)
      const check = verifyWebhook(secret, req.headers, raw)
      if (!check.ok) {
        stats.rejected++
        return reply(401, { error: check.reason })
      }
      const key = String(req.headers['idempotency-key'] ?? '')
      if (key && seen.has(key)) {
        stats.duplicates++
        return reply(200, { received: key, duplicate: true })
      }
      let body: unknown
      try {
        body = JSON.parse(raw.toString('utf8'))
      } catch {
        return reply(400, { error: 'body is not JSON' })
      }
      const result = bank.receive(body)
      if (!result.ok) {
        log.warn({ error: result.reason }, 'webhook.rejected')
        return reply(422, { error: result.reason })
      }
      if (key) seen.add(key)
      if (result.duplicate) stats.duplicates++
      else {
        stats.webhooks++
        if (result.persuaded) stats.persuaded++
      }
      reply(200, { received: key || (body as { id: string }).id, duplicate: result.duplicate })
    })
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve(server))
  })
}

/** The three stream files, written as the bank steps. */
class StreamFiles {
  private readonly streams: Record<EventType, WriteStream>
  constructor(dir: string) {
    mkdirSync(dir, { recursive: true })
    this.streams = Object.fromEntries(Object.entries(STREAM_FILES).map(([type, file]) => [type, createWriteStream(join(dir, file))])) as Record<EventType, WriteStream>
  }
  write(messages: BankMessage[]) {
    const text: Record<EventType, string[]> = { transaction: [], app: [], lifecycle: [] }
    for (const m of messages) text[m.stream].push(m.value)
    for (const type of Object.keys(text) as EventType[]) if (text[type].length) this.streams[type].write(text[type].join('\n') + '\n')
  }
  async drained() {
    for (const s of Object.values(this.streams)) if (s.writableNeedDrain) await once(s, 'drain')
  }
  async close() {
    await Promise.all(Object.values(this.streams).map((s) => new Promise((resolve) => s.end(resolve))))
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
