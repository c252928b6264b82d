import type { KafkaClient } from '../pipeline/kafka/types.ts'

/**
 * The raw ceiling of the live pipeline on this machine: the same client (KafkaJS or librdkafka,
 * with the stages' fetch settings, pipeline/kafka/) reading the same input topics from the
 * beginning in a fresh consumer group and parsing each message's JSON, nothing else. Timed from
 * before connecting until `messages` messages are read, as `run` catching up is timed from its start.
 */
export async function readCeiling(o: { kafka: KafkaClient; topics: string[]; groupId: string; messages: number; sessionTimeout?: number }) {
  const started = process.hrtime.bigint()
  let read = 0
  let parsedBytes = 0
  let done!: () => void
  const allRead = new Promise<void>((r) => (done = r))
  const consumer = o.kafka.groupConsumer({
    groupId: o.groupId,
    topics: o.topics,
    ...(o.sessionTimeout ? { sessionTimeout: o.sessionTimeout } : {}),
    eachBatch: async (batch) => {
      for (const m of batch.messages) {
        if (m.value) {
          const value = JSON.parse(m.value.toString('utf8')) as { type?: unknown }
          if (value.type !== undefined) parsedBytes += m.value.length
        }
        read++
      }
      if (read >= o.messages) done()
    },
  })
  await consumer.start()
  try {
    await allRead
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    return { messages: read, seconds, eventsPerSecond: read / seconds, megabytesPerSecond: parsedBytes / 1048576 / seconds }
  } finally {
    await consumer.stop()
  }
}
