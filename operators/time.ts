/** Local-time arithmetic in a customer's IANA time zone, on plain epoch milliseconds. */

const formatters = new Map<string, Intl.DateTimeFormat>()

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone)
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    })
    formatters.set(timeZone, f)
  }
  return f
}

export interface LocalTime {
  year: number
  month: number // 1–12
  day: number
  hour: number
  minute: number
  second: number
}

export function localTime(ms: number, timeZone: string): LocalTime {
  const parts: Record<string, number> = {}
  for (const p of formatter(timeZone).formatToParts(new Date(ms))) if (p.type !== 'literal') parts[p.type] = Number(p.value)
  return { year: parts.year, month: parts.month, day: parts.day, hour: parts.hour, minute: parts.minute, second: parts.second }
}

function offsetAt(ms: number, timeZone: string): number {
  const t = localTime(ms, timeZone)
  return Date.UTC(t.year, t.month - 1, t.day, t.hour, t.minute, t.second) - Math.floor(ms / 1000) * 1000
}

/** The instant at which the wall clock in `timeZone` reads the given local date and time. */
export function zonedInstant(year: number, month: number, day: number, hour: number, minute: number, timeZone: string): number {
  const asUtc = Date.UTC(year, month - 1, day, hour, minute)
  let instant = asUtc - offsetAt(asUtc, timeZone)
  const corrected = asUtc - offsetAt(instant, timeZone)
  if (corrected !== instant) instant = corrected // crossed a DST change
  return instant
}

export function minutesOfDay(clock: string): number {
  const [h, m] = clock.split(':').map(Number)
  return h * 60 + m
}

/** When a message due at `ms` may go out, deferred past the quiet hours [start, end) in local time. */
export function afterQuietHours(ms: number, timeZone: string, start: string, end: string): number {
  const t = localTime(ms, timeZone)
  const now = t.hour * 60 + t.minute
  const s = minutesOfDay(start)
  const e = minutesOfDay(end)
  const wraps = s > e
  const quiet = wraps ? now >= s || now < e : now >= s && now < e
  if (!quiet) return ms
  const dayOffset = wraps && now >= s ? 1 : 0
  const d = new Date(Date.UTC(t.year, t.month - 1, t.day + dayOffset))
  return zonedInstant(d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), Math.floor(e / 60), e % 60, timeZone)
}
