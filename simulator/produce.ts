import type { InputEvent } from '../schemas/events.ts'

/** The input topic of each stream. */
export type StreamTopics = Record<InputEvent['type'], string>

/** What sends keyed messages to topics and resolves once the broker has them (the pipeline's Kafka producer). */
export interface TopicSender {
  send(batch: { topic: string; messages: { key: string; value: string }[] }[]): Promise<void>
}

/** Produces events to their stream's topic, keyed by customer, a thousand at a time. */
export async function produceStreams(producer: TopicSender, topics: StreamTopics, events: readonly InputEvent[], onProgress?: (sent: number) => void) {
  for (let i = 0; i < events.length; i += 1000) {
    const chunk = events.slice(i, i + 1000)
    await producer.send(
      (Object.keys(topics) as InputEvent['type'][]).map((type) => ({
        topic: topics[type],
        messages: chunk.filter((e) => e.type === type).map((e) => ({ key: e.customerId, value: JSON.stringify(e) })),
      })),
    )
    onProgress?.(i + chunk.length)
  }
}
