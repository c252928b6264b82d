import { join } from 'node:path'
import type { ExplainConfig } from './config.ts'
import { openClickHouse } from './wiring.ts'
import { loadCatalogFile } from '../pipeline/catalog/index.ts'
import { customerIdProblem, parseSince, renderExplanation, SINCE_HELP, type Explanation } from '../pipeline/explain.ts'
import { explainCustomer, liveSource, replaySource, type ExplainSource } from '../pipeline/explainSources.ts'
import { openRedis, type RedisClient } from '../pipeline/store/redisClient.ts'
import type { ClickHouseSink } from '../sinks/clickhouse.ts'
import { ConfigError } from '../core/errors.ts'
import type { Logger } from '../core/log.ts'

/**
 * `cardpulse explain --customer ID`: why a customer got, or did not get, each message. Reads the
 * live pipeline's Redis state and ClickHouse records (REDIS_URL, CLICKHOUSE_URL or the embedded
 * ClickHouse in DATA_DIR), or a replay's output folder (--dir); writes text, or JSON with --json.
 */
export async function explainCommand(config: ExplainConfig, _log: Logger, write: (text: string) => void = (t) => void process.stdout.write(t)): Promise<Explanation> {
  const problem = customerIdProblem(config.customer)
  if (problem) throw new ConfigError(`EXPLAIN_CUSTOMER (--customer): ${problem}`)
  const customerId = config.customer!
  const since = config.since === undefined ? undefined : parseSince(config.since)
  if (config.since !== undefined && !since) throw new ConfigError(`EXPLAIN_SINCE (--since) must be ${SINCE_HELP}`)
  if (!config.dir && !config.redisUrl)
    throw new ConfigError('nothing to read the customer from', 'set REDIS_URL (--redis-url) for the live pipeline, or --dir DIR for a replay\'s output folder')
  const catalog = loadCatalogFile(config.catalogFile)

  let redis: RedisClient | undefined
  let clickhouse: ClickHouseSink | undefined
  try {
    let source: ExplainSource
    if (config.dir) source = replaySource(config.dir)
    else {
      redis = await openRedis(config.redisUrl!, { readyTimeoutMs: config.connectTimeout })
      clickhouse = await openClickHouse({ url: config.clickhouseUrl, database: config.clickhouseDatabase, embeddedPath: join(config.dataDir, 'clickhouse'), pseudonymiseKey: config.clickhousePseudonymiseKey })
      source = liveSource({ redis, redisUrl: config.redisUrl!, prefix: config.redisPrefix, clickhouse })
    }
    const explanation = await explainCustomer(source, { customerId, catalog, limit: config.limit, ...(since ? { since } : {}) })
    const color = Boolean(process.stdout.isTTY) && !config.json
    write(config.json ? JSON.stringify(explanation, null, 2) + '\n' : renderExplanation(explanation, { color }))
    return explanation
  } finally {
    if (redis) redis.disconnect()
    await clickhouse?.close().catch(() => {})
  }
}
