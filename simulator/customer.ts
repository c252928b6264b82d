import type { AppEvent, Channel, InputEvent, LifecycleEvent, TransactionEvent } from '../schemas/events.ts'
import type { WebhookBody } from '../schemas/decision.ts'
import { CATEGORIES, FRAUD_KINDS, SEGMENTS, type BankConfig, type Category, type Effect, type FraudKind, type Segment, type SegmentConfig } from './config.ts'
import { between, exponential, hash32, pick, poisson, stream, uniform, Weighted, type Random } from './random.ts'
import {
  ABROAD,
  CATEGORY_MERCHANTS,
  DOMESTIC,
  DOMESTIC_WEIGHTS,
  FOREIGN,
  FRAUD_PLACES,
  INSTALLMENT_MERCHANTS,
  PROHIBITED,
  TRAVEL,
  atLocalMinutes,
  distanceKm,
  zoneOffset,
  localClock,
  type City,
} from './places.ts'
import type { TruthRecord } from './truth.ts'

/**
 * One simulated customer: a plan drawn once from the customer's own random streams (who they are,
 * when they apply, activate, travel, drift away, suffer fraud), the touchpoints they have
 * received, and, derived from both, a timeline of their card's life. A day's events are a pure
 * function of the timeline and that day's streams, so a touchpoint changes only what comes after
 * it, however finely the bank is stepped.
 */

export const HOUR = 3_600_000
export const DAY = 24 * HOUR
const MINUTE = 60_000
const YEAR_DAYS = 365

export interface BankContext {
  seed: number
  cfg: BankConfig
  start: number
  end: number
  segments: Record<Segment, SegmentModel>
  segmentPicker: Weighted<Segment>
  /** The largest spend multiplier any effect can apply. */
  maxBoost: number
}

export interface SegmentModel {
  cfg: SegmentConfig
  hourRatio: number[]
  weekdayRatio: number[]
  /** max(hourRatio) × max(weekdayRatio): bounds the intensity for thinning. */
  maxRatio: number
  categories: Weighted<Category>
  channels: Weighted<'pos' | 'qr' | 'wallet'>
  preferred: Weighted<Channel>
}

export function bankContext(cfg: BankConfig, seed: number, start: number, end: number): BankContext {
  const segments = {} as Record<Segment, SegmentModel>
  for (const s of SEGMENTS) {
    const c = cfg.segments[s]
    const hm = c.hours.reduce((a, b) => a + b, 0) / 24 || 1
    const wm = c.weekdays.reduce((a, b) => a + b, 0) / 7 || 1
    const hourRatio = c.hours.map((h) => h / hm)
    const weekdayRatio = c.weekdays.map((w) => w / wm)
    segments[s] = {
      cfg: c,
      hourRatio,
      weekdayRatio,
      maxRatio: Math.max(...hourRatio) * Math.max(...weekdayRatio),
      categories: new Weighted(CATEGORIES.map((k) => [k, c.categories[k] ?? 0])),
      channels: new Weighted(Object.entries(c.channels) as ['pos' | 'qr' | 'wallet', number][]),
      preferred: new Weighted(Object.entries(c.preferredChannels) as [Channel, number][]),
    }
  }
  const maxBoost = Math.max(1, ...Object.values(cfg.effects).map((e) => e.spendMultiplier))
  return { seed, cfg, start, end, segments, segmentPicker: new Weighted(SEGMENTS.map((s) => [s, cfg.segments[s].share])), maxBoost }
}

/** One item of a day's stream: an event, or a truth record due at that time. */
export interface Item {
  t: number
  id: string
  c: Customer
  event?: InputEvent
  truth?: TruthRecord
  /** The first event of a fraud case: its truth record is written when it is emitted. */
  fraud?: { kind: FraudKind; eventIds: string[]; cardId: string; endAt: number }
  /** An amount_anomaly purchase: its amount is set when emitted, from the customer's recent purchases. */
  anomaly?: boolean
  /** A limit change: the new limit is set when emitted, from the limit in force. */
  limitFactor?: number
}

interface Trip {
  departAt: number
  returnAt: number
  flight: number
  dest: City
  foreign: boolean
  bookAt: number
  hotelAt: number
}

interface FraudCase {
  kind: FraudKind
  index: number
  t: number
  block: boolean
  blockAt: number
}

interface Plan {
  appliedAt: number
  approved: boolean
  decidedAt: number
  issuedAt: number
  naturalActivation: number
  preActivated: boolean
  firstUseDelay: number
  bindDelay: number
  wallet: string
  dormancyAt: number
  dormancyDrift: number
  churnAt: number
  churnDrift: number
  closeAt: number
  expiresOn: number
  renewAfter: number
  limitIncreases: { t: number; factor: number }[]
  lostStolen: number[]
  trips: Trip[]
  installments: { t: number; amount: number; applyAt: number }[]
  devices: number[]
  consents: { t: number; channel: string; granted: boolean }[]
  uninstallAt: number
  reinstallAt: number
  profileUpdates: number[]
  fraud: FraudCase[]
}

export interface Reaction {
  id: string
  trigger: string
  channel: Channel
  cardId?: string
  sendAt: number
  /** When the touchpoint reached the customer. */
  at: number
  effect: Effect
  persuaded: boolean
  actionAt: number
  viewedAt: number
  clicked: boolean
  hasOffer: boolean
  /** Draws for what the reaction produces (a purchase's merchant and amount). */
  draws: number[]
}

interface CardSpan {
  index: number
  id: string
  issuedAt: number
  activatedAt: number
  boundAt: number
  endAt: number
  endReason?: 'blocked'
}

interface Timeline {
  cards: CardSpan[]
  closedAt: number
  usageStart: number
  renewedAt: number
  dormancyRevivedAt: number
  churnRevivedAt: number
  injected: Map<number, string>
  boosts: { from: number; to: number; m: number }[]
}

const WALLETS = ['alipay', 'wechat', 'applepay', 'unionpay']
const THIRD_PARTY: ReadonlySet<FraudKind> = new Set(['impossible_travel', 'night_burst', 'card_testing', 'cashout_pattern', 'new_device_large_amount', 'velocity'])
const SHORT: Record<FraudKind, string> = {
  impossible_travel: 'it',
  night_burst: 'nb',
  card_testing: 'ct',
  cashout_pattern: 'co',
  new_device_large_amount: 'nd',
  velocity: 've',
  amount_anomaly: 'aa',
  prohibited_use: 'pu',
}

const iso = (ms: number) => new Date(ms).toISOString()
const round2 = (n: number) => Math.round(n * 100) / 100
const sec = (ms: number) => Math.round(ms / 1000) * 1000
/** Everyday amounts never land on a round thousand (that pattern is the cash-out signal's). */
function everyday(amount: number): number {
  const a = Math.max(1, round2(amount))
  return a >= 1000 && Math.round(a * 100) % 100_000 === 0 ? a + 0.37 : a
}
export class Customer {
  readonly id: string
  readonly segment: Segment
  readonly model: SegmentModel
  readonly home: City
  readonly homeLat: number
  readonly homeLon: number
  readonly existing: boolean
  readonly birthDate: string
  readonly preferred: Channel
  readonly product: string
  readonly initialLimit: number
  /** Purchases per day on an ordinary day. */
  readonly rate: number
  readonly spendFactor: number
  readonly plan: Plan
  readonly reactions: Reaction[] = []
  tl!: Timeline
  /** Emission-time state: approved purchases of the last 90 days (time, amount), and the credit limit. */
  recent: number[] = []
  limit: number
  /** Existing cardholders: when the bank's annual review (with their profile) arrives. */
  readonly reviewAt: number

