import type { TriggerConfig } from '../schemas/catalog.ts'
import type { Decision } from '../schemas/decision.ts'
import type { Conversion } from '../schemas/conversion.ts'
import type { Channel, InputEvent, LifecycleStage } from '../schemas/events.ts'
import { monthSpendCents, type CustomerFacts } from '../operators/facts.ts'
import type { CustomerProfile } from '../operators/types.ts'
import { spendInLastDays } from '../operators/ledger.ts'
import { localMonth } from '../operators/time.ts'
import { creditLimit } from '../operators/spend/limitUpgrade.ts'

/**
 * Conversion tracking: what each send and control decision earned. Every such decision opens an
 * attribution window on its customer's record; the customer's events, in event-time order, are
 * checked against the trigger's goal while it is open; when it ends, the final row is written.
 * Pure, like the operators: the runtime (processor.ts) keeps the windows in the customer record,
 * feeds them events and its own `~convert` timer, and ships the rows.
 *
 * The window is (decision eventTime, windowEnd): strictly after the decision, so that the event that
 * caused it (a first purchase rewarded for a purchase) is never its own conversion, and ending
 * before windowEnd, so that a month_spend window stops where the next local month starts.
 */

/** Open windows kept per customer. Past it, the window ending first is closed early (see `admit`). */
export const MAX_OPEN_WINDOWS = 32
const PRE_SPEND_DAYS = 30

/** The goal as resolved at the decision: what the window needs to recognise it. */
export type WindowGoal =
  | { kind: 'lifecycle'; stage: LifecycleStage; cardId?: string; aboveLimit?: number }
  | { kind: 'transaction'; minAmount: number; crossBorder: boolean }
  | { kind: 'app'; name: string }
  /** Cumulative approved spend in the window reaches `cents`; null when the reason lacked the baseline: never. */
  | { kind: 'spend'; cents: number | null }
  /** Approved spend of the local month `month` reaches `cents`. */
  | { kind: 'month_spend'; month: string; cents: number }

export interface OpenWindow {
  decisionId: string
  trigger: string
  cardId?: string
  outcome: 'send' | 'control'
  /** A send's channel: which consent withdrawal cancels its touchpoint while it waits. */
  channel?: Channel
  /** The decision's event time (ms); events strictly after it count. */
  from: number
  /** Window end (ms), exclusive. */
  until: number
  goal: WindowGoal
  /** Approved spend in the window so far, cents. */
  spend: number
  /** Approved spend (yuan) in the 30 days up to the decision. */
  preSpend: number
  convertedAt?: number
  convertingEventId?: string
  engaged?: true
  /** Version of the last row written for it; 0 before any. */
  version: number
}

const ENGAGEMENT = new Set(['offer_clicked', 'offer_redeemed'])

/** Where a decision's attribution window ends: the trigger's window after it, or the local month's end. */
export function attributionWindowEnd(trigger: TriggerConfig, eventTime: number, timezone: string): number {
  if (trigger.goal.kind === 'month_spend') return localMonth(eventTime, timezone).until
  return eventTime + (trigger.attributionWindow ?? 0)
}

/** Whether a decision is tracked: every send and control (service messages too, when sent). */
export const tracked = (d: Decision) => d.outcome === 'send' || d.outcome === 'control'

/** Opens the window of a send or control decision, resolving its goal against what is known now. */
export function openWindow(decision: Decision, trigger: TriggerConfig, facts: CustomerFacts, profile: CustomerProfile): OpenWindow {
  const from = Date.parse(decision.eventTime)
  return {
    decisionId: decision.id,
    trigger: decision.trigger,
    ...(decision.cardId ? { cardId: decision.cardId } : {}),
    outcome: decision.outcome as 'send' | 'control',
    ...(decision.outcome === 'send' && decision.channel ? { channel: decision.channel } : {}),
    from,
    until: attributionWindowEnd(trigger, from, profile.timezone),
    goal: resolveGoal(trigger.goal, decision, facts, profile, from),
    spend: 0,
    preSpend: spendInLastDays(facts.spend, from, PRE_SPEND_DAYS),
    version: 0,
  }
}

function resolveGoal(goal: TriggerConfig['goal'], decision: Decision, facts: CustomerFacts, profile: CustomerProfile, at: number): WindowGoal {
  switch (goal.kind) {
    case 'lifecycle':
      return {
        kind: 'lifecycle',
        stage: goal.stage,
        ...(decision.cardId ? { cardId: decision.cardId } : {}),
        ...(goal.higherLimit ? { aboveLimit: creditLimit(facts).limit } : {}),
      }
    case 'transaction':
      return { kind: 'transaction', minAmount: goal.minAmount, crossBorder: goal.crossBorder }
    case 'app':
      return { kind: 'app', name: goal.name }
    case 'spend': {
      if (goal.min !== undefined) return { kind: 'spend', cents: Math.round(goal.min * 100) }
      const base = decision.reason[goal.of!]
      return { kind: 'spend', cents: typeof base === 'number' && Number.isFinite(base) ? Math.round(goal.share! * base * 100) : null }
    }
    case 'month_spend':
      return { kind: 'month_spend', month: localMonth(at, profile.timezone).month, cents: Math.round(goal.min * 100) }
  }
}

