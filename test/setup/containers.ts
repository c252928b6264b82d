/**
 * `npm test` with CARDPULSE_TESTCONTAINERS=1: the Kafka broker (Apache Kafka in KRaft mode, in
 * Confluent's image), Redis and a ClickHouse server are started in Docker through testcontainers
 * for the run, and the suites reach them through KAFKA_BROKERS, REDIS_URL and CLICKHOUSE_URL —
 * the same suites that otherwise run on the services of scripts/services.sh and the embedded
 * ClickHouse. The suites' own extra services (a second broker, a Redis killed and restarted) still
 * come from scripts/services.sh and redis-server.
 */

const IMAGES = {
  kafka: 'confluentinc/cp-kafka:7.9.0',
  redis: 'redis:7.4',
  clickhouse: 'clickhouse/clickhouse-server:25.3',
}

export default async function startContainers(): Promise<(() => Promise<void>) | undefined> {
  if (process.env.CARDPULSE_TESTCONTAINERS !== '1') return undefined
  const { getContainerRuntimeClient } = await import('testcontainers')
  try {
    await getContainerRuntimeClient()
  } catch (e) {
    throw new Error(`CARDPULSE_TESTCONTAINERS=1 needs a Docker engine (${(e as Error).message}); start Docker, or unset it to run on scripts/services.sh`)
  }
  const [{ KafkaContainer }, { RedisContainer }, { ClickHouseContainer }] = await Promise.all([import('@testcontainers/kafka'), import('@testcontainers/redis'), import('@testcontainers/clickhouse')])
  const [kafka, redis, clickhouse] = await Promise.all([
    new KafkaContainer(IMAGES.kafka).withKraft().start(),
    new RedisContainer(IMAGES.redis).start(),
    new ClickHouseContainer(IMAGES.clickhouse).start(),
  ])
  process.env.KAFKA_BROKERS = `${kafka.getHost()}:${kafka.getMappedPort(9093)}`
  process.env.REDIS_URL = redis.getConnectionUrl()
  const url = new URL(clickhouse.getHttpUrl())
  url.username = clickhouse.getUsername()
  url.password = clickhouse.getPassword()
  process.env.CLICKHOUSE_URL = url.origin.replace('//', `//${url.username}:${url.password}@`)
  console.error(`testcontainers: Kafka ${process.env.KAFKA_BROKERS}, Redis ${process.env.REDIS_URL}, ClickHouse ${clickhouse.getHttpUrl()}`)
  return async () => {
    await Promise.all([kafka.stop(), redis.stop(), clickhouse.stop()])
  }
}
