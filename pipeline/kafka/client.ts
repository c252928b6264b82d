import type { Instrumentation } from '../../core/instrumentation.ts'
import { KafkajsClient } from './kafkajs.ts'
import { RdkafkaClient } from './rdkafka.ts'
import { reaching } from './reaching.ts'
import type { KafkaAdmin, KafkaClient, KafkaClientKind, KafkaSecurity } from './types.ts'

/**
 * The Kafka client as every command that talks to the broker makes it (run, simulate, the live
 * benchmark): KafkaJS or librdkafka (KAFKA_CLIENT), behind the one interface of `types.ts`, its
 * reconnects from the project's backoff policy, its log lines as instrumentation events, and a
 * broker it cannot reach reported as one line that says what to do.
 */

/** The topics of the live pipeline; `RunConfig` has them under these names. */
export interface PipelineTopics {
  transactionsTopic: string
  appEventsTopic: string
  lifecycleTopic: string
  /** The internal topic: validated events keyed by customer. */
  eventsTopic: string
  dlqTopic: string
  alertTopic: string
}

export interface KafkaClientOptions {
  /** Which client library; default kafkajs. */
  kind?: KafkaClientKind
  clientId: string
  brokers: string[]
  /** SASL and TLS; absent: plaintext. */
  security?: KafkaSecurity
  /** How long to keep trying to reach a broker before giving up (default 30 s). */
  connectTimeoutMs?: number
  /** Where the client's warnings and errors go; without it the client is silent. */
  instrumentation?: Instrumentation
}

/** The chosen client; rdkafka without node-rdkafka built is a ConfigError that says how to install it. */
export function createKafkaClient(opts: KafkaClientOptions): KafkaClient {
  return opts.kind === 'rdkafka' ? new RdkafkaClient(opts) : new KafkajsClient(opts)
}

/** A connected admin with the given topics created where missing. */
export async function connectAdmin(client: KafkaClient, topics: string[], partitions: number): Promise<KafkaAdmin> {
  const admin = await client.admin()
  try {
    await reaching(client.brokers, () => admin.ensureTopics(topics, partitions))
  } catch (e) {
    await admin.close().catch(() => {})
    throw e
  }
  return admin
}
