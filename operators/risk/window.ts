import { z } from 'zod'
import { Duration } from '../../schemas/duration.ts'
import type { AlertKind, Severity } from '../../schemas/alert.ts'
import type { AlertEffect } from '../types.ts'

/**
 * The sliding-window count that velocity, card_testing, night_burst and cashout_pattern share,
 * each with its own filter of qualifying events.
 *
 * One alert per burst: when a burst fires, the window is cleared through its last event and that
 * event's time is remembered (`c`); later events start a new count, so a long attack alerts once
 * per `count` fresh events, and no event is ever evidence in two alerts of the same kind.
 */

/** A qualifying event: event time (epoch ms), event id and, for rules that report amounts, the amount. */
export interface Hit {
  t: number
  id: string
  a?: number
}

/**
 * The qualifying events of one count rule, sorted by (time, id) whatever their arrival order, so a
 * late event lands where sorted input would have put it. `c` is the last event time of the burst
 * reported last: an event older than it fell inside (or before) a reported burst and is not
 * counted again. Both are left out when empty: most customers' windows are `{}`.
 */
export interface HitWindow {
  h?: Hit[]
  c?: number
}

export const emptyWindow = (): HitWindow => ({})

/** Counts in the catalogue are capped so that state stays bounded (lists hold at most `count` hits). */
export const Count = z.number().int().min(1).max(50)
/** A window or delay that must be longer than zero. */
export const Window = Duration.refine((ms) => ms > 0, 'must be longer than 0')

/**
 * Adds a qualifying event and returns the burst it completes, if any: the earliest-ending run of
 * `count` consecutive hits containing it whose span fits in `window` (for in-order input, the
 * last `count` hits). A late event can complete a burst that ends after it; the alert then carries
 * that burst's last event as its time and occurrence, exactly as sorted input would.
 */
export function addHit(w: HitWindow, hit: Hit, count: number, window: number): { state: HitWindow; burst?: Hit[] } {
  if ((w.c !== undefined && hit.t < w.c) || w.h?.some((x) => x.id === hit.id)) return { state: pruneWindow(w, hit.t, window, count) }
  const h = [...(w.h ?? [])]
  let i = h.length
  while (i > 0 && sortsBefore(hit, h[i - 1])) i--
  h.splice(i, 0, hit)
  const newest = Math.max(h[h.length - 1].t, w.c ?? -Infinity)
  for (let s = Math.max(0, i - count + 1); s <= i && s + count <= h.length; s++) {
    if (h[s + count - 1].t - h[s].t > window) continue
    const burst = h.slice(s, s + count)
    const end = burst[count - 1].t
    return { state: retain(h.slice(s + count), Math.max(end, w.c ?? -Infinity), newest, window, count), burst }
  }
  return { state: retain(h, w.c, newest, window, count) }
}

/**
 * Drops what no future event can pair with: the runtime hands events over in event-time order, so
 * nothing older than one window behind the newest can share a window with what comes next.
 */
export function pruneWindow(w: HitWindow, at: number, window: number, count: number): HitWindow {
  const from = at - window
  const h = w.h ?? []
  const stale = (h.length > 0 && h[0].t < from) || (w.c !== undefined && w.c < from) || h.length > count
  return stale ? retain(h, w.c, at, window, count) : w
}

/** True when a window holds nothing worth storing. */
export const isEmptyWindow = (w: HitWindow) => !w.h?.length && w.c === undefined

/** The newest time a window knows of. */
export const newestIn = (w: HitWindow) => Math.max(w.h?.length ? w.h[w.h.length - 1].t : -Infinity, w.c ?? -Infinity)

function retain(hits: Hit[], c: number | undefined, newest: number, window: number, count: number): HitWindow {
  const from = newest - window
  const h = hits.filter((x) => x.t >= from).slice(-count)
  return { ...(h.length ? { h } : {}), ...(c !== undefined && c >= from ? { c } : {}) }
}

function sortsBefore(a: Hit, b: Hit): boolean {
  return a.t < b.t || (a.t === b.t && a.id < b.id)
}

export const clamp01 = (x: number) => Math.min(1, Math.max(0, x))
export const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits

/**
 * An alert for a burst of hits: the burst's last event gives the time and the occurrence (stable
 * across replays and batch cuts). Score: 0.5 for a burst that needed the whole window, rising to 1
 * as it is squeezed into no time at all.
 */
export function burstAlert(
  alertKind: AlertKind,
  severity: Severity,
  burst: Hit[],
  window: number,
  cardId: string | undefined,
  figures: Record<string, unknown> = {},
): AlertEffect {
  const first = burst[0]
  const last = burst[burst.length - 1]
  const span = last.t - first.t
  return {
    kind: 'alert',
    alertKind,
    severity,
    score: round(clamp01(0.5 + 0.5 * (1 - span / window)), 3),
    occurrence: last.id,
    eventTime: last.t,
    ...(cardId ? { cardId } : {}),
    evidence: { eventIds: burst.map((x) => x.id), count: burst.length, windowMs: window, spanMs: span, ...figures },
  }
}

