import pino, { type Logger } from 'pino'

/** JSON logs for machines; readable lines when a person watches a terminal. */
export function createLogger(level = process.env.LOG_LEVEL ?? 'info'): Logger {
  const pretty = process.stdout.isTTY && process.env.LOG_FORMAT !== 'json'
  return pino({
    level,
    base: { service: 'cardpulse' },
    // Card numbers never reach logs: events and bodies are never logged, and these paths are cut.
    redact: { paths: ['*.original', '*.body', '*.event'], censor: '[redacted]' },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: true, ignore: 'pid,hostname,service', translateTime: 'HH:MM:ss' } } } : {}),
  })
}

export type { Logger }
