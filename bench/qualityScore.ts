import type { TruthRecord } from '../simulator/truth.ts'

/**
 * Detection quality: cardpulse's alerts and decisions held against the simulated bank's ground
 * truth (`truth.ndjson`). Pure: records in, figures out; `bench/quality.ts` does the simulating,
 * replaying and reading. Every rule of matching is spelled out here and in docs/simulator.md
 * ("Detection quality").
 *
 * Risk signals, per kind. A truth fraud case is *detected* when an alert of the case's kind for
 * the case's customer cites one of the case's events, or has its event time within
 * [case.at, case.endAt + slack]. recall = detected cases / cases. An alert is *matched* when it
 * detects some case of its own kind; precision = matched alerts / alerts of the kind. An alert on
 * a genuinely unusual but legitimate pattern (amount_anomaly on an honest big purchase) counts
 * against precision; an alert raised by a case of another kind (a velocity burst at night that
 * also makes a night_burst) is counted apart as `onOtherFraud`, and against precision too.
 * Detection delay = alert event time − case.at, for the earliest matching alert of each detected
 * case: event-time delay, which is what `replay` measures; `run` additionally holds each decision
 * and alert until the watermark passes its event (until every input partition not idle has come that far).
 *
 * Triggers whose moment the truth defines:
 * - dormancy_wakeup vs `dormancy` {at, dormantAt}: a case is detected by a decision (any outcome)
 *   for the customer with event time in [at, dormantAt + 30 d + slack]; it is due (counted) when
 *   that window closes within the period. A decision is matched when it falls in
 *   [at, dormantAt + 90 d + slack] of a case of its customer (the 60 d and 90 d repeats of the same
 *   spell). Delay = first such decision − dormantAt (the rule waits 30 d after the *last*
 *   purchase, which comes at or before dormantAt, so the delay is at most about 30 d).
 * - churn_retention vs `churn` {at, floorAt}: detected by a decision for the customer in
 *   [at, floorAt + 30 d]; due when that window closes within the period; a decision is matched
 *   when it falls in that window of a case of its customer. Delay = first such decision − at (the
 *   rule sees the fall as it happens: 30 d spend below half the monthly average before it).
 * For both, decisions that land on the *other* drifting-away truth (a dormancy_wakeup on a
 * churner at their floor, a churn_retention on a customer going dormant) are counted apart as
 * `onOtherTruth`, and against precision. With purchases given, each also reports recall among
 * *eligible* cases, those the rule could see: dormancy, customers with an approved purchase
 * before dormantAt (someone who never bought is never dormant) and none in the 30 d after it (the
 * simulated bank lets a customer drifting away still take a planned trip or instalment purchase,
 * which starts a new quiet spell); churn, customers whose approved spend in the 90 d before `at`
 * averaged at least `churnMinMonthlyAverage` a month (the rule's floor, 1000 by default).
 *
 * Every other trigger's moment is a rule on the events themselves (a card approved and not
 * activated 72 h later, a purchase ≥ 5000, 09:00 on the birthday…): the event stream is its own
 * truth, so they are exact by construction (their operators' tests check the rule), and are
 * reported with their decision counts only.
 */

export const HOUR = 3_600_000
export const DAY = 24 * HOUR

/** The fields of a RiskAlert the scoring reads. */
export interface AlertLike {
  kind: string
  customerId: string
  eventTime: string
  evidence: { eventIds: string[] }
}

/** The fields of a Decision the scoring reads. */
export interface DecisionLike {
  trigger: string
  customerId: string
  eventTime: string
  outcome?: string
}

/** An approved purchase (for eligibility): epoch ms and amount. */
export interface Purchase {
  t: number
  amount: number
}

export interface ScoreOptions {
  /** Slack after a fraud case's last event within which an alert still counts by time: default 1 h. */
  fraudSlack?: number
  /** The dormancy rule's first step: default 30 d. */
  dormancyAfter?: number
  /** The dormancy rule's last step: default 90 d. */
  dormancyLastStep?: number
  /** Slack after the dormancy deadline: default 1 d. */
  dormancySlack?: number
  /** How long after floorAt a churn_retention decision still counts: default 30 d. */
  churnWithin?: number
  /** churn_retention's minimum monthly average (eligibility): default 1000. */
  churnMinMonthlyAverage?: number
  /** End of the simulated period (epoch ms): cases whose window closes later are not due. Default: the truth's config record, else none. */
  end?: number
  /** Approved purchases by customer, sorted by time, for eligibility. */
  purchases?: Map<string, Purchase[]>
}

