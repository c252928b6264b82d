import { createHash } from 'node:crypto'

/** Deterministic ids: the same occurrence always gets the same id, so receivers can deduplicate. */
function digest(...parts: string[]): string {
  return createHash('sha256').update(parts.join('\u001f')).digest('hex')
}

export const decisionId = (trigger: string, customerId: string, occurrence: string) =>
  `d_${digest('decision', trigger, customerId, occurrence).slice(0, 32)}`

export const alertId = (kind: string, customerId: string, occurrence: string) =>
  `a_${digest('alert', kind, customerId, occurrence).slice(0, 32)}`

export const deadLetterId = (topic: string, partition: number, offset: string) =>
  `q_${digest('dlq', topic, String(partition), offset).slice(0, 32)}`

/** A stable bucket in [0, 10000) for holdout assignment of a customer to a trigger's control group. */
export function holdoutBucket(customerId: string, trigger: string): number {
  return parseInt(digest('holdout', customerId, trigger).slice(0, 8), 16) % 10_000
}

/**
 * A stable bucket in [0, 10000) for the global control group: the customer alone, salted apart
 * from the per-trigger holdout so that the two assignments are independent.
 */
export function globalHoldoutBucket(customerId: string): number {
  return parseInt(digest('global-holdout', customerId).slice(0, 8), 16) % 10_000
}
