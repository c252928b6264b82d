/**
 * The one error tree. Every error cardpulse raises on purpose says whether trying again can help
 * (`retriable`) and what the person running it should do (`hint`); the command line prints the
 * two as one line and exits with `exitCode`. An error outside this tree is a bug: it is logged
 * with its stack.
 */
export abstract class CardpulseError extends Error {
  /** Whether the same call may succeed later (a server back up, a partition free again). */
  abstract readonly retriable: boolean
  /** Exit status of a command that ends with it: 2 for a setting to fix, 1 otherwise. */
  readonly exitCode: number = 1

  constructor(
    message: string,
    /** What to do about it, when the message alone does not say. */
    readonly hint?: string,
    options?: ErrorOptions,
  ) {
    super(message, options)
  }

  override get name() {
    return this.constructor.name
  }

  /** The message and the hint, on one line, as the command line prints them. */
  get oneLine(): string {
    return this.hint ? `${this.message}: ${this.hint}` : this.message
  }
}

/** A setting, file or argument a person must fix; retrying cannot help. */
export class ConfigError extends CardpulseError {
  readonly retriable = false
  override readonly exitCode = 2
}

/** A server (Kafka, Redis, ClickHouse, a port to listen on) that cannot be reached or used now. */
export class UnavailableError extends CardpulseError {
  readonly retriable = true
  constructor(
    /** Which service: `kafka`, `redis`, `clickhouse`, `http`. */
    readonly service: string,
    message: string,
    hint?: string,
    options?: ErrorOptions,
  ) {
    super(message, hint, options)
  }
}

/** Another consumer owns the partition now; this process must drop what it holds of it. */
export class FencedError extends CardpulseError {
  readonly retriable = false
  constructor(
    readonly partition: number,
    readonly expected: string | null,
    readonly found: string | null,
    readonly expectedVersion?: number,
    readonly foundVersion?: number,
  ) {
    const at = (v: number | undefined) => (v === undefined ? '' : ` at commit ${v}`)
    super(`partition ${partition} moved on (expected applied offset ${expected}${at(expectedVersion)}, found ${found}${at(foundVersion)}); another consumer committed to it`)
  }
}

/** A bad request to the HTTP API (a filter out of range, an unknown view); the client must fix it. */
export class RequestError extends CardpulseError {
  readonly retriable = false
}

/** What was asked for does not exist where it was looked for (a customer no record names); exit status 1. */
export class NotFoundError extends CardpulseError {
  readonly retriable = false
}

/** Whether an error, from this tree or from a library, may go away by trying again. */
export function isRetriable(err: unknown): boolean {
  if (err instanceof CardpulseError) return err.retriable
  // KafkaJS marks its own errors; ioredis and sockets speak through codes.
  const e = err as { retriable?: unknown; code?: unknown } | null
  if (typeof e?.retriable === 'boolean') return e.retriable
  return typeof e?.code === 'string' && RETRIABLE_CODES.has(e.code)
}

const RETRIABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN'])
