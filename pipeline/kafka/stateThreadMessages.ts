import type { Catalog } from '../../schemas/catalog.ts'
import type { RoundTrips } from '../store/redis.ts'
import type { EventName } from '../../core/instrumentation.ts'
import type { StateStageOptions } from './stateStage.ts'
import type { KafkaClientKind, KafkaSecurity } from './types.ts'

/** What the main thread gives a state thread (pipeline/kafka/stateThreads.ts), and what the thread reports back. */

export interface StateThreadOptions {
  thread: number
  kafkaClient: KafkaClientKind
  brokers: string[]
  kafkaSecurity?: KafkaSecurity
  redisUrl: string
  redisPrefix: string
  connectTimeout: number
  catalog: Catalog
  /** The shadow catalogue, if any (processor.ts, `shadowCatalog`). */
  shadowCatalog?: Catalog
  stage: Pick<StateStageOptions, 'groupId' | 'eventsTopic' | 'sessionTimeout' | 'allowedLateness' | 'idleAdvance' | 'inputTopics' | 'cachedCustomers'>
}

/** A state thread's V8 heap, in bytes: in use, and taken from the system (what its resident memory holds). */
export interface ThreadHeap {
  used: number
  committed: number
}

export type StateThreadMessage =
  | { type: 'event'; name: EventName; event: unknown }
  | { type: 'committed'; partition: number; nudge: boolean; roundTrips: RoundTrips; heap: ThreadHeap }
  | { type: 'started' }
  | { type: 'stopped' }
  | { type: 'failed'; message: string }
