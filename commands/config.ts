import { existsSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { z } from 'zod'
import { Duration, parseDuration } from '../schemas/duration.ts'
import { Channel } from '../schemas/events.ts'
import { ConfigError } from '../core/errors.ts'

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
  /** How far behind the watermark an event may arrive and still be applied (at once); later ones are dead-lettered. */
  allowedLateness: Duration.prefault('6h'),
  /** How far an event may trail the newest of its input partition and still be applied in order; adds to every decision's latency. */
  maxDisorder: Duration.prefault('0s'),
})

/** What the commands that deliver (run, demo) take besides. */
export const CommonConfig = PipelineConfig.extend({
  httpPort: number().int().min(0).max(65535).default(8080),
  clickhouseUrl: url('the ClickHouse server').optional(),
  clickhouseDatabase: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a plain identifier').default('cardpulse'),
  webhookUrl: url('webhooks').optional(),
  webhookUrlSms: url('SMS webhooks').optional(),
  webhookUrlPush: url('push webhooks').optional(),
  webhookUrlCall: url('call webhooks').optional(),
  webhookUrlAppBanner: url('app-banner webhooks').optional(),
  webhookSecret: z.string().min(16, 'must be at least 16 characters').optional(),
  webhookTimeout: Duration.prefault('10s'),
})

/** Which Kafka client library talks to the broker (pipeline/kafka/types.ts); rdkafka needs node-rdkafka built (`npm run rdkafka`). */
export const KafkaClientSetting = z.enum(['kafkajs', 'rdkafka'], { message: 'must be kafkajs or rdkafka' }).default('kafkajs')

export const RunConfig = CommonConfig.extend({
  kafkaBrokers: z
    .string({ message: 'is required: the Kafka bootstrap servers, e.g. 127.0.0.1:9092' })
    .transform((s) => s.split(',').map((b) => b.trim()).filter(Boolean))
    .refine((list) => list.length > 0 && list.every((b) => hostPort.test(b)), 'must be host:port[,host:port…]'),
  kafkaClient: KafkaClientSetting,
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
  const result = schema.safeParse(given)
  if (result.success) return result.data
  const issue = result.error.issues[0]
  throw new ConfigError(`${settingName(String(issue.path[0] ?? 'config'), envNames)} ${issue.message}`)
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
