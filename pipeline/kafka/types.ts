/**
 * The Kafka client as the live pipeline sees it: what the stages, the publishers, `simulate` and
 * the benchmarks use, and no more. Two implementations sit behind it, chosen by KAFKA_CLIENT:
 * KafkaJS (`kafkajs.ts`, the default) and librdkafka through node-rdkafka (`rdkafka.ts`).
 * Offsets are decimal strings, as both clients give them (they may pass 2^53).
 */

export type KafkaClientKind = 'kafkajs' | 'rdkafka'

export interface TopicPartition {
  topic: string
  partition: number
}

/** A committed position: `offset` is the next offset to read. */
export interface TopicPartitionOffset extends TopicPartition {
  offset: string
}

export interface ConsumedMessage {
  offset: string
  key: Buffer | null
  value: Buffer | null
}

/** What one partition delivered in one fetch, in offset order. */
export interface PartitionBatch extends TopicPartition {
  /** Never empty. */
  messages: ConsumedMessage[]
  /** Offset of the last message. */
  lastOffset: string
  /** The partition's end as the broker last reported it: one past its newest message. */
  highWatermark: string
}

/** Whether a batch reached the end of its partition as far as the broker knew (no consumer lag). */
export const readToEnd = (batch: PartitionBatch) => BigInt(batch.lastOffset) + 1n >= BigInt(batch.highWatermark)

export interface GroupConsumerOptions {
  groupId: string
  topics: string[]
  sessionTimeout?: number
  /**
   * Takes one partition's batch. Batches of different partitions may be taken concurrently; the
   * next batch of a partition comes only after this resolves, from after the batch. If it
   * rejects, the partition is fetched again from the batch's first offset after a backoff.
   * Offsets are never committed by the consumer itself: only through `commit`.
   */
  eachBatch(batch: PartitionBatch): Promise<void>
  /** The whole new assignment of this member, after every rebalance (may be empty). */
  onAssigned?(assignment: TopicPartition[]): void
  /** Partitions are about to move: what this member owns is no longer certain. */
  onRebalancing?(): void
}

export interface GroupConsumer {
  /** Connects, joins the group and starts delivering batches; a partition with no committed offset is read from its beginning. */
  start(): Promise<void>
  /** Stops fetching from these partitions (a batch already under way still completes). */
  pause(partitions: TopicPartition[]): void
  /** Fetches again from these partitions, from after the last batch delivered. */
  resume(partitions: TopicPartition[]): void
  /** Commits these positions for the group; resolves when the broker has them. */
  commit(offsets: TopicPartitionOffset[]): Promise<void>
  /** Leaves the group once the batches under way are done. */
  stop(): Promise<void>
}

export interface ProducedMessage {
  key: string
  value: string | Buffer
  /** An explicit partition; without it the key chooses (murmur2, as the Java client does). */
  partition?: number
}

export interface TopicMessages {
  topic: string
  messages: ProducedMessage[]
}

export interface ProducerOptions {
  /** Idempotent producer: no duplicate or reordering from its own retries. */
  idempotent?: boolean
  /** Whether producing to a missing topic may create it (where the broker allows it). */
  allowAutoTopicCreation?: boolean
}

export interface KafkaProducer {
  /**
   * Produces the messages, in order per partition, and resolves only once the broker has every
   * one of them on all in-sync replicas (acks=all); rejects if any could not be delivered.
   */
  send(batch: TopicMessages[]): Promise<void>
  close(): Promise<void>
}

export interface PartitionOffsets {
  partition: number
  /** The first offset still on the broker. */
  low: string
  /** One past the newest message. */
  high: string
}

export interface KafkaAdmin {
  /** Creates the topics that do not exist yet, with `partitions` partitions each, and waits for their leaders. */
  ensureTopics(topics: string[], partitions: number): Promise<void>
  /** The partition ids of a topic, in order. */
  partitions(topic: string): Promise<number[]>
  /** A group's committed offsets for the partitions of these topics, in partition order; `-1` where it has none. */
  committedOffsets(groupId: string, topics: string[]): Promise<TopicPartitionOffset[]>
  /** Each partition's low and high offsets, in partition order. */
  topicOffsets(topic: string): Promise<PartitionOffsets[]>
  deleteTopics(topics: string[]): Promise<void>
  close(): Promise<void>
}

/**
 * How to reach brokers that want more than plaintext: SASL (PLAIN or SCRAM) and TLS, both
 * clients alike. SASL without TLS sends a PLAIN password in the clear: use it only on a private
 * network.
 */
export interface KafkaSecurity {
  sasl?: { mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; username: string; password: string }
  /** TLS to the brokers; `ca`: PEM of the authority that signed their certificates (default: the system's). */
  tls?: { ca?: string }
}

export interface KafkaClient {
  readonly kind: KafkaClientKind
  readonly brokers: string[]
  /** A connected admin; a broker it cannot reach is an `UnavailableError`. */
  admin(): Promise<KafkaAdmin>
  /** A connected producer; a broker it cannot reach is an `UnavailableError`. */
  producer(opts?: ProducerOptions): Promise<KafkaProducer>
  groupConsumer(opts: GroupConsumerOptions): GroupConsumer
}
