import { describe, expect, it } from 'vitest'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RunConfig, kafkaSecurity, parseConfig } from '../commands/config.ts'
import { createKafkaClient } from '../pipeline/kafka/client.ts'
import { kafkajsSecurity } from '../pipeline/kafka/kafkajs.ts'
import { RdkafkaClient, loadRdkafka, rdkafkaSecurity } from '../pipeline/kafka/rdkafka.ts'
import type { KafkaClientKind } from '../pipeline/kafka/types.ts'
import { openRedis } from '../pipeline/store/redisClient.ts'
import { connectClickHouse } from '../sinks/clickhouse.ts'
import { CardpulseError, ConfigError } from '../core/errors.ts'
import { KAFKA_BROKERS, REDIS_URL, uniqueId } from './helpers/services.ts'

/**
 * Credentials of the services: Kafka SASL and TLS settings reach both clients, and no one-line
 * error about a server that cannot be reached repeats a password. The broker here speaks only
 * plaintext, so SASL is shown to reach the wire by the broker's refusal of it.
 */

const BASE = { kafkaBrokers: '127.0.0.1:9092', redisUrl: 'redis://127.0.0.1:6379', webhookSecret: 'a-secret-of-16-chars' }
const PASSWORD = 'sasl-password-never-shown'
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'

function security(raw: Record<string, unknown>) {
  return kafkaSecurity(parseConfig(RunConfig, { ...BASE, ...raw }))
}

function oneLineOf(e: unknown): string {
  expect(e).toBeInstanceOf(CardpulseError)
  const line = (e as CardpulseError).oneLine
  expect(line).not.toContain('\n')
  return line
}

function rdkafkaBuilt(): boolean {
  try {
    loadRdkafka()
    return true
  } catch {
    return false
  }
}
// As in kafkaClients.integration.test.ts: CI builds node-rdkafka and requires these cases.
const clients: KafkaClientKind[] = rdkafkaBuilt() || process.env.CARDPULSE_RDKAFKA === 'required' || process.env.CI ? ['kafkajs', 'rdkafka'] : ['kafkajs']

