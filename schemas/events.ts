import { z } from 'zod'

/** Public input contract (CONTRACT.md §1): the three streams cardpulse reads. */

/**
 * Card events happen after 1970 and, with every timer they arm (a year at most) still inside
 * ClickHouse's DateTime64 (to 2299), before 2200: a time outside would stall event time or break
 * the analytics rows it leads to.
 */
const EARLIEST_EVENT = Date.UTC(1970, 0, 1)
const LATEST_EVENT = Date.UTC(2200, 0, 1) - 1
const isoTimestamp = z.iso.datetime({ offset: true, message: 'must be an ISO-8601 timestamp with an offset or Z' }).refine((s) => {
  const t = Date.parse(s)
  return t >= EARLIEST_EVENT && t <= LATEST_EVENT
}, 'must be between 1970-01-01 and 2199-12-31')
const customerId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1–64 characters of A-Z a-z 0-9 _ -')
const countryCode = z.string().regex(/^[A-Z]{2}$/, 'must be an ISO 3166 alpha-2 code')
const flatAttributes = z
  .record(z.string(), z.union([z.string(), z.number(), z.boolean()]))
  .refine((a) => Object.keys(a).length <= 32, 'at most 32 keys')

const common = {
  eventId: z.string().min(1).max(128),
  occurredAt: isoTimestamp,
  customerId,
}

export const Channel = z.enum(['sms', 'push', 'call', 'app_banner'])
export type Channel = z.infer<typeof Channel>

export const TransactionEvent = z.object({
  type: z.literal('transaction'),
  ...common,
  cardId: z.string().min(1).max(64),
  amount: z
    .number()
    .positive()
    .refine((n) => Math.abs(Math.round(n * 100) - n * 100) < 1e-6, 'at most 2 decimals'),
  currency: z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code').default('CNY'),
  status: z.enum(['approved', 'declined', 'reversed']),
  channel: z.enum(['pos', 'ecom', 'qr', 'wallet', 'atm']),
  cardPresent: z.boolean(),
  merchant: z.object({
    id: z.string().min(1).max(64),
    name: z.string().max(256).optional(),
    mcc: z.string().regex(/^\d{4}$/, 'must be 4 digits').optional(),
    city: z.string().max(128).optional(),
    country: countryCode.optional(),
    lat: z.number().min(-90).max(90).optional(),
    lon: z.number().min(-180).max(180).optional(),
  }),
  deviceId: z.string().min(1).max(128).optional(),
})
export type TransactionEvent = z.infer<typeof TransactionEvent>

export const AppEventName = z.enum([
  'login',
  'page_view',
  'offer_viewed',
  'offer_clicked',
  'coupon_claimed',
  'offer_redeemed',
  'installment_applied',
  'consent_changed',
  'device_registered',
  'app_uninstalled',
  'profile_updated',
])

export const AppEvent = z
  .object({
    type: z.literal('app'),
    ...common,
    name: AppEventName,
    deviceId: z.string().min(1).max(128).optional(),
    attributes: flatAttributes.optional(),
  })
  .superRefine((e, ctx) => {
    if (e.name !== 'consent_changed') return
    const channel = e.attributes?.channel
    if (!['sms', 'push', 'call', 'app_banner', 'all'].includes(String(channel)))
      ctx.addIssue({ code: 'custom', path: ['attributes', 'channel'], message: 'consent_changed needs channel sms|push|call|app_banner|all' })
    if (typeof e.attributes?.granted !== 'boolean')
      ctx.addIssue({ code: 'custom', path: ['attributes', 'granted'], message: 'consent_changed needs a boolean granted' })
  })
export type AppEvent = z.infer<typeof AppEvent>

export const LifecycleStage = z.enum([
  'applied',
  'approved',
  'declined',
  'issued',
  'activated',
  'bound',
  'limit_changed',
  'expiring',
  'renewed',
  'blocked',
  'closed',
])
export type LifecycleStage = z.infer<typeof LifecycleStage>

export const Profile = z.object({
  birthDate: z.iso.date().optional(),
  // Defaults (Asia/Shanghai, CN) live in the customer's folded profile, so that an event carrying
  // only some profile fields never resets the others.
  timezone: z.string().refine(isTimeZone, 'must be an IANA time zone such as Asia/Shanghai').optional(),
  homeCity: z.string().max(128).optional(),
  homeCountry: countryCode.optional(),
  homeLat: z.number().min(-90).max(90).optional(),
  homeLon: z.number().min(-180).max(180).optional(),
  segment: z.string().max(64).optional(),
  tags: z.array(z.string().max(64)).max(64).optional(),
  preferredChannel: Channel.optional(),
})
export type Profile = z.infer<typeof Profile>

export const LifecycleEvent = z.object({
  type: z.literal('lifecycle'),
  ...common,
  cardId: z.string().min(1).max(64),
  stage: LifecycleStage,
  product: z.string().max(64).optional(),
  creditLimit: z.number().nonnegative().optional(),
  attributes: flatAttributes.optional(),
  profile: Profile.optional(),
})
export type LifecycleEvent = z.infer<typeof LifecycleEvent>

export const InputEvent = z.discriminatedUnion('type', [TransactionEvent, AppEvent, LifecycleEvent])
export type InputEvent = z.infer<typeof InputEvent>
export type EventType = InputEvent['type']
export const EVENT_TYPES: readonly EventType[] = ['transaction', 'app', 'lifecycle']

const knownTimeZones = new Set<string>()

function isTimeZone(tz: string): boolean {
  if (knownTimeZones.has(tz)) return true
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz })
    knownTimeZones.add(tz)
    return true
  } catch {
    return false
  }
}
