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
    redact: { paths: ['*.original', '*.body', '*.event'], censor: '[redacted]' },
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: process.stdout.isTTY, ignore: 'pid,hostname,service', translateTime: 'HH:MM:ss' } } } : {}),
  }
  return destination ? pino(options, destination) : pino(options)
}

export type { Logger }
