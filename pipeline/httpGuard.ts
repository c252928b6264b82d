import { createHash, timingSafeEqual } from 'node:crypto'
import { isIP } from 'node:net'
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http'
import { ConfigError } from '../core/errors.ts'

/**
 * What stands in front of the HTTP routes: bearer-token authentication, a limit on request bodies
 * and a per-client rate limit on the API. The routes themselves know nothing of it; they are told
 * only whether the request was authenticated (so /healthz can keep its details to itself).
 */

export interface HttpAccess {
  /** The bearer token of the dashboard and /api/*; unset: they are open (only on loopback, unless allowed). */
  token?: string
  /** A token that opens /metrics alone, for a Prometheus scraper; the admin token opens it too. */
  metricsToken?: string
  /** Requests per minute per client address on /api/*; 0 turns the limit off. Default 600. */
  rateLimitPerMinute?: number
  /** Largest request body taken, in bytes; larger ones get 413. Default 256 KiB. */
  maxBodyBytes?: number
  /** Path prefixes that authenticate by other means (the demo's webhook receiver checks signatures). */
  openPrefixes?: readonly string[]
}

export const DEFAULT_RATE_LIMIT_PER_MINUTE = 600
export const DEFAULT_MAX_BODY_BYTES = 256 * 1024

/** What a route handler is given besides the request: its body, and whether the caller proved a token (true when none is configured). */
export interface GuardedRequest {
  body: Buffer
  authenticated: boolean
}

export type GuardedHandler = (req: IncomingMessage, res: ServerResponse, request: GuardedRequest) => Promise<void> | void

/** Pages anyone may load: the dashboard page holds no data (it asks the API for it, with the token), and the health check. */
const OPEN_PATHS = new Set(['/', '/assets/echarts.min.js', '/healthz'])

/** Whether a bind address stays on this machine. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true
  if (isIP(host) === 4) return host.startsWith('127.')
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  return h === '::1' || h.startsWith('::ffff:127.')
}

/**
 * Refuses to serve the API to the network without a token: binding anywhere but loopback needs
 * HTTP_TOKEN, unless it was explicitly allowed (a proxy in front authenticates).
 */
export function checkExposure(host: string, access: HttpAccess, allowUnauthenticated = false): void {
  if (access.token || allowUnauthenticated || isLoopback(host)) return
  throw new ConfigError(
    `HTTP_HOST ${host} is not a loopback address and no HTTP_TOKEN is set`,
    'set HTTP_TOKEN (or HTTP_TOKEN_FILE) to a long random token, bind to 127.0.0.1, or set HTTP_ALLOW_UNAUTHENTICATED=true if a proxy in front authenticates',
  )
}

/** Equal tokens, compared in time that depends on neither (digests of equal length, compared in constant time). */
export function sameToken(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}

function bearerOf(req: IncomingMessage): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')
  return m?.[1]
}

/**
 * A token bucket per client address: `perMinute` requests a minute, in bursts of up to as many.
 * Idle clients' buckets are dropped once many are held, so memory stays bounded.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>()
  private readonly perMs: number

  constructor(
    private readonly perMinute: number,
    private readonly clock: () => number = Date.now,
    private readonly maxClients = 10_000,
  ) {
    this.perMs = perMinute / 60_000
  }

  /** Takes one request from the client's bucket: 0 when allowed, else the seconds until one is. */
  take(client: string): number {
    const now = this.clock()
    const b = this.buckets.get(client) ?? { tokens: this.perMinute, at: now }
    b.tokens = Math.min(this.perMinute, b.tokens + (now - b.at) * this.perMs)
    b.at = now
    if (!this.buckets.has(client)) {
      if (this.buckets.size >= this.maxClients) this.forgetIdle(now)
      this.buckets.set(client, b)
    }
    if (b.tokens >= 1) {
      b.tokens -= 1
      return 0
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.perMs / 1000))
  }

  private forgetIdle(now: number): void {
    for (const [client, b] of this.buckets) if (b.tokens + (now - b.at) * this.perMs >= this.perMinute) this.buckets.delete(client)
    // Still full of busy clients: forget the oldest rather than grow without bound.
    for (const client of this.buckets.keys()) {
      if (this.buckets.size < this.maxClients) break
      this.buckets.delete(client)
    }
  }
}

function refuse(res: ServerResponse, status: number, error: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(JSON.stringify({ error }))
}

/** Reads the body up to `max` bytes; undefined (and the rest left unread) when it is larger. */
function readBody(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const onData = (c: Buffer) => {
      size += c.length
      if (size <= max) return void chunks.push(c)
      req.off('data', onData)
      req.pause()
      resolve(undefined)
    }
    req.on('data', onData)
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

/** The request listener that checks access, limits and body size, then hands over to `handler`. */
export function guard(access: HttpAccess, handler: GuardedHandler): RequestListener {
  const maxBody = access.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  const perMinute = access.rateLimitPerMinute ?? DEFAULT_RATE_LIMIT_PER_MINUTE
  const limiter = perMinute > 0 ? new RateLimiter(perMinute) : undefined
  const open = access.openPrefixes ?? []
  const challenge = { 'www-authenticate': 'Bearer realm="cardpulse"' }

  return async (req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    if (path.startsWith('/api/') && limiter) {
      const wait = limiter.take(req.socket.remoteAddress ?? '')
      if (wait > 0) return refuse(res, 429, `too many requests; try again in ${wait} s`, { 'retry-after': String(wait) })
    }

    const bearer = bearerOf(req)
    const matches = (token: string | undefined) => token !== undefined && bearer !== undefined && sameToken(bearer, token)
    const authenticated = !access.token || matches(access.token)
    const isOpen = OPEN_PATHS.has(path) || open.some((p) => path.startsWith(p))
    if (!isOpen) {
      // /metrics takes either token, and is open only when neither is set.
      const metrics = path === '/metrics'
      const allowed = metrics ? (!access.token && !access.metricsToken) || matches(access.token) || matches(access.metricsToken) : authenticated
      if (!allowed) {
        const needed = metrics ? 'METRICS_TOKEN or HTTP_TOKEN' : 'HTTP_TOKEN'
        return refuse(res, 401, bearer === undefined ? `a bearer token is required (Authorization: Bearer <${needed}>)` : 'the bearer token is not valid', challenge)
      }
    }

    const declared = Number(req.headers['content-length'])
    if (Number.isFinite(declared) && declared > maxBody) return tooLarge(res, maxBody)
    let body: Buffer | undefined
    try {
      body = await readBody(req, maxBody)
    } catch {
      // The client went away while sending: there is no one to answer.
      return void res.destroy()
    }
    if (!body) return tooLarge(res, maxBody)
    await handler(req, res, { body, authenticated })
  }
}

function tooLarge(res: ServerResponse, max: number): void {
  // The rest of the body is not read: the connection closes after the answer.
  refuse(res, 413, `request body over ${max} bytes`, { connection: 'close' })
}
