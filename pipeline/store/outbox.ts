import type { OutboxQueues } from '../../sinks/outbox.ts'
import type { StateStore } from './types.ts'

/** A store's outbox as the sinks' queues: what they drain, and nothing else of the store. */
export const outboxQueues = (store: StateStore): OutboxQueues => ({
  rows: { peek: (p, max) => store.peekRows(p, max), ack: (p, ids) => store.ackRows(p, ids) },
  alerts: { peek: (p, max) => store.peekAlerts(p, max), ack: (p, ids) => store.ackAlerts(p, ids) },
  deadLetters: { peek: (p, max) => store.peekDeadLetters(p, max), ack: (p, ids) => store.ackDeadLetters(p, ids) },
})
