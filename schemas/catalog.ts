import { z } from 'zod'
import { AppEventName, Channel, LifecycleStage } from './events.ts'
import { Severity } from './alert.ts'
import { Duration } from './duration.ts'
import { Offer } from './decision.ts'

/**
 * The trigger catalogue: which moments become touchpoints, and the contact policy around them.
 * Marketers edit it as YAML; every field a marketer may want to tune is data here, not code.
 */

const clock = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must be a local time like 21:00')

/**
 * A trigger's conversion goal: what counts as the customer doing what the touchpoint asked, within
 * the attribution window after the decision's event time (docs/catalog.md, "Conversion goals").
 */
export const Goal = z.discriminatedUnion('kind', [
  /** A lifecycle stage on the decision's card (any card when it names none). */
  z
    .strictObject({
      kind: z.literal('lifecycle'),
      stage: LifecycleStage,
      /** Only a `limit_changed` that leaves the credit limit above the one at the decision counts. */
      higherLimit: z.boolean().default(false),
    })
    .refine((g) => !g.higherLimit || g.stage === 'limit_changed', { message: 'higherLimit goes with stage limit_changed', path: ['higherLimit'] }),
  /** One approved transaction of at least `minAmount`; `crossBorder`: outside the home country. */
  z.strictObject({ kind: z.literal('transaction'), minAmount: z.number().nonnegative().default(0), crossBorder: z.boolean().default(false) }),
  z.strictObject({ kind: z.literal('app'), name: AppEventName }),
  /**
   * Approved spend in the window adds up to `min`, or to `share` × the number the decision's
   * reason carries under `of` (churn_retention: `baselineMonthlyAverage`).
   */
  z
    .strictObject({
      kind: z.literal('spend'),
      min: z.number().nonnegative().optional(),
      share: z.number().positive().optional(),
      of: z.string().min(1).optional(),
    })
    .refine((g) => (g.min !== undefined) !== (g.share !== undefined && g.of !== undefined) && (g.share === undefined) === (g.of === undefined), {
      message: 'give either min, or share and of (a number in the decision reason)',
    }),
  /** Approved spend in the customer's local calendar month reaches `min` by its end; the window ends with the month. */
  z.strictObject({ kind: z.literal('month_spend'), min: z.number().nonnegative() }),
])
export type Goal = z.infer<typeof Goal>

export const Policy = z.strictObject({
  cooldown: Duration.prefault('7d'),
  weeklyCap: z.number().int().nonnegative().default(3),
  capWindow: Duration.prefault('7d'),
  quietHours: z.object({ start: clock, end: clock }).nullable().default({ start: '21:00', end: '09:00' }),
  holdoutPercent: z.number().min(0).max(100).default(10),
  /** Customers (a stable hash of the customer alone) who get no marketing touchpoint at all: the programme's control group. */
  globalHoldoutPercent: z.number().min(0).max(100).default(0),
  riskHold: Duration.prefault('72h'),
  ttl: Duration.prefault('48h'),
  channelOrder: z.array(Channel).min(1).default(['push', 'app_banner', 'sms', 'call']),
})
export type Policy = z.infer<typeof Policy>

export const ValueTier = z.enum(['new', 'inactive', 'low', 'mid', 'high'])
export const RiskLevel = z.enum(['none', 'low', 'medium', 'high'])

/** Who a trigger targets, from profile and derived attributes; every condition given must hold. */
export const Audience = z.strictObject({
  segments: z.array(z.string()).min(1).optional(),
  tiers: z.array(ValueTier).min(1).optional(),
  riskLevels: z.array(RiskLevel).min(1).optional(),
  stages: z.array(LifecycleStage).min(1).optional(),
  /** At least one of these profile tags. */
  tagsAny: z.array(z.string()).min(1).optional(),
  /** None of these profile tags. */
  tagsNone: z.array(z.string()).min(1).optional(),
})
export type Audience = z.infer<typeof Audience>

