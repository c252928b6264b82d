import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import YAML from 'yaml'
import { z } from 'zod'
import { Duration } from '../schemas/duration.ts'
import { Channel } from '../schemas/events.ts'
import { ConfigError } from '../core/errors.ts'

/**
 * The simulated bank's configuration: who the customers are, how they spend, how cards live and
 * die, how often fraud strikes, and how customers answer each trigger's touchpoint. A YAML file,
 * validated at load; a bad value is reported in one line naming the field.
 */

export const DEFAULT_BANK_CONFIG_FILE = fileURLToPath(new URL('./bank.yaml', import.meta.url))

export const SEGMENTS = ['young_professional', 'mass_market', 'affluent', 'senior', 'small_business'] as const
export type Segment = (typeof SEGMENTS)[number]

export const CATEGORIES = ['grocery', 'dining', 'coffee', 'fuel', 'online', 'department', 'electronics', 'transport', 'entertainment', 'health', 'utilities', 'business'] as const
export type Category = (typeof CATEGORIES)[number]

export const FRAUD_KINDS = ['impossible_travel', 'night_burst', 'card_testing', 'cashout_pattern', 'new_device_large_amount', 'velocity', 'amount_anomaly', 'prohibited_use'] as const
export type FraudKind = (typeof FRAUD_KINDS)[number]

export const ACTIONS = ['none', 'activate', 'bind', 'purchase', 'installment', 'cross_border_purchase', 'renew', 'raise_limit'] as const
export type Action = (typeof ACTIONS)[number]

const share = z.number().min(0).max(1)
const rate = z.number().min(0).max(10_000)
const range = (min = 0) =>
  z
    .tuple([z.number().min(min), z.number().min(min)])
    .refine(([a, b]) => a <= b, 'must be [low, high] with low ≤ high')
const weights = <K extends string>(keys: readonly K[]) =>
  z
    .partialRecord(z.enum(keys as unknown as [K, ...K[]]), z.number().min(0))
    .refine((w) => Object.values(w).some((v) => (v as number) > 0), 'needs at least one positive weight')

const SegmentConfig = z.strictObject({
  share: share,
  age: range(18),
  txPerDay: z.number().min(0).max(100),
  /** Multiplies every category's typical amount. */
  spendScale: z.number().positive(),
  /** Relative spending by local hour, 00 to 23. */
  hours: z.array(z.number().min(0)).length(24, 'must list 24 hourly weights'),
  /** Relative spending by weekday, Monday to Sunday. */
  weekdays: z.array(z.number().min(0)).length(7, 'must list 7 weights, Monday to Sunday'),
  categories: weights(CATEGORIES),
  /** How in-store purchases are paid (online purchases are always ecom). */
  channels: weights(['pos', 'qr', 'wallet'] as const),
  creditLimits: z.array(z.number().positive()).min(1),
  preferredChannels: weights(Channel.options),
  loginsPerDay: rate,
  domesticTripsPerYear: rate,
  foreignTripsPerYear: rate,
  installmentsPerYear: rate,
})
export type SegmentConfig = z.infer<typeof SegmentConfig>

const Effect = z
  .strictObject({
    action: z.enum(ACTIONS),
    /** Chance that a customer who receives the touchpoint is persuaded. */
    probability: share.default(0),
    /** A persuaded customer acts within this long after the touchpoint reaches them. */
    within: Duration.prefault('3d'),
    /** While the offer lasts, the persuaded customer's purchase rate is multiplied by this. */
    spendMultiplier: z.number().min(1).max(10).default(1),
    duration: Duration.prefault('0d'),
    /** A persuaded customer drifting into dormancy or churn comes back to usual spending. */
    revive: z.boolean().default(false),
    /** The reaction purchase is at least this much (spend_threshold_challenge). */
    minAmount: z.number().min(0).default(0),
    /** raise_limit: the new limit is the old one times this. */
    limitFactor: z.number().min(1).max(10).default(1.5),
  })
  .refine((e) => e.action !== 'none' || e.probability === 0, { message: 'action none takes no probability', path: ['probability'] })
export type Effect = z.infer<typeof Effect>

