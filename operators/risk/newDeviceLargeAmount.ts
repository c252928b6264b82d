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
 * App events and transactions come from different topics, so a registration may arrive after a
 * transaction that followed it in event time. Large transactions are therefore remembered too
 * (briefly; an ordinary customer has none), and a late registration is paired with them: the
 * alert is the same as with sorted input.
 *
 * One alert per registration: its id is the occurrence, and once paired neither the registration
 * nor the transaction (`u`) is paired again, so three large purchases on a new device raise one
 * critical alert (which already holds marketing), not three.
 */

export interface Registration {
  t: number
  id: string
  device?: string
  u?: 1
}

export interface Large {
  t: number
  id: string
  a: number
  card: string
  u?: 1
}

/** Both lists oldest first, kept for 2 × `within`, and left out when empty (most customers: `{}`). */
export interface NewDeviceState {
  /** Registrations. */
  r?: Registration[]
  /** Large approved transactions. */
  l?: Large[]
}

const Params = z.strictObject({
  minAmount: z.number().nonnegative().default(5000),
  within: Window.prefault('1h'),
})
type Params = z.infer<typeof Params>

/** At most this many registrations and large transactions each are kept. */
const MAX_KEPT = 4

export const newDeviceLargeAmount: Operator<NewDeviceState, Params> = {
  name: 'risk.new_device_large_amount',
  uses: 'new_device_large_amount',
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params }) {
    const s = prune(state, at, params.within)
    const regs = s.r ?? []
    const large = s.l ?? []
    if (event.type === 'app' && event.name === 'device_registered') {
      if (regs.some((x) => x.id === event.eventId)) return { state: s }
      const reg: Registration = { t: at, id: event.eventId, ...(event.deviceId ? { device: event.deviceId } : {}) }
      // The earliest unpaired large transaction in [at, at + within] is the one sorted input would pair.
      const tx = large.find((x) => !x.u && x.t >= at && x.t - at <= params.within)
      if (!tx) return { state: { ...s, r: insert(regs, reg) } }
      return {
        state: { r: insert(regs, { ...reg, u: 1 }), l: large.map((x) => (x === tx ? { ...x, u: 1 as const } : x)) },
        effects: [alert(reg, tx, params)],
      }
    }
    if (event.type !== 'transaction' || event.status !== 'approved' || event.amount < params.minAmount) return { state: s }
    if (large.some((x) => x.id === event.eventId)) return { state: s }
    const tx: Large = { t: at, id: event.eventId, a: event.amount, card: event.cardId }
    // The latest registration at or before the transaction, within reach and not yet paired.
    const reg = [...regs].reverse().find((x) => x.t <= at && at - x.t <= params.within)
    if (!reg || reg.u) return { state: { ...s, l: insert(large, reg ? { ...tx, u: 1 } : tx) } }
    return {
      state: { r: regs.map((x) => (x === reg ? { ...x, u: 1 as const } : x)), l: insert(large, { ...tx, u: 1 }) },
      effects: [alert(reg, tx, params)],
    }
  },
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

function insert<T extends { t: number; id: string }>(list: T[], item: T): T[] {
  const out = [...list, item].sort((a, b) => a.t - b.t || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  return out.slice(-MAX_KEPT)
}

/** Keeps 2 × `within`: a late event (within the allowed lateness, assumed ≤ `within`) still finds its pair. */
function prune(state: NewDeviceState, at: number, within: number): NewDeviceState {
  const from = at - 2 * within
  const stale = (xs: { t: number }[] | undefined) => xs !== undefined && xs.length > 0 && xs[0].t < from
  if (!stale(state.r) && !stale(state.l)) return state
  const r = (state.r ?? []).filter((x) => x.t >= from)
  const l = (state.l ?? []).filter((x) => x.t >= from)
  return { ...(r.length ? { r } : {}), ...(l.length ? { l } : {}) }
}
