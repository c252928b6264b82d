import type { z } from 'zod'
import { InputEvent, AppEvent, LifecycleEvent, TransactionEvent, type EventType } from '../schemas/events.ts'
import type { DeadLetter, DeadLetterCode } from '../schemas/deadLetter.ts'
import { containsPan, maskPans } from './pan.ts'
import { deadLetterId } from './ids.ts'

/** Decoding and validation at the edge: every message becomes an event or a dead letter. */

export const MAX_MESSAGE_BYTES = 64 * 1024

export interface SourceCoordinates {
  topic: string
  partition: number
  offset: string
}

export type Decoded = { ok: true; event: InputEvent } | { ok: false; deadLetter: DeadLetter }

const SCHEMAS: Record<EventType, z.ZodType<InputEvent>> = {
  transaction: TransactionEvent,
  app: AppEvent,
  lifecycle: LifecycleEvent,
}

/**
 * @param now when the message was received; null in replay.
 * @param expected the type the stream carries, or undefined for a mixed stream (NDJSON replay files).
 */
export function decode(bytes: Buffer | string, source: SourceCoordinates, expected?: EventType, now: number | null = Date.now()): Decoded {
  const checked = check(bytes, expected)
  if ('event' in checked) return { ok: true, event: checked.event }
  const buf = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes
  return { ok: false, deadLetter: deadLetter(buf, source, checked.code, checked.message, checked.path ?? '$', now) }
}

type Check = { event: InputEvent } | { code: DeadLetterCode; message: string; path?: string }

function check(bytes: Buffer | string, expected: EventType | undefined): Check {
  // A UTF-16 unit is at most 3 UTF-8 bytes: most lines need no byte count.
  const size = typeof bytes !== 'string' ? bytes.length : bytes.length * 3 > MAX_MESSAGE_BYTES ? Buffer.byteLength(bytes) : 0
  if (size > MAX_MESSAGE_BYTES) return { code: 'too_large', message: `message is ${size} bytes; the limit is ${MAX_MESSAGE_BYTES}` }
  const text = typeof bytes === 'string' ? bytes : bytes.toString('utf8')
  if (containsPan(text)) return { code: 'pan_detected', message: 'a card number (PAN) must never be sent; use a card token in cardId' }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (e) {
    return { code: 'invalid_json', message: `not valid JSON: ${(e as Error).message}` }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { code: 'not_an_object', message: 'a message must be one JSON object' }
  const type = (value as { type?: unknown }).type
  if (type !== 'transaction' && type !== 'app' && type !== 'lifecycle')
    return { code: 'unknown_type', message: `unknown type ${JSON.stringify(type) ?? 'undefined'}; expected transaction, app or lifecycle`, path: '$.type' }
  if (expected && type !== expected) return { code: 'wrong_stream', message: `a ${type} event on the ${expected} stream`, path: '$.type' }
  const parsed = SCHEMAS[type].safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const path = '$' + issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('')
    return { code: 'schema_violation', message: `${path}: ${issue.message}`, path }
  }
  return { event: parsed.data }
}

export function deadLetter(
  buf: Buffer,
  source: SourceCoordinates,
  code: DeadLetterCode,
  message: string,
  path: string,
  now: number | null,
): DeadLetter {
  const text = buf.toString('utf8')
  const utf8 = Buffer.from(text, 'utf8').equals(buf)
  return {
    id: deadLetterId(source.topic, source.partition, source.offset),
    source,
    error: { code, message: maskPans(message), path },
    original: utf8 ? maskPans(text) : maskPans(buf.toString('base64')),
    originalEncoding: utf8 ? 'utf8' : 'base64',
    // replay leaves it out so that its output is reproducible byte for byte
    ...(now === null ? {} : { receivedAt: new Date(now).toISOString() }),
  }
}

export { InputEvent }
