import { compile, type z } from 'zod'
import { InputEvent, AppEvent, LifecycleEvent, TransactionEvent, type EventType } from '../schemas/events.ts'
import type { DeadLetter, DeadLetterCode } from '../schemas/deadLetter.ts'
import { containsPan, maskPanBytes, maskPans } from './pan.ts'
import { deadLetterId } from './ids.ts'

/** Decoding and validation at the edge: every message becomes an event or a dead letter. */

export const MAX_MESSAGE_BYTES = 64 * 1024

/**
 * The most of a bad message's original bytes a dead letter keeps: enough to see what went wrong,
 * and small enough that every dead letter fits the broker's message limit (1 MiB by default),
 * whatever arrived on the input topic. Base64 and JSON escapes at most sextuple it.
 */
export const MAX_ORIGINAL_BYTES = 16 * 1024

export interface SourceCoordinates {
  topic: string
  partition: number
  offset: string
}

export type Decoded = { ok: true; event: InputEvent } | { ok: false; deadLetter: DeadLetter }

/** Compiled once: a valid event is checked by generated code; an invalid one falls back to Zod's own parser for its message. */
const SCHEMAS: Record<EventType, z.ZodType<InputEvent>> = {
  transaction: compile(TransactionEvent),
  app: compile(AppEvent),
  lifecycle: compile(LifecycleEvent),
}

/** How far ahead of the wall clock a live event may be: a producer's clock may run a little fast. */
export const DEFAULT_MAX_CLOCK_SKEW = 5 * 60_000

/**
 * @param now when the message was received; null in replay.
 * @param expected the type the stream carries, or undefined for a mixed stream (NDJSON replay files).
 * @param maxClockSkew how far past `now` an event may be: one from further ahead would carry its
 *   input partition's event time with it, and every later event of that partition would be late.
 */
export function decode(bytes: Buffer | string, source: SourceCoordinates, expected?: EventType, now: number | null = Date.now(), maxClockSkew = DEFAULT_MAX_CLOCK_SKEW): Decoded {
  let checked = check(bytes, expected)
  if ('event' in checked && now !== null && Date.parse(checked.event.occurredAt) > now + maxClockSkew) {
    checked = { code: 'future_event', message: `occurredAt is ${Math.round((Date.parse(checked.event.occurredAt) - now) / 1000)} s ahead of the time it was received; at most ${maxClockSkew / 1000} s (a producer's clock is wrong?)`, path: '$.occurredAt' }
  }
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
  // Only a \u escape can make half a surrogate pair: stored as UTF-8 it would come back as U+FFFD,
  // and state reloaded from Redis would differ from the state that decided before.
  const broken = LONE_SURROGATE_ESCAPE.test(text) ? illFormedPath(value, '$') : undefined
  if (broken) return { code: 'schema_violation', message: `${broken}: half of a UTF-16 surrogate pair is not text`, path: broken }
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

const LONE_SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/

/** Half a surrogate pair: with the `u` flag a whole pair is one code point, not `Cs`. */
const LONE_SURROGATE = /\p{Cs}/u

/** The JSON path of the first string (key or value) that is not well-formed UTF-16; a loop, not recursion, for any depth. */
function illFormedPath(value: unknown, root: string): string | undefined {
  const stack: [unknown, string][] = [[value, root]]
  while (stack.length) {
    const [v, path] = stack.pop()!
    if (typeof v === 'string') {
      if (LONE_SURROGATE.test(v)) return path
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}[${i}]`])
    } else if (v && typeof v === 'object') {
      for (const [k, c] of Object.entries(v).reverse()) {
        if (LONE_SURROGATE.test(k)) return path
        stack.push([c, `${path}.${k}`])
      }
    }
  }
  return undefined
}

export function deadLetter(
  buf: Buffer,
  source: SourceCoordinates,
  code: DeadLetterCode,
  message: string,
  path: string,
  now: number | null,
): DeadLetter {
  // Masked in the bytes, before any encoding: base64 would hide the digits from the text masking.
  const masked = maskPanBytes(buf)
  const utf8 = Buffer.from(masked.toString('utf8'), 'utf8').equals(masked)
  const kept = boundOriginal(masked, MAX_ORIGINAL_BYTES, utf8)
  return {
    id: deadLetterId(source.topic, source.partition, source.offset),
    source,
    error: { code, message: maskPans(message), path },
    original: kept.toString(utf8 ? 'utf8' : 'base64'),
    originalEncoding: utf8 ? 'utf8' : 'base64',
    originalBytes: buf.length,
    originalTruncated: kept.length < masked.length,
    // replay leaves it out so that its output is reproducible byte for byte
    ...(now === null ? {} : { receivedAt: new Date(now).toISOString() }),
  }
}

/**
 * At most the first `max` of masked bytes, cut neither inside a UTF-8 character (when they are
 * UTF-8) nor inside a number: the kept part of a number could pass for a card number of its own.
 * Of a run too long to back out of (over 32 digits), more than 19 digits stay: no card number.
 */
export function boundOriginal(masked: Buffer, max: number, utf8: boolean): Buffer {
  if (masked.length <= max) return masked
  let end = max
  if (utf8) while (end > 0 && (masked[end] & 0xc0) === 0x80) end-- // a continuation byte: back to its lead byte
  const isDigit = (i: number) => masked[i] >= 0x30 && masked[i] <= 0x39
  if (isDigit(end)) {
    let start = end
    while (start > 0 && end - start < 32 && isDigit(start - 1)) start--
    if (start === 0 || !isDigit(start - 1)) end = start
  }
  return masked.subarray(0, end)
}

export { InputEvent }