export const TriggerConfig = z.strictObject({
  enabled: z.boolean().default(true),
  description: z.string().optional(),
  /** Higher wins among moments of one customer at the same event time. */
  priority: z.number().int().min(0).max(1000).default(50),
  /** Trigger-specific thresholds and windows, validated by the operator that owns the trigger. */
  params: z.record(z.string(), z.unknown()).default({}),
  channels: z.array(Channel).min(1).default(['push', 'sms']),
  offer: Offer.optional(),
  /** Offer variants by value tier; the tier's variant replaces `offer`. */
  offers: z.partialRecord(ValueTier, Offer).optional(),
  audience: Audience.optional(),
  goal: Goal,
  /** How long after the decision its goal counts; a month_spend goal's window ends with the local month instead. */
  attributionWindow: Duration.optional(),
  cooldown: Duration.optional(),
  holdoutPercent: z.number().min(0).max(100).optional(),
  ttl: Duration.optional(),
}).superRefine((t, ctx) => {
  const monthly = t.goal.kind === 'month_spend'
  if (t.attributionWindow === undefined && !monthly) ctx.addIssue({ code: 'custom', path: ['attributionWindow'], message: 'required: how long after the decision the goal counts, e.g. 7d' })
  if (t.attributionWindow !== undefined && monthly) ctx.addIssue({ code: 'custom', path: ['attributionWindow'], message: 'a month_spend goal counts to the end of the local month: leave attributionWindow out' })
})
export type TriggerConfig = z.infer<typeof TriggerConfig>

export const SignalConfig = z.strictObject({
  enabled: z.boolean().default(true),
  description: z.string().optional(),
  severity: Severity,
  /** Signal-specific thresholds and windows, validated by the operator that owns the signal. */
  params: z.record(z.string(), z.unknown()).default({}),
})
export type SignalConfig = z.infer<typeof SignalConfig>

/**
 * What the decisions cost and earn, for ROI (CONTRACT §5): the cost of one delivered message per
 * channel, and the interchange rate that turns incremental spend into margin. Offer values are
 * the triggers' own (`offer.value`), as each decision records them.
 */
export const Economics = z.strictObject({
  /** ISO 4217 code of every amount here, of offer values and of spend. */
  currency: z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code such as CNY').default('CNY'),
  /** Margin earned per unit of approved spend, e.g. 0.006 = 0.6%. */
  interchangeRate: z.number().min(0).max(1).default(0.006),
  /** Cost of one delivered message, per channel. */
  channelCost: z
    .strictObject({
      sms: z.number().nonnegative().default(0.05),
      push: z.number().nonnegative().default(0),
      call: z.number().nonnegative().default(3),
      app_banner: z.number().nonnegative().default(0),
    })
    .prefault({}),
})
export type Economics = z.infer<typeof Economics>

/** How fast and how many at once one channel's webhook endpoint takes. */
export const ChannelDelivery = z.strictObject({
  /** Webhooks started per second at most; absent: no limit. */
  ratePerSecond: z.number().positive('must be above 0 (leave it out for no limit)').max(100_000).optional(),
  /** HTTP attempts in flight at once to this channel's endpoint. */
  concurrency: z.number().int('must be a whole number').min(1, 'must be at least 1').max(1000).default(8),
})
export type ChannelDelivery = z.infer<typeof ChannelDelivery>

/**
 * Delivery limits: per channel (each channel's webhook endpoint is limited and protected on its
 * own), the circuit breaker every endpoint gets, and when a late endpoint counts as behind and
 * when an endpoint or sink that stays down makes the process degraded (/healthz).
 */
export const Delivery = z.strictObject({
  channels: z
    .strictObject({
      sms: ChannelDelivery.prefault({}),
      push: ChannelDelivery.prefault({}),
      call: ChannelDelivery.prefault({}),
      app_banner: ChannelDelivery.prefault({}),
    })
    .prefault({}),
  circuitBreaker: z
    .strictObject({
      /** Consecutive retriable failures (connection refused, timeout, 408, 429, 5xx) that open the circuit. */
      failures: z.number().int('must be a whole number').min(1, 'must be at least 1').max(1000).default(5),
      /** How long an open circuit sends nothing before one probe attempt. */
      openFor: Duration.prefault('30s').refine((ms) => ms >= 100, 'must be at least 100ms'),
    })
    .prefault({}),
  /** A channel whose oldest due webhook has waited this long is behind (logged once, and its recovery). */
  behindAfter: Duration.prefault('1m'),
  /** An endpoint whose circuit stays open, or a sink that keeps failing, this long makes /healthz say degraded. */
  degradedAfter: Duration.prefault('2m'),
})
export type Delivery = z.infer<typeof Delivery>

export const Catalog = z.strictObject({
  version: z.string().min(1, 'give the catalogue a version, e.g. "2026-11-28.1"'),
  policy: Policy.prefault({}),
  economics: Economics.prefault({}),
  delivery: Delivery.prefault({}),
  triggers: z.record(z.string(), TriggerConfig),
  signals: z.record(z.string(), SignalConfig).default({}),
})
export type Catalog = z.infer<typeof Catalog>
