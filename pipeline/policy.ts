import type { Catalog, TriggerConfig } from '../schemas/catalog.ts'
import type { Decision, SuppressedBy } from '../schemas/decision.ts'
import type { Channel } from '../schemas/events.ts'
import type { CustomerProfile, Moment } from '../operators/types.ts'
import { hasConsent } from '../operators/profile.ts'
import { riskLevel, valueTier, type CustomerFacts } from '../operators/facts.ts'
import type { Audience } from '../schemas/catalog.ts'
import type { Severity } from '../schemas/alert.ts'
import { afterQuietHours } from '../operators/time.ts'
import { decisionId, globalHoldoutBucket, holdoutBucket } from './ids.ts'
import { attributionWindowEnd } from './conversions.ts'

/**
 * The decision step: the contact policy that turns detected moments into decisions.
 * Pure: everything it needs (state, profile, catalogue, the decision time) is passed in.
 */

export interface PolicyState {
  /** Event time of the last send/control per trigger, for cooldowns. */
  lastContact: Record<string, number>
  /** Event times of recent send/control outcomes across marketing triggers, for the weekly cap. */
  contacts: number[]
  /** No marketing while eventTime is in [riskHoldFrom, riskHoldUntil). */
  riskHoldFrom?: number
  riskHoldUntil?: number
}

export const initialPolicyState = (): PolicyState => ({ lastContact: {}, contacts: [] })

/** Service messages skip the marketing contact policy (cooldowns, caps, quiet hours, holdouts). */
export const SERVICE_TRIGGERS = new Set(['compliance_notice'])

export interface DecideInput {
  customerId: string
  profile: CustomerProfile
  facts?: CustomerFacts
  catalog: Catalog
  /** When a moment of that event time is decided: the wall clock in `run`; the event time (the default) in replay and demo. */
  decisionTime?: (eventTime: number) => number
}

/** Replay and demo decide at event time, so that their output is reproducible. */
export const atEventTime = (eventTime: number) => eventTime

/** Decides a set of moments that one step (an event or a timer) produced for one customer. */
export function decide(state: PolicyState, moments: Moment[], input: DecideInput): { state: PolicyState; decisions: Decision[] } {
  const { catalog } = input
  const ordered = moments
    .filter((m) => catalog.triggers[m.trigger]?.enabled && inAudience(catalog.triggers[m.trigger].audience, m.eventTime, input))
    .sort((a, b) => a.eventTime - b.eventTime || priority(catalog, b) - priority(catalog, a) || (a.trigger < b.trigger ? -1 : 1))
  let s = state
  const decisions: Decision[] = []
  for (let i = 0; i < ordered.length; i++) {
    const moment = ordered[i]
    const displacedBy = ordered.slice(0, i).some((m) => m.eventTime === moment.eventTime)
    const out = decideOne(s, moment, input, displacedBy)
    s = out.state
    decisions.push(out.decision)
  }
  return { state: s, decisions }
}

function priority(catalog: Catalog, m: Moment): number {
  return catalog.triggers[m.trigger]?.priority ?? 0
}

function decideOne(
  state: PolicyState,
  moment: Moment,
  { customerId, profile, facts, catalog, decisionTime = atEventTime }: DecideInput,
  simultaneousHigherPriority: boolean,
): { state: PolicyState; decision: Decision } {
  const trigger = catalog.triggers[moment.trigger] as TriggerConfig
  const policy = catalog.policy
  const service = SERVICE_TRIGGERS.has(moment.trigger)
  const eventTime = moment.eventTime
  const decidedAt = decisionTime(eventTime)
  const ttl = trigger.ttl ?? policy.ttl
  const expiresAt = eventTime + ttl
  const channel = routeChannel(trigger.channels, profile, policy.channelOrder)
  const offer = (facts && trigger.offers?.[valueTier(facts, eventTime)]) || trigger.offer

  const base: Decision = {
    id: decisionId(moment.trigger, customerId, moment.occurrence),
    trigger: moment.trigger,
    customerId,
    ...(moment.cardId ? { cardId: moment.cardId } : {}),
    outcome: 'suppressed',
    ...(channel ? { channel } : {}),
    eventTime: iso(eventTime),
    decidedAt: iso(decidedAt),
    expiresAt: iso(expiresAt),
    ...(offer ? { offer } : {}),
    reason: moment.reason,
    catalogVersion: catalog.version,
    attributionWindowDays: attributionWindowDays(trigger, eventTime, profile.timezone),
    ...(profile.segment ? { segment: profile.segment } : {}),
  }
  const suppress = (by: SuppressedBy) => ({ state, decision: { ...base, outcome: 'suppressed' as const, suppressedBy: by } })

  if (decidedAt >= expiresAt) return suppress('expired')
  if (!channel) return suppress('consent')
  if (!service) {
    if (state.riskHoldUntil !== undefined && eventTime >= (state.riskHoldFrom ?? 0) && eventTime < state.riskHoldUntil)
      return suppress('risk_hold')
    const last = state.lastContact[moment.trigger]
    if (last !== undefined && eventTime - last < (trigger.cooldown ?? policy.cooldown)) return suppress('cooldown')
    const recent = state.contacts.filter((t) => eventTime - t < policy.capWindow)
    if (recent.length >= policy.weeklyCap) return suppress(simultaneousHigherPriority && recent.some((t) => t === eventTime) ? "lower_priority" : "weekly_cap")
  }

  const counted: PolicyState = service
    ? state
    : {
        ...state,
        lastContact: { ...recentContacts(state.lastContact, eventTime, catalog), [moment.trigger]: eventTime },
        contacts: [...state.contacts.filter((t) => eventTime - t < policy.capWindow), eventTime],
      }
  if (!service && globalHoldoutBucket(customerId) < policy.globalHoldoutPercent * 100)
    return { state: counted, decision: { ...base, outcome: 'control', holdout: 'global' } }
  const holdout = service ? 0 : (trigger.holdoutPercent ?? policy.holdoutPercent)
  if (holdoutBucket(customerId, moment.trigger) < holdout * 100) return { state: counted, decision: { ...base, outcome: 'control', holdout: 'trigger' } }

  const quiet = service ? null : policy.quietHours
  const sendAt = quiet ? afterQuietHours(decidedAt, profile.timezone, quiet.start, quiet.end) : decidedAt
  if (sendAt >= expiresAt) return suppress('expired')
  return { state: counted, decision: { ...base, outcome: 'send', sendAt: iso(sendAt) } }
}

