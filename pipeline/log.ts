import pino, { type DestinationStream, type Logger } from 'pino'

/**
 * JSON logs for machines; readable lines when a person watches a terminal. `destination` (JSON
 * lines) is for tests that read what would have been printed.
 */
export function createLogger(level = process.env.LOG_LEVEL ?? 'info', destination?: DestinationStream): Logger {
  const pretty = !destination && process.stdout.isTTY && process.env.LOG_FORMAT !== 'json'
  const options = {
    level,
    base: { service: 'cardpulse' },
    // Card numbers never reach logs: events and bodies are never logged, and these paths are cut.
    redact: { paths: ['*.original', '*.body', '*.event'], censor: '[redacted]' },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: true, ignore: 'pid,hostname,service', translateTime: 'HH:MM:ss' } } } : {}),
  }
  return destination ? pino(options, destination) : pino(options)
}

export type { Logger }
