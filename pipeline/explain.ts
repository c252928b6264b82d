import type { Catalog } from '../schemas/catalog.ts'
import type { Decision } from '../schemas/decision.ts'
import type { RiskAlert } from '../schemas/alert.ts'
import type { Conversion } from '../schemas/conversion.ts'
import type { PendingWebhook } from '../schemas/outbox.ts'
import type { CustomerRecord } from './store/types.ts'
import type { TimerEntry } from './timers.ts'
import { parseTimerMember } from './timers.ts'
import { riskLevel, valueTier } from '../operators/facts.ts'
import { hasConsent } from '../operators/profile.ts'
import { localTime } from '../operators/time.ts'
import { containsPan, maskPans } from './pan.ts'
import { SERVICE_TRIGGERS } from './policy.ts'
import { globalHoldoutBucket, holdoutBucket } from './ids.ts'
import { parseDuration } from '../schemas/duration.ts'

/**
 * Why a customer got, or did not get, a message: the customer's state and recent records turned
 * into one structured explanation (what `cardpulse explain --json` and the HTTP API return), and
 * that explanation rendered as text for a marketer. Pure: the state and the records are read by
 * the caller (pipeline/explainSources.ts); the rules are re-read from the catalogue in force.
 */

// --- input -----------------------------------------------------------------------------------

/** What the state store holds of the customer now. */
export interface CustomerStateView {
  partition: number
  record: CustomerRecord
  /** The customer's pending event-time timers. */
  timers: TimerEntry[]
  /** The customer's touchpoints still waiting in the outbox (for their sendAt or a retry). */
  pendingWebhooks: PendingWebhook[]
}

/** A finished webhook delivery, as the `deliveries` table keeps it. */
export interface DeliveryRecord {
  decisionId: string
  status: string
  attempts: number
  httpStatus?: number
  error?: string
  finishedAt?: string
}

export interface ExplainInput {
  customerId: string
  /** Epoch ms the explanation is "as of": the wall clock live, the last event time of a replay. */
  now: number
  catalog: Catalog
  /** Where the records came from, in words ("Redis … and ClickHouse …", "replay output DIR"). */
  source: string
  /** The customer's state, or why there is none to read. */
  state: CustomerStateView | { unavailable: string }
  /** The customer's decisions (any order); older ones than `since` serve as context for cooldowns and caps. */
  decisions: Decision[]
  alerts: RiskAlert[]
  conversions: Conversion[]
  deliveries: DeliveryRecord[]
  /** How many recent decisions to explain. */
  limit: number
  /** Explain decisions and alerts at or after this epoch ms only. */
  since?: number
}

// --- output ----------------------------------------------------------------------------------

/** An instant, in UTC and in the customer's time zone. */
export interface When {
  utc: string
  local: string
}

export interface Figure {
  name: string
  label: string
  value: string
}

/** The contact-policy rule behind an outcome, with the figures it used. */
export type RuleExplanation =
  | { rule: 'sent'; channel?: string; sendAt?: When; quietHours?: { start: string; end: string }; service: boolean }
  | { rule: 'holdout'; group: 'trigger' | 'global'; percent: number; bucket: number }
  | { rule: 'cooldown'; cooldown: string; previous?: DecisionRef; endsAt?: When }
  | { rule: 'weekly_cap' | 'lower_priority'; cap: number; window: string; counted: DecisionRef[]; freesAt?: When }
  | { rule: 'consent'; channels: string[]; withdrawn?: string[] }
  | { rule: 'risk_hold'; hold: string; alerts: AlertRef[]; holdUntil?: When }
  | { rule: 'expired'; expiresAt: When; decidedAt: When; sendAt?: When }
  /** A suppression this release does not know how to explain further. */
  | { rule: 'other'; suppressedBy: string }

export interface DecisionRef {
  id: string
  trigger: string
  outcome: string
  eventTime: When
}

export interface AlertRef {
  id: string
  kind: string
  severity: string
  eventTime: When
}

