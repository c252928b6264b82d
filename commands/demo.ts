import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { webhookSecrets, type DemoConfig } from './config.ts'
import { httpSettings, localOrigin, openClickHouse, outboxDelivery, serveHttp, shutDownInOrder, stopSignal, watchedCatalog, watchedShadowCatalog } from './wiring.ts'
import { EmbeddedPipeline } from '../pipeline/embedded.ts'
import { readNdjsonBatches, totalBytes, type SourceItem } from '../pipeline/sources/ndjson.ts'
import { decode } from '../pipeline/decode.ts'
import { createMetrics } from '../core/metrics.ts'
import { Instrumentation } from '../core/instrumentation.ts'
import { json } from '../pipeline/http.ts'
import { dayProgressBar, progressBar } from './progress.ts'
import { writeResults, type PipelineResults } from '../pipeline/results.ts'
import type { Logger } from '../core/log.ts'
import type { Conversion } from '../schemas/conversion.ts'
import type { Delivery } from '../schemas/catalog.ts'
import type { DeadLetter } from '../schemas/deadLetter.ts'
import { verifyWebhook } from '../sinks/webhook/signature.ts'
import { SimulatedBank } from '../simulator/bank.ts'
import { embeddedSource, explainCustomer, type ExplainSource } from '../pipeline/explainSources.ts'
import { UnavailableError } from '../core/errors.ts'
import { loadBankConfig } from '../simulator/config.ts'

/**
 * `cardpulse demo`: a simulated bank through the whole pipeline on embedded defaults — in-memory
 * state, embedded ClickHouse, signed webhooks to a built-in receiver — with the dashboard on
 * HTTP_PORT. The loop is closed: each webhook reaches the simulated customer, who may react to it
 * as the bank's configuration says, while the control group gets nothing; so the dashboard's
 * measured lift can be held against the effect the simulation was given. Time is event time:
 * webhooks go out as the simulated clock reaches their sendAt. `--input` plays NDJSON files
 * instead (open loop).
 */

const HOUR = 3_600_000
const DAY = 24 * HOUR
/** Simulated time per step: webhooks due within a step reach the bank at its end. */
const STEP = 3 * HOUR

