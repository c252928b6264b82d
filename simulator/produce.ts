import type { Producer } from 'kafkajs'
import type { InputEvent } from '../schemas/events.ts'

/** The input topic of each stream. */
export type StreamTopics = Record<InputEvent['type'], string>

/** Produces events to their stream's topic, keyed by customer, a thousand at a time. */
export async function produceStreams(producer: Producer, topics: StreamTopics, events: readonly InputEvent[], onProgress?: (sent: number) => void) {
  for (let i = 0; i < events.length; i += 1000) {
    const chunk = events.slice(i, i + 1000)
    await producer.sendBatch({
      topicMessages: (Object.keys(topics) as InputEvent['type'][]).map((type) => ({
        topic: topics[type],
        messages: chunk.filter((e) => e.type === type).map((e) => ({ key: e.customerId, value: JSON.stringify(e) })),
      })),
    })
    onProgress?.(i + chunk.length)
  }
}
