import type { Action, BankConfig, Effect, FraudKind, Segment } from './config.ts'
import type { Channel, EventType } from '../schemas/events.ts'

/**
 * Ground truth (`truth.ndjson`): what really happened in the simulated bank, for holding
 * cardpulse's alerts, triggers and measured lift against. One JSON object a line, sorted by `at`
 * (ISO-8601), then kind, customer and id.
 */

export type TruthRecord =
  /** The first line: the seed, the period and the whole configuration, effects included. */
  | { kind: 'config'; at: string; seed: number; customers: number; start: string; end: string; config: BankConfig }
  /** Who each customer is; `at` is the period start for existing cardholders, else the application. */
  | {
      kind: 'customer'
      at: string
      customerId: string
      segment: Segment
      existing: boolean
      approved: boolean
      timezone: string
      homeCity: string
      homeCountry: string
      preferredChannel: Channel
      creditLimit: number
    }
  /** A fraud case injected into the customer's stream: every event of it. */
  | { kind: 'fraud'; at: string; customerId: string; cardId: string; fraudKind: FraudKind; eventIds: string[]; endAt: string }
  /** The customer starts drifting into dormancy at `at`; purchases have stopped by `dormantAt`. */
  | { kind: 'dormancy'; at: string; customerId: string; dormantAt: string }
  /** The customer starts churning at `at`: spending falls to `floor` of usual by `floorAt`, and the card closes at `closesAt` unless won back. */
  | { kind: 'churn'; at: string; customerId: string; floorAt: string; floor: number; closesAt?: string }
  /**
   * A touchpoint that reached the customer at `at` (its sendAt, or when it arrived if later), the
   * effect configured for its trigger, and what the customer does: `persuaded` customers perform
   * `action` at `actionAt` (unless they do it sooner anyway). For activation, binding and renewal,
   * `naturalActionAt` is when the customer would have done it untouched (null: never).
   */
  | {
      kind: 'treatment'
      at: string
      customerId: string
      id: string
      trigger: string
      channel: Channel
      cardId?: string
      sendAt: string
      persuaded: boolean
      action: Action
      actionAt?: string
      naturalActionAt?: string | null
      effect: Effect
    }
  /** A malformed message written after the event `eventId` on its stream. */
  | { kind: 'malformed'; at: string; customerId: string; stream: EventType; reason: string; eventId: string }

const RANK: Record<TruthRecord['kind'], number> = { config: 0, customer: 1, churn: 2, dormancy: 3, fraud: 4, treatment: 5, malformed: 6 }

export function compareTruth(a: TruthRecord, b: TruthRecord): number {
  if (a.at !== b.at) return a.at < b.at ? -1 : 1
  if (a.kind !== b.kind) return RANK[a.kind] - RANK[b.kind]
  const ca = 'customerId' in a ? a.customerId : ''
  const cb = 'customerId' in b ? b.customerId : ''
  if (ca !== cb) return ca < cb ? -1 : 1
  const ia = a.kind === 'treatment' ? a.id : a.kind === 'fraud' ? a.eventIds[0] : a.kind === 'malformed' ? a.eventId : ''
  const ib = b.kind === 'treatment' ? b.id : b.kind === 'fraud' ? b.eventIds[0] : b.kind === 'malformed' ? b.eventId : ''
  return ia < ib ? -1 : ia > ib ? 1 : 0
}