/**
 * Adds a window. Past MAX_OPEN_WINDOWS the one ending first is closed now: its final row says what
 * it earned so far, with windowEnd the time it was cut. Only catalogues far looser than the default
 * contact policy (3 contacts a week, windows of at most 30 days: about 15 open) or a flood of service
 * messages reach the cap.
 */
export function admit(windows: readonly OpenWindow[], window: OpenWindow, customerId: string, rows: Conversion[]): OpenWindow[] {
  const next = [...windows, window]
  if (next.length <= MAX_OPEN_WINDOWS) return next
  let first = 0
  for (let i = 1; i < next.length; i++) if (next[i].until < next[first].until) first = i
  const [cut] = next.splice(first, 1)
  rows.push(rowOf(customerId, { ...cut, until: window.from }, true, cut.version + 1))
  return next
}

/**
 * Checks one event (facts and profile already folded with it) against every open window it falls
 * in. Returns the windows unchanged (the same array) when it concerns none of them.
 */
export function observe(
  windows: OpenWindow[],
  event: InputEvent,
  at: number,
  facts: CustomerFacts,
  profile: CustomerProfile,
  customerId: string,
  rows: Conversion[],
): OpenWindow[] {
  const approved = event.type === 'transaction' && event.status === 'approved'
  const engagement = event.type === 'app' && ENGAGEMENT.has(event.name)
  if (event.type === 'transaction' && !approved) return windows
  let out: OpenWindow[] | undefined
  for (let i = 0; i < windows.length; i++) {
    const w = windows[i]
    if (!(at > w.from && at < w.until)) continue
    let next = w
    if (approved) next = { ...next, spend: next.spend + Math.round(event.amount * 100) }
    if (engagement && !next.engaged && engages(event, w)) next = { ...next, engaged: true }
    if (next.convertedAt === undefined && reaches(next, event, facts, profile)) {
      next = { ...next, convertedAt: at, convertingEventId: event.eventId, version: next.version + 1 }
      rows.push(rowOf(customerId, next, false, next.version))
    }
    if (next !== w) (out ??= windows.slice())[i] = next
  }
  return out ?? windows
}

/** An engagement event names its decision in `attributes.decisionId` when the app knows it; else it counts for every open window. */
function engages(event: Extract<InputEvent, { type: 'app' }>, w: OpenWindow): boolean {
  const named = event.attributes?.decisionId
  return typeof named !== 'string' || named === w.decisionId
}

function reaches(w: OpenWindow, event: InputEvent, facts: CustomerFacts, profile: CustomerProfile): boolean {
  const g = w.goal
  switch (g.kind) {
    case 'lifecycle':
      return (
        event.type === 'lifecycle' &&
        event.stage === g.stage &&
        (g.cardId === undefined || event.cardId === g.cardId) &&
        (g.aboveLimit === undefined || creditLimit(facts).limit > g.aboveLimit)
      )
    case 'transaction':
      if (event.type !== 'transaction' || event.status !== 'approved' || event.amount < g.minAmount) return false
      return !g.crossBorder || (event.merchant.country !== undefined && event.merchant.country !== profile.homeCountry)
    case 'app':
      return event.type === 'app' && event.name === g.name
    case 'spend':
      return event.type === 'transaction' && event.status === 'approved' && g.cents !== null && w.spend >= g.cents
    case 'month_spend':
      return event.type === 'transaction' && event.status === 'approved' && monthSpendCents(facts, g.month) >= g.cents
  }
}

/** Closes the windows ended by `upTo` (inclusive), writing their final rows. */
export function closeEnded(windows: readonly OpenWindow[], upTo: number, customerId: string, rows: Conversion[]): OpenWindow[] {
  const open: OpenWindow[] = []
  for (const w of windows) {
    if (w.until <= upTo) rows.push(rowOf(customerId, w, true, w.version + 1))
    else open.push(w)
  }
  return open
}

/** The earliest window end, when the runtime's `~convert` timer is due; undefined with none open. */
export function nextWindowEnd(windows: readonly OpenWindow[] | undefined): number | undefined {
  if (!windows?.length) return undefined
  let min = windows[0].until
  for (const w of windows) if (w.until < min) min = w.until
  return min
}

/** The row of a window's current state. */
export function rowOf(customerId: string, w: OpenWindow, final: boolean, version: number): Conversion {
  const converted = w.convertedAt !== undefined
  return {
    decisionId: w.decisionId,
    trigger: w.trigger,
    customerId,
    ...(w.cardId ? { cardId: w.cardId } : {}),
    outcome: w.outcome,
    decisionTime: iso(w.from),
    windowEnd: iso(w.until),
    converted,
    ...(converted ? { convertedAt: iso(w.convertedAt!), convertingEventId: w.convertingEventId! } : {}),
    engaged: w.engaged === true,
    spend: w.spend / 100,
    preSpend: w.preSpend,
    final,
    version,
  }
}

const iso = (ms: number) => new Date(ms).toISOString()
