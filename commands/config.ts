import { existsSync, readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { z } from 'zod'
import { Duration, parseDuration } from '../schemas/duration.ts'
import { Channel } from '../schemas/events.ts'
import { ConfigError } from '../core/errors.ts'
import type { KafkaSecurity } from '../pipeline/kafka/types.ts'
import { DEFAULT_CACHED_CUSTOMERS } from '../pipeline/processor.ts'

/**
 * Configuration, parsed once at the edge from flags and their environment twins. Nothing deeper
 * in the code reads process.env. A bad value stops the command with one line naming the setting.
 */

/** A number from a flag or the environment; text that is no number says so, limits say theirs. */
export const number = () => z.coerce.number({ error: (issue) => (issue.code === 'invalid_type' ? 'must be a number' : undefined) })

const hostPort = /^[^\s:,]+:\d{1,5}$/
const url = (what: string) => z.string().regex(/^https?:\/\/\S+$/, `must be an http(s) URL for ${what}`)

/** What every command takes: how it logs. */
export const LogConfig = z.object({
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  logFormat: z.enum(['pretty', 'json'], { message: 'must be pretty or json' }).optional(),
})
export type LogConfig = z.infer<typeof LogConfig>

/** What every command that runs the pipeline takes. */
export const PipelineConfig = LogConfig.extend({
  catalogFile: z.string().optional(),
  /** A draft catalogue run beside the live one: its decisions are recorded as shadow decisions, never sent. */
  shadowCatalog: z.string().optional(),
  /** How far behind the watermark an event may arrive and still be applied (at once); later ones are dead-lettered. */
  allowedLateness: Duration.prefault('6h'),
  /** How far an event may trail the newest of its input partition and still be applied in order; adds to every decision's latency. */
  maxDisorder: Duration.prefault('0s'),
})

/** What the commands that deliver (run, demo) take besides. */
export const CommonConfig = PipelineConfig.extend({
  httpPort: number().int().min(0).max(65535).default(8080),
  /** Loopback by default: the dashboard and API reach the network only on purpose, and then with a token. */
  httpHost: z.string().regex(/^[^\s/]+$/, 'must be an address to listen on, e.g. 127.0.0.1 or 0.0.0.0').default('127.0.0.1'),
  httpToken: z.string().min(16, 'must be at least 16 characters').optional(),
  metricsToken: z.string().min(16, 'must be at least 16 characters').optional(),
  httpAllowUnauthenticated: z.enum(['true', 'false'], { message: 'must be true or false' }).default('false').transform((v) => v === 'true'),
  httpRateLimit: number().int().min(0).max(1_000_000).default(600),
  clickhouseUrl: url('the ClickHouse server').optional(),
  clickhouseDatabase: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a plain identifier').default('cardpulse'),
  /** Replace customer ids in ClickHouse by a keyed HMAC (sinks/pseudonym.ts); keep the key: another breaks the link to earlier rows. */
  clickhousePseudonymiseKey: z.string().min(16, 'must be at least 16 characters').optional(),
  webhookUrl: url('webhooks').optional(),
  webhookUrlSms: url('SMS webhooks').optional(),
  webhookUrlPush: url('push webhooks').optional(),
  webhookUrlCall: url('call webhooks').optional(),
  webhookUrlAppBanner: url('app-banner webhooks').optional(),
  webhookSecret: z.string().min(16, 'must be at least 16 characters').optional(),
  /** While the secret is rotated: the one receivers may still verify with; webhooks carry a signature by each. */
  webhookSecretPrevious: z.string().min(16, 'must be at least 16 characters').optional(),
  webhookTimeout: Duration.prefault('10s'),
})

/** SASL and TLS to the brokers (KAFKA_SASL_*, KAFKA_TLS*); the shape both `run` and `simulate` take. */
export const KafkaSecuritySettings = {
  kafkaSaslMechanism: z
    .string()
    .transform((s) => s.toLowerCase())
    .pipe(z.enum(['plain', 'scram-sha-256', 'scram-sha-512'], { message: 'must be plain, scram-sha-256 or scram-sha-512' }))
    .optional(),
  kafkaSaslUsername: z.string().min(1).optional(),
  kafkaSaslPassword: z.string().min(1).optional(),
  kafkaTls: z.enum(['true', 'false'], { message: 'must be true or false' }).default('false').transform((v) => v === 'true'),
  kafkaTlsCaFile: z.string().min(1).optional(),
}
type KafkaSecurityConfig = z.infer<ReturnType<typeof z.object<typeof KafkaSecuritySettings>>>

/**
 * The brokers' security from the settings, or undefined for plaintext. SASL needs all three
 * settings; a CA file implies TLS and is read now, so a wrong path stops the command at once.
 */
export function kafkaSecurity(c: KafkaSecurityConfig, envNames: Record<string, string> = {}): KafkaSecurity | undefined {
  const { kafkaSaslMechanism: mechanism, kafkaSaslUsername: username, kafkaSaslPassword: password } = c
  if ((username || password) && !mechanism) throw new ConfigError(`${settingName('kafkaSaslMechanism', envNames)} is required with a SASL user name or password`, 'set it to plain, scram-sha-256 or scram-sha-512')
  if (mechanism && !username) throw new ConfigError(`${settingName('kafkaSaslUsername', envNames)} is required with ${settingName('kafkaSaslMechanism', envNames)}`)
  if (mechanism && !password) throw new ConfigError(`${settingName('kafkaSaslPassword', envNames)} is required with ${settingName('kafkaSaslMechanism', envNames)}`, 'or KAFKA_SASL_PASSWORD_FILE')
  let ca: string | undefined
  if (c.kafkaTlsCaFile) {
    try {
      ca = readFileSync(c.kafkaTlsCaFile, 'utf8')
    } catch (e) {
      throw new ConfigError(`${settingName('kafkaTlsCaFile', envNames)} names a file that cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'}): ${c.kafkaTlsCaFile}`)
    }
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError(`${settingName('kafkaTlsCaFile', envNames)} holds no PEM certificate: ${c.kafkaTlsCaFile}`)
  }
  const tls = c.kafkaTls || ca !== undefined
  if (!mechanism && !tls) return undefined
  return {
    ...(mechanism ? { sasl: { mechanism, username: username!, password: password! } } : {}),
    ...(tls ? { tls: ca ? { ca } : {} } : {}),
  }
}

/** Which Kafka client library talks to the broker (pipeline/kafka/types.ts); rdkafka needs node-rdkafka built (`npm run rdkafka`). */
export const KafkaClientSetting = z.enum(['kafkajs', 'rdkafka'], { message: 'must be kafkajs or rdkafka' }).default('kafkajs')

export const RunConfig = CommonConfig.extend({
  kafkaBrokers: z
    .string({ message: 'is required: the Kafka bootstrap servers, e.g. 127.0.0.1:9092' })
    .transform((s) => s.split(',').map((b) => b.trim()).filter(Boolean))
    .refine((list) => list.length > 0 && list.every((b) => hostPort.test(b)), 'must be host:port[,host:port…]'),
  kafkaClient: KafkaClientSetting,
  ...KafkaSecuritySettings,
  redisUrl: z.string({ message: 'is required, e.g. redis://127.0.0.1:6379' }).regex(/^rediss?(-cluster)?:\/\/\S+$/, 'must be a redis:// URL'),
  webhookSecret: z.string({ message: 'is required to sign webhooks' }).min(16, 'must be at least 16 characters'),
  groupId: z.string().min(1).default('cardpulse'),
  transactionsTopic: z.string().min(1).default('cards.transactions'),
  appEventsTopic: z.string().min(1).default('cards.app-events'),
  lifecycleTopic: z.string().min(1).default('cards.lifecycle'),
  dlqTopic: z.string().min(1).default('cardpulse.dlq'),
  alertTopic: z.string().min(1).default('cards.risk-alerts'),
  eventsTopic: z.string().min(1).default('cardpulse.events'),
  partitions: number().int().min(1).max(1024).default(6),
  /** Threads of the state stage, each a member of its consumer group; 0 runs it on the main thread. */
  stateThreads: number().int().min(0).max(64).default(() => Math.min(availableParallelism(), 4)),
  /** Customer records the process keeps decoded in memory, shared among the partitions it steps; the rest are read from Redis when their events come. */
  stateCacheCustomers: number().int().min(1000).max(10_000_000).default(DEFAULT_CACHED_CUSTOMERS),
  idleAdvance: Duration.prefault('10s'),
  sourceIdleness: Duration.prefault('2s'),
  /** How far ahead of the wall clock an input event may be before it is dead-lettered as from the future. */
  maxClockSkew: Duration.prefault('5m'),
  redisPrefix: z.string().regex(/^[A-Za-z0-9_.-]+$/).default('cardpulse'),
  connectTimeout: Duration.prefault('30s'),
  sessionTimeout: Duration.prefault('30s'),
  dataDir: z.string().min(1).default('.cardpulse'),
})
export type RunConfig = z.infer<typeof RunConfig>
export type CommonConfig = z.infer<typeof CommonConfig>

/** NDJSON input paths (`-` is stdin); a missing file is a setting to fix, found before any work starts. */
const InputFile = z.string().refine((path) => path === '-' || existsSync(path), { error: (issue) => `names a file that does not exist: ${String(issue.input)}` })

export const DemoConfig = CommonConfig.extend({
  input: z.array(InputFile).optional(),
  customers: number().int().min(1).max(1_000_000).default(2000),
  days: number().int().min(1).max(3660).default(120),
  start: z.iso.date({ message: 'must be a date like 2026-09-01' }).default('2026-09-01'),
  seed: number().int().default(1),
  bankConfig: z.string().optional(),
  out: z.string().min(1).optional(),
  serve: z.boolean().default(true),
  webhookSecret: z.string().min(16).default('cardpulse-demo-secret-0000'),
})
export type DemoConfig = z.infer<typeof DemoConfig>

export const ReplayConfig = PipelineConfig.extend({
  input: z.array(InputFile).min(1, 'give at least one NDJSON file (or - for stdin)'),
  out: z.string().min(1),
  progress: z.boolean().default(true),
  threads: number().int().min(1).max(64).optional(),
})
export type ReplayConfig = z.infer<typeof ReplayConfig>

/** `cardpulse explain`: one customer, from the live pipeline's Redis and ClickHouse or from a replay's output folder. */
export const ExplainConfig = LogConfig.extend({
  /** Checked by the command (pipeline/explain.ts), whose messages never repeat an id that may be a card number. */
  customer: z.string().optional(),
  limit: number().int().min(1, 'must be at least 1').max(1000, 'must be at most 1000').default(20),
  since: z.string().optional(),
  json: z.boolean().default(false),
  dir: z.string().min(1).optional(),
  catalogFile: z.string().optional(),
  redisUrl: z.string().regex(/^rediss?(-cluster)?:\/\/\S+$/, 'must be a redis:// URL').optional(),
  redisPrefix: z.string().regex(/^[A-Za-z0-9_.-]+$/).default('cardpulse'),
  clickhouseUrl: url('the ClickHouse server').optional(),
  clickhouseDatabase: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a plain identifier').default('cardpulse'),
  /** Replace customer ids in ClickHouse by a keyed HMAC (sinks/pseudonym.ts); keep the key: another breaks the link to earlier rows. */
  clickhousePseudonymiseKey: z.string().min(16, 'must be at least 16 characters').optional(),
  dataDir: z.string().min(1).default('.cardpulse'),
  connectTimeout: Duration.prefault('10s'),
})
export type ExplainConfig = z.infer<typeof ExplainConfig>

const DeliveryStatus = z.enum(['failed', 'expired'], { message: 'must be failed or expired' })

/** `cardpulse deliveries` (and `resend`): where `run` keeps its analytics and outbox, and the filters. */
export const DeliveriesConfig = LogConfig.extend({
  clickhouseUrl: url('the ClickHouse server').optional(),
  clickhouseDatabase: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a plain identifier').default('cardpulse'),
  dataDir: z.string().min(1).default('.cardpulse'),
  redisUrl: z.string().regex(/^rediss?(-cluster)?:\/\/\S+$/, 'must be a redis:// URL').optional(),
  redisPrefix: z.string().regex(/^[A-Za-z0-9_.-]+$/).default('cardpulse'),
  partitions: number().int().min(1).max(1024).default(6),
  connectTimeout: Duration.prefault('30s'),
  status: z
    .union([z.string(), z.array(z.string())])
    .transform((v) => (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter(Boolean))
    .pipe(z.array(DeliveryStatus).min(1))
    .default(['failed', 'expired']),
  trigger: z.string().min(1).optional(),
  channel: Channel.optional(),
  customer: z.string().min(1).optional(),
  /** A duration back from now (24h, 7d) or an ISO date-time. */
  since: z
    .string()
    .transform((v, ctx) => {
      const ms = parseDuration(v)
      if (ms !== undefined) return ms
      if (!Number.isNaN(Date.parse(v))) return v
      ctx.addIssue({ code: 'custom', message: 'must be a duration back from now (24h, 7d) or a date-time like 2026-12-01T00:00:00Z' })
      return z.NEVER
    })
    .optional(),
  limit: number().int().min(1).max(100_000).default(50),
  json: z.boolean().default(false),
  id: z
    .union([z.string(), z.array(z.string())])
    .transform((v) => (Array.isArray(v) ? v : [v]).flatMap((s) => s.split(/[\s,]+/)).filter(Boolean))
    .optional(),
  allFailed: z.boolean().default(false),
  until: z.iso.datetime({ offset: true, message: 'must be a date-time like 2026-12-05T18:00:00Z' }).optional(),
})
export type DeliveriesConfig = z.infer<typeof DeliveriesConfig>

/** The setting's flag and environment names, for error messages. */
/** `envNames`: the environment twin of a setting where it is not the key in capitals (DEMO_DAYS for days). */
export function settingName(key: string, envNames: Record<string, string> = {}): string {
  const env = envNames[key] ?? key.replace(/([A-Z])/g, '_$1').toUpperCase()
  const flag = key.replace(/([A-Z])/g, '-$1').toLowerCase()
  return `${env} (--${flag})`
}

export function parseConfig<T extends z.ZodType>(schema: T, raw: Record<string, unknown>, envNames: Record<string, string> = {}): z.infer<T> {
  // An empty environment variable means "not set", as in most deployment tools.
  const given = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== '' && v !== undefined))
  const fromFiles = secretsFromFiles(given, envNames)
  const result = schema.safeParse(given)
  if (result.success) return result.data
  const issue = result.error.issues[0]
  const key = String(issue.path[0] ?? 'config')
  // A bad secret read from a file is named by its file setting; the message never quotes a value.
  throw new ConfigError(`${settingName(fromFiles.has(key) ? `${key}File` : key, envNames)} ${issue.message}`)
}

