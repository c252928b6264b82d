import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import type { Metrics } from '../core/metrics.ts'
import type { ClickHouseSink } from '../sinks/clickhouse.ts'
import { errText, type Instrumentation } from '../core/instrumentation.ts'
import { VIEWS, type ViewName } from './analytics/queries.ts'
import { FilterError } from './analytics/filter.ts'
import { Economics } from '../schemas/catalog.ts'
import { NotFoundError, UnavailableError } from '../core/errors.ts'
import { customerIdProblem, parseSince, SINCE_HELP, type Explanation } from './explain.ts'
import type { ExplainRequest } from './explainSources.ts'
import { checkExposure, guard, type HttpAccess } from './httpGuard.ts'

/** The pipeline's HTTP face: the dashboard page, its API, health and Prometheus metrics. */

export interface HttpOptions {
  port: number
  /** Address to listen on; default 127.0.0.1. Anything but loopback needs `access.token` (or `allowUnauthenticated`). */
  host?: string
  /** Tokens, limits and open paths (pipeline/httpGuard.ts); default: no token, loopback only. */
  access?: HttpAccess
  /** Serve without a token on a non-loopback address: only behind a proxy that authenticates. */
  allowUnauthenticated?: boolean
  metrics: Metrics
  clickhouse: () => ClickHouseSink | undefined
  /** `ok` false: not live (503). `degraded`: why a live process is not delivering everything (an endpoint or sink down too long). */
  health: () => { ok: boolean; degraded?: string[]; [k: string]: unknown }
  info: () => Record<string, unknown>
  reloadCatalog?: () => { ok: true; version: string } | { ok: false; error: string }
  /** The catalogue's economics in force, for the ROI views (default: the catalogue defaults). */
  economics?: () => Economics
  /** GET /api/customers/:id/explain: why the customer got, or did not get, each message (pipeline/explain.ts). */
  explain?: (request: Omit<ExplainRequest, 'catalog'>) => Promise<Explanation>
  /** Extra routes, tried first; return true when handled. */
  routes?: (req: IncomingMessage, res: ServerResponse, body: Buffer) => Promise<boolean> | boolean
  events: Instrumentation
}

const PAGE = new URL('../dashboards/web/index.html', import.meta.url)
const require = createRequire(import.meta.url)

export async function startHttp(opts: HttpOptions): Promise<Server> {
  const host = opts.host ?? '127.0.0.1'
  const access = opts.access ?? {}
  checkExposure(host, access, opts.allowUnauthenticated)
  const echarts = readFileSync(require.resolve('echarts/dist/echarts.min.js'))
  const server = createServer(guard(access, async (req, res, { body, authenticated }) => {
    try {
      if (opts.routes && (await opts.routes(req, res, body))) return
      const path = new URL(req.url ?? '/', 'http://x').pathname
      if (req.method === 'GET' && path === '/') return send(res, 200, 'text/html; charset=utf-8', readFileSync(PAGE))
      if (req.method === 'GET' && path === '/assets/echarts.min.js') return send(res, 200, 'text/javascript', echarts)
      if (req.method === 'GET' && path === '/healthz') {
        // A degraded process is live (200): restarting it would not bring a receiver back.
        const h = opts.health()
        // Load balancers get the status; the details only with the token (when one is set).
        const status = !h.ok ? 'unavailable' : h.degraded?.length ? 'degraded' : 'ok'
        return json(res, h.ok ? 200 : 503, authenticated ? { status, live: h.ok, ...h, degraded: h.degraded ?? [] } : { status })
      }
      if (req.method === 'GET' && path === '/metrics') return send(res, 200, opts.metrics.registry.contentType, await opts.metrics.registry.metrics())
      if (req.method === 'GET' && path === '/api/summary') {
        const sink = opts.clickhouse()
        if (!sink) return json(res, 503, { error: 'ClickHouse is not connected yet' })
        return json(res, 200, { ...opts.info(), ...(await summary(sink)) })
      }
      // The analytics views of pipeline/analytics/queries.ts: GET /api/analytics/roi?from=…&to=…&trigger=…&segment=…
      const view = /^\/api\/analytics\/([A-Za-z]+)$/.exec(path)?.[1]
      if (req.method === 'GET' && view) {
        if (!Object.hasOwn(VIEWS, view)) return json(res, 404, { error: `no analytics view "${view}"; views: ${Object.keys(VIEWS).join(', ')}` })
        const sink = opts.clickhouse()
        if (!sink) return json(res, 503, { error: 'ClickHouse is not connected yet' })
        const filter = new URL(req.url ?? '/', 'http://x').searchParams
        try {
          return json(res, 200, await VIEWS[view as ViewName](sink, filter, opts.economics?.() ?? Economics.parse({})))
        } catch (e) {
          if (e instanceof FilterError) return json(res, 400, { error: e.message })
          throw e
        }
      }
      const customer = /^\/api\/customers\/([^/]*)\/explain$/.exec(path)?.[1]
      if (req.method === 'GET' && customer !== undefined && opts.explain) return await explainRoute(res, decodePath(customer), new URL(req.url ?? '/', 'http://x').searchParams, opts.explain)
      if (req.method === 'POST' && path === '/api/catalog/reload' && opts.reloadCatalog) {
        const r = opts.reloadCatalog()
        return json(res, r.ok ? 200 : 422, r)
      }
      json(res, 404, { error: `no route ${req.method} ${path}` })
    } catch (e) {
      opts.events.emit('http.error', { err: errText(e), url: req.url })
      if (!res.headersSent) json(res, 500, { error: (e as Error).message })
    }
  }))
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        e.code === 'EADDRINUSE'
          ? new UnavailableError('http', `port ${opts.port} is taken`, 'set HTTP_PORT to a free port')
          : new UnavailableError('http', `cannot listen on ${host} port ${opts.port}: ${e.message}`, e.code === 'EADDRNOTAVAIL' ? 'set HTTP_HOST to an address of this machine' : undefined),
      ),
    )
    server.listen(opts.port, host, () => resolve())
  })
  return server
}