export interface DecisionExplanation {
  id: string
  trigger: string
  outcome: Decision['outcome']
  suppressedBy?: string
  holdout?: string
  channel?: string
  cardId?: string
  eventTime: When
  decidedAt: When
  sendAt?: When
  offer?: Decision['offer']
  /** One or two short sentences: why this outcome. */
  why: string
  rule: RuleExplanation
  /** The decision's `reason`, readable. */
  figures: Figure[]
  catalogVersion: string
  /** Said when the decision was made under another catalogue than the one whose rules are quoted. */
  catalogNote?: string
  /** What became of the webhook of a send: delivered, failed, expired, cancelled, or waiting in the outbox. */
  delivery?: { status: string; attempts: number; httpStatus?: number; error?: string; at?: When; nextAttempt?: When }
  conversion?: ConversionExplanation
}

export interface ConversionExplanation {
  decisionId: string
  trigger: string
  outcome: string
  converted: boolean
  convertedAt?: When
  windowEnd: When
  final: boolean
  engaged: boolean
  spend: number
}

export interface AlertExplanation {
  id: string
  kind: string
  severity: string
  score: number
  cardId?: string
  eventTime: When
  /** High and critical alerts hold marketing from their event on. */
  holdsMarketingUntil?: When
  figures: Figure[]
  ruleVersion: string
}

export interface StateExplanation {
  available: true
  partition: number
  timezone: string
  segment?: string
  homeCountry: string
  preferredChannel?: string
  tags: string[]
  consent: Record<string, boolean>
  stage?: string
  cards: { cardId: string; stage: string; creditLimit?: number; activatedAt?: When; firstPurchaseAt?: When }[]
  valueTier: string
  riskLevel: string
  riskHold?: { from: When; until: When; active: boolean }
  approvedTransactions: number
  lastPurchaseAt?: When
  openWindows: { decisionId: string; trigger: string; outcome: string; from: When; until: When; converted: boolean; spend: number }[]
  /** `owner`: the operator (named as its trigger or signal) or the runtime's own (`~convert`, `~decide`); `what`: in words. */
  timers: { owner: string; key: string; what: string; due: When }[]
  /** Moments detected but waiting for the watermark before they are decided. */
  pendingMoments: { trigger: string; eventTime: When }[]
  pendingTouchpoints: { decisionId: string; trigger: string; channel?: string; sendAt?: When; nextAttempt: When; attempts: number }[]
}

export interface Explanation {
  customerId: string
  asOf: When
  timezone: string
  source: string
  /** Version of the catalogue whose rules (cooldowns, caps, holdouts) the explanation quotes. */
  catalogVersion: string
  state: StateExplanation | { available: false; note: string }
  decisions: { total: number; shown: number; items: DecisionExplanation[] }
  alerts: AlertExplanation[]
  conversions: ConversionExplanation[]
}

// --- the customer id -------------------------------------------------------------------------

const CUSTOMER_ID = /^[A-Za-z0-9_-]{1,64}$/

/**
 * Why a customer id cannot be looked up, or undefined when it can. The message never repeats the
 * id: it may be a card number typed in the wrong place.
 */
export function customerIdProblem(id: string | undefined): string | undefined {
  if (id === undefined || id.trim() === '') return 'give a customer id (--customer)'
  if (containsPan(id)) return 'the customer id looks like a card number; give the customer id, never a card number'
  if (id.length > 64) return `the customer id is ${id.length} characters long; at most 64`
  if (!CUSTOMER_ID.test(id)) return 'a customer id is 1–64 characters of A-Z a-z 0-9 _ -'
  return undefined
}

/** `since`: a span back from the explanation's "as of", or an instant. */
export type Since = { back: number } | { at: number }

/** `30d`, `12h` (back from now), `2026-10-01` (UTC midnight) or `2026-10-01T08:00:00Z`; undefined when it is none of these. */
export function parseSince(text: string): Since | undefined {
  const t = text.trim()
  const back = parseDuration(t)
  if (back !== undefined) return { back }
  if (!/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(t)) return undefined
  const at = Date.parse(t.length === 10 ? `${t}T00:00:00Z` : /(Z|[+-]\d{2}:?\d{2})$/.test(t) ? t.replace(' ', 'T') : `${t.replace(' ', 'T')}Z`)
  return Number.isNaN(at) ? undefined : { at }
}

export const SINCE_HELP = 'a duration back from now (30d, 12h) or a date (2026-10-01, 2026-10-01T08:00:00Z)'

// --- building --------------------------------------------------------------------------------

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR

