import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { CommonConfig } from './config.ts'
import { webhookEndpoints, webhookSecrets } from './config.ts'
import { CatalogHolder, DEFAULT_CATALOG_FILE, loadShadowCatalogFile } from '../pipeline/catalog/index.ts'
import type { Catalog, Delivery } from '../schemas/catalog.ts'
import { startHttp, type HttpOptions } from '../pipeline/http.ts'
import { checkExposure } from '../pipeline/httpGuard.ts'
import { outboxQueues } from '../pipeline/store/outbox.ts'
import type { StateStore } from '../pipeline/store/types.ts'
import { ClickHouseSink, connectClickHouse, type ClickHouseOptions } from '../sinks/clickhouse.ts'
import { OutboxDrain, type OutboxDrainOptions } from '../sinks/outbox.ts'
import { pseudonymiser } from '../sinks/pseudonym.ts'
import { WebhookDispatcher } from '../sinks/webhook/dispatcher.ts'
import { DeliveryMonitor } from '../sinks/monitor.ts'
import { WebhookSender } from '../sinks/webhook/sender.ts'
import { DEFAULT_RETRY_POLICY } from '../core/backoff.ts'
import { CardpulseError, UnavailableError } from '../core/errors.ts'
import { errText, type Instrumentation } from '../core/instrumentation.ts'
import { withoutPassword } from '../core/log.ts'

/**
 * What the composition roots that deliver (`run`, `demo`) put together the same way: the
 * catalogue, ClickHouse, delivery from the outbox, the HTTP server, the wait for a stop signal and
 * an ordered shutdown. Startup failures become errors of the core tree, one line for the CLI.
 */

/** The catalogue in force, reloaded when its file changes; reloads are reported as events. */
export function watchedCatalog(file: string | undefined, events: Instrumentation, onReloaded: (catalog: Catalog) => void = () => {}): CatalogHolder {
  const catalog: CatalogHolder = new CatalogHolder(file ?? DEFAULT_CATALOG_FILE, (r) => {
    if (!r.ok) return events.emit('catalog.rejected', { error: r.error })
    events.emit('catalog.reloaded', { version: r.version })
    onReloaded(catalog.current())
  })
  catalog.watch()
  return catalog
}

/** The shadow catalogue (SHADOW_CATALOG_FILE), reloaded like the live one; none without a file. */
export interface ShadowCatalog {
  current: () => Catalog | undefined
  close(): void
}

export function watchedShadowCatalog(file: string | undefined, events: Instrumentation, onReloaded: (catalog: Catalog) => void = () => {}): ShadowCatalog {
  if (file === undefined) return { current: () => undefined, close() {} }
  loadShadowCatalogFile(file) // a bad draft stops the start with one line that names it
  const holder = watchedCatalog(file, events, onReloaded)
  return { current: holder.current, close: () => holder.close() }
}

/** ClickHouse (a server, or embedded at `embeddedPath`) with its schema brought up to date; customer ids pseudonymised with `pseudonymiseKey`. */
export async function openClickHouse(opts: ClickHouseOptions & { pseudonymiseKey?: string }): Promise<ClickHouseSink> {
  let sink: ClickHouseSink | undefined
  try {
    sink = new ClickHouseSink(await connectClickHouse(opts), opts.database, opts.pseudonymiseKey ? pseudonymiser(opts.pseudonymiseKey) : undefined)
    await sink.ensureSchema()
    return sink
  } catch (e) {
    await sink?.close().catch(() => {})
    if (e instanceof CardpulseError) throw e
    throw new UnavailableError('clickhouse', withoutPassword(errText(e)), undefined, { cause: e })
  }
}

export interface OutboxDeliveryOptions extends Pick<OutboxDrainOptions, 'clickhouse' | 'partitions' | 'publishAlerts' | 'publishDeadLetters'> {
  config: CommonConfig & { webhookSecret: string }
  store: StateStore
  /** Epoch ms: what is due, and what has expired. */
  clock: () => number
  /** Webhooks taken per partition per run, and HTTP attempts in flight at once over every endpoint. */
  batchSize: number
  concurrency: number
  /** The catalogue's delivery section in force: per-channel limits, breaker, when behind and degraded. */
  delivery: () => Delivery
  /** Where webhooks go when no webhook URL is configured. */
  fallbackUrl?: string
  events: Instrumentation
}