/** The explain route: 400 for a bad id, limit or since (the id never repeated), 404 for an unknown customer, 503 when a store is unreachable. */
async function explainRoute(res: ServerResponse, customerId: string | undefined, query: URLSearchParams, explain: NonNullable<HttpOptions['explain']>) {
  const problem = customerId === undefined ? 'the customer id is not valid URL encoding' : customerIdProblem(customerId)
  if (problem) return json(res, 400, { error: problem })
  const limitText = query.get('limit')
  const limit = limitText === null ? 20 : Number(limitText)
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) return json(res, 400, { error: 'limit must be a whole number from 1 to 1000' })
  const sinceText = query.get('since')
  const since = sinceText === null ? undefined : parseSince(sinceText)
  if (sinceText !== null && !since) return json(res, 400, { error: `since must be ${SINCE_HELP}` })
  try {
    return json(res, 200, await explain({ customerId: customerId!, limit, ...(since ? { since } : {}) }))
  } catch (e) {
    if (e instanceof NotFoundError) return json(res, 404, { error: e.message })
    if (e instanceof UnavailableError) return json(res, 503, { error: e.oneLine })
    throw e
  }
}

function decodePath(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment)
  } catch {
    return undefined
  }
}

async function summary(sink: ClickHouseSink) {
  const db = sink.database
  const [decisions, recent, deliveries, alerts, deadLetters, volume] = await Promise.all([
    sink.query(`SELECT trigger, outcome, suppressed_by, count() AS n FROM ${db}.decisions FINAL GROUP BY trigger, outcome, suppressed_by ORDER BY trigger, outcome`),
    sink.query(
      `SELECT id, trigger, customer_id, card_id, outcome, suppressed_by, channel, event_time, send_at FROM ${db}.decisions FINAL ORDER BY event_time DESC, id LIMIT 25`,
    ),
    sink.query(`SELECT status, count() AS n, round(avg(latency_ms), 1) AS avg_latency_ms FROM ${db}.deliveries FINAL GROUP BY status`),
    sink.query(`SELECT kind, severity, count() AS n FROM ${db}.alerts FINAL GROUP BY kind, severity ORDER BY n DESC`),
    sink.query(`SELECT code, count() AS n FROM ${db}.dead_letters FINAL GROUP BY code ORDER BY n DESC`),
    sink.query(`SELECT toString(toDate(hour)) AS day, type, sum(events) AS events FROM ${db}.event_volume_hourly GROUP BY day, type ORDER BY day, type`),
  ])
  return { decisions, recent, deliveries, alerts, deadLetters, volume }
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer) {
  res.writeHead(status, { 'content-type': type })
  res.end(body)
}

export function json(res: ServerResponse, status: number, value: unknown) {
  send(res, status, 'application/json', JSON.stringify(value))
}