/**
 * The contact policy's part in a risk alert: a high or critical one holds marketing from the
 * alerting event on (moments that event itself caused included) for `riskHold`; one inside a running
 * hold extends it, one after it starts a new one.
 */
export function holdForRisk(state: PolicyState, severity: Severity, eventTime: number, riskHold: number): PolicyState {
  if (severity !== 'high' && severity !== 'critical') return state
  const until = eventTime + riskHold
  const { riskHoldFrom: from, riskHoldUntil: to } = state
  const extendsRunning = to !== undefined && eventTime < to
  return {
    ...state,
    riskHoldFrom: extendsRunning ? Math.min(from ?? eventTime, eventTime) : eventTime,
    riskHoldUntil: extendsRunning ? Math.max(to, until) : until,
  }
}

/** Whole days of the attribution window (a month_spend goal's: the days left in the local month, begun ones counted). */
function attributionWindowDays(trigger: TriggerConfig, eventTime: number, timezone: string): number {
  const days = (attributionWindowEnd(trigger, eventTime, timezone) - eventTime) / 86_400_000
  return Math.max(1, trigger.goal.kind === 'month_spend' ? Math.ceil(days) : Math.round(days))
}

/** Last contacts still inside some trigger's cooldown; older ones can no longer matter. */
function recentContacts(last: Record<string, number>, now: number, catalog: Catalog): Record<string, number> {
  let longest = catalog.policy.cooldown
  for (const t of Object.values(catalog.triggers)) if (t.cooldown !== undefined && t.cooldown > longest) longest = t.cooldown
  const kept: Record<string, number> = {}
  for (const [trigger, at] of Object.entries(last)) if (now - at < longest) kept[trigger] = at
  return kept
}

/** Whether the customer is in the trigger's audience at the moment's event time. */
export function inAudience(audience: Audience | undefined, at: number, { profile, facts }: DecideInput): boolean {
  if (!audience) return true
  const tags = profile.tags ?? []
  if (audience.segments && !audience.segments.includes(profile.segment ?? '')) return false
  if (audience.tagsAny && !audience.tagsAny.some((t) => tags.includes(t))) return false
  if (audience.tagsNone && audience.tagsNone.some((t) => tags.includes(t))) return false
  if (!facts) return !(audience.tiers || audience.riskLevels || audience.stages)
  if (audience.tiers && !audience.tiers.includes(valueTier(facts, at))) return false
  if (audience.riskLevels && !audience.riskLevels.includes(riskLevel(facts, at))) return false
  if (audience.stages && !(facts.stage && audience.stages.includes(facts.stage))) return false
  return true
}

/** The preferred channel when the trigger uses it and consent holds, else the next consented one. */
export function routeChannel(channels: Channel[], profile: CustomerProfile, order: Channel[]): Channel | undefined {
  const preferred = profile.preferredChannel
  if (preferred && channels.includes(preferred) && hasConsent(profile, preferred)) return preferred
  const ranked = [...order.filter((c) => channels.includes(c)), ...channels.filter((c) => !order.includes(c))]
  return ranked.find((c) => hasConsent(profile, c))
}

const iso = (ms: number) => new Date(ms).toISOString()
