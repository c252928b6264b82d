import type { InputEvent } from '../schemas/events.ts'
import type { StreamTopics, TopicSender } from '../simulator/produce.ts'

/**
 * A flood of bad input around good: after each event, `perEvent` poison messages on its stream —
 * cut-off JSON, a card number, a schema violation, an unknown type, a JSON array, and every
 * hundredth one over the 64 KiB limit — each with a key of its own, so they spread over the
 * partitions as a misbehaving producer's would.
 */
export async function producePoisoned(producer: TopicSender, topics: StreamTopics, events: readonly InputEvent[], perEvent: number): Promise<number> {
  let poison = 0
  for (let i = 0; i < events.length; i += 500) {
    const batch: Record<string, { key: string; value: string }[]> = {}
    for (const e of events.slice(i, i + 500)) {
      const messages = (batch[topics[e.type]] ??= [])
      messages.push({ key: e.customerId, value: JSON.stringify(e) })
      for (let k = 0; k < perEvent; k++) messages.push({ key: `poison-${poison}`, value: poisonMessage(e, poison++) })
    }
    await producer.send(Object.entries(batch).map(([topic, messages]) => ({ topic, messages })))
  }
  return poison
}

function poisonMessage(e: InputEvent, n: number): string {
  const copy = { ...e, eventId: `${e.eventId}-poison-${n}` }
  if (n % 100 === 99) return JSON.stringify({ ...copy, note: 'x'.repeat(70 * 1024) })
  switch (n % 5) {
    case 0:
      return JSON.stringify(copy).slice(0, 40)
    case 1:
      return JSON.stringify({ ...copy, note: 'card 4111111111111111' })
    case 2:
      return JSON.stringify({ ...copy, occurredAt: 'yesterday' })
    case 3:
      return JSON.stringify({ ...copy, type: 'refund' })
    default:
      return JSON.stringify([copy.eventId])
  }
}