export interface SignalScore {
  kind: string
  cases: number
  detected: number
  recall: number | null
  alerts: number
  matched: number
  /** Alerts of this kind on a fraud case of another kind (not matched). */
  onOtherFraud: number
  precision: number | null
  /** Median event-time delay (ms) from a case's first event to its first matching alert. */
  medianDelayMs: number | null
  /** First event ids of missed cases (up to 10), for looking into. */
  missed: string[]
}

export interface TriggerScore {
  trigger: string
  truth: 'dormancy' | 'churn'
  /** Cases in the truth; `due` of them have their window closed within the period. */
  cases: number
  due: number
  detected: number
  recall: number | null
  /** With purchases: due cases the rule could see, and how many of them were detected. */
  eligible?: number
  eligibleDetected?: number
  eligibleRecall?: number | null
  decisions: number
  matched: number
  /** Decisions on the other drifting-away truth (not matched). */
  onOtherTruth: number
  precision: number | null
  medianDelayMs: number | null
  /** What the delay is measured from. */
  delayFrom: 'dormantAt' | 'at'
}

export interface ExactTrigger {
  trigger: string
  decisions: number
}

export interface QualityReport {
  signals: SignalScore[]
  triggers: TriggerScore[]
  exact: ExactTrigger[]
}

type Fraud = Extract<TruthRecord, { kind: 'fraud' }>
type Dormancy = Extract<TruthRecord, { kind: 'dormancy' }>
type Churn = Extract<TruthRecord, { kind: 'churn' }>

export const SIGNAL_KINDS = ['impossible_travel', 'night_burst', 'card_testing', 'cashout_pattern', 'new_device_large_amount', 'velocity', 'amount_anomaly', 'prohibited_use'] as const
export const SCORED_TRIGGERS = ['dormancy_wakeup', 'churn_retention'] as const

