import { Cluster, Redis, type ClusterNode, type RedisOptions } from 'ioredis'
import { ConfigError, UnavailableError } from '../../core/errors.ts'
import { RECONNECT_POLICY, backoffDelay } from '../../core/backoff.ts'
import { withoutPassword } from '../../core/log.ts'

/** Connecting to Redis, a single server or a cluster, with the project's reconnect policy. */

export type RedisClient = Redis | Cluster

export interface RedisConnectOptions {
  /** How long to wait for a ready connection before giving up (ms). */
  readyTimeoutMs?: number
  /** Extra ioredis options (TLS, username, commandTimeout…); the retry strategy is ours. */
  redisOptions?: RedisOptions
  /**
   * The first connection error of an outage, once connected (not every reconnect attempt); ioredis
   * reconnects by itself, commands fail to their callers meanwhile.
   */
  onError?: (err: Error) => void
  /** Ready again after an outage, with how long it lasted (ms). */
  onReconnected?: (downMs: number) => void
}

/** Redis did not become ready in time: start it, or wait. */
export class RedisUnreachableError extends UnavailableError {
  constructor(url: string, reason: string) {
    // Neither the URL nor a reason that quotes it ever carries the password.
    super('redis', `cannot reach Redis at ${withoutPassword(url)} (${withoutPassword(reason)})`, 'start Redis or set REDIS_URL')
  }
}

/**
 * Opens a connection and waits until it is ready. `redis://` and `rediss://` URLs give one
 * client; `redis-cluster://[user:pass@]h1:p1,h2:p2` gives a Cluster. Gives up after
 * `readyTimeoutMs` (default 10 s) with a RedisUnreachableError of one line.
 */
export async function openRedis(url: string, opts: RedisConnectOptions): Promise<RedisClient> {
  const client = createClient(url, opts.redisOptions ?? {})
  let connected = false
  let downSince: number | undefined
  client.on('error', (err: Error) => {
    if (!connected || downSince !== undefined) return
    downSince = Date.now()
    opts.onError?.(err)
  })
  client.on('ready', () => {
    if (downSince === undefined) return
    const down = Date.now() - downSince
    downSince = undefined
    opts.onReconnected?.(down)
  })
  try {
    await waitReady(client, redactUrl(url), opts.readyTimeoutMs ?? 10_000)
  } catch (err) {
    client.disconnect()
    throw err
  }
  connected = true
  return client
}

/** Reconnect quickly at first, then every ~2 s; never give up (the owner decides when to stop). */
const retryStrategy = (times: number) => backoffDelay(times, RECONNECT_POLICY)

const CLUSTER_SCHEME = 'redis-cluster://'

function createClient(url: string, redisOptions: RedisOptions): RedisClient {
  if (!url.startsWith(CLUSTER_SCHEME)) return new Redis(url, { ...redisOptions, retryStrategy })

  const rest = url.slice(CLUSTER_SCHEME.length).replace(/\/.*$/, '')
  const at = rest.lastIndexOf('@')
  const auth: RedisOptions = {}
  if (at >= 0) {
    const [user, pass] = rest.slice(0, at).split(':', 2).map(decodeURIComponent)
    if (user) auth.username = user
    if (pass) auth.password = pass
  }
  const nodes: ClusterNode[] = rest
    .slice(at + 1)
    .split(',')
    .filter(Boolean)
    .map((hp) => {
      const i = hp.lastIndexOf(':')
      return i < 0 ? { host: hp, port: 6379 } : { host: hp.slice(0, i), port: Number(hp.slice(i + 1)) }
    })
  if (!nodes.length) throw new ConfigError(`no nodes in ${redactUrl(url)}`, 'give REDIS_URL as redis-cluster://host:port,host:port')
  const { retryStrategy: _ignored, ...perNode } = redisOptions
  return new Cluster(nodes, { clusterRetryStrategy: retryStrategy, redisOptions: { ...perNode, ...auth } })
}

function waitReady(client: RedisClient, url: string, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve()
  return new Promise((resolve, reject) => {
    let last: unknown
    const onError = (err: unknown) => {
      last = err
    }
    const onReady = () => {
      done()
      resolve()
    }
    const timer = setTimeout(() => {
      done()
      reject(new RedisUnreachableError(url, reasonOf(last)))
    }, timeoutMs)
    const done = () => {
      clearTimeout(timer)
      client.off('error', onError)
      client.off('ready', onReady)
    }
    client.on('error', onError)
    client.on('ready', onReady)
  })
}

/** The most telling short cause of a connection error: an errno code, else its first line. */
function reasonOf(err: unknown): string {
  if (!err) return 'no reply'
  if (typeof err !== 'object') return String(err)
  const e = err as { code?: unknown; lastNodeError?: unknown; errors?: unknown[]; message?: unknown }
  if (typeof e.code === 'string') return e.code
  if ('lastNodeError' in e) {
    // A cluster's node connections close before their socket error surfaces.
    const r = e.lastNodeError ? reasonOf(e.lastNodeError) : ''
    return r && r !== 'Connection is closed.' ? r : 'no cluster node reachable'
  }
  if (Array.isArray(e.errors) && e.errors.length) return reasonOf(e.errors[0])
  return String(e.message ?? err).split('\n')[0]
}

/** The URL without its password, fit for a log line. */
function redactUrl(url: string): string {
  return withoutPassword(url)
}
