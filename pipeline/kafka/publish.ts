import type { RiskAlert } from '../../schemas/alert.ts'
import type { DeadLetter } from '../../schemas/deadLetter.ts'
import type { KafkaProducer } from './types.ts'

/**
 * Publishing the outbox's alerts and late events' dead letters. Each send resolves only once every
 * in-sync replica has the messages (acks=all), so the outbox drain acknowledges an entry only
 * after the broker has it; a repeat after a crash carries the same id and key.
 */

/** The message key of a dead letter: its source coordinates, which its id is a hash of. */
export const deadLetterKey = (q: DeadLetter) => `${q.source.topic}:${q.source.partition}:${q.source.offset}`

/** Alerts to the alert topic, keyed by customer. */
export const alertPublisher =
  (producer: KafkaProducer, topic: string) =>
  (alerts: RiskAlert[]): Promise<void> =>
    producer.send([{ topic, messages: alerts.map((a) => ({ key: a.customerId, value: JSON.stringify(a) })) }])

/** Dead letters to the dead-letter topic, keyed by their source coordinates. */
export const deadLetterPublisher =
  (producer: KafkaProducer, topic: string) =>
  (deadLetters: DeadLetter[]): Promise<void> =>
    producer.send([{ topic, messages: deadLetters.map((q) => ({ key: deadLetterKey(q), value: JSON.stringify(q) })) }])