  constructor(
    readonly ctx: BankContext,
    readonly index: number,
  ) {
    const { seed, cfg } = ctx
    this.id = `cust_${String(index).padStart(6, '0')}`
    const r = stream(seed, this.id, 'profile')
    this.segment = ctx.segmentPicker.pick(r)
    this.model = ctx.segments[this.segment]
    const sc = this.model.cfg
    const abroad = r() < cfg.population.abroadShare
    this.home = abroad ? pick(r, ABROAD) : HOMES.pick(r)
    this.homeLat = round2(this.home.lat + (r() - 0.5) * 0.2)
    this.homeLon = round2(this.home.lon + (r() - 0.5) * 0.2)
    this.existing = r() < cfg.population.existingShare
    const age = between(r, sc.age)
    const born = new Date(ctx.start - age * YEAR_DAYS * DAY)
    this.birthDate = new Date(Date.UTC(born.getUTCFullYear(), born.getUTCMonth(), 1 + Math.floor(r() * 28))).toISOString().slice(0, 10)
    this.preferred = this.model.preferred.pick(r)
    this.product = this.segment === 'affluent' ? 'platinum' : this.segment === 'small_business' ? 'business' : r() < 0.25 ? 'gold' : 'classic'
    this.initialLimit = pick(r, sc.creditLimits)
    this.limit = this.initialLimit
    this.rate = sc.txPerDay * Math.exp(0.45 * (r() + r() + r() - 1.5))
    this.spendFactor = sc.spendScale * Math.exp(0.35 * (r() + r() + r() - 1.5))
    this.plan = this.drawPlan()
    this.reviewAt = sec(ctx.start + (hash32(seed, this.id, 'review') % (12 * 3600)) * 1000)
    this.recompute()
  }

  get tz() {
    return this.home.timezone
  }

  // ——— the plan ———

  private drawPlan(): Plan {
    const { seed, cfg, start, end } = this.ctx
    const lc = cfg.lifecycle
    const r = stream(seed, this.id, 'life')
    const years = (end - start) / DAY / YEAR_DAYS
    const daytime = (t: number, u: number) => atLocalMinutes(t, this.tz, 8 * 60 + Math.floor(u * 13 * 60))
    let appliedAt = -Infinity
    let approved = true
    let decidedAt = -Infinity
    let issuedAt = -Infinity
    let naturalActivation = -Infinity
    let firstUseDelay = 0
    let bindDelay = Infinity
    const drawsA = [r(), r(), r(), r(), r(), r(), r(), r(), r(), r()]
    if (!this.existing) {
      appliedAt = sec(daytime(start + drawsA[0] * Math.min(cfg.population.applyWithinDays, (end - start) / DAY) * DAY, drawsA[1]))
      approved = drawsA[2] < lc.approvalRate
      decidedAt = sec(appliedAt + between(r, approved ? lc.approvalDelayHours : lc.declineDelayHours) * HOUR)
      issuedAt = sec(decidedAt + between(r, lc.issueDelayHours) * HOUR)
      const activates = drawsA[3] < lc.activationRate
      const onTime = drawsA[4] < lc.activationOnTimeShare
      naturalActivation = activates ? sec(issuedAt + between(r, onTime ? lc.activationOnTimeHours : lc.activationLateHours) * HOUR) : Infinity
      firstUseDelay = drawsA[5] < lc.neverUseShare ? Infinity : exponential(r, lc.firstUseMeanDays * DAY) + 10 * MINUTE
      bindDelay = drawsA[6] < lc.bindRate ? between(r, lc.bindDelayHours) * HOUR : Infinity
    }
    const wallet = pick(r, WALLETS)
    const usable = this.existing ? start : Number.isFinite(naturalActivation) ? naturalActivation + 3 * DAY : Infinity
    const hazard = (perYear: number) => (perYear > 0 && Number.isFinite(usable) ? usable + exponential(r, (YEAR_DAYS / perYear) * DAY) : Infinity)
    const dormancyAt = approved ? sec(hazard(cfg.dormancy.perYear)) : Infinity
    const dormancyDrift = between(r, cfg.dormancy.driftDays) * DAY
    const churnAt = approved ? sec(hazard(cfg.churn.perYear)) : Infinity
    const churnDrift = between(r, cfg.churn.driftDays) * DAY
    const closeAt = Number.isFinite(churnAt) && r() < cfg.churn.closeShare ? sec(daytime(churnAt + between(r, cfg.churn.closeAfterDays) * DAY, r())) : Infinity
    // Existing 5-year cards: expiry spread evenly, so `expiryPerYear` of them expire each year.
    let expiresOn = Infinity
    if (this.existing && lc.expiryPerYear > 0) {
      const at = start + lc.expiringNoticeDays * DAY + r() * (YEAR_DAYS / lc.expiryPerYear) * DAY
      expiresOn = atLocalMinutes(at, this.tz, 0)
    }
    const renewAfter = r() < lc.renewalRate ? between(r, lc.renewalDelayDays) * DAY : Infinity
    const times = (perYear: number, from: number, rs: Random = r) => {
      const lo = Math.max(from, start)
      if (!(lo < end) || perYear <= 0) return []
      const n = poisson(rs, (perYear * (end - lo)) / DAY / YEAR_DAYS)
      return Array.from({ length: n }, () => sec(daytime(lo + rs() * (end - lo), rs()))).sort((a, b) => a - b)
    }
    const limitIncreases = times(lc.limitIncreasesPerYear, this.existing ? start : naturalActivation + 60 * DAY).map((t) => ({ t, factor: between(r, lc.limitIncreaseFactor) }))
    const lostStolen = times(lc.lostStolenPerYear, this.existing ? start : naturalActivation)

    // Travel: trips one after another, never overlapping.
    const rt = stream(seed, this.id, 'travel')
    const sc = this.model.cfg
    const trips: Trip[] = []
    const wanted = [
      ...times(sc.domesticTripsPerYear, usable, rt).map((t) => ({ t, foreign: false })),
      ...times(sc.foreignTripsPerYear, usable, rt).map((t) => ({ t, foreign: true })),
    ].sort((a, b) => a.t - b.t)
    let free = -Infinity
    for (const w of wanted) {
      const destinations = w.foreign ? FOREIGN.filter((c) => c.country !== this.home.country) : DOMESTIC.filter((c) => c.city !== this.home.city)
      const dest = pick(rt, destinations)
      const flight = (distanceKm(this.homeLat, this.homeLon, dest.lat, dest.lon) / 750 + 1.5) * HOUR
      const stay = (w.foreign ? uniform(rt, 4, 12) : uniform(rt, 2, 6)) * DAY
      if (w.t < free) continue
      const returnAt = sec(w.t + stay)
      trips.push({ departAt: w.t, returnAt, flight, dest, foreign: w.foreign, bookAt: sec(w.t - uniform(rt, 3, 25) * DAY), hotelAt: sec(w.t + flight + uniform(rt, 0.5, 3) * HOUR) })
      free = returnAt + flight + 2 * DAY
    }

    const ri = stream(seed, this.id, 'installments')
    const installments = times(sc.installmentsPerYear, usable, ri).map((t) => ({
      t,
      amount: round2(5000 + exponential(ri, 4500) + ri() * 100),
      applyAt: ri() < 0.2 ? sec(t + uniform(ri, 1, 48) * HOUR) : Infinity,
    }))

    const ra = stream(seed, this.id, 'app-plan')
    const app = cfg.app
    const devices = times(app.deviceRegistrationsPerYear, usable, ra)
    const consents: Plan['consents'] = []
    for (const t of times(app.consentWithdrawalsPerYear, this.existing ? start : appliedAt, ra)) {
      const channel = pick(ra, ['sms', 'push', 'call', 'app_banner', 'all'])
      consents.push({ t, channel, granted: false })
      if (ra() < app.consentRegrantShare) consents.push({ t: sec(t + uniform(ra, 3, 60) * DAY), channel, granted: true })
    }
    const uninstalls = times(app.uninstallsPerYear, usable, ra)
    const uninstallAt = uninstalls[0] ?? Infinity
    const reinstallAt = Number.isFinite(uninstallAt) && ra() < 0.3 ? sec(uninstallAt + uniform(ra, 5, 60) * DAY) : Infinity
    const profileUpdates = times(app.profileUpdatesPerYear, this.existing ? start : appliedAt, ra)

    // Fraud: cases per kind at the configured yearly rate over the card's active life.
    const fraud: FraudCase[] = []
    const exposure = this.existing ? start + DAY : Number.isFinite(naturalActivation) ? naturalActivation + 2 * DAY : issuedAt + 2 * DAY
    for (const kind of FRAUD_KINDS) {
      const rf = stream(seed, this.id, 'fraud', kind)
      const lo = Math.max(exposure, start + DAY)
      const hi = end - 2 * DAY
      if (!(lo < hi) || !approved) continue
      const n = poisson(rf, (cfg.fraud[kind] * (hi - lo)) / DAY / YEAR_DAYS)
      for (let i = 0; i < n; i++) {
        const day = lo + rf() * (hi - lo)
        // Night bursts strike in the small hours; everything else in the daytime.
        const t = sec(kind === 'night_burst' ? atLocalMinutes(day, this.tz, 30 + Math.floor(rf() * 150)) : atLocalMinutes(day, this.tz, 10 * 60 + Math.floor(rf() * 8 * 60)))
        const block = THIRD_PARTY.has(kind) && rf() < lc.blockAfterFraud
        fraud.push({ kind, index: fraud.length, t, block, blockAt: sec(t + 14 * HOUR + rf() * 10 * HOUR) })
      }
    }
    fraud.sort((a, b) => a.t - b.t || a.index - b.index)
    return {
      appliedAt,
      approved,
      decidedAt,
      issuedAt,
      naturalActivation,
      preActivated: this.existing,
      firstUseDelay,
      bindDelay,
      wallet,
      dormancyAt,
      dormancyDrift,
      churnAt,
      churnDrift,
      closeAt,
      expiresOn,
      renewAfter,
      limitIncreases,
      lostStolen,
      trips,
      installments,
      devices,
      consents,
      uninstallAt,
      reinstallAt,
      profileUpdates,
      fraud,
    }
  }

