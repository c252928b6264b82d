import type { Producer } from 'kafkajs'
import type { RiskAlert } from '../../schemas/alert.ts'
import type { DeadLetter } from '../../schemas/deadLetter.ts'

/**
 * Publishing the outbox's alerts and late events' dead letters. Each send resolves only once every
 * in-sync replica has the messages (`acks: -1`), so the outbox drain acknowledges an entry only
 * after the broker has it; a repeat after a crash carries the same id and key.
 */

/** The message key of a dead letter: its source coordinates, which its id is a hash of. */
export const deadLetterKey = (q: DeadLetter) => `${q.source.topic}:${q.source.partition}:${q.source.offset}`

/** Alerts to the alert topic, keyed by customer. */
export const alertPublisher =
  (producer: Producer, topic: string) =>
  async (alerts: RiskAlert[]): Promise<void> =>
    void (await producer.send({ topic, acks: -1, messages: alerts.map((a) => ({ key: a.customerId, value: JSON.stringify(a) })) }))

/** Dead letters to the dead-letter topic, keyed by their source coordinates. */
export const deadLetterPublisher =
  (producer: Producer, topic: string) =>
  async (deadLetters: DeadLetter[]): Promise<void> =>
    void (await producer.send({ topic, acks: -1, messages: deadLetters.map((q) => ({ key: deadLetterKey(q), value: JSON.stringify(q) })) }))