export function explain(input: ExplainInput): Explanation {
  const { catalog, customerId, now } = input
  const state = 'record' in input.state ? input.state : undefined
  const timezone = state?.record.profile.timezone ?? 'Asia/Shanghai'
  const when = (ms: number): When => ({ utc: new Date(ms).toISOString(), local: localText(ms, timezone) })
  const at = (iso: string) => when(Date.parse(iso))

  const decisions = [...input.decisions].sort((a, b) => cmp(a.eventTime, b.eventTime) || cmp(a.id, b.id))
  const alerts = [...input.alerts].sort((a, b) => cmp(a.eventTime, b.eventTime) || cmp(a.id, b.id))
  const inRange = (iso: string) => input.since === undefined || Date.parse(iso) >= input.since
  const recent = decisions.filter((d) => inRange(d.eventTime))
  const shown = recent.slice(-Math.max(0, input.limit)).reverse()
  const conversions = new Map(input.conversions.map((c) => [c.decisionId, c]))
  const deliveries = new Map(input.deliveries.map((d) => [d.decisionId, d]))
  const pending = new Map((state?.pendingWebhooks ?? []).map((w) => [w.decision.id, w]))
  const ref = (d: Decision): DecisionRef => ({ id: d.id, trigger: d.trigger, outcome: d.outcome, eventTime: at(d.eventTime) })
  const alertRef = (a: RiskAlert): AlertRef => ({ id: a.id, kind: a.kind, severity: a.severity, eventTime: at(a.eventTime) })
  const conversionOf = (c: Conversion): ConversionExplanation => ({
    decisionId: c.decisionId,
    trigger: c.trigger,
    outcome: c.outcome,
    converted: c.converted,
    ...(c.convertedAt ? { convertedAt: at(c.convertedAt) } : {}),
    windowEnd: at(c.windowEnd),
    final: c.final,
    engaged: c.engaged,
    spend: c.spend,
  })

  const explainDecision = (d: Decision): DecisionExplanation => {
    const t = Date.parse(d.eventTime)
    const trigger = catalog.triggers[d.trigger]
    const policy = catalog.policy
    let rule: RuleExplanation
    let why: string
    if (d.outcome === 'send') {
      const service = SERVICE_TRIGGERS.has(d.trigger)
      const deferred = d.sendAt !== undefined && Date.parse(d.sendAt) > Date.parse(d.decidedAt)
      rule = { rule: 'sent', ...(d.channel ? { channel: d.channel } : {}), ...(d.sendAt ? { sendAt: at(d.sendAt) } : {}), service, ...(deferred && policy.quietHours ? { quietHours: policy.quietHours } : {}) }
      why = service
        ? `Sent by ${d.channel ?? 'its channel'}: a service message, exempt from cooldowns, caps, quiet hours and holdouts.`
        : `Sent by ${d.channel ?? 'its channel'}: no cooldown, weekly cap, consent or risk hold stood in the way, and the customer is not in the control group.`
      if (deferred) why += ` Held for quiet hours${policy.quietHours ? ` (${policy.quietHours.start}–${policy.quietHours.end} local)` : ''} until ${at(d.sendAt!).local}.`
    } else if (d.outcome === 'control') {
      const group = d.holdout === 'global' ? 'global' : 'trigger'
      const percent = group === 'global' ? policy.globalHoldoutPercent : (trigger?.holdoutPercent ?? policy.holdoutPercent)
      const bucket = group === 'global' ? globalHoldoutBucket(customerId) : holdoutBucket(customerId, d.trigger)
      rule = { rule: 'holdout', group, percent, bucket }
      why =
        group === 'global'
          ? `Not sent: the customer is in the programme's global control group (${percent}% of customers, by a stable hash of the customer), which gets no marketing at all.`
          : `Not sent: the customer is in ${d.trigger}'s control group (${percent}% of customers, by a stable hash of customer and trigger), so the trigger's lift can be measured.`
      why += ' Counted for cooldowns and caps like a send.'
    } else {
      const by = d.suppressedBy ?? 'unknown'
      const contacts = decisions.filter((o) => o.id !== d.id && (o.outcome === 'send' || o.outcome === 'control'))
      if (by === 'cooldown') {
        const cooldown = trigger?.cooldown ?? policy.cooldown
        const previous = contacts.filter((o) => o.trigger === d.trigger && Date.parse(o.eventTime) <= t && t - Date.parse(o.eventTime) < cooldown).at(-1)
        rule = { rule: 'cooldown', cooldown: duration(cooldown), ...(previous ? { previous: ref(previous), endsAt: when(Date.parse(previous.eventTime) + cooldown) } : {}) }
        why = previous
          ? `Suppressed by the cooldown: ${d.trigger} was already decided (${previous.outcome}, ${previous.id}) at ${at(previous.eventTime).local}, and its cooldown of ${duration(cooldown)} runs until ${when(Date.parse(previous.eventTime) + cooldown).local}.`
          : `Suppressed by the cooldown of ${duration(cooldown)} after an earlier ${d.trigger} decision (not among the records read).`
      } else if (by === 'weekly_cap' || by === 'lower_priority') {
        const counted = contacts.filter((o) => !SERVICE_TRIGGERS.has(o.trigger) && Date.parse(o.eventTime) <= t && t - Date.parse(o.eventTime) < policy.capWindow)
        const oldest = counted[0]
        rule = {
          rule: by,
          cap: policy.weeklyCap,
          window: duration(policy.capWindow),
          counted: counted.map(ref),
          ...(oldest ? { freesAt: when(Date.parse(oldest.eventTime) + policy.capWindow) } : {}),
        }
        const list = counted.map((o) => `${o.trigger} (${o.outcome}, ${at(o.eventTime).local})`).join(', ')
        why =
          by === 'lower_priority'
            ? `Suppressed for a higher-priority message at the same moment: the cap of ${policy.weeklyCap} per ${duration(policy.capWindow)} was reached by ${list || 'decisions not among the records read'}.`
            : `Suppressed by the weekly cap: ${counted.length || policy.weeklyCap} of at most ${policy.weeklyCap} messages in ${duration(policy.capWindow)} already counted${list ? `: ${list}` : ' (not among the records read)'}.`
        if (oldest) why += ` Room again from ${when(Date.parse(oldest.eventTime) + policy.capWindow).local}.`
      } else if (by === 'consent') {
        const channels = trigger?.channels ?? []
        const withdrawn = state ? channels.filter((c) => !hasConsent(state.record.profile, c)) : undefined
        rule = { rule: 'consent', channels, ...(withdrawn ? { withdrawn } : {}) }
        why = `Suppressed for consent: the customer had withdrawn consent for every channel ${d.trigger} uses (${channels.join(', ') || 'none configured'}).`
      } else if (by === 'risk_hold') {
        const hold = policy.riskHold
        const causes = alerts.filter((a) => (a.severity === 'high' || a.severity === 'critical') && Date.parse(a.eventTime) <= t && t - Date.parse(a.eventTime) < hold)
        const until = causes.length ? Math.max(...causes.map((a) => Date.parse(a.eventTime) + hold)) : undefined
        rule = { rule: 'risk_hold', hold: duration(hold), alerts: causes.map(alertRef), ...(until !== undefined ? { holdUntil: when(until) } : {}) }
        why = causes.length
          ? `Suppressed by a risk hold: the ${causes.map((a) => `${a.severity} ${a.kind} alert at ${at(a.eventTime).local}`).join(' and ')} holds marketing for ${duration(hold)}, until ${when(until!).local}.`
          : `Suppressed by a risk hold of ${duration(hold)} after a high or critical alert (not among the records read).`
      } else if (by === 'expired') {
        rule = { rule: 'expired', expiresAt: at(d.expiresAt), decidedAt: at(d.decidedAt), ...(d.sendAt ? { sendAt: at(d.sendAt) } : {}) }
        why =
          Date.parse(d.decidedAt) >= Date.parse(d.expiresAt)
            ? `Suppressed as expired: it was decided at ${at(d.decidedAt).local}, after it expired at ${at(d.expiresAt).local}.`
            : `Suppressed as expired: the first time outside quiet hours came after it expired at ${at(d.expiresAt).local}.`
      } else {
        rule = { rule: 'other', suppressedBy: by }
        why = `Suppressed (${by}).`
      }
    }

    const delivered = deliveries.get(d.id)
    const waiting = pending.get(d.id)
    const delivery: DecisionExplanation['delivery'] = delivered
      ? {
          status: delivered.status,
          attempts: delivered.attempts,
          ...(delivered.httpStatus !== undefined ? { httpStatus: delivered.httpStatus } : {}),
          ...(delivered.error ? { error: maskPans(delivered.error) } : {}),
          ...(delivered.finishedAt ? { at: at(delivered.finishedAt) } : {}),
        }
      : waiting
        ? { status: 'waiting', attempts: waiting.attempts, nextAttempt: when(waiting.dueAt) }
        : undefined
    const conversion = conversions.get(d.id)
    return {
      id: d.id,
      trigger: d.trigger,
      outcome: d.outcome,
      ...(d.suppressedBy ? { suppressedBy: d.suppressedBy } : {}),
      ...(d.holdout ? { holdout: d.holdout } : {}),
      ...(d.channel ? { channel: d.channel } : {}),
      ...(d.cardId ? { cardId: d.cardId } : {}),
      eventTime: at(d.eventTime),
      decidedAt: at(d.decidedAt),
      ...(d.sendAt ? { sendAt: at(d.sendAt) } : {}),
      ...(d.offer ? { offer: d.offer } : {}),
      why,
      rule,
      figures: figures(d.reason, when),
      catalogVersion: d.catalogVersion,
      ...(d.catalogVersion !== catalog.version ? { catalogNote: `decided under catalogue ${d.catalogVersion}; the rules quoted are those of ${catalog.version}, in force now` } : {}),
      ...(delivery ? { delivery } : {}),
      ...(conversion ? { conversion: conversionOf(conversion) } : {}),
    }
  }

  const alertsShown = alerts
    .filter((a) => inRange(a.eventTime))
    .reverse()
    .map(
      (a): AlertExplanation => ({
        id: a.id,
        kind: a.kind,
        severity: a.severity,
        score: a.score,
        ...(a.cardId ? { cardId: a.cardId } : {}),
        eventTime: at(a.eventTime),
        ...(a.severity === 'high' || a.severity === 'critical' ? { holdsMarketingUntil: when(Date.parse(a.eventTime) + catalog.policy.riskHold) } : {}),
        figures: figures(a.evidence, when),
        ruleVersion: a.ruleVersion,
      }),
    )

  return {
    customerId,
    asOf: when(now),
    timezone,
    source: input.source,
    catalogVersion: catalog.version,
    state: state ? explainState(state, now, when) : { available: false, note: (input.state as { unavailable: string }).unavailable },
    decisions: { total: recent.length, shown: shown.length, items: shown.map(explainDecision) },
    alerts: alertsShown,
    conversions: [...input.conversions]
      .filter((c) => inRange(c.decisionTime))
      .sort((a, b) => cmp(b.decisionTime, a.decisionTime) || cmp(a.decisionId, b.decisionId))
      .map(conversionOf),
  }
}