  cardIdOf(index: number) {
    return `tok_${hash32(this.ctx.seed, this.id, 'card', index).toString(36)}${index ? `r${index}` : ''}`
  }

  // ——— the timeline: the plan, changed by the touchpoints received ———

  /** Derives the card's life from the plan and the reactions. A set function: order of receipt does not matter. */
  recompute() {
    const p = this.plan
    const { seed, cfg, start } = this.ctx
    const lc = cfg.lifecycle
    const persuaded = this.reactions.filter((x) => x.persuaded)
    const by = (action: Effect['action']) => persuaded.filter((x) => x.effect.action === action).map((x) => x.actionAt).sort((a, b) => a - b)
    const activations = by('activate')
    const binds = by('bind')
    const firstAfter = (list: number[], t: number) => list.find((x) => x >= t) ?? Infinity

    const revives = persuaded.filter((x) => x.effect.revive).map((x) => x.actionAt).sort((a, b) => a - b)
    const dormancyRevivedAt = Number.isFinite(p.dormancyAt) ? firstAfter(revives, p.dormancyAt) : Infinity
    const churnRevivedAt = Number.isFinite(p.churnAt) ? firstAfter(revives, p.churnAt) : Infinity
    const closedAt = p.closeAt < churnRevivedAt ? p.closeAt : Infinity

    const renewals = by('renew')
    const expiringAt = p.expiresOn - lc.expiringNoticeDays * DAY
    const renewedAt = Number.isFinite(p.expiresOn) ? Math.min(sec(expiringAt + p.renewAfter), firstAfter(renewals, expiringAt)) : Infinity

    const activate = (issuedAt: number, natural: number) => {
      const reminded = firstAfter(activations, issuedAt)
      return Math.min(natural, Number.isFinite(reminded) ? Math.max(reminded, issuedAt + HOUR) : Infinity)
    }
    const bind = (activatedAt: number, natural: number) => (Number.isFinite(activatedAt) ? Math.min(natural, firstAfter(binds, activatedAt)) : Infinity)

    const cards: CardSpan[] = []
    const primaryActivated = p.preActivated ? -Infinity : p.approved ? activate(p.issuedAt, p.naturalActivation) : Infinity
    cards.push({
      index: 0,
      id: this.cardIdOf(0),
      issuedAt: p.issuedAt,
      activatedAt: primaryActivated,
      boundAt: p.preActivated ? -Infinity : bind(primaryActivated, primaryActivated + p.bindDelay),
      endAt: Infinity,
    })
    const expired = (t: number) => t >= p.expiresOn && t < renewedAt
    const activeAt = (card: CardSpan, t: number) => card.activatedAt <= t && t < card.endAt && t < closedAt && !(card.index === 0 && expired(t))

    // Blocks, in time order: loss or theft, and third-party fraud the bank reacts to.
    const injected = new Map<number, string>()
    const blocks = [...p.lostStolen.map((t) => ({ t, fraud: undefined as FraudCase | undefined })), ...p.fraud.map((f) => ({ t: f.t, fraud: f }))].sort((a, b) => a.t - b.t)
    let pendingBlock = Infinity
    for (const b of blocks) {
      let card = cards[cards.length - 1]
      if (b.t >= pendingBlock) {
        this.replaceCard(cards, pendingBlock, activate)
        pendingBlock = Infinity
        card = cards[cards.length - 1]
      }
      if (!activeAt(card, b.t)) continue
      if (b.fraud) {
        injected.set(b.fraud.index, card.id)
        if (b.fraud.block && pendingBlock === Infinity) pendingBlock = b.fraud.blockAt
      } else if (pendingBlock === Infinity) pendingBlock = b.t
    }
    if (Number.isFinite(pendingBlock)) this.replaceCard(cards, pendingBlock, activate)

    let usageStart = p.preActivated ? start : primaryActivated + p.firstUseDelay
    for (const x of persuaded) if (x.effect.action === 'purchase' || x.effect.action === 'cross_border_purchase') usageStart = Math.min(usageStart, Math.max(x.actionAt, primaryActivated))
    const boosts = persuaded.filter((x) => x.effect.spendMultiplier > 1 && x.effect.duration > 0).map((x) => ({ from: x.actionAt, to: x.actionAt + x.effect.duration, m: x.effect.spendMultiplier }))
    void seed
    this.tl = { cards, closedAt, usageStart, renewedAt, dormancyRevivedAt, churnRevivedAt, injected, boosts }
  }

