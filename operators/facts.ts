import type { InputEvent, LifecycleStage } from '../schemas/events.ts'
import type { Severity } from '../schemas/alert.ts'
import { localMonth } from './time.ts'
import { addSpend, emptyLedger, epochDay, activeDaysBetween, spendInLastDays, DAY, type SpendLedger } from './ledger.ts'

/**
 * What the pipeline knows of a customer besides the profile: card stages and limits, approved
 * spend (a compact ledger), first and last purchase, recent alerts. Folded from every event before
 * the operators run (they read it, never write it), and the source of the derived attributes that
 * catalogue audiences target: value tier (RFM), lifecycle stage, risk level.
 */

export interface CardFacts {
  stage: LifecycleStage
  creditLimit?: number
  activatedAt?: number
  /** The card's first approved purchase (known cards only: those with a lifecycle event). */
  firstPurchaseAt?: number
}

export interface CustomerFacts {
  /** The stage of the customer's latest lifecycle event. */
  stage?: LifecycleStage
  cards: Record<string, CardFacts>
  firstApprovedAt?: number
  lastApprovedAt?: number
  /** Approved transactions, lifetime. */
  approved: number
  spend: SpendLedger
  /** Approved spend in the customer's latest local calendar month, in cents (month_spend goals). */
  month?: { month: string; cents: number }
  /** High-water marks of recent alerts (≤ 90 days, at most 8), oldest first. */
  alerts: { at: number; severity: Severity }[]
}

export const initialFacts = (): CustomerFacts => ({ cards: {}, approved: 0, spend: emptyLedger(), alerts: [] })

/** `timezone`: the profile's, which decides the local month of a purchase. */
export function foldFacts(facts: CustomerFacts, event: InputEvent, at: number, timezone = 'Asia/Shanghai'): CustomerFacts {
  if (event.type === 'lifecycle') {
    const card = facts.cards[event.cardId]
    const next: CardFacts = {
      ...card,
      stage: event.stage,
      ...(event.creditLimit !== undefined ? { creditLimit: event.creditLimit } : {}),
      ...(event.stage === 'activated' ? { activatedAt: Math.min(card?.activatedAt ?? at, at) } : {}),
    }
    return { ...facts, stage: event.stage, cards: { ...facts.cards, [event.cardId]: next } }
  }
  if (event.type === 'transaction' && event.status === 'approved') {
    // Most purchases: a copy with the same keys in the same order, so records keep their shape.
    const next = { ...facts }
    const card = facts.cards[event.cardId]
    if (card && card.firstPurchaseAt === undefined) next.cards = { ...facts.cards, [event.cardId]: { ...card, firstPurchaseAt: at } }
    next.approved = facts.approved + 1
    next.firstApprovedAt = Math.min(facts.firstApprovedAt ?? at, at)
    next.lastApprovedAt = Math.max(facts.lastApprovedAt ?? at, at)
    next.spend = addSpend(facts.spend, at, event.amount)
    next.month = addToMonth(facts.month, localMonth(at, timezone).month, event.amount)
    return next
  }
  return facts
}

function addToMonth(current: CustomerFacts['month'], month: string, amount: number): CustomerFacts['month'] {
  const cents = Math.round(amount * 100)
  if (!current || month > current.month) return { month, cents }
  // A purchase in an earlier local month (the time zone changed) no longer moves this month's total.
  return month === current.month ? { month, cents: current.cents + cents } : current
}

/** Approved spend (cents) in the local month `month` so far: 0 unless it is the latest month on record. */
export const monthSpendCents = (facts: CustomerFacts, month: string) => (facts.month?.month === month ? facts.month.cents : 0)

export function recordAlert(facts: CustomerFacts, at: number, severity: Severity): CustomerFacts {
  const alerts = [...facts.alerts.filter((a) => at - a.at < 90 * DAY), { at, severity }].slice(-8)
  return { ...facts, alerts }
}

export type ValueTier = 'new' | 'inactive' | 'low' | 'mid' | 'high'
export type RiskLevel = 'none' | 'low' | 'medium' | 'high'

/**
 * RFM value tier: recency of the last purchase, frequency (days with purchases in the last 30)
 * and monetary value (spend in 90 days). New: never purchased; inactive: nothing for 60 days.
 */
export function valueTier(facts: CustomerFacts, now: number): ValueTier {
  if (facts.lastApprovedAt === undefined) return 'new'
  if (now - facts.lastApprovedAt > 60 * DAY) return 'inactive'
  const monetary = spendInLastDays(facts.spend, now, 90)
  const frequency = activeDaysBetween(facts.spend, epochDay(now) - 29, epochDay(now))
  if (monetary >= 15_000 && frequency >= 8) return 'high'
  if (monetary >= 3_000 || frequency >= 8) return 'mid'
  return 'low'
}

/** From the alerts of the last 30 days: the highest severity seen (critical counts as high). */
export function riskLevel(facts: CustomerFacts, now: number): RiskLevel {
  const recent = facts.alerts.filter((a) => now - a.at < 30 * DAY && a.at <= now)
  if (recent.some((a) => a.severity === 'high' || a.severity === 'critical')) return 'high'
  if (recent.some((a) => a.severity === 'medium')) return 'medium'
  return recent.length ? 'low' : 'none'
}
