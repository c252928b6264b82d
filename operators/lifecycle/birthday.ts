import { z } from 'zod'
import { localTime, zonedInstant } from '../time.ts'
import type { Operator } from '../types.ts'

/**
 * birthday_greeting: at `params.at` local time on the customer's birthday (profile.birthDate, in
 * profile.timezone). One timer, for the next birthday; re-armed for the following year when it
 * fires. 29 February birthdays are greeted on 28 February in other years. A change of birth date or
 * time zone moves the timer; a birthday is greeted at most once per local year, and never one that
 * was over before the birth date became known (the customer's first event, for a profile that
 * predates this operator).
 *
 * A change takes effect at the time of the lifecycle event that carries it. Other topics may
 * deliver events from before that time afterwards (before the watermark passes them), so a change, once
 * seen, is recorded at once — in `next` when the armed greeting was already due — and never
 * re-detected by a later-arriving, earlier event.
 */

export interface BirthdayState {
  /** The birth date and time zone the timer is armed for. */
  birthDate?: string
  tz?: string
  /** Due time of the armed greeting. */
  due?: number
  /** The last local year greeted. */
  greeted?: number
  /**
   * A change seen at `since`, at or after the armed greeting's due time but before its timer fired:
   * the greeting stands with the old profile; the next one is armed from this profile, from `since`.
   */
  next?: { birthDate?: string; tz: string; since: number }
}

const clock = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must be a local time like 09:00')
const Params = z.object({ at: clock.default('09:00') })
type Params = z.infer<typeof Params>

const TIMER = 'next'

export const birthdayGreeting: Operator<BirthdayState, Params> = {
  name: 'birthday_greeting',
  uses: 'birthday_greeting',
  formerNames: ['birthday'],
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, _event, at, { params, profile }) {
    const birthDate = profile.birthDate
    const known = state.next ?? state
    const changed = birthDate !== known.birthDate || (birthDate !== undefined && profile.timezone !== known.tz)
    if (!changed) return { state }
    // The armed greeting was due at or before this change: as of its due time the old profile held,
    // so it stands; it re-arms from the new profile, as of this change, when it fires.
    if (state.due !== undefined && state.due <= at) {
      return { state: { ...state, next: { ...(birthDate ? { birthDate } : {}), tz: profile.timezone, since: at } } }
    }
    const due = birthDate ? nextBirthday(birthDate, profile.timezone, params.at, at, state.greeted) : undefined
    return {
      state: armed(birthDate, profile.timezone, due, state.greeted),
      effects: due !== undefined ? [{ kind: 'setTimer', key: TIMER, at: due }] : state.due !== undefined ? [{ kind: 'cancelTimer', key: TIMER }] : [],
    }
  },

  onTimer(state, timer, { params, profile }) {
    if (state.due !== timer.at || !state.birthDate || !state.tz) return { state }
    const local = localTime(timer.at, state.tz)
    const greeted = local.year
    const birthDate = profile.birthDate
    // After a change seen since the greeting was due, as if the change had come after the greeting.
    const from = Math.max(timer.at + 1, state.next?.since ?? -Infinity)
    const due = birthDate ? nextBirthday(birthDate, profile.timezone, params.at, from, greeted) : undefined
    return {
      state: armed(birthDate, profile.timezone, due, greeted),
      effects: [
        {
          kind: 'moment',
          trigger: 'birthday_greeting',
          occurrence: String(greeted),
          eventTime: timer.at,
          reason: {
            birthDate: state.birthDate,
            age: greeted - Number(state.birthDate.slice(0, 4)),
            localDate: `${greeted}-${pad(local.month)}-${pad(local.day)}`,
            localTime: `${pad(local.hour)}:${pad(local.minute)}`,
            timezone: state.tz,
          },
        },
        ...(due !== undefined ? [{ kind: 'setTimer' as const, key: TIMER, at: due }] : []),
      ],
    }
  },
}

function armed(birthDate: string | undefined, tz: string, due: number | undefined, greeted: number | undefined): BirthdayState {
  return {
    ...(birthDate ? { birthDate, tz } : {}),
    ...(due !== undefined ? { due } : {}),
    ...(greeted !== undefined ? { greeted } : {}),
  }
}

/**
 * The first birthday at `clock` local time at or after `from`, in a year after `afterYear`.
 * 29 February falls on 28 February in years that have none.
 */
export function nextBirthday(birthDate: string, timeZone: string, clock: string, from: number, afterYear?: number): number {
  const [, month, day] = birthDate.split('-').map(Number)
  const [hour, minute] = clock.split(':').map(Number)
  let year = Math.max(localTime(from, timeZone).year, afterYear === undefined ? -Infinity : afterYear + 1)
  for (;;) {
    const d = month === 2 && day === 29 && !isLeapYear(year) ? 28 : day
    const at = zonedInstant(year, month, d, hour, minute, timeZone)
    if (at >= from) return at
    year++
  }
}

const isLeapYear = (y: number) => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0
const pad = (n: number) => String(n).padStart(2, '0')
