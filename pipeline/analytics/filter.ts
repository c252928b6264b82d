import { z } from 'zod'
import { RequestError } from '../../core/errors.ts'

/**
 * The filter every analytics query takes: a date range on decision time (`from` inclusive, `to`
 * exclusive), a trigger and a customer segment. Values reach ClickHouse only as query parameters,
 * never spliced into SQL; a bad filter is refused here with a message naming the field.
 */

const dateOrTime = z
  .string()
  .refine((s) => /^\d{4}-\d{2}-\d{2}$/.test(s) || z.iso.datetime({ offset: true }).safeParse(s).success, {
    message: 'must be a date like 2026-11-01 or an ISO-8601 time like 2026-11-01T00:00:00Z',
  })
  .refine((s) => Number.isFinite(toMillis(s)) && new Date(toMillis(s) + offsetMillis(s)).toISOString().slice(0, 10) === s.slice(0, 10), { message: 'is not a real date' })

/** Query-string values arrive as strings; an empty one means "not given". */
const optional = <T extends z.ZodType>(t: T) => z.preprocess((v) => (v === '' || v === null ? undefined : v), t.optional())

export const AnalyticsFilter = z
  .strictObject({
    from: optional(dateOrTime),
    to: optional(dateOrTime),
    trigger: optional(z.string().regex(/^[A-Za-z0-9_]{1,64}$/, 'must be a trigger name (letters, digits, _)')),
    segment: optional(z.string().max(64, 'must be at most 64 characters')),
  })
  .refine((f) => !f.from || !f.to || toMillis(f.from) < toMillis(f.to), { message: 'must be before to', path: ['from'] })
export type AnalyticsFilter = z.infer<typeof AnalyticsFilter>

/** A bad filter: the message says which field and why, for a 400 answer. */
export class FilterError extends RequestError {
  readonly status = 400
}

/** The ClickHouse query parameters of a filter: {from}, {to}, {trigger}, {segment}. */
export type FilterParams = {
  from: string
  to: string
  trigger: string
  segment: string
}

const EARLIEST = '1970-01-01 00:00:00.000'
const LATEST = '2200-01-01 00:00:00.000'

/** Validates a filter given as an object or as URL search parameters. */
export function parseFilter(input: unknown = {}): AnalyticsFilter {
  const value = input instanceof URLSearchParams ? Object.fromEntries(input) : (input ?? {})
  const r = AnalyticsFilter.safeParse(value)
  if (!r.success) {
    const issues = r.error.issues.map((i) => (i.code === 'unrecognized_keys' ? `unknown filter ${i.keys.map((k) => `"${k}"`).join(', ')} (use from, to, trigger, segment)` : `${i.path.join('.') || 'filter'} ${i.message}`))
    throw new FilterError(`bad filter: ${issues.join('; ')}`)
  }
  return r.data
}

export function filterParams(input: unknown = {}): FilterParams {
  const f = parseFilter(input)
  return { from: f.from ? chTime(f.from) : EARLIEST, to: f.to ? chTime(f.to) : LATEST, trigger: f.trigger ?? '', segment: f.segment ?? '' }
}

/** The offset of an ISO time's own zone, so that its calendar date can be checked as written. */
function offsetMillis(s: string) {
  const m = /([+-])(\d{2}):?(\d{2})$/.exec(s.length > 10 ? s : '')
  return m ? (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) * 60_000 : 0
}

function toMillis(s: string) {
  return Date.parse(s.length === 10 ? `${s}T00:00:00Z` : s)
}

/** A date or ISO time as a ClickHouse DateTime64(3, 'UTC') literal value. */
function chTime(s: string) {
  return new Date(toMillis(s)).toISOString().replace('T', ' ').replace('Z', '')
}