/** Settings that are secrets: each may be given as `<NAME>_FILE` instead (Docker and Kubernetes secrets), never both. */
export const SECRET_SETTINGS = ['httpToken', 'metricsToken', 'webhookSecret', 'webhookSecretPrevious', 'kafkaSaslPassword', 'clickhousePseudonymiseKey'] as const

/** Replaces each `<secret>File` setting by the file's contents (without the final line break); returns the keys so read. */
function secretsFromFiles(given: Record<string, unknown>, envNames: Record<string, string>): Set<string> {
  const read = new Set<string>()
  for (const key of SECRET_SETTINGS) {
    const fileKey = `${key}File`
    const file = given[fileKey]
    if (file === undefined) continue
    if (given[key] !== undefined) throw new ConfigError(`${settingName(key, envNames)} and ${settingName(fileKey, envNames)} are both set`, 'set one of them')
    let text: string
    try {
      text = readFileSync(String(file), 'utf8')
    } catch (e) {
      throw new ConfigError(`${settingName(fileKey, envNames)} names a file that cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'}): ${String(file)}`)
    }
    given[key] = text.replace(/\r?\n$/, '')
    delete given[fileKey]
    read.add(key)
  }
  return read
}

/** The active signing secrets, the current first: cardpulse signs with each, a receiver verifies with any. */
export function webhookSecrets(c: { webhookSecret: string; webhookSecretPrevious?: string }): string[] {
  return c.webhookSecretPrevious && c.webhookSecretPrevious !== c.webhookSecret ? [c.webhookSecret, c.webhookSecretPrevious] : [c.webhookSecret]
}

export function webhookEndpoints(c: CommonConfig): Partial<Record<Channel | 'default', string>> {
  return {
    ...(c.webhookUrl ? { default: c.webhookUrl } : {}),
    ...(c.webhookUrlSms ? { sms: c.webhookUrlSms } : {}),
    ...(c.webhookUrlPush ? { push: c.webhookUrlPush } : {}),
    ...(c.webhookUrlCall ? { call: c.webhookUrlCall } : {}),
    ...(c.webhookUrlAppBanner ? { app_banner: c.webhookUrlAppBanner } : {}),
  }
}
