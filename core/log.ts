import pino, { type DestinationStream, type Logger } from 'pino'

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
export type LogFormat = 'pretty' | 'json'

/**
 * JSON logs for machines; readable lines when a person watches a terminal (unless `json` is asked
 * for). `destination` (JSON lines) is for tests that read what would have been printed.
 */
export function createLogger(level: LogLevel = 'info', format: LogFormat | undefined = undefined, destination?: DestinationStream): Logger {
  const pretty = !destination && (format ?? (process.stdout.isTTY ? 'pretty' : 'json')) === 'pretty'
  const options = {
    level,
    base: { service: 'cardpulse' },
    // Card numbers never reach logs: events and bodies are never logged, and these paths are cut.
    // Nor do secrets: settings and headers that hold one are cut, and URLs lose their password.
    redact: { paths: REDACTED_PATHS, censor: (value: unknown, path: string[]) => (URL_FIELDS.has(path.at(-1)!) && typeof value === 'string' ? withoutPassword(value) : '[redacted]') },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: process.stdout.isTTY, ignore: 'pid,hostname,service', translateTime: 'HH:MM:ss' } } } : {}),
  }
  return destination ? pino(options, destination) : pino(options)
}

/** Fields that hold a secret, wherever they are logged (top level or one level down). */
const SECRET_FIELDS = ['webhookSecret', 'webhookSecretPrevious', 'httpToken', 'metricsToken', 'kafkaSaslPassword', 'clickhousePseudonymiseKey', 'password', 'secret', 'token', 'authorization']
/** Fields that hold a server URL, which may carry user:password. */
const URL_FIELDS = new Set(['redisUrl', 'clickhouseUrl', 'url'])
const REDACTED_PATHS = [
  '*.original',
  '*.body',
  '*.event',
  ...SECRET_FIELDS.flatMap((f) => [f, `*.${f}`]),
  ...[...URL_FIELDS].flatMap((f) => [f, `*.${f}`]),
  'headers.authorization',
  '*.headers.authorization',
]

/**
 * A URL with any password in it replaced by `***` (`rediss://user:***@host:6380`), also inside
 * longer text such as an error message. What is not a URL is returned as it is.
 */
export function withoutPassword(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)([^\s:@/]*):([^\s@/]*)@/gi, '$1$2:***@')
}

export type { Logger }
