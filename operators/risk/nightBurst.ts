import { z } from 'zod'
import type { Operator } from '../types.ts'
import { localTime, minutesOfDay } from '../time.ts'
import { Count, Window, addHit, burstAlert, emptyWindow, pruneWindow, type HitWindow } from './window.ts'

/**
 * night_burst: ≥ `count` approved transactions within `window`, each of them at a local time of day
 * in [from, to) in the customer's time zone (the profile's, Asia/Shanghai by default). The night is
 * half-open: with the defaults 04:59:59 is night and 05:00:00 is not; `from` after `to` wraps past
 * midnight (e.g. 23:00–05:00). The window bound is inclusive, as for every count rule. Each event
 * is classified with the time zone in force when it arrives. One alert per burst.
 */

const clock = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must be a local time like 05:00')

const Params = z
  .strictObject({
    count: Count.default(3),
    window: Window.prefault('60m'),
    from: clock.default('00:00'),
    to: clock.default('05:00'),
  })
  .refine((p) => p.from !== p.to, { message: 'from and to must differ', path: ['to'] })
type Params = z.infer<typeof Params>

const DEFAULT_TZ = 'Asia/Shanghai'

export const nightBurst: Operator<HitWindow, Params> = {
  name: 'night_burst',
  uses: 'night_burst',
  formerNames: ['risk.night_burst'],
  initial: emptyWindow,
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params, profile }) {
    const tz = profile.timezone ?? DEFAULT_TZ
    if (event.type !== 'transaction' || event.status !== 'approved' || !atNight(at, tz, params.from, params.to))
      return { state: pruneWindow(state, at, params.window, params.count) }
    const { state: next, burst } = addHit(state, { t: at, id: event.eventId }, params.count, params.window)
    if (!burst) return { state: next }
    const figures = { from: params.from, to: params.to, timezone: tz, localTimes: burst.map((x) => clockOf(x.t, tz)) }
    return { state: next, effects: [burstAlert('night_burst', 'medium', burst, params.window, event.cardId, figures)] }
  },
}

/** Whether `ms` falls in the local [from, to) of `tz`. */
export function atNight(ms: number, tz: string, from: string, to: string): boolean {
  const t = localTime(ms, tz)
  const m = t.hour * 60 + t.minute
  const f = minutesOfDay(from)
  const e = minutesOfDay(to)
  return f < e ? m >= f && m < e : m >= f || m < e
}

function clockOf(ms: number, tz: string): string {
  const t = localTime(ms, tz)
  return `${String(t.hour).padStart(2, '0')}:${String(t.minute).padStart(2, '0')}:${String(t.second).padStart(2, '0')}`
}
