import { DAY } from '../schemas/duration.ts'

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

function formattedOffset(ms: number, timeZone: string): number {
  const parts: Record<string, number> = {}
  for (const p of formatter(timeZone).formatToParts(new Date(ms))) if (p.type !== 'literal') parts[p.type] = Number(p.value)
  return Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute, parts.second) - Math.floor(ms / 1000) * 1000
}

// Intl formatting is slow, and a zone's offset changes a few times a year at most, on the hour
// or half hour, and never twice in one UTC day: the offsets are cached per zone and UTC day, as
// one number for a day with no change (two lookups to know), or per half hour for a day with one
// (found by bisection). Numerically keyed, bounded per zone.
const HALF_HOUR = 1_800_000
const SLOTS_PER_DAY = DAY / HALF_HOUR
const DAYS_KEPT = 10_000

/** A UTC day's offsets: one for the whole day, or one per half hour. */
type DayOffsets = number | number[]

interface ZoneOffsets {
  /** The day asked for last, and its offsets: consecutive calls mostly ask for the same one. */
  day: number
  offsets: DayOffsets
  byDay: Map<number, DayOffsets>
}
const zones = new Map<string, ZoneOffsets>()

function offsetAt(ms: number, timeZone: string): number {
  const day = Math.floor(ms / DAY)
  let z = zones.get(timeZone)
  if (!z) zones.set(timeZone, (z = { day: NaN, offsets: 0, byDay: new Map() }))
  let offsets = z.day === day ? z.offsets : z.byDay.get(day)
  if (offsets === undefined) {
    offsets = dayOffsets(day, timeZone)
    if (z.byDay.size >= DAYS_KEPT) z.byDay.clear()
    z.byDay.set(day, offsets)
  }
  z.day = day
  z.offsets = offsets
  return typeof offsets === 'number' ? offsets : offsets[Math.floor((ms - day * DAY) / HALF_HOUR)]
}

function dayOffsets(day: number, timeZone: string): DayOffsets {
  const slotOffset = (slot: number) => formattedOffset(day * DAY + slot * HALF_HOUR, timeZone)
  const first = slotOffset(0)
  const last = slotOffset(SLOTS_PER_DAY - 1)
  if (first === last) return first
  // The one change of the day: the first half hour at the last offset.
  let before = 0
  let after = SLOTS_PER_DAY - 1
  while (after - before > 1) {
    const mid = (before + after) >> 1
    if (slotOffset(mid) === first) before = mid
    else after = mid
  }
  return Array.from({ length: SLOTS_PER_DAY }, (_, slot) => (slot < after ? first : last))
}

export function localTime(ms: number, timeZone: string): LocalTime {
  const d = new Date(ms + offsetAt(ms, timeZone))
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate(), hour: d.getUTCHours(), minute: d.getUTCMinutes(), second: d.getUTCSeconds() }
}

/** The instant at which the wall clock in `timeZone` reads the given local date and time. */
export function zonedInstant(year: number, month: number, day: number, hour: number, minute: number, timeZone: string): number {
  const asUtc = Date.UTC(year, month - 1, day, hour, minute)
  let instant = asUtc - offsetAt(asUtc, timeZone)
  const corrected = asUtc - offsetAt(instant, timeZone)
  if (corrected !== instant) instant = corrected // crossed a DST change
  return instant
}

/** The same local wall-clock time one calendar day after `ms`: 24 hours later, or 23 or 25 across a DST change. */
export function nextLocalDay(ms: number, timeZone: string): number {
  if (offsetAt(ms, timeZone) === offsetAt(ms + DAY, timeZone)) return ms + DAY
  const t = localTime(ms, timeZone)
  const d = new Date(Date.UTC(t.year, t.month - 1, t.day + 1))
  return zonedInstant(d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), t.hour, t.minute, timeZone)
}

export interface LocalMonth {
  /** "2026-10" */
  month: string
  /** Local midnight of its first day, and of the next month's first day (the end, exclusive). */
  from: number
  until: number
}

/** The local month asked for last, per zone: events come in time order, so mostly the same one. */
const lastMonth = new Map<string, LocalMonth>()

/** The local calendar month of `ms` in `timeZone`. */
export function localMonth(ms: number, timeZone: string): LocalMonth {
  const last = lastMonth.get(timeZone)
  if (last && ms >= last.from && ms < last.until) return last
  const t = localTime(ms, timeZone)
  const month = `${t.year}-${String(t.month).padStart(2, '0')}`
  const from = zonedInstant(t.year, t.month, 1, 0, 0, timeZone)
  const until = t.month === 12 ? zonedInstant(t.year + 1, 1, 1, 0, 0, timeZone) : zonedInstant(t.year, t.month + 1, 1, 0, 0, timeZone)
  const m = { month, from, until }
  lastMonth.set(timeZone, m)
  return m
}

const clocks = new Map<string, number>()

export function minutesOfDay(clock: string): number {
  const cached = clocks.get(clock)
  if (cached !== undefined) return cached
  const [h, m] = clock.split(':').map(Number)
  clocks.set(clock, h * 60 + m)
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