  private replaceCard(cards: CardSpan[], blockAt: number, activate: (issuedAt: number, natural: number) => number) {
    const lc = this.ctx.cfg.lifecycle
    const prev = cards[cards.length - 1]
    prev.endAt = blockAt
    prev.endReason = 'blocked'
    const r = stream(this.ctx.seed, this.id, 'replacement', prev.index)
    const issuedAt = sec(blockAt + between(r, lc.replacementDelayDays) * DAY)
    const natural = r() < lc.replacementActivationRate ? sec(issuedAt + uniform(r, 6, 96) * HOUR) : Infinity
    const activatedAt = activate(issuedAt, natural)
    cards.push({ index: prev.index + 1, id: this.cardIdOf(prev.index + 1), issuedAt, activatedAt, boundAt: Number.isFinite(activatedAt) ? activatedAt + uniform(r, 1, 48) * HOUR : Infinity, endAt: Infinity })
  }

  /** The card in use at `t` (the latest issued by then), or undefined before the first is issued. */
  cardAt(t: number): CardSpan | undefined {
    const cards = this.tl.cards
    for (let i = cards.length - 1; i >= 0; i--) if (cards[i].issuedAt <= t || i === 0) return cards[i]
    return undefined
  }

  /** Whether the customer can pay with a card at `t`. */
  canPay(t: number): CardSpan | undefined {
    const card = this.cardAt(t)
    if (!card || !(card.activatedAt <= t) || t >= card.endAt || t >= this.tl.closedAt) return undefined
    if (card.index === 0 && t >= this.plan.expiresOn && t < this.tl.renewedAt) return undefined
    return card
  }

  /** 1 on an ordinary day; falls towards 0 (dormancy) or the churn floor as the customer drifts away. */
  activity(t: number): number {
    const p = this.plan
    let a = 1
    if (t >= p.dormancyAt && t < this.tl.dormancyRevivedAt) a = Math.min(a, Math.max(0, 1 - (t - p.dormancyAt) / p.dormancyDrift))
    if (t >= p.churnAt && t < this.tl.churnRevivedAt) {
      const floor = this.ctx.cfg.churn.floor
      a = Math.min(a, Math.max(floor, 1 - ((1 - floor) * (t - p.churnAt)) / p.churnDrift))
    }
    return a
  }

  boost(t: number): number {
    let m = 1
    for (const b of this.tl.boosts) if (t >= b.from && t < b.to) m *= b.m
    return Math.min(m, this.ctx.maxBoost)
  }

  /** Where the customer is: at home, away (a trip's destination), or in the air. */
  whereAt(t: number): { city: City; lat: number; lon: number; away: boolean } | undefined {
    for (const trip of this.plan.trips) {
      if (t < trip.departAt) break
      if (t < trip.departAt + trip.flight) return undefined
      if (t < trip.returnAt) return { city: trip.dest, lat: trip.dest.lat, lon: trip.dest.lon, away: true }
      if (t < trip.returnAt + trip.flight) return undefined
    }
    return { city: this.home, lat: this.homeLat, lon: this.homeLon, away: false }
  }

  private deviceAt(t: number): string {
    let n = 0
    for (const d of this.plan.devices) if (d <= t) n++
    if (this.plan.reinstallAt <= t) n++
    return `dev_${this.id.slice(5)}_${n}`
  }

  profile() {
    return {
      birthDate: this.birthDate,
      timezone: this.tz,
      homeCity: this.home.city,
      homeCountry: this.home.country,
      homeLat: this.homeLat,
      homeLon: this.homeLon,
      segment: this.segment,
      preferredChannel: this.preferred,
    }
  }

  // ——— touchpoints ———