export async function runDemo(config: DemoConfig, log: Logger) {
  // The built-in receiver authenticates webhooks by their signature, not by the dashboard's token.
  const httpAt = httpSettings(config, ['/demo/webhooks'])
  const metrics = createMetrics()
  const events = new Instrumentation(log, metrics)
  const catalog = watchedCatalog(config.catalogFile, events.child({ component: 'catalog' }))
  const shadowCatalog = watchedShadowCatalog(config.shadowCatalog, events.child({ component: 'shadow-catalog' }))
  const bankConfig = loadBankConfig(config.bankConfig)
  // Without a configuration of its own, the demo's bank sends a few malformed messages, so the
  // dashboard shows what becomes of bad input.
  if (!config.bankConfig) bankConfig.malformed.share = 0.0003
  const start = Date.parse(`${config.start}T00:00:00Z`)
  const bank = config.input ? undefined : new SimulatedBank({ customers: config.customers, days: config.days, start, seed: config.seed, config: bankConfig })

  const dataDir = mkdtempSync(join(tmpdir(), 'cardpulse-demo-'))
  const clickhouse = await openClickHouse({ url: config.clickhouseUrl, database: config.clickhouseDatabase, embeddedPath: join(dataDir, 'chdb'), pseudonymiseKey: config.clickhousePseudonymiseKey })

  let status = bank ? 'starting' : 'playing the files'
  let applied = 0
  let persuaded = 0
  const received = new Map<string, number>()
  let explainSource: ExplainSource | undefined
  const http = await serveHttp({
    ...httpAt,
    metrics,
    events,
    clickhouse: () => clickhouse,
    health: () => ({ ok: true, mode: 'demo' }),
    info: () => ({
      mode: 'demo',
      catalogVersion: catalog.current().version,
      status,
      eventsApplied: applied,
      webhooksReceived: received.size,
      ...(bank ? { simulation: { customers: config.customers, days: config.days, seed: config.seed, day: simulatedDay(), persuaded, effects: bankConfig.effects } } : {}),
    }),
    reloadCatalog: () => catalog.reload(),
    economics: () => catalog.current().economics,
    explain: async (request) => {
      if (!explainSource) throw new UnavailableError('demo', 'the embedded pipeline is not started yet')
      return explainCustomer(explainSource, { ...request, catalog: catalog.current() })
    },
    // The built-in marketing system: verifies signatures, deduplicates on Idempotency-Key, and
    // hands each touchpoint to the simulated customer.
    routes(req, res, body) {
      if (req.method !== 'POST' || !req.url?.startsWith('/demo/webhooks')) return false
      const check = verifyWebhook(webhookSecrets(config), req.headers, body)
      if (!check.ok) {
        json(res, 401, { error: check.reason })
        return true
      }
      const key = String(req.headers['idempotency-key'])
      received.set(key, (received.get(key) ?? 0) + 1)
      const reaction = bank?.receive(JSON.parse(body.toString('utf8')))
      if (reaction?.ok && !reaction.duplicate && reaction.persuaded) persuaded++
      json(res, 200, { received: key, duplicate: received.get(key)! > 1 })
      return true
    },
  })
  const port = http.port

  // What `--out` writes, as replay would; conversions keep each decision's latest row.
  const results: PipelineResults = { decisions: [], alerts: [], deadLetters: [], conversions: [], applied: 0, duplicates: 0, late: 0, lateApplied: 0, timersFired: 0 }
  const conversions = new Map<string, Conversion>()
  const deadLetters: DeadLetter[] = []
  let played = false
  const engine = new EmbeddedPipeline({
    catalog: catalog.current,
    shadowCatalog: shadowCatalog.current,
    maxDisorder: config.maxDisorder,
    allowedLateness: config.allowedLateness,
    outbox: { webhooks: true, alerts: false, rows: true },
    onOutput: (o) => {
      applied += o.applied
      events.emit('pipeline.batch_end', o)
      if (!config.out) return
      results.decisions.push(...o.decisions)
      if (shadowCatalog.current()) (results.shadowDecisions ??= []).push(...o.shadowDecisions)
      results.alerts.push(...o.alerts)
      results.deadLetters.push(...o.deadLetters)
      for (const c of o.conversions) conversions.set(c.decisionId, c)
      results.applied += o.applied
      results.duplicates += o.duplicates
      results.late += o.late
      results.lateApplied += o.lateness.filter((l) => l.applied).length
      results.timersFired += o.timersFired
    },
    onDeadLetter: (q) => {
      deadLetters.push(q)
      if (config.out) results.deadLetters.push(q)
      events.emit('ingest.dead_lettered', { topic: q.source.topic, partition: q.source.partition, offset: q.source.offset, code: q.error.code })
    },
  })
  const partitions = engine.processors.map((p) => p.partition)
  const watermark = () => Math.min(...engine.processors.map((p) => p.watermark))
  // "As of" in the demo is the simulated time the pipeline has reached.
  explainSource = embeddedSource({ store: engine.store, partitions: partitions.length, clickhouse, clock: () => (Number.isFinite(watermark()) ? watermark() : start) })
  const simulatedDay = () => Math.max(0, Math.min(config.days, Math.floor((watermark() - start) / DAY)))
  // Alerts stay rows in ClickHouse (the demo has no alert topic), and the embedded pipeline's
  // outbox keeps no dead letters: late events are rows, bad input is inserted below.
  const delivery = outboxDelivery({
    config,
    store: engine.store,
    clickhouse,
    partitions: () => partitions,
    // The demo's clock: what the pipeline has applied, not what it has read ahead; at the end,
    // half a day more, so that touchpoints deferred by quiet hours go out too.
    clock: () => watermark() + (played ? 12 * HOUR : config.maxDisorder),
    batchSize: 500,
    concurrency: 16,
    // Simulated time runs about a day a second: a channel's real rate limit would hold it back by
    // simulated weeks, so the demo keeps only the breaker and the concurrency.
    delivery: () => withoutRates(catalog.current().delivery),
    fallbackUrl: `${localOrigin(httpAt.host, port)}/demo/webhooks`,
    events,
  })
  const drain = async () => {
    // Bad input never enters the embedded pipeline, so its rows do not pass through the outbox.
    if (deadLetters.length) await clickhouse.insert(deadLetters.splice(0).map((row) => ({ table: 'dead_letters', row })))
    await delivery.drain.runOnce()
  }

  const dashboard = `${localOrigin(httpAt.host, port)}/`
  const started = Date.now()
  let n = 0
  if (bank) {
    log.info({ dashboard, customers: config.customers, days: config.days, seed: config.seed }, `dashboard on ${dashboard} — simulating ${config.customers} customers over ${config.days} days`)
    const bar = dayProgressBar('demo', start, config.days)
    const offsets: Record<string, number> = {}
    bar.start()
    try {
      while (!bank.done) {
        const t = Math.min(Math.max(bank.time, bank.start) + STEP, bank.end)
        const items: SourceItem[] = []
        for (const m of bank.messages(t)) {
          const source = { topic: m.stream, partition: 0, offset: String((offsets[m.stream] = (offsets[m.stream] ?? -1) + 1)) }
          // Through the same edge as live input: decoding, validation and the PAN screen.
          const d = decode(m.value, source, m.stream, null)
          items.push(d.ok ? { ok: true, event: d.event, at: m.at, source } : { ok: false, deadLetter: d.deadLetter })
        }
        await engine.pushAll(items)
        n += items.length
        await drain()
        status = `simulated day ${simulatedDay()} of ${config.days}`
        bar.update(t, applied)
      }
      await engine.finish(bank.end)
      played = true
      await drain()
    } finally {
      bar.stop()
    }
  } else {
    const input = config.input!
    log.info({ input, dashboard }, `dashboard on ${dashboard} — playing ${input.length} event files`)
    const bar = progressBar('demo', totalBytes(input))
    bar.start()
    try {
      for await (const batch of readNdjsonBatches(input, { onBytes: (b) => bar.bytes(b), now: null })) {
        for (let i = 0; i < batch.length; i += 500) {
          const step = batch.slice(i, i + 500)
          await engine.pushAll(step)
          n += step.length
          bar.events(applied)
          await drain()
        }
      }
      await engine.finish()
      played = true
      await drain()
    } finally {
      bar.stop()
    }
  }

  // Windows still open at the end of the simulation land in ClickHouse in their current state, as
  // replay reports them, so the dashboard and summary.json agree.
  const open = engine.openConversions()
  if (open.length) await clickhouse.insert(open.map((row) => ({ table: 'conversions', row })))
  const [totals] = await clickhouse.query<{ decisions: string; sent: string; control: string; suppressed: string; alerts: string; cancelled: string }>(
    `SELECT count() AS decisions, countIf(outcome = 'send') AS sent, countIf(outcome = 'control') AS control, countIf(outcome = 'suppressed') AS suppressed,
       (SELECT count() FROM ${clickhouse.database}.alerts FINAL) AS alerts,
       (SELECT count() FROM ${clickhouse.database}.deliveries FINAL WHERE status = 'cancelled') AS cancelled FROM ${clickhouse.database}.decisions FINAL`,
  )
  status = bank ? `simulated ${config.days} days` : 'files played'
  log.info(
    { events: n, applied, ...totals, webhooksReceived: received.size, persuaded, seconds: (Date.now() - started) / 1000 },
    `played ${n} events: ${totals.decisions} decisions (${totals.sent} sent, ${totals.control} control, ${totals.suppressed} suppressed), ${totals.alerts} risk alerts, ${received.size} webhooks received, ${totals.cancelled} cancelled while waiting`,
  )
  if (config.out) {
    for (const c of open) conversions.set(c.decisionId, c)
    results.conversions = [...conversions.values()]
    await writeResults(config.out, results, catalog.current(), clickhouse, shadowCatalog.current())
    if (bank) writeFileSync(join(config.out, 'truth.ndjson'), bank.truthNdjson())
    log.info({ out: config.out }, `wrote what replay writes to ${config.out}`)
  }

  const close = () =>
    shutDownInOrder(events, [
      ['catalog', () => catalog.close()],
      ['shadow catalogue', () => shadowCatalog.close()],
      ['http', () => http.close()],
      ['webhook sender', () => delivery.sender.close()],
      ['clickhouse', () => clickhouse.close()],
      ['data directory', () => rmSync(dataDir, { recursive: true, force: true })],
    ])
  if (!config.serve) return close()
  log.info(`dashboard on ${dashboard} — press Ctrl-C to stop`)
  await stopSignal()
  await close()
}

/** The delivery settings with no rate limit on any channel. */
function withoutRates(delivery: Delivery): Delivery {
  const channels = Object.fromEntries(Object.entries(delivery.channels).map(([c, limits]) => [c, { concurrency: limits.concurrency }])) as Delivery['channels']
  return { ...delivery, channels }
}