function explainState(state: CustomerStateView, now: number, when: (ms: number) => When): StateExplanation {
  const { record } = state
  const { profile, facts, policy } = record
  const channels = ['sms', 'push', 'call', 'app_banner'] as const
  const hold = policy.riskHoldUntil !== undefined ? { from: when(policy.riskHoldFrom ?? policy.riskHoldUntil), until: when(policy.riskHoldUntil), active: now < policy.riskHoldUntil && now >= (policy.riskHoldFrom ?? 0) } : undefined
  return {
    available: true,
    partition: state.partition,
    timezone: profile.timezone,
    ...(profile.segment ? { segment: profile.segment } : {}),
    homeCountry: profile.homeCountry,
    ...(profile.preferredChannel ? { preferredChannel: profile.preferredChannel } : {}),
    tags: profile.tags ?? [],
    consent: Object.fromEntries(channels.map((c) => [c, hasConsent(profile, c)])),
    ...(facts.stage ? { stage: facts.stage } : {}),
    cards: Object.entries(facts.cards)
      .sort(([a], [b]) => cmp(a, b))
      .map(([cardId, c]) => ({
        cardId: maskPans(cardId),
        stage: c.stage,
        ...(c.creditLimit !== undefined ? { creditLimit: c.creditLimit } : {}),
        ...(c.activatedAt !== undefined ? { activatedAt: when(c.activatedAt) } : {}),
        ...(c.firstPurchaseAt !== undefined ? { firstPurchaseAt: when(c.firstPurchaseAt) } : {}),
      })),
    valueTier: valueTier(facts, now),
    riskLevel: riskLevel(facts, now),
    ...(hold ? { riskHold: hold } : {}),
    approvedTransactions: facts.approved,
    ...(facts.lastApprovedAt !== undefined ? { lastPurchaseAt: when(facts.lastApprovedAt) } : {}),
    openWindows: (record.conversions ?? []).map((w) => ({
      decisionId: w.decisionId,
      trigger: w.trigger,
      outcome: w.outcome,
      from: when(w.from),
      until: when(w.until),
      converted: w.convertedAt !== undefined,
      spend: w.spend / 100,
    })),
    timers: [...state.timers]
      .sort((a, b) => a.at - b.at || cmp(a.member, b.member))
      .map((t) => {
        const m = parseTimerMember(t.member)
        return { owner: m.name, key: maskPans(m.key), what: timerWhat(m.name, maskPans(m.key)), due: when(t.at) }
      }),
    pendingMoments: (record.pending ?? []).map((m) => ({ trigger: m.trigger, eventTime: when(m.eventTime) })),
    pendingTouchpoints: [...state.pendingWebhooks]
      .sort((a, b) => a.dueAt - b.dueAt || cmp(a.decision.id, b.decision.id))
      .map((w) => ({
        decisionId: w.decision.id,
        trigger: w.decision.trigger,
        ...(w.decision.channel ? { channel: w.decision.channel } : {}),
        ...(w.decision.sendAt ? { sendAt: when(Date.parse(w.decision.sendAt)) } : {}),
        nextAttempt: when(w.dueAt),
        attempts: w.attempts,
      })),
  }
}