/**
 * Signed webhooks and the other sinks, all drained from the store's committed outbox, and the
 * monitor of what waits there (started by the caller).
 */
export function outboxDelivery(o: OutboxDeliveryOptions): { drain: OutboxDrain; sender: WebhookSender; monitor: DeliveryMonitor } {
  const endpoints = webhookEndpoints(o.config)
  const sender = new WebhookSender({
    urls: Object.keys(endpoints).length || !o.fallbackUrl ? endpoints : { default: o.fallbackUrl },
    secret: webhookSecrets(o.config),
    timeoutMs: o.config.webhookTimeout,
  })
  const dispatcher = new WebhookDispatcher({
    store: o.store,
    sender,
    partitions: o.partitions,
    clock: o.clock,
    retry: DEFAULT_RETRY_POLICY,
    batchSize: o.batchSize,
    concurrency: o.concurrency,
    limits: o.delivery,
    instrumentation: o.events,
  })
  const drain = new OutboxDrain({
    queues: outboxQueues(o.store),
    clickhouse: o.clickhouse,
    webhooks: dispatcher,
    partitions: o.partitions,
    publishAlerts: o.publishAlerts,
    publishDeadLetters: o.publishDeadLetters,
    instrumentation: o.events,
  })
  const monitor = new DeliveryMonitor({
    backlog: (partition, now) => o.store.outboxBacklog(partition, now),
    partitions: o.partitions,
    endpoints: () => dispatcher.endpoints(),
    failingSinks: () => drain.failingSince(),
    settings: o.delivery,
    clock: o.clock,
    instrumentation: o.events,
  })
  return { drain, sender, monitor }
}

export interface HttpServer {
  port: number
  close(): Promise<void>
}

/**
 * Where and how the HTTP server is reached, from the settings; checked at once, so that an exposed
 * server without a token stops the command before anything connects.
 */
export function httpSettings(config: CommonConfig, openPrefixes: readonly string[] = []): Pick<HttpOptions, 'port' | 'host' | 'access' | 'allowUnauthenticated'> {
  const access = {
    ...(config.httpToken ? { token: config.httpToken } : {}),
    ...(config.metricsToken ? { metricsToken: config.metricsToken } : {}),
    rateLimitPerMinute: config.httpRateLimit,
    openPrefixes,
  }
  checkExposure(config.httpHost, access, config.httpAllowUnauthenticated)
  return { port: config.httpPort, host: config.httpHost, access, allowUnauthenticated: config.httpAllowUnauthenticated }
}

/** The `http://host:port` this machine reaches the server on: 127.0.0.1 for a wildcard or loopback bind, else the bound address. */
export function localOrigin(host: string | undefined, port: number): string {
  const h = !host || host === '0.0.0.0' || host === '::' || host === 'localhost' || /^127\./.test(host) ? '127.0.0.1' : host
  return `http://${h.includes(':') ? `[${h}]` : h}:${port}`
}

/** The dashboard, its API, /healthz and /metrics; a port that cannot be listened on is an UnavailableError. */
export async function serveHttp(opts: HttpOptions): Promise<HttpServer> {
  let server: Server
  try {
    server = await startHttp(opts)
  } catch (e) {
    if (e instanceof CardpulseError) throw e
    throw new UnavailableError('http', errText(e), undefined, { cause: e })
  }
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      // A dashboard left open in a browser keeps connections alive; they must not hold up a shutdown.
      const closed = new Promise((r) => server.close(r))
      server.closeAllConnections()
      await closed
    },
  }
}

/** Resolves on the first SIGINT or SIGTERM. */
export function stopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      resolve(signal)
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
}

/** A named step of a shutdown; a step of a part that never started does nothing. */
export type ShutdownStep = readonly [step: string, stop: () => unknown]

/**
 * Runs the steps one after the other, in the order given. A step that fails is reported and the
 * rest still run, so one stuck client does not leave the others open; the first failure is
 * thrown at the end.
 */
export async function shutDownInOrder(events: Instrumentation, steps: readonly ShutdownStep[]): Promise<void> {
  let failed: { error: unknown } | undefined
  for (const [step, stop] of steps) {
    try {
      await stop()
    } catch (e) {
      events.emit('shutdown.step_failed', { step, err: errText(e) })
      failed ??= { error: e }
    }
  }
  if (failed) throw failed.error
}