export const BankConfig = z.strictObject({
  population: z.strictObject({
    abroadShare: share,
    existingShare: share,
    applyWithinDays: z.number().min(0),
  }),
  segments: z.strictObject(Object.fromEntries(SEGMENTS.map((s) => [s, SegmentConfig])) as Record<Segment, typeof SegmentConfig>).refine(
    (s) => Object.values(s).some((x) => x.share > 0),
    'at least one segment needs a share above 0',
  ),
  lifecycle: z.strictObject({
    approvalRate: share,
    approvalDelayHours: range(),
    declineDelayHours: range(),
    issueDelayHours: range(),
    activationRate: share,
    activationOnTimeShare: share,
    activationOnTimeHours: range(),
    activationLateHours: range(),
    neverUseShare: share,
    firstUseMeanDays: z.number().positive(),
    bindRate: share,
    bindDelayHours: range(),
    limitIncreasesPerYear: rate,
    limitIncreaseFactor: range(1),
    expiryPerYear: rate,
    expiringNoticeDays: z.number().int().min(1).max(365),
    renewalRate: share,
    renewalDelayDays: range(),
    lostStolenPerYear: rate,
    blockAfterFraud: share,
    replacementDelayDays: range(),
    replacementActivationRate: share,
  }),
  dormancy: z.strictObject({ perYear: rate, driftDays: range(1) }),
  churn: z.strictObject({ perYear: rate, driftDays: range(1), floor: share, closeShare: share, closeAfterDays: range(1) }),
  app: z.strictObject({
    offerViewPerLogin: share,
    offerClickRate: share,
    couponClaimRate: share,
    deviceRegistrationsPerYear: rate,
    consentWithdrawalsPerYear: rate,
    consentRegrantShare: share,
    uninstallsPerYear: rate,
    profileUpdatesPerYear: rate,
  }),
  transactions: z.strictObject({ declinedShare: share, reversedShare: share, foreignOnlineShare: share }),
  /** Cases per customer and year of an active card, by risk kind. */
  fraud: z.strictObject(Object.fromEntries(FRAUD_KINDS.map((k) => [k, rate])) as Record<FraudKind, typeof rate>),
  /** Share of messages followed by a malformed copy (invalid JSON, schema violation, unknown type, a PAN, not an object). */
  malformed: z.strictObject({ share: share }),
  /** Of customers who receive a touchpoint on push or app banner: share who open it (offer_viewed). */
  engagement: z.strictObject({ viewed: share }),
  /** How customers answer each trigger's touchpoint; triggers not listed use `default`. */
  effects: z.record(z.string().regex(/^[a-z][a-z0-9_]*$/, 'trigger names are lower_snake_case'), Effect).refine((e) => 'default' in e, 'needs a default effect'),
})
export type BankConfig = z.infer<typeof BankConfig>
/** What a config file may give: any part of the defaults, merged over them. */
export type BankConfigInput = DeepPartial<z.input<typeof BankConfig>>
type DeepPartial<T> = T extends readonly unknown[] ? T : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T

export class BankConfigError extends ConfigError {}

let defaultRaw: unknown

function defaultText(): unknown {
  defaultRaw ??= YAML.parse(readFileSync(DEFAULT_BANK_CONFIG_FILE, 'utf8'))
  return structuredClone(defaultRaw)
}

/**
 * Validates a configuration: `overrides` (an object or YAML text) merged over the shipped
 * defaults, objects key by key, lists and values replaced whole.
 */
export function parseBankConfig(overrides: BankConfigInput | string = {}, origin = 'bank config'): BankConfig {
  let raw: unknown = overrides
  if (typeof overrides === 'string') {
    try {
      raw = YAML.parse(overrides) ?? {}
    } catch (e) {
      throw new BankConfigError(`${origin}: not valid YAML: ${(e as Error).message.split('\n')[0]}`)
    }
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new BankConfigError(`${origin}: must be a mapping of settings`)
  const parsed = BankConfig.safeParse(merge(defaultText(), raw))
  if (!parsed.success) {
    const issue = parsed.error.issues[0]
    const path = issue.path.length ? issue.path.join('.') : '(root)'
    const message = issue.code === 'unrecognized_keys' ? `unknown setting ${issue.keys.map((k) => `"${k}"`).join(', ')}` : issue.message
    throw new BankConfigError(`${origin}: ${path}: ${message}`)
  }
  return parsed.data
}

export function loadBankConfig(file?: string): BankConfig {
  if (!file) return parseBankConfig({}, DEFAULT_BANK_CONFIG_FILE)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (e) {
    throw new BankConfigError(`cannot read bank config ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  return parseBankConfig(text, file)
}

function merge(base: unknown, over: unknown): unknown {
  if (!isPlain(base) || !isPlain(over)) return over === undefined ? base : over
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(over)) out[k] = k in base ? merge(base[k], v) : v
  return out
}

const isPlain = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