/** What a pending timer will do when it fires, in words. */
function timerWhat(owner: string, key: string): string {
  if (owner === '~convert') return 'an attribution window ends: its conversion row is made final'
  if (owner === '~decide') return 'moments waiting for the watermark are decided'
  return `${owner} checks again${key ? ` (${key})` : ''}`
}

/** The evidence of a decision or an alert, one readable line per field. */
function figures(evidence: Record<string, unknown>, when: (ms: number) => When): Figure[] {
  return Object.entries(evidence).map(([name, value]) => ({ name, label: label(name), value: maskPans(figureValue(name, value, when)) }))
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/

function figureValue(name: string, value: unknown, when: (ms: number) => When): string {
  if (typeof value === 'string' && ISO_TIME.test(value)) {
    const w = when(Date.parse(value))
    return `${w.local} (${utcText(w.utc)})`
  }
  if (typeof value === 'number' && /Ms$/.test(name)) return duration(value)
  if (typeof value === 'number' && /(share|ratio)$/i.test(name)) return `${value} (${Math.round(value * 1000) / 10}%)`
  if (Array.isArray(value)) {
    const items = value.map((v) => (typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)))
    return items.length > 5 ? `${items.slice(0, 5).join(', ')} … and ${items.length - 5} more` : items.join(', ')
  }
  if (typeof value === 'object' && value !== null) return JSON.stringify(value)
  return String(value)
}

