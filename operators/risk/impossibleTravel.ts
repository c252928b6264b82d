import { z } from 'zod'
import type { Operator } from '../types.ts'
import { clamp01, round } from './window.ts'

/**
 * impossible_travel: two consecutive approved card-present transactions with merchant
 * coordinates, more than `minDistanceKm` apart (great-circle, haversine) at an implied speed above
 * `minSpeedKmh`. Both bounds are strict, as in the contract ("> 100 km", "> 800 km/h"): exactly
 * 800 km/h does not fire. Two transactions at the same instant far apart have an infinite speed.
 * Transactions without coordinates, not card-present or not approved are not part of the chain.
 *
 * State: the latest such transaction only (the runtime hands events over in event-time order).
 * One alert per burst: the transaction that completed a reported jump is marked (`r`), and the
 * next one is not measured against it, so a card alternating between two cities alerts on every
 * other jump rather than on each; a new alert always needs two fresh transactions, as for the
 * count rules.
 */

export interface Fix {
  t: number
  lat: number
  lon: number
  id: string
  /** Set once this transaction completed a reported jump. */
  r?: 1
}

export interface TravelState {
  last?: Fix
}

const Params = z.strictObject({
  minDistanceKm: z.number().nonnegative().default(100),
  minSpeedKmh: z.number().positive().default(800),
})
type Params = z.infer<typeof Params>

const EARTH_RADIUS_KM = 6371.0088
/** Half the Earth's circumference: no two points are farther apart. */
const MAX_DISTANCE_KM = Math.PI * EARTH_RADIUS_KM
const HOUR = 3_600_000

export const impossibleTravel: Operator<TravelState, Params> = {
  name: 'impossible_travel',
  uses: 'impossible_travel',
  formerNames: ['risk.impossible_travel'],
  initial: () => ({}),
  parseParams: (raw) => Params.parse(raw),

  onEvent(state, event, at, { params }) {
    const { lat, lon } = event.type === 'transaction' ? event.merchant : { lat: undefined, lon: undefined }
    if (event.type !== 'transaction' || event.status !== 'approved' || !event.cardPresent || lat === undefined || lon === undefined)
      return { state: prune(state, at, params) }
    const last = state.last
    const fix: Fix = { t: at, lat, lon, id: event.eventId }
    // Older than any jump fast enough to fire: nothing to measure against.
    if (!last || last.r || at - last.t > horizon(params)) return { state: { last: fix } }
    const from = last
    const to = fix
    const distanceKm = haversineKm(from.lat, from.lon, to.lat, to.lon)
    const hours = (to.t - from.t) / HOUR
    const speedKmh = hours > 0 ? distanceKm / hours : Infinity
    if (!(distanceKm > params.minDistanceKm && speedKmh > params.minSpeedKmh)) return { state: { last: fix } }
    return {
      state: { last: { ...to, r: 1 } },
      effects: [
        {
          kind: 'alert',
          alertKind: 'impossible_travel',
          severity: 'high',
          // 0.5 just past the speed limit, towards 1 as the implied speed grows without bound.
          score: round(clamp01(0.5 + 0.5 * (1 - params.minSpeedKmh / speedKmh)), 3),
          occurrence: to.id,
          eventTime: to.t,
          cardId: event.cardId,
          evidence: {
            eventIds: [from.id, to.id],
            distanceKm: round(distanceKm, 1),
            speedKmh: Number.isFinite(speedKmh) ? Math.round(speedKmh) : null,
            minutesBetween: round((to.t - from.t) / 60_000, 1),
            from: { lat: from.lat, lon: from.lon },
            to: { lat: to.lat, lon: to.lon },
            minDistanceKm: params.minDistanceKm,
            minSpeedKmh: params.minSpeedKmh,
          },
        },
      ],
    }
  },
}

/** Great-circle distance in km between two points given in degrees. */
export function haversineKm(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const rad = Math.PI / 180
  const dLat = (lat2 - lat1) * rad
  const dLon = (lon2 - lon1) * rad
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(a)))
}

/** How long a fix can matter: beyond it, even the farthest point is reached below the speed limit. */
const horizon = (params: Params) => (MAX_DISTANCE_KM / params.minSpeedKmh) * HOUR

function prune(state: TravelState, at: number, params: Params): TravelState {
  return state.last && at - state.last.t > horizon(params) ? {} : state
}