/** The median of the values; null when there are none. */
export function median(values: number[]): number | null {
  if (!values.length) return null
  const s = [...values].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

const ratio = (n: number, d: number) => (d ? n / d : null)
const ms = (iso: string) => Date.parse(iso)

function byCustomer<T extends { customerId: string }>(rows: Iterable<T>): Map<string, T[]> {
  const m = new Map<string, T[]>()
  for (const r of rows) {
    const list = m.get(r.customerId)
    if (list) list.push(r)
    else m.set(r.customerId, [r])
  }
  return m
}

/** Whether the alert belongs to the fraud case: same customer, and cites one of its events or falls in its time span plus slack. */
export function alertFitsCase(a: AlertLike, c: Fraud, slack: number): boolean {
  if (a.customerId !== c.customerId) return false
  const t = ms(a.eventTime)
  if (t >= ms(c.at) && t <= ms(c.endAt) + slack) return true
  const ids = new Set(c.eventIds)
  return a.evidence.eventIds.some((id) => ids.has(id))
}

export function scoreSignals(truth: TruthRecord[], alerts: AlertLike[], opts: ScoreOptions = {}): SignalScore[] {
  const slack = opts.fraudSlack ?? HOUR
  const cases = truth.filter((r): r is Fraud => r.kind === 'fraud')
  const casesByCustomer = byCustomer(cases)
  const kinds = [...new Set<string>([...SIGNAL_KINDS, ...cases.map((c) => c.fraudKind), ...alerts.map((a) => a.kind)])]
  return kinds.map((kind) => {
    const own = cases.filter((c) => c.fraudKind === kind)
    const ofKind = alerts.filter((a) => a.kind === kind)
    const alertsByCustomer = byCustomer(ofKind)
    const delays: number[] = []
    const missed: string[] = []
    let detected = 0
    for (const c of own) {
      const fits = (alertsByCustomer.get(c.customerId) ?? []).filter((a) => alertFitsCase(a, c, slack))
      if (!fits.length) {
        if (missed.length < 10) missed.push(c.eventIds[0])
        continue
      }
      detected++
      delays.push(Math.min(...fits.map((a) => ms(a.eventTime))) - ms(c.at))
    }
    let matched = 0
    let onOtherFraud = 0
    for (const a of ofKind) {
      const mine = casesByCustomer.get(a.customerId) ?? []
      if (mine.some((c) => c.fraudKind === kind && alertFitsCase(a, c, slack))) matched++
      else if (mine.some((c) => alertFitsCase(a, c, slack))) onOtherFraud++
    }
    return {
      kind,
      cases: own.length,
      detected,
      recall: ratio(detected, own.length),
      alerts: ofKind.length,
      matched,
      onOtherFraud,
      precision: ratio(matched, ofKind.length),
      medianDelayMs: median(delays),
      missed,
    }
  })
}

/** A drifting-away case's windows, in epoch ms: detection [from, due], matching [from, matchUntil], delay measured from `delayFrom`. */
interface Window {
  customerId: string
  from: number
  due: number
  matchUntil: number
  delayFrom: number
  eligible?: boolean
}

function dormancyWindows(cases: Dormancy[], o: Required<Pick<ScoreOptions, 'dormancyAfter' | 'dormancyLastStep' | 'dormancySlack'>>, purchases?: Map<string, Purchase[]>): Window[] {
  return cases.map((c) => {
    const dormantAt = ms(c.dormantAt)
    return {
      customerId: c.customerId,
      from: ms(c.at),
      due: dormantAt + o.dormancyAfter + o.dormancySlack,
      matchUntil: dormantAt + o.dormancyLastStep + o.dormancySlack,
      delayFrom: dormantAt,
      ...(purchases ? { eligible: dormancyVisible(purchases.get(c.customerId) ?? [], dormantAt, o.dormancyAfter) } : {}),
    }
  })
}

/** Whether the rule could see the dormancy: a purchase before dormantAt, and none in the 30 d after it. */
function dormancyVisible(purchases: Purchase[], dormantAt: number, after: number): boolean {
  return purchases.some((p) => p.t < dormantAt) && !purchases.some((p) => p.t > dormantAt && p.t <= dormantAt + after)
}

function churnWindows(cases: Churn[], o: Required<Pick<ScoreOptions, 'churnWithin' | 'churnMinMonthlyAverage'>>, purchases?: Map<string, Purchase[]>): Window[] {
  return cases.map((c) => {
    const at = ms(c.at)
    const until = ms(c.floorAt) + o.churnWithin
    let eligible: boolean | undefined
    if (purchases) {
      const spend = (purchases.get(c.customerId) ?? []).filter((p) => p.t >= at - 90 * DAY && p.t < at).reduce((s, p) => s + p.amount, 0)
      eligible = spend / 3 >= o.churnMinMonthlyAverage
    }
    return { customerId: c.customerId, from: at, due: until, matchUntil: until, delayFrom: at, ...(eligible === undefined ? {} : { eligible }) }
  })
}

function scoreWindows(trigger: string, truthKind: 'dormancy' | 'churn', windows: Window[], other: Window[], decisions: DecisionLike[], end: number, delayFrom: 'dormantAt' | 'at'): TriggerScore {
  const own = decisions.filter((d) => d.trigger === trigger)
  const times = byCustomer(own.map((d) => ({ customerId: d.customerId, t: ms(d.eventTime) })))
  const due = windows.filter((w) => w.due <= end)
  const delays: number[] = []
  let detected = 0
  let eligible = 0
  let eligibleDetected = 0
  for (const w of due) {
    const hits = (times.get(w.customerId) ?? []).filter((d) => d.t >= w.from && d.t <= w.due)
    if (w.eligible) eligible++
    if (!hits.length) continue
    detected++
    if (w.eligible) eligibleDetected++
    delays.push(Math.min(...hits.map((d) => d.t)) - w.delayFrom)
  }
  const ownBy = byCustomer(windows)
  const otherBy = byCustomer(other)
  let matched = 0
  let onOtherTruth = 0
  for (const d of own) {
    const t = ms(d.eventTime)
    if ((ownBy.get(d.customerId) ?? []).some((w) => t >= w.from && t <= w.matchUntil)) matched++
    else if ((otherBy.get(d.customerId) ?? []).some((w) => t >= w.from)) onOtherTruth++
  }
  const withEligibility = windows.some((w) => w.eligible !== undefined)
  return {
    trigger,
    truth: truthKind,
    cases: windows.length,
    due: due.length,
    detected,
    recall: ratio(detected, due.length),
    ...(withEligibility ? { eligible, eligibleDetected, eligibleRecall: ratio(eligibleDetected, eligible) } : {}),
    decisions: own.length,
    matched,
    onOtherTruth,
    precision: ratio(matched, own.length),
    medianDelayMs: median(delays),
    delayFrom,
  }
}

export function scoreTriggers(truth: TruthRecord[], decisions: DecisionLike[], opts: ScoreOptions = {}): TriggerScore[] {
  const config = truth.find((r) => r.kind === 'config')
  const end = opts.end ?? (config ? ms(config.end) : Infinity)
  const dormancy = dormancyWindows(
    truth.filter((r): r is Dormancy => r.kind === 'dormancy'),
    { dormancyAfter: opts.dormancyAfter ?? 30 * DAY, dormancyLastStep: opts.dormancyLastStep ?? 90 * DAY, dormancySlack: opts.dormancySlack ?? DAY },
    opts.purchases,
  )
  const churn = churnWindows(
    truth.filter((r): r is Churn => r.kind === 'churn'),
    { churnWithin: opts.churnWithin ?? 30 * DAY, churnMinMonthlyAverage: opts.churnMinMonthlyAverage ?? 1000 },
    opts.purchases,
  )
  return [
    scoreWindows('dormancy_wakeup', 'dormancy', dormancy, churn, decisions, end, 'dormantAt'),
    scoreWindows('churn_retention', 'churn', churn, dormancy, decisions, end, 'at'),
  ]
}

/** Everything: risk signals, the truth-defined triggers, and the decision counts of the triggers exact by construction. */
export function scoreQuality(truth: TruthRecord[], alerts: AlertLike[], decisions: DecisionLike[], opts: ScoreOptions = {}): QualityReport {
  const counts = new Map<string, number>()
  for (const d of decisions) counts.set(d.trigger, (counts.get(d.trigger) ?? 0) + 1)
  const scored = new Set<string>(SCORED_TRIGGERS)
  return {
    signals: scoreSignals(truth, alerts, opts),
    triggers: scoreTriggers(truth, decisions, opts),
    exact: [...counts].filter(([t]) => !scored.has(t)).sort(([a], [b]) => (a < b ? -1 : 1)).map(([trigger, n]) => ({ trigger, decisions: n })),
  }
}

/** A duration for people: 42 s, 17 min, 3.2 h, 25.4 d. */
export function formatDelay(msValue: number | null): string {
  if (msValue === null) return '–'
  const a = Math.abs(msValue)
  const sign = msValue < 0 ? '−' : ''
  if (a < 60_000) return `${sign}${Math.round(a / 1000)} s`
  if (a < HOUR) return `${sign}${(a / 60_000).toFixed(1)} min`
  if (a < DAY) return `${sign}${(a / HOUR).toFixed(1)} h`
  return `${sign}${(a / DAY).toFixed(1)} d`
}

const pct = (x: number | null | undefined) => (x === null || x === undefined ? '–' : `${(x * 100).toFixed(1)} %`)

/** The report as Markdown tables. */
export function formatReport(r: QualityReport): string {
  const out: string[] = []
  out.push('| risk signal | cases | detected | recall | alerts | matched | on other fraud | precision | median delay |')
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const s of r.signals)
    out.push(`| \`${s.kind}\` | ${s.cases} | ${s.detected} | ${pct(s.recall)} | ${s.alerts} | ${s.matched} | ${s.onOtherFraud} | ${pct(s.precision)} | ${formatDelay(s.medianDelayMs)} |`)
  out.push('')
  out.push('| trigger | truth cases (due) | detected | recall | recall, eligible | decisions | matched | on other truth | precision | median delay |')
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const t of r.triggers)
    out.push(
      `| \`${t.trigger}\` | ${t.cases} (${t.due}) | ${t.detected} | ${pct(t.recall)} | ${t.eligible === undefined ? '–' : `${pct(t.eligibleRecall)} (${t.eligibleDetected}/${t.eligible})`} | ${t.decisions} | ${t.matched} | ${t.onOtherTruth} | ${pct(t.precision)} | ${formatDelay(t.medianDelayMs)} after \`${t.delayFrom}\` |`,
    )
  out.push('')
  out.push(`Exact by construction (the rule is on the events, which are their own truth): ${r.exact.map((e) => `\`${e.trigger}\` ${e.decisions}`).join(', ')} decisions.`)
  return out.join('\n')
}