/** camelCase and snake_case field names as words: hoursWithoutActivation → hours without activation. */
export function label(name: string): string {
  return name
    .replace(/_/g, ' ')
    .replace(/([a-z])([A-Z0-9])/g, '$1 $2')
    .replace(/([0-9])([a-z])/g, '$1 $2')
    .replace(/ Ms$/, '')
    .toLowerCase()
    .replace(/\bd$/, 'days')
}

/** A length of time in the largest whole units: 7d, 72h → 3d, 10 min, 1h 30 min. */
export function duration(ms: number): string {
  if (ms >= DAY && ms % DAY === 0) return `${ms / DAY} day${ms === DAY ? '' : 's'}`
  if (ms >= HOUR && ms % HOUR === 0) return `${ms / HOUR} h`
  if (ms >= HOUR) return `${Math.floor(ms / HOUR)} h ${Math.round((ms % HOUR) / MINUTE)} min`
  if (ms >= MINUTE && ms % MINUTE === 0) return `${ms / MINUTE} min`
  if (ms >= 1000) return `${Math.round(ms / 100) / 10} s`
  return `${ms} ms`
}

const pad = (n: number) => String(n).padStart(2, '0')

/** `2026-10-29 13:56 Asia/Shanghai` */
function localText(ms: number, timezone: string): string {
  const t = localTime(ms, timezone)
  return `${t.year}-${pad(t.month)}-${pad(t.day)} ${pad(t.hour)}:${pad(t.minute)} ${timezone}`
}

