/**
 * The one place Redis keys are built. Every key of a partition carries the hash tag
 * `{<prefix>:p<partition>}`, so a partition's keys share one Redis Cluster slot and a Lua script
 * may touch all of them atomically.
 */

export interface PartitionKeys {
  /** hash: appliedOffset (absent = null), watermark */
  meta: string
  /** hash: customerId → JSON CustomerRecord */
  customers: string
  /** sorted set: timer member → due time (epoch ms) */
  timers: string
  /** stream: field `v` = JSON OutboxRow, oldest first; entry ids are the outbox ids */
  rows: string
  /** stream: field `v` = JSON RiskAlert, oldest first */
  alerts: string
  /** stream: field `v` = JSON DeadLetter (late events), oldest first */
  deadLetters: string
  /** list: the outbox rows as kept before the streams; adopted into `rows` at load */
  formerRows: string
  /** list: the outbox alerts as kept before the streams; adopted into `alerts` at load */
  formerAlerts: string
  /** sorted set: decisionId → dueAt (epoch ms) */
  webhooksDue: string
  /** hash: decisionId → JSON PendingWebhook */
  webhooksBody: string
  /** hash: decisionId → '' while a dispatcher sends it, or the JSON cancelled row of a cancellation that came meanwhile */
  webhooksClaims: string
}

export class StoreKeys {
  constructor(readonly prefix: string) {
    // Braces would move the hash tag; ':' and '*' are fine but an empty prefix is a mistake.
    if (!prefix || /[{}]/.test(prefix)) throw new Error(`invalid Redis key prefix ${JSON.stringify(prefix)}: must be non-empty, without { or }`)
  }

  /** The hash tag shared by all keys of a partition. */
  tag(partition: number): string {
    if (!Number.isSafeInteger(partition) || partition < 0) throw new Error(`invalid partition ${partition}`)
    return `{${this.prefix}:p${partition}}`
  }

  partition(partition: number): PartitionKeys {
    const base = `${this.prefix}:${this.tag(partition)}`
    return {
      meta: `${base}:meta`,
      customers: `${base}:customers`,
      timers: `${base}:timers`,
      rows: `${base}:outbox:rows`,
      alerts: `${base}:outbox:alerts`,
      deadLetters: `${base}:outbox:dlq`,
      formerRows: `${base}:rows`,
      formerAlerts: `${base}:alerts`,
      webhooksDue: `${base}:webhooks:due`,
      webhooksBody: `${base}:webhooks:body`,
      webhooksClaims: `${base}:webhooks:claims`,
    }
  }

  /** sorted set: decisionId -> dueAt (epoch ms) of a channel's due webhooks set aside while its endpoint cannot take them */
  parked(partition: number, channel: string): string {
    return `${this.prefix}:${this.tag(partition)}:webhooks:parked:${channel}`
  }

  /** A SCAN pattern matching every key under this prefix (for tests and tooling). */
  pattern(): string {
    return `${this.prefix.replace(/[*?[\]\\]/g, '\\$&')}:*`
  }
}