describe('Kafka security settings', () => {
  it('is plaintext unless SASL or TLS is asked for', () => {
    expect(security({})).toBeUndefined()
    expect(security({ kafkaTls: 'false' })).toBeUndefined()
  })

  it('reads SASL settings, the password from a file, and the CA (which implies TLS)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardpulse-kafka-'))
    writeFileSync(join(dir, 'password'), `${PASSWORD}\n`)
    writeFileSync(join(dir, 'ca.pem'), PEM)
    expect(security({ kafkaSaslMechanism: 'SCRAM-SHA-512', kafkaSaslUsername: 'cardpulse', kafkaSaslPasswordFile: join(dir, 'password'), kafkaTlsCaFile: join(dir, 'ca.pem') })).toEqual({
      sasl: { mechanism: 'scram-sha-512', username: 'cardpulse', password: PASSWORD },
      tls: { ca: PEM },
    })
    expect(security({ kafkaSaslMechanism: 'plain', kafkaSaslUsername: 'u', kafkaSaslPassword: 'p' })).toEqual({ sasl: { mechanism: 'plain', username: 'u', password: 'p' } })
    expect(security({ kafkaTls: 'true' })).toEqual({ tls: {} })
  })

  it('says in one line what is missing or wrong', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cardpulse-kafka-'))
    writeFileSync(join(dir, 'not.pem'), 'hello')
    const line = (raw: Record<string, unknown>) => {
      try {
        security(raw)
        return 'accepted'
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError)
        return (e as ConfigError).oneLine
      }
    }
    expect(line({ kafkaSaslMechanism: 'gssapi', kafkaSaslUsername: 'u', kafkaSaslPassword: 'p' })).toBe('KAFKA_SASL_MECHANISM (--kafka-sasl-mechanism) must be plain, scram-sha-256 or scram-sha-512')
    expect(line({ kafkaSaslMechanism: 'plain', kafkaSaslPassword: PASSWORD })).toBe('KAFKA_SASL_USERNAME (--kafka-sasl-username) is required with KAFKA_SASL_MECHANISM (--kafka-sasl-mechanism)')
    expect(line({ kafkaSaslMechanism: 'plain', kafkaSaslUsername: 'u' })).toBe('KAFKA_SASL_PASSWORD (--kafka-sasl-password) is required with KAFKA_SASL_MECHANISM (--kafka-sasl-mechanism): or KAFKA_SASL_PASSWORD_FILE')
    expect(line({ kafkaSaslUsername: 'u', kafkaSaslPassword: PASSWORD })).toMatch(/^KAFKA_SASL_MECHANISM \(--kafka-sasl-mechanism\) is required with a SASL user name or password/)
    expect(line({ kafkaTls: 'yes' })).toBe('KAFKA_TLS (--kafka-tls) must be true or false')
    expect(line({ kafkaTlsCaFile: join(dir, 'not.pem') })).toBe(`KAFKA_TLS_CA_FILE (--kafka-tls-ca-file) holds no PEM certificate: ${join(dir, 'not.pem')}`)
    expect(line({ kafkaTlsCaFile: join(dir, 'absent.pem') })).toMatch(/^KAFKA_TLS_CA_FILE \(--kafka-tls-ca-file\) names a file that cannot be read \(ENOENT\)/)
  })

  it('turns into the settings of each client library', () => {
    const sasl = { mechanism: 'scram-sha-256', username: 'u', password: PASSWORD } as const
    expect(kafkajsSecurity(undefined)).toEqual({})
    expect(kafkajsSecurity({ sasl, tls: { ca: PEM } })).toEqual({ ssl: { ca: [PEM] }, sasl: { mechanism: 'scram-sha-256', username: 'u', password: PASSWORD } })
    expect(kafkajsSecurity({ tls: {} })).toEqual({ ssl: true })
    expect(rdkafkaSecurity(undefined)).toEqual({})
    expect(rdkafkaSecurity({ sasl, tls: { ca: PEM } })).toEqual({ 'security.protocol': 'sasl_ssl', 'sasl.mechanisms': 'SCRAM-SHA-256', 'sasl.username': 'u', 'sasl.password': PASSWORD, 'ssl.ca.pem': PEM })
    expect(rdkafkaSecurity({ sasl })).toMatchObject({ 'security.protocol': 'sasl_plaintext' })
    expect(rdkafkaSecurity({ tls: {} })).toEqual({ 'security.protocol': 'ssl' })
  })

  it.runIf(clients.includes('rdkafka'))('reaches the configuration every librdkafka client of the process starts from', () => {
    const config = new RdkafkaClient({ clientId: 'c', brokers: ['127.0.0.1:9092'], security: { sasl: { mechanism: 'plain', username: 'u', password: PASSWORD }, tls: {} } }).config()
    expect(config).toMatchObject({ 'metadata.broker.list': '127.0.0.1:9092', 'security.protocol': 'sasl_ssl', 'sasl.mechanisms': 'PLAIN', 'sasl.username': 'u', 'sasl.password': PASSWORD })
  })

  for (const kind of clients) {
    it(`reaches the broker through ${kind}: the plaintext broker refuses SASL, and the one-line error does not show the password`, async () => {
      const client = createKafkaClient({ kind, clientId: `sasl-${uniqueId()}`, brokers: KAFKA_BROKERS.split(','), connectTimeoutMs: 3000, security: { sasl: { mechanism: 'scram-sha-256', username: 'cardpulse', password: PASSWORD } } })
      const line = oneLineOf(await client.admin().then(async (admin) => {
        try {
          await admin.ensureTopics([`sasl-topic-${uniqueId()}`], 1)
        } finally {
          await admin.close()
        }
      }).catch((e) => e))
      expect(line).toMatch(/^cannot reach Kafka at /)
      expect(line).not.toContain(PASSWORD)
    }, 20_000)
  }
})

describe('Redis and ClickHouse credentials in their URLs', () => {
  it('sends the password of REDIS_URL to Redis (which refuses it here), and the error line does not show it', async () => {
    const url = REDIS_URL.replace('redis://', `redis://nobody-${uniqueId()}:redis-password-never-shown@`)
    const line = oneLineOf(await openRedis(url, { readyTimeoutMs: 1500 }).catch((e) => e))
    expect(line).toMatch(/^cannot reach Redis at redis:\/\/nobody-[^:]+:\*\*\*@/)
    expect(line).toMatch(/WRONGPASS|NOAUTH|AUTH/)
    expect(line).not.toContain('redis-password-never-shown')
  })

  it('does not show the password of an unreachable Redis or Redis Cluster', async () => {
    for (const url of ['rediss://app:redis-password-never-shown@127.0.0.1:1', 'redis-cluster://app:redis-password-never-shown@127.0.0.1:1,127.0.0.1:2']) {
      const line = oneLineOf(await openRedis(url, { readyTimeoutMs: 500 }).catch((e) => e))
      expect(line).toMatch(/^cannot reach Redis at redis(s|-cluster):\/\/app:\*\*\*@127\.0\.0\.1:1/)
      expect(line).not.toContain('redis-password-never-shown')
    }
  })

  it('does not show the password of an unreachable ClickHouse', async () => {
    const line = oneLineOf(await connectClickHouse({ url: 'http://analyst:clickhouse-password-never-shown@127.0.0.1:1', database: 'cardpulse' }).catch((e) => e))
    expect(line).toMatch(/^cannot reach ClickHouse at http:\/\/analyst:\*\*\*@127\.0\.0\.1:1/)
    expect(line).not.toContain('clickhouse-password-never-shown')
  })
})