/** `2026-10-29 05:56 UTC` from an ISO instant. */
function utcText(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0)

// --- rendering -------------------------------------------------------------------------------

export interface RenderOptions {
  /** ANSI colours (on a terminal only). */
  color?: boolean
}

const ANSI = { bold: [1, 22], dim: [2, 22], red: [31, 39], green: [32, 39], yellow: [33, 39], cyan: [36, 39] } as const

/** The explanation as text: sections, aligned columns, short sentences. Never a card number. */
export function renderExplanation(e: Explanation, opts: RenderOptions = {}): string {
  const paint = (style: keyof typeof ANSI, text: string) => (opts.color ? `\u001b[${ANSI[style][0]}m${text}\u001b[${ANSI[style][1]}m` : text)
  const out: string[] = []
  const heading = (text: string) => out.push('', paint('bold', text))
  const table = (rows: [string, string][], indent = '  ') => {
    const width = Math.max(0, ...rows.map(([k]) => k.length))
    for (const [k, v] of rows) out.push(`${indent}${k.padEnd(width)}  ${v}`)
  }
  const both = (w: When) => `${w.local} (${utcText(w.utc)})`

  out.push(paint('bold', `Customer ${e.customerId}`) + ` — as of ${both(e.asOf)}`)
  out.push(`Source: ${e.source}`)
  out.push(`Rules quoted from catalogue ${e.catalogVersion}`)

  const s = e.state
  if (!s.available) {
    heading('State')
    out.push(`  ${s.note}`)
  } else {
    heading('Profile')
    table([
      ['segment', s.segment ?? '—'],
      ['time zone', s.timezone],
      ['home country', s.homeCountry],
      ['preferred channel', s.preferredChannel ?? '—'],
      ['consent', Object.entries(s.consent).map(([c, ok]) => `${c} ${ok ? 'yes' : paint('red', 'withdrawn')}`).join(' · ')],
      ['tags', s.tags.length ? s.tags.join(', ') : '—'],
      ['lifecycle stage', s.stage ?? '—'],
      ['value tier (RFM)', s.valueTier],
      ['risk level', s.riskLevel === 'high' ? paint('red', s.riskLevel) : s.riskLevel],
      ['risk hold', s.riskHold ? `${s.riskHold.active ? paint('red', 'ACTIVE') + ' ' : ''}${both(s.riskHold.from)} → ${both(s.riskHold.until)}` : 'none'],
      ['approved purchases', `${s.approvedTransactions}${s.lastPurchaseAt ? `, last ${both(s.lastPurchaseAt)}` : ''}`],
      ['state partition', String(s.partition)],
    ])
    heading(`Cards (${s.cards.length})`)
    if (!s.cards.length) out.push('  none known')
    table(
      s.cards.map((c) => [
        c.cardId,
        [c.stage, c.creditLimit !== undefined ? `limit ${c.creditLimit}` : '', c.activatedAt ? `activated ${c.activatedAt.local}` : '', c.firstPurchaseAt ? `first purchase ${c.firstPurchaseAt.local}` : '']
          .filter(Boolean)
          .join(' · '),
      ]),
    )
    heading(`Open attribution windows (${s.openWindows.length})`)
    if (!s.openWindows.length) out.push('  none')
    table(s.openWindows.map((w) => [w.trigger, `${w.outcome} ${w.decisionId} · until ${both(w.until)} · ${w.converted ? paint('green', 'converted') : 'not converted yet'} · spend ${w.spend}`]))
    heading(`Pending timers (${s.timers.length})`)
    if (!s.timers.length) out.push('  none')
    table(s.timers.map((t) => [both(t.due), t.what]))
    if (s.pendingMoments.length) {
      heading(`Moments waiting for the watermark (${s.pendingMoments.length})`)
      table(s.pendingMoments.map((m) => [m.trigger, both(m.eventTime)]))
    }
    heading(`Pending touchpoints in the outbox (${s.pendingTouchpoints.length})`)
    if (!s.pendingTouchpoints.length) out.push('  none')
    table(
      s.pendingTouchpoints.map((p) => [
        p.trigger,
        `${p.decisionId} by ${p.channel ?? '—'} · next attempt ${both(p.nextAttempt)}${p.attempts ? ` · ${p.attempts} attempt${p.attempts === 1 ? '' : 's'} so far` : ''}`,
      ]),
    )
  }

  heading(`Recent decisions (${e.decisions.shown} of ${e.decisions.total}, newest first)`)
  if (!e.decisions.items.length) out.push('  none')
  for (const d of e.decisions.items) {
    const outcome =
      d.outcome === 'send' ? paint('green', 'SENT') : d.outcome === 'control' ? paint('yellow', `CONTROL (${d.holdout ?? 'trigger'} holdout)`) : paint('red', `SUPPRESSED by ${d.suppressedBy}`)
    out.push('', `  ${d.eventTime.local}  ${paint('bold', d.trigger)}  ${outcome}`)
    const rows: [string, string][] = [
      ['why', d.why],
      ['decision', `${d.id}${d.cardId ? ` · card ${maskPans(d.cardId)}` : ''}${d.channel ? ` · ${d.channel}` : ''}`],
      ['event time', both(d.eventTime)],
    ]
    // Live, a decision is made on the wall clock: a late one says so.
    if (d.decidedAt.utc !== d.eventTime.utc) rows.push(['decided at', both(d.decidedAt)])
    if (d.sendAt) rows.push(['send at', both(d.sendAt)])
    if (d.offer) rows.push(['offer', `${d.offer.code} (${d.offer.value} ${d.offer.currency})`])
    for (const f of d.figures) rows.push([f.label, f.value])
    rows.push(['catalogue', d.catalogVersion + (d.catalogNote ? ` (${d.catalogNote})` : '')])
    if (d.delivery)
      rows.push([
        'delivery',
        d.delivery.status === 'waiting'
          ? `waiting in the outbox, next attempt ${both(d.delivery.nextAttempt!)}`
          : `${d.delivery.status}${d.delivery.at ? ` at ${both(d.delivery.at)}` : ''} after ${d.delivery.attempts} attempt${d.delivery.attempts === 1 ? '' : 's'}${d.delivery.httpStatus ? ` (HTTP ${d.delivery.httpStatus})` : ''}${d.delivery.error ? `: ${d.delivery.error}` : ''}`,
      ])
    if (d.conversion) rows.push(['conversion', conversionText(d.conversion, both)])
    table(rows, '    ')
  }

  heading(`Risk alerts (${e.alerts.length})`)
  if (!e.alerts.length) out.push('  none')
  for (const a of e.alerts) {
    const sev = a.severity === 'high' || a.severity === 'critical' ? paint('red', a.severity) : a.severity
    out.push('', `  ${a.eventTime.local}  ${paint('bold', a.kind)}  ${sev} (score ${a.score})`)
    const rows: [string, string][] = [['alert', `${a.id}${a.cardId ? ` · card ${maskPans(a.cardId)}` : ''} · rules ${a.ruleVersion}`]]
    if (a.holdsMarketingUntil) rows.push(['holds marketing until', both(a.holdsMarketingUntil)])
    for (const f of a.figures) rows.push([f.label, f.value])
    table(rows, '    ')
  }

  heading(`Conversions attributed to its decisions (${e.conversions.length})`)
  if (!e.conversions.length) out.push('  none')
  table(e.conversions.map((c) => [c.trigger, `${c.outcome} ${c.decisionId} · ${conversionText(c, both)}`]))
  return maskPans(out.join('\n')) + '\n'
}

function conversionText(c: ConversionExplanation, both: (w: When) => string): string {
  const state = c.converted ? `converted at ${both(c.convertedAt!)}` : c.final ? 'did not convert' : `not converted yet, window open until ${both(c.windowEnd)}`
  return `${state}${c.engaged ? ' · engaged with the offer' : ''} · spend in window ${c.spend}`
}