  /** A touchpoint reaches the customer at `at`: how they react is drawn from the touchpoint's own stream. */
  react(body: WebhookBody, at: number): Reaction {
    const effect = this.ctx.cfg.effects[body.trigger] ?? this.ctx.cfg.effects.default
    const r = stream(this.ctx.seed, this.id, 'react', body.id)
    const persuaded = effect.action !== 'none' && r() < effect.probability
    const delay = Math.max(10 * MINUTE, (0.05 + 0.95 * r()) * effect.within)
    let actionAt = at + delay
    const clock = localClock(actionAt, this.tz)
    if (clock.hour < 8 || clock.hour >= 22) actionAt = atLocalMinutes(actionAt + (clock.hour >= 22 ? DAY : 0), this.tz, 9 * 60 + Math.floor(r() * 180))
    const appChannel = body.channel === 'push' || body.channel === 'app_banner'
    const viewed = appChannel && (persuaded || r() < this.ctx.cfg.engagement.viewed)
    const viewedAt = viewed ? sec(at + Math.max(MINUTE, Math.min(delay / 2, uniform(r, 1, 180) * MINUTE))) : Infinity
    const reaction: Reaction = {
      id: body.id,
      trigger: body.trigger,
      channel: body.channel,
      cardId: body.cardId,
      sendAt: Date.parse(body.sendAt),
      at,
      effect,
      persuaded,
      actionAt: sec(Math.max(actionAt, at + MINUTE)),
      viewedAt,
      clicked: persuaded && viewed,
      hasOffer: body.offer !== undefined,
      draws: [r(), r(), r(), r(), r(), r()],
    }
    this.reactions.push(reaction)
    this.reactions.sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1))
    this.recompute()
    return reaction
  }

  /** For the truth: when the customer would have done what the touchpoint asks, untouched. */
  naturalActionAt(x: Reaction): number | null | undefined {
    const p = this.plan
    if (x.effect.action === 'activate') {
      const card = this.tl.cards.find((c) => c.id === x.cardId) ?? this.cardAt(x.at)
      if (!card) return null
      const natural = card.index === 0 ? (p.preActivated ? -Infinity : p.naturalActivation) : undefined
      return natural === undefined ? undefined : Number.isFinite(natural) ? natural : null
    }
    if (x.effect.action === 'bind') {
      const card = this.tl.cards[0]
      const natural = card.activatedAt + p.bindDelay
      return Number.isFinite(natural) ? natural : null
    }
    if (x.effect.action === 'renew') {
      const natural = p.expiresOn - this.ctx.cfg.lifecycle.expiringNoticeDays * DAY + p.renewAfter
      return Number.isFinite(natural) ? sec(natural) : null
    }
    return undefined
  }

  // ——— a day's events ———

  /** Every item of the customer in [from, to): a pure function of the timeline and the day's streams. */
  items(day: number, from: number, to: number): Item[] {
    const out: Item[] = []
    const p = this.plan
    const { start, end } = this.ctx
    const last = Math.min(to, end)
    if (!p.approved && p.decidedAt < from) return out
    if (this.tl.closedAt < from - DAY) return out
    const inDay = (t: number) => t >= from && t < last

    this.lifecycleItems(out, inDay)
    this.planItems(out, inDay)
    this.transactionItems(out, day, from, last)
    this.appItems(out, day, from, last)
    this.fraudItems(out, inDay)
    this.reactionItems(out, inDay)
    void start
    return out
  }

  private lc(out: Item[], stage: LifecycleEvent['stage'], t: number, cardId: string, n: number | string, extra: Partial<LifecycleEvent> = {}) {
    const eventId = `${this.id}-${stage}-${n}`
    out.push({ t, id: eventId, c: this, event: { type: 'lifecycle', eventId, occurredAt: iso(t), customerId: this.id, cardId, stage, ...extra } })
  }

  private app(out: Item[], name: AppEvent['name'], t: number, eventId: string, extra: Partial<AppEvent> = {}) {
    out.push({ t, id: eventId, c: this, event: { type: 'app', eventId, occurredAt: iso(t), customerId: this.id, name, ...extra } as AppEvent })
  }

  private tx(out: Item[], t: number, eventId: string, card: CardSpan, amount: number, fields: Partial<TransactionEvent> & Pick<TransactionEvent, 'merchant'>): Item {
    const item: Item = {
      t,
      id: eventId,
      c: this,
      event: {
        type: 'transaction',
        eventId,
        occurredAt: iso(t),
        customerId: this.id,
        cardId: card.id,
        amount,
        currency: 'CNY',
        status: 'approved',
        channel: 'pos',
        cardPresent: true,
        ...fields,
      },
    }
    out.push(item)
    return item
  }

  private lifecycleItems(out: Item[], inDay: (t: number) => boolean) {
    const p = this.plan
    const tl = this.tl
    const { cfg, start, seed } = this.ctx
    const card0 = tl.cards[0]
    if (this.existing) {
      // Cardholders before the period: the bank's annual review brings their profile and limit.
      const t = this.reviewAt
      if (inDay(t)) this.lc(out, 'limit_changed', t, card0.id, 'review', { product: this.product, creditLimit: this.initialLimit, attributes: { reason: 'annual_review' }, profile: this.profile() })
    } else {
      if (inDay(p.appliedAt)) this.lc(out, 'applied', p.appliedAt, card0.id, 0, { product: this.product, profile: this.profile() })
      if (inDay(p.decidedAt)) this.lc(out, p.approved ? 'approved' : 'declined', p.decidedAt, card0.id, 0, p.approved ? { product: this.product, creditLimit: this.initialLimit } : { attributes: { reason: 'credit_score' } })
      if (!p.approved) return
    }
    for (const card of tl.cards) {
      if (!this.existing || card.index > 0) if (inDay(card.issuedAt)) this.lc(out, 'issued', card.issuedAt, card.id, card.index, { product: this.product })
      if (Number.isFinite(card.activatedAt) && card.activatedAt < card.endAt && card.activatedAt < tl.closedAt && inDay(card.activatedAt)) this.lc(out, 'activated', card.activatedAt, card.id, card.index)
      if (Number.isFinite(card.boundAt) && card.boundAt < card.endAt && card.boundAt < tl.closedAt && inDay(sec(card.boundAt)))
        this.lc(out, 'bound', sec(card.boundAt), card.id, card.index, { attributes: { wallet: this.plan.wallet } })
      if (card.endReason === 'blocked' && card.endAt < tl.closedAt && inDay(card.endAt)) this.lc(out, 'blocked', card.endAt, card.id, card.index, { attributes: { reason: this.plan.fraud.some((f) => f.blockAt === card.endAt) ? 'fraud' : 'lost_or_stolen' } })
    }
    if (inDay(tl.closedAt)) this.lc(out, 'closed', tl.closedAt, (this.cardAt(tl.closedAt) ?? card0).id, 0, { attributes: { reason: 'customer_request' } })
    if (Number.isFinite(p.expiresOn)) {
      const expiringAt = sec(atLocalMinutes(p.expiresOn - cfg.lifecycle.expiringNoticeDays * DAY, this.tz, 10 * 60))
      const live = (t: number) => card0.endAt > t && tl.closedAt > t
      const expiresOn = inDay(expiringAt) || inDay(tl.renewedAt) ? localDate(p.expiresOn + 12 * HOUR, this.tz) : ''
      if (inDay(expiringAt) && live(expiringAt)) this.lc(out, 'expiring', expiringAt, card0.id, 0, { attributes: { expiresOn } })
      if (Number.isFinite(tl.renewedAt) && inDay(tl.renewedAt) && live(tl.renewedAt))
        this.lc(out, 'renewed', tl.renewedAt, card0.id, 0, { attributes: { expiresOn: `${Number(expiresOn.slice(0, 4)) + 5}${expiresOn.slice(4)}` } })
    }
    p.limitIncreases.forEach((x, i) => {
      if (inDay(x.t) && this.canPay(x.t)) {
        const n = out.length
        this.lc(out, 'limit_changed', x.t, this.cardAt(x.t)!.id, `b${i}`, { attributes: { reason: 'bank_review' } })
        out[n].limitFactor = x.factor
      }
    })
    // Truth: drifting away. Recorded when it starts, whether or not a touchpoint later wins the customer back.
    if (inDay(p.dormancyAt) && p.dormancyAt < tl.closedAt)
      out.push({ t: p.dormancyAt, id: `${this.id}~dormancy`, c: this, truth: { kind: 'dormancy', at: iso(p.dormancyAt), customerId: this.id, dormantAt: iso(sec(p.dormancyAt + p.dormancyDrift)) } })
    if (inDay(p.churnAt) && p.churnAt < tl.closedAt)
      out.push({
        t: p.churnAt,
        id: `${this.id}~churn`,
        c: this,
        truth: { kind: 'churn', at: iso(p.churnAt), customerId: this.id, floorAt: iso(sec(p.churnAt + p.churnDrift)), floor: cfg.churn.floor, ...(Number.isFinite(p.closeAt) ? { closesAt: iso(p.closeAt) } : {}) },
      })
  }

  private planItems(out: Item[], inDay: (t: number) => boolean) {
    const p = this.plan
    const tl = this.tl
    const { seed } = this.ctx
    // Trips: the flight booked beforehand, the hotel on arrival.
    p.trips.forEach((trip, i) => {
      const { bookAt, hotelAt } = trip
      if (!inDay(bookAt) && !inDay(hotelAt)) return
      const r = stream(seed, this.id, 'trip', i)
      const fare = trip.foreign ? uniform(r, 2500, 11_000) : uniform(r, 500, 2600)
      const nights = Math.max(1, Math.round((trip.returnAt - trip.departAt) / DAY))
      const hotel = uniform(r, 250, 900) * nights * (this.segment === 'affluent' ? 2 : 1)
      const airline = pick(r, TRAVEL.airline.names)
      const bookCard = inDay(bookAt) && this.canPay(bookAt)
      if (bookCard) {
        this.tx(out, bookAt, `${this.id}-fl${i}`, bookCard, everyday(fare), { channel: 'ecom', cardPresent: false, deviceId: this.deviceAt(bookAt), merchant: { id: `m_air_${slug(airline)}`, name: airline, mcc: TRAVEL.airline.mcc, country: 'CN' } })
      }
      const hotelCard = inDay(hotelAt) && this.canPay(hotelAt)
      if (hotelCard) {
        const name = pick(r, TRAVEL.hotel.names)
        const d = trip.dest
        this.tx(out, hotelAt, `${this.id}-ht${i}`, hotelCard, everyday(hotel), { merchant: { id: `m_${d.code}_hotel_${slug(name)}`, name: `${name} ${d.city}`, mcc: TRAVEL.hotel.mcc, city: d.city, country: d.country, lat: d.lat, lon: d.lon } })
      }
    })
    // Instalment-sized purchases, and some instalment plans applied for without any offer.
    p.installments.forEach((x, i) => {
      const card = inDay(x.t) && this.canPay(x.t) && this.whereAt(x.t)
      if (card && this.canPay(x.t) && x.t >= tl.usageStart) {
        const r = stream(seed, this.id, 'installment', i)
        const kind = pick(r, INSTALLMENT_MERCHANTS)
        const name = pick(r, kind.names)
        const place = this.whereAt(x.t)!
        const online = r() < 0.4
        this.tx(out, x.t, `${this.id}-in${i}`, this.canPay(x.t)!, x.amount, {
          channel: online ? 'ecom' : 'pos',
          cardPresent: !online,
          ...(online ? { deviceId: this.deviceAt(x.t) } : {}),
          merchant: online ? { id: `m_web_${slug(name)}`, name, mcc: kind.mcc, country: this.home.country } : { id: `m_${place.city.code}_${slug(name)}`, name, mcc: kind.mcc, city: place.city.city, country: place.city.country, lat: place.lat, lon: place.lon },
        })
      }
      if (inDay(x.applyAt) && x.t >= tl.usageStart && this.canPay(x.t)) this.app(out, 'installment_applied', x.applyAt, `${this.id}-ia${i}`, { attributes: { purchaseId: `${this.id}-in${i}`, months: 12 } })
    })
    // App: new phones, consent, uninstalls, profile updates.
    const onboard = this.existing ? -Infinity : tl.cards[0].activatedAt
    if (Number.isFinite(onboard) && inDay(sec(onboard + 5 * MINUTE))) this.app(out, 'device_registered', sec(onboard + 5 * MINUTE), `${this.id}-dv0`, { deviceId: this.deviceAt(onboard) })
    p.devices.forEach((t, i) => {
      if (inDay(t) && t < tl.closedAt) this.app(out, 'device_registered', t, `${this.id}-dv${i + 1}`, { deviceId: this.deviceAt(t) })
    })
    if (inDay(p.reinstallAt) && p.reinstallAt < tl.closedAt) this.app(out, 'device_registered', p.reinstallAt, `${this.id}-dvr`, { deviceId: this.deviceAt(p.reinstallAt) })
    if (inDay(p.uninstallAt) && p.uninstallAt < tl.closedAt) this.app(out, 'app_uninstalled', p.uninstallAt, `${this.id}-un`, { deviceId: this.deviceAt(p.uninstallAt - 1) })
    p.consents.forEach((x, i) => {
      if (inDay(x.t) && x.t < tl.closedAt) this.app(out, 'consent_changed', x.t, `${this.id}-cs${i}`, { attributes: { channel: x.channel, granted: x.granted } })
    })
    p.profileUpdates.forEach((t, i) => {
      if (inDay(t) && t < tl.closedAt && this.appInstalled(t)) this.app(out, 'profile_updated', t, `${this.id}-pf${i}`, { deviceId: this.deviceAt(t), attributes: { field: pick(stream(seed, this.id, 'pf', i), ['address', 'phone', 'email', 'employer']) } })
    })
  }

  private appInstalled(t: number) {
    return !(t >= this.plan.uninstallAt && t < this.plan.reinstallAt)
  }

  /** Everyday purchases: a Poisson process at the largest rate possible, thinned to the customer's rate at each moment. */
  private transactionItems(out: Item[], day: number, from: number, to: number) {
    const { seed, cfg } = this.ctx
    const m = this.model
    const lmax = this.rate * m.maxRatio * this.ctx.maxBoost
    if (!(lmax > 0)) return
    if (this.tl.usageStart >= to && this.tl.boosts.length === 0) return
    const r = stream(seed, this.id, 'tx', day)
    const tc = cfg.transactions
    const step = DAY / lmax
    let t = from + exponential(r, step)
    for (let k = 0; t < to; k++, t += exponential(r, step)) {
      // Thinning: a candidate is kept with probability intensity / lmax. Only kept candidates draw
      // further, so the day's draws before a touchpoint never depend on it.
      const u = r()
      const at = sec(t)
      if (at < this.tl.usageStart || at >= to) continue
      const hw = localHourWeekday(at, this.tz)
      if (!(u * lmax < this.rate * m.hourRatio[hw % 24] * m.weekdayRatio[(hw / 24) | 0] * this.activity(at) * this.boost(at))) continue
      const card = this.canPay(at)
      if (!card) continue
      const where = this.whereAt(at)
      if (!where) continue
      const uCat = r(),
        uAmt = r(),
        uAmt2 = r(),
        uMer = r(),
        uCh = r(),
        uSt = r(),
        uX = r()
      const category = where.away ? TRAVEL_CATEGORIES[Math.floor(uCat * TRAVEL_CATEGORIES.length)] : m.categories.at(uCat)
      const kind = CATEGORY_MERCHANTS[category]
      const z = Math.sqrt(-2 * Math.log(1 - uAmt)) * Math.cos(2 * Math.PI * uAmt2)
      const amount = everyday(kind.median * this.spendFactor * Math.exp(kind.sigma * z))
      const status = uSt < tc.declinedShare ? 'declined' : uSt < tc.declinedShare + tc.reversedShare ? 'reversed' : 'approved'
      const nameIndex = Math.floor(uMer * kind.names.length)
      const name = kind.names[nameIndex]
      const eventId = `${this.id}-t${day}-${k}`
      if (kind.online && !where.away) {
        const abroad = uX < tc.foreignOnlineShare
        this.tx(out, at, eventId, card, amount, {
          status,
          channel: 'ecom',
          cardPresent: false,
          deviceId: this.deviceAt(at),
          merchant: abroad ? { id: `m_web_intl_${nameIndex}`, name: 'Global Shop', mcc: '5999', country: pick(stream(seed, eventId), ['US', 'JP', 'KR', 'GB']) } : { id: `m_web_${slug(name)}`, name, mcc: kind.mcc, country: this.home.country },
        })
        continue
      }
      const channel = m.channels.at(uCh)
      const city = where.city
      const mid = `m_${city.code}_${category}_${nameIndex}${Math.floor(uX * 4)}`
      const jitter = hash32(mid)
      this.tx(out, at, eventId, card, amount, {
        status,
        channel,
        cardPresent: channel !== 'qr',
        ...(channel === 'pos' ? {} : { deviceId: this.deviceAt(at) }),
        merchant: {
          id: mid,
          name: where.away ? `${name} ${city.city}` : name,
          mcc: kind.mcc,
          city: city.city,
          country: city.country,
          lat: round4(where.lat + ((jitter & 0xff) / 255 - 0.5) * 0.08),
          lon: round4(where.lon + (((jitter >>> 8) & 0xff) / 255 - 0.5) * 0.08),
        },
      })
    }
  }

  /** App usage: logins (with page views, offers viewed, clicked, coupons claimed), thinned like purchases. */
  private appItems(out: Item[], day: number, from: number, to: number) {
    const { seed, cfg } = this.ctx
    const m = this.model
    const rate = m.cfg.loginsPerDay
    const lmax = rate * m.maxRatio
    if (!(lmax > 0)) return
    const onboard = this.existing ? this.ctx.start : this.tl.cards[0].activatedAt
    if (!(onboard < to)) return
    const r = stream(seed, this.id, 'app', day)
    const step = DAY / lmax
    const a = cfg.app
    let t = from + exponential(r, step)
    for (let k = 0; t < to; k++, t += exponential(r, step)) {
      const u = r()
      const at = sec(t)
      if (at < onboard || at >= to || at >= this.tl.closedAt || !this.appInstalled(at)) continue
      const hw = localHourWeekday(at, this.tz)
      if (!(u * lmax < rate * m.hourRatio[hw % 24] * m.weekdayRatio[(hw / 24) | 0] * (0.2 + 0.8 * this.activity(at)))) continue
      const uView = r(),
        uClick = r(),
        uClaim = r(),
        uPages = r(),
        uGap = r()
      const deviceId = this.deviceAt(at)
      const id = `${this.id}-a${day}.${k}`
      this.app(out, 'login', at, id, { deviceId })
      const pages = Math.floor(uPages * 2.5)
      let s = at
      for (let j = 0; j < pages; j++) {
        s += sec(20_000 + uGap * 90_000 * (j + 1))
        if (s >= to) break
        this.app(out, 'page_view', s, `${id}.p${j}`, { deviceId, attributes: { page: PAGES[(k + j) % PAGES.length] } })
      }
      if (uView < a.offerViewPerLogin && s + 30_000 < to) {
        const offer = OFFERS[(day + k) % OFFERS.length]
        this.app(out, 'offer_viewed', s + 30_000, `${id}.v`, { deviceId, attributes: { offer } })
        if (uClick < a.offerClickRate && s + 60_000 < to) {
          this.app(out, 'offer_clicked', s + 60_000, `${id}.c`, { deviceId, attributes: { offer } })
          if (uClaim < a.couponClaimRate && s + 90_000 < to) this.app(out, 'coupon_claimed', s + 90_000, `${id}.q`, { deviceId, attributes: { offer } })
        }
      }
    }
  }

  private fraudItems(out: Item[], inDay: (t: number) => boolean) {
    const p = this.plan
    for (const f of p.fraud) {
      const cardId = this.tl.injected.get(f.index)
      if (cardId === undefined) continue
      // A case spans at most half a day: build it only on the days it touches.
      if (!(inDay(f.t) || inDay(f.t + 13 * HOUR) || inDay(f.t - 1))) continue
      const items = this.fraudCase(f, cardId)
      const first = items[0]
      first.fraud = { kind: f.kind, eventIds: items.map((x) => x.id), cardId, endAt: items[items.length - 1].t }
      for (const item of items) if (inDay(item.t)) out.push(item)
    }
  }

  /** The events of one fraud case, shaped to show its risk kind's pattern (CONTRACT §4). */
  fraudCase(f: FraudCase, cardId: string): Item[] {
    const r = stream(this.ctx.seed, this.id, 'fraud-case', f.index)
    const items: Item[] = []
    const card = { ...this.tl.cards[0], id: cardId }
    const base = `${this.id}-f${SHORT[f.kind]}${f.index}`
    const place = this.whereAt(f.t) ?? { city: this.home, lat: this.homeLat, lon: this.homeLon, away: false }
    const web = (name: string, mcc: string, country: string) => ({ id: `m_web_${slug(name)}`, name, mcc, country })
    let t = f.t
    switch (f.kind) {
      case 'card_testing': {
        const n = 3 + Math.floor(r() * 4)
        const country = pick(r, ['US', 'GB', 'NL', 'SG'])
        for (let i = 0; i < n; i++, t += sec(uniform(r, 40, 110) * 1000))
          this.tx(items, t, `${base}-${i}`, card, round2(uniform(r, 0.5, 9.99)), { status: r() < 0.5 ? 'approved' : 'declined', channel: 'ecom', cardPresent: false, merchant: web('Digital Goods Online', '5816', country) })
        break
      }
      case 'velocity': {
        const n = 10 + Math.floor(r() * 5)
        const merchant = web(pick(r, ['Game Credits Hub', 'Gift Card Express', 'Top-up World']), '5816', pick(r, ['US', 'HK', 'SG']))
        for (let i = 0; i < n; i++, t += sec(uniform(r, 20, 45) * 1000))
          this.tx(items, t, `${base}-${i}`, card, round2(uniform(r, 20, 400)), { status: r() < 0.85 ? 'approved' : 'declined', channel: 'ecom', cardPresent: false, merchant })
        break
      }
      case 'cashout_pattern': {
        const n = 3 + Math.floor(r() * 2)
        const city = place.city
        const merchant = { id: `m_${city.code}_gold_${Math.floor(r() * 9)}`, name: 'Golden Jewellery', mcc: '5944', city: city.city, country: city.country, lat: round4(place.lat), lon: round4(place.lon) }
        for (let i = 0; i < n; i++, t += sec(uniform(r, 20, 150) * MINUTE)) this.tx(items, t, `${base}-${i}`, card, 1000 * (1 + Math.floor(r() * 4)), { channel: 'pos', cardPresent: true, merchant })
        break
      }
      case 'new_device_large_amount': {
        const deviceId = `dev_${this.id.slice(5)}_x${f.index}`
        this.app(items, 'device_registered', t, `${base}-0`, { deviceId })
        t += sec(uniform(r, 5, 50) * MINUTE)
        this.tx(items, t, `${base}-1`, card, round2(uniform(r, 5000, 20_000)), { channel: 'ecom', cardPresent: false, deviceId, merchant: web('Luxury Electronics Online', '5732', this.home.country) })
        break
      }
      case 'night_burst': {
        const n = 3 + Math.floor(r() * 3)
        for (let i = 0; i < n; i++, t += sec(uniform(r, 4, 14) * MINUTE))
          this.tx(items, t, `${base}-${i}`, card, round2(uniform(r, 150, 2500)), { channel: 'ecom', cardPresent: false, merchant: web(pick(r, ['Night Owl Shop', 'Midnight Deals', 'Global Electronics']), '5999', pick(r, ['CN', 'HK', 'US'])) })
        break
      }
      case 'impossible_travel': {
        // The customer pays where they are; minutes later the card is used far away.
        const kind = CATEGORY_MERCHANTS.grocery
        const name = pick(r, kind.names)
        this.tx(items, t, `${base}-0`, card, round2(uniform(r, 40, 300)), {
          channel: 'pos',
          cardPresent: true,
          merchant: { id: `m_${place.city.code}_grocery_${slug(name)}`, name, mcc: kind.mcc, city: place.city.city, country: place.city.country, lat: round4(place.lat), lon: round4(place.lon) },
        })
        const far = FRAUD_PLACES.filter((c) => distanceKm(place.lat, place.lon, c.lat, c.lon) >= 1500)
        const there = pick(r, far.length ? far : FRAUD_PLACES)
        t += sec(uniform(r, 15, 55) * MINUTE)
        this.tx(items, t, `${base}-1`, card, round2(uniform(r, 1500, 9000)), {
          channel: 'pos',
          cardPresent: true,
          merchant: { id: `m_${there.code}_electronics_x`, name: `Electronics ${there.city}`, mcc: '5732', city: there.city, country: there.country, lat: there.lat, lon: there.lon },
        })
        break
      }
      case 'amount_anomaly': {
        const item = this.tx(items, t, `${base}-0`, card, 0, {
          channel: 'pos',
          cardPresent: true,
          merchant: { id: `m_${place.city.code}_luxury_${Math.floor(r() * 5)}`, name: 'Maison Luxe', mcc: '5944', city: place.city.city, country: place.city.country, lat: round4(place.lat), lon: round4(place.lon) },
        })
        item.anomaly = true
        break
      }
      case 'prohibited_use': {
        const m = pick(r, PROHIBITED)
        this.tx(items, t, `${base}-0`, card, round2(uniform(r, 800, 15_000)), { channel: 'ecom', cardPresent: false, deviceId: this.deviceAt(t), merchant: { id: `m_web_${slug(m.name)}`, name: m.name, mcc: m.mcc, country: m.country } })
        break
      }
    }
    return items
  }

  /** What touchpoints make the customer do: open the message, and if persuaded, act. */
  private reactionItems(out: Item[], inDay: (t: number) => boolean) {
    const { seed } = this.ctx
    for (const x of this.reactions) {
      const base = `${this.id}-r${hash32(seed, x.id).toString(36)}`
      const offer = x.trigger
      if (inDay(x.viewedAt) && x.viewedAt < this.tl.closedAt) {
        const deviceId = this.deviceAt(x.viewedAt)
        this.app(out, 'offer_viewed', x.viewedAt, `${base}-v`, { deviceId, attributes: { offer, touchpoint: x.id } })
        if (x.clicked) {
          this.app(out, 'offer_clicked', x.viewedAt + 30_000, `${base}-c`, { deviceId, attributes: { offer, touchpoint: x.id } })
          if (x.hasOffer) this.app(out, 'coupon_claimed', x.viewedAt + 60_000, `${base}-q`, { deviceId, attributes: { offer, touchpoint: x.id } })
        }
      }
      if (!x.persuaded || !inDay(x.actionAt)) continue
      const at = x.actionAt
      const action = x.effect.action
      if (action === 'installment') {
        if (at < this.tl.closedAt) this.app(out, 'installment_applied', at, `${base}-i`, { attributes: { touchpoint: x.id, months: 12 } })
      } else if (action === 'raise_limit') {
        const card = this.canPay(at)
        if (card) {
          const n = out.length
          this.lc(out, 'limit_changed', at, card.id, `r${hash32(seed, x.id).toString(36)}`, { attributes: { reason: 'customer_request', touchpoint: x.id } })
          out[n].limitFactor = x.effect.limitFactor
        }
      } else if (action === 'purchase' || action === 'cross_border_purchase') {
        const card = this.canPay(at)
        const where = this.whereAt(at)
        if (!card || !where) continue
        const [uCat, uAmt, uAmt2, uMer] = x.draws
        const category = this.model.categories.at(uCat)
        const kind = CATEGORY_MERCHANTS[category]
        const z = Math.sqrt(-2 * Math.log(1 - uAmt)) * Math.cos(2 * Math.PI * uAmt2)
        const amount = everyday(Math.max(kind.median * this.spendFactor * Math.exp(kind.sigma * z), x.effect.minAmount + uMer * 200))
        const name = kind.names[Math.floor(uMer * kind.names.length)]
        if (action === 'cross_border_purchase') {
          const country = this.home.country === 'JP' ? 'KR' : 'JP'
          this.tx(out, at, `${base}-p`, card, amount, { channel: 'ecom', cardPresent: false, deviceId: this.deviceAt(at), merchant: { id: 'm_web_intl_tax_free', name: 'Tax Free Online', mcc: '5999', country } })
        } else if (kind.online || where.away) {
          this.tx(out, at, `${base}-p`, card, amount, { channel: 'ecom', cardPresent: false, deviceId: this.deviceAt(at), merchant: { id: `m_web_${slug(name)}`, name, mcc: kind.mcc, country: this.home.country } })
        } else {
          const mid = `m_${where.city.code}_${category}_${Math.floor(uMer * kind.names.length)}0`
          this.tx(out, at, `${base}-p`, card, amount, { channel: 'pos', cardPresent: true, merchant: { id: mid, name, mcc: kind.mcc, city: where.city.city, country: where.city.country, lat: round4(where.lat), lon: round4(where.lon) } })
        }
      }
    }
  }

  /** Emission-time bookkeeping of approved purchases (for the amount-anomaly case). */
  recordPurchase(t: number, amount: number) {
    this.recent.push(t, amount)
    if (this.recent.length > 64 && this.recent[0] < t - 90 * DAY) {
      let i = 0
      while (i < this.recent.length && this.recent[i] < t - 90 * DAY) i += 2
      this.recent = this.recent.slice(i)
    }
  }

  /**
   * An amount far enough above every approved purchase of the last 90 days to exceed mean + 4 sd
   * of any subset of them (for n ≥ 10: mean + 4 sd ≤ 3.11 × max); undefined when the customer has
   * made fewer than 12 purchases in the last 75 days (too short a history for the signal).
   */
  anomalyAmount(t: number, u: number): number | undefined {
    let max = 0
    let n = 0
    for (let i = 0; i < this.recent.length; i += 2) {
      const at = this.recent[i]
      if (at < t - 90 * DAY) continue
      max = Math.max(max, this.recent[i + 1])
      if (at >= t - 75 * DAY) n++
    }
    if (n < 12) return undefined
    return round2(3.3 * max + 300 + u * 700)
  }
}

const HOMES = new Weighted(DOMESTIC.map((c, i) => [c, DOMESTIC_WEIGHTS[i]] as [City, number]))
const TRAVEL_CATEGORIES: Category[] = ['dining', 'dining', 'coffee', 'transport', 'entertainment', 'department', 'grocery']
const PAGES = ['home', 'bill', 'rewards', 'offers', 'card_settings', 'installments']
const OFFERS = ['cashback_dining', 'double_points', 'travel_insurance', 'installment_zero_fee', 'movie_deal']

const round4 = (n: number) => Math.round(n * 10_000) / 10_000
const slug = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_|_$/g, '')

/** Local hour + 24 × weekday (Monday 0) of an instant, without allocating. */
function localHourWeekday(ms: number, tz: string): number {
  const local = ms + zoneOffset(ms, tz)
  const hour = Math.floor(local / HOUR) % 24
  const day = Math.floor(local / DAY)
  return ((hour + 24) % 24) + 24 * ((((day + 3) % 7) + 7) % 7)
}

/** The local calendar date (YYYY-MM-DD) of an instant in a time zone. */
export function localDate(ms: number, tz: string): string {
  return new Date(ms + zoneOffset(ms, tz)).toISOString().slice(0, 10)
}
