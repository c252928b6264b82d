import { z } from 'zod'
import type { AlertEffect, Operator } from '../types.ts'
import { Window, clamp01, round } from './window.ts'

/**
 * new_device_large_amount: an approved transaction of at least `minAmount` at most `within` after
 * an app `device_registered` event (both bounds inclusive: exactly 5000, exactly 1 h later, and the
 * same instant all count; a transaction before the registration does not). Any transaction of the
 * customer counts, whichever device it names: the contract ties the rule to the registration, not
 * to the device id.
 *
 * The runtime hands events over in event-time order (a registration before a transaction of the
 * same instant), so only registrations are remembered, for `within`.
 *
 * One alert per registration: its id is the occurrence, and once paired (`u`) it is not paired
 * again, so three large purchases on a new device raise one critical alert (which already holds
 * marketing), not three.
 */

export interface Registration {
  t: number
  id: string
  device?: string
  u?: 1
}

/** Registrations of the last `within`, oldest first; left out when empty (most customers: `{}`). */
export interface NewDeviceState {
  r?: readonly Registration[]
}

const Params = z.strictObject({
  minAmount: z.number().nonnegative().default(5000),
  within: Window.prefault('1h'),
})
type Params = z.infer<typeof Params>

const NONE: readonly Registration[] = Object.freeze([])
/** At most this many registrations are kept. */
const MAX_KEPT = 4

export const newDeviceLargeAmount: Operator<NewDeviceState, Params> = {
  name: 'new_device_large_amount',
  uses: 'new_device_large_amount',
  formerNames: ['risk.new_device_large_amount'],
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params }) {
    const from = at - params.within
    const kept = state.r ?? NONE
    const regs = kept.length && kept[0].t < from ? kept.filter((x) => x.t >= from) : kept
    const s: NewDeviceState = regs === kept ? state : regs.length ? { r: regs } : {}
    if (event.type === 'app' && event.name === 'device_registered') {
      if (regs.some((x) => x.id === event.eventId)) return { state: s }
      const reg: Registration = { t: at, id: event.eventId, ...(event.deviceId ? { device: event.deviceId } : {}) }
      return { state: { r: [...regs, reg].slice(-MAX_KEPT) } }
    }
    if (event.type !== 'transaction' || event.status !== 'approved' || event.amount < params.minAmount) return { state: s }
    // The latest registration within reach, unless it was paired already.
    const reg = regs[regs.length - 1]
    if (!reg || reg.u) return { state: s }
    const tx: Large = { t: at, id: event.eventId, a: event.amount, card: event.cardId }
    return { state: { r: regs.map((x) => (x === reg ? { ...x, u: 1 as const } : x)) }, effects: [alert(reg, tx, params)] }
  },
}

/** The large transaction an alert reports. */
interface Large {
  t: number
  id: string
  a: number
  card: string
}

function alert(reg: Registration, tx: Large, params: Params): AlertEffect {
  const elapsed = tx.t - reg.t
  return {
    kind: 'alert',
    alertKind: 'new_device_large_amount',
    severity: 'critical',
    // Half from how far the amount is past the minimum (saturating at twice it), half from how soon after the registration.
    score: round(clamp01(0.5 + 0.25 * Math.min(1, params.minAmount > 0 ? tx.a / params.minAmount - 1 : 1) + 0.25 * (1 - elapsed / params.within)), 3),
    occurrence: reg.id,
    eventTime: tx.t,
    cardId: tx.card,
    evidence: {
      eventIds: [reg.id, tx.id],
      amount: tx.a,
      minAmount: params.minAmount,
      ...(reg.device ? { deviceId: reg.device } : {}),
      minutesAfterRegistration: round(elapsed / 60_000, 1),
      withinMs: params.within,
    },
  }
}
