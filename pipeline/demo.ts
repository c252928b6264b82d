import { mkdtempSync, rmSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import type { DemoConfig } from './config.ts'
import { webhookEndpoints } from './config.ts'
import { CatalogHolder, DEFAULT_CATALOG_FILE } from './catalog/index.ts'
import { EmbeddedPipeline } from './embedded.ts'
import { readNdjsonBatches, totalBytes } from './sources/ndjson.ts'
import { createMetrics } from './metrics.ts'
import { countBatch, countDeadLetter } from './observe.ts'
import { startHttp, json } from './http.ts'
import { progressBar } from './progress.ts'
import type { Logger } from './log.ts'
import type { DeadLetter } from '../schemas/deadLetter.ts'
import { ClickHouseSink, connectClickHouse } from '../sinks/clickhouse.ts'
import { drainRows } from '../sinks/outbox.ts'
import { WebhookDispatcher, WebhookSender } from '../sinks/webhook.ts'
import { verifyWebhook } from '../sinks/webhookSignature.ts'
import { DEFAULT_RETRY_POLICY } from '../sinks/retry.ts'

/**
 * `cardpulse demo`: a bundled sample of the three streams through the whole pipeline on embedded
 * defaults — in-memory state, embedded ClickHouse, signed webhooks to a built-in receiver — with the
 * dashboard on HTTP_PORT. Time in the demo is event time: webhooks go out as the sample's clock
 * reaches their sendAt.
 */

export const SAMPLE_DIR = fileURLToPath(new URL('../simulator/sample/', import.meta.url))

export async function runDemo(config: DemoConfig, log: Logger) {
  const metrics = createMetrics()
  const catalog = new CatalogHolder(config.catalogFile ?? DEFAULT_CATALOG_FILE, (r) =>
    r.ok ? log.info({ version: r.version }, 'catalog.reloaded') : log.error({ error: r.error }, 'catalog.rejected'),
  )
  catalog.watch()
  const dataDir = mkdtempSync(join(tmpdir(), 'cardpulse-demo-'))
  const clickhouse = new ClickHouseSink(
    await connectClickHouse({ url: config.clickhouseUrl, database: config.clickhouseDatabase, embeddedPath: join(dataDir, 'chdb') }),
    config.clickhouseDatabase,
  )
  await clickhouse.ensureSchema()

  let status = 'playing the sample'
  let applied = 0
  const received = new Map<string, number>()
  const server = await startHttp({
    port: config.httpPort,
    metrics,
    log,
    clickhouse: () => clickhouse,
    health: () => ({ ok: true, mode: 'demo' }),
    info: () => ({ mode: 'demo', catalogVersion: catalog.current().version, status, eventsApplied: applied, webhooksReceived: received.size }),
    reloadCatalog: () => catalog.reload(),
    economics: () => catalog.current().economics,
    // The built-in marketing system: verifies signatures and deduplicates on Idempotency-Key.
    routes(req, res, body) {
      if (req.method !== 'POST' || !req.url?.startsWith('/demo/webhooks')) return false
      const check = verifyWebhook(config.webhookSecret, req.headers, body)
      if (!check.ok) {
        json(res, 401, { error: check.reason })
        return true
      }
      const key = String(req.headers['idempotency-key'])
      received.set(key, (received.get(key) ?? 0) + 1)
      json(res, 200, { received: key, duplicate: received.get(key)! > 1 })
      return true
    },
  })
  const port = (server.address() as AddressInfo).port
  const endpoints = webhookEndpoints(config)
  const sender = new WebhookSender({
    urls: Object.keys(endpoints).length ? endpoints : { default: `http://127.0.0.1:${port}/demo/webhooks` },
    secret: config.webhookSecret,
    timeoutMs: config.webhookTimeout,
  })
  const deadLetters: DeadLetter[] = []
  let played = false
  const engine = new EmbeddedPipeline({
    catalog: catalog.current,
    allowedLateness: config.allowedLateness,
    // Small batches keep the sample's clock moving in small steps, so webhooks go out before they expire.
    batchSize: 20,
    outbox: { webhooks: true, alerts: false, rows: true },
    onOutput: (o) => {
      applied += o.applied
      countBatch(metrics, o)
    },
    onDeadLetter: (q) => {
      deadLetters.push(q)
      countDeadLetter(metrics, q)
    },
  })
  const partitions = engine.processors.map((p) => p.partition)
  const dispatcher = new WebhookDispatcher({
    store: engine.store,
    sender,
    partitions: () => partitions,
    // The sample's clock: what the pipeline has applied, not what it has read ahead; after the
    // sample, half a day more, so that touchpoints deferred by quiet hours go out too.
    clock: () => Math.min(...engine.processors.map((p) => p.watermark)) + (played ? 12 * 3_600_000 : config.allowedLateness),
    retry: DEFAULT_RETRY_POLICY,
    batchSize: 500,
    concurrency: 16,
    logger: log,
    metrics: metrics.webhooks,
  })
  const drain = async () => {
    await dispatcher.runOnce()
    if (deadLetters.length) await clickhouse.insert(deadLetters.splice(0).map((row) => ({ table: 'dead_letters', row })))
    await drainRows(engine.store, partitions, clickhouse, { onRows: (table, n) => metrics.outboxRows.inc({ table }, n) })
  }

  const input = config.input ?? readdirSync(SAMPLE_DIR).filter((f) => f.endsWith('.ndjson')).map((f) => join(SAMPLE_DIR, f))
  log.info({ input, dashboard: `http://127.0.0.1:${port}/` }, `dashboard on http://127.0.0.1:${port}/ — playing ${input.length} event files`)
  const bar = progressBar('demo', totalBytes(input))
  const started = Date.now()
  bar.start()
  let n = 0
  try {
    for await (const batch of readNdjsonBatches(input, { onBytes: (b) => bar.bytes(b), now: Date.now() })) {
      // Small steps, so that the dashboard fills in as the sample plays.
      for (let i = 0; i < batch.length; i += 20) {
        const step = batch.slice(i, i + 20)
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
  const [totals] = await clickhouse.query<{ decisions: string; sent: string; control: string; suppressed: string; alerts: string }>(
    `SELECT count() AS decisions, countIf(outcome = 'send') AS sent, countIf(outcome = 'control') AS control, countIf(outcome = 'suppressed') AS suppressed,
       (SELECT count() FROM ${clickhouse.database}.alerts FINAL) AS alerts FROM ${clickhouse.database}.decisions FINAL`,
  )
  status = 'sample played'
  log.info(
    { events: n, applied, ...totals, webhooksReceived: received.size, seconds: (Date.now() - started) / 1000 },
    `played ${n} events: ${totals.decisions} decisions (${totals.sent} sent, ${totals.control} control, ${totals.suppressed} suppressed), ${totals.alerts} risk alerts, ${received.size} webhooks received`,
  )

  const close = async () => {
    catalog.close()
    // A dashboard left open in a browser keeps connections alive; they must not hold up a shutdown.
    const closed = new Promise((r) => server.close(r))
    server.closeAllConnections()
    await closed
    await sender.close()
    await clickhouse.close()
    rmSync(dataDir, { recursive: true, force: true })
  }
  if (!config.serve) return close()
  log.info(`dashboard on http://127.0.0.1:${port}/ — press Ctrl-C to stop`)
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  await close()
}
