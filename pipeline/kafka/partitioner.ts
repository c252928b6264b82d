import { Partitioners } from 'kafkajs'

/**
 * The partition of the events topic that carries a customer: Kafka's default partitioner (murmur2
 * of the key, as the Java client and librdkafka's `murmur2_random` pick it). Ingest addresses
 * every record to its partition itself, whichever client produces, so the customer's state lives
 * in that partition's Redis keys, where `explain` and `deliveries` find it with this same function.
 */
const murmur2 = Partitioners.DefaultPartitioner()
/** Per partition count: each key's partition, bounded so that a bank of any size cannot grow it without end. */
const known = new Map<number, Map<string, number>>()
const CACHED_KEYS = 1_000_000

export function eventsPartitionOf(key: string, partitions: number): number {
  let cache = known.get(partitions)
  if (!cache) known.set(partitions, (cache = new Map()))
  let partition = cache.get(key)
  if (partition === undefined) {
    const partitionMetadata = Array.from({ length: partitions }, (_, partitionId) => ({ partitionId, leader: 0, replicas: [0], isr: [0], partitionErrorCode: 0 }))
    partition = murmur2({ topic: 'events', partitionMetadata, message: { key, value: null } })
    if (cache.size >= CACHED_KEYS) cache.clear()
    cache.set(key, partition)
  }
  return partition
}
