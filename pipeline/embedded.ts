import type { Catalog } from '../schemas/catalog.ts'
import type { DeadLetter } from '../schemas/deadLetter.ts'
import type { SourceItem } from './sources/ndjson.ts'
import { MemoryStore } from './store/memory.ts'
import { PartitionProcessor, type ProcessorOptions } from './processor.ts'
import type { BatchOutput, StreamMessage } from './stream.ts'
import { partitionOf } from './partitioner.ts'
import { rowOf } from './conversions.ts'
import { atEventTime } from './policy.ts'
import type { Conversion } from '../schemas/conversion.ts'

/**
 * The pipeline on embedded defaults (demo, replay): in-process streams, in-memory state, the same
 * operators, decision step and processor as the live pipeline.
 */

export interface EmbeddedOptions {
  catalog: () => Catalog
  /** A draft catalogue evaluated beside the live one (processor.ts, `shadowCatalog`). */
  shadowCatalog?: () => Catalog | undefined
  /** How far an event may trail the newest of its partition and still be applied in order: the watermark trails the newest event by this. */
  maxDisorder: number
  /** How far behind the watermark an event may arrive and still be applied, at once (default 0: dead-lettered). */
  allowedLateness?: number
  partitions?: number
  batchSize?: number
  /** Outbox kinds kept in the store for sinks (demo drains webhooks and rows; replay writes files). */
  outbox: ProcessorOptions['outbox']
  /** The default operators unless given (benchmarks measure subsets). */
  operators?: ProcessorOptions['operators']
  /** Receives every batch's output in order. */
  onOutput: (output: BatchOutput) => void | Promise<void>
  /** Receives input that failed decoding, in order with the batches. */
  onDeadLetter: (deadLetter: DeadLetter) => void | Promise<void>
}

export class EmbeddedPipeline {
  readonly store = new MemoryStore({ copy: false })
  readonly processors: PartitionProcessor[]
  private pending: StreamMessage[][]
  private sequence: number[]
  private maxEventTime = -Infinity

  constructor(private readonly opts: EmbeddedOptions) {
    const n = opts.partitions ?? 1
    this.processors = Array.from(
      { length: n },
      (_, partition) =>
        new PartitionProcessor({
          partition,
          store: this.store,
          catalog: opts.catalog,
          shadowCatalog: opts.shadowCatalog,
          watermarks: { maxDisorder: opts.maxDisorder },
          allowedLateness: opts.allowedLateness ?? 0,
          decisionTime: atEventTime,
          outbox: opts.outbox,
          operators: opts.operators,
        }),
    )
    this.pending = this.processors.map(() => [])
    this.sequence = this.processors.map(() => 0)
  }

  /** The event time the embedded streams have reached (for event-time clocks in the demo). */
  get eventTime() {
    return this.maxEventTime
  }

  async push(item: SourceItem) {
    await this.pushAll([item])
  }

  /** Takes items in order; awaits only when a partition's batch is full (no promise per event). */
  async pushAll(items: SourceItem[]) {
    const batchSize = this.opts.batchSize ?? 500
    for (const item of items) {
      if (!item.ok) {
        await this.opts.onDeadLetter(item.deadLetter)
        continue
      }
      const p = this.processors.length === 1 ? 0 : partitionOf(item.event.customerId, this.processors.length)
      if (item.at > this.maxEventTime) this.maxEventTime = item.at
      this.pending[p].push({ offset: String(++this.sequence[p]), event: item.event, at: item.at, source: item.source })
      if (this.pending[p].length >= batchSize) await this.flush(p)
    }
  }

  /**
   * End of input: apply what is buffered and fire the timers due by the last event time (of the
   * whole input, when other shards processed part of it).
   */
  async finish(lastEventTime = this.maxEventTime) {
    for (let p = 0; p < this.processors.length; p++) await this.flush(p)
    if (lastEventTime > -Infinity) for (const processor of this.processors) await this.opts.onOutput(await processor.advanceTo(lastEventTime))
  }

  /** The current state of every attribution window still open, as rows that are not final (replay's end of input). */
  openConversions(): Conversion[] {
    const rows: Conversion[] = []
    for (const processor of this.processors)
      for (const [customerId, rec] of this.store.records(processor.partition)) for (const w of rec.conversions ?? []) rows.push(rowOf(customerId, w, false, w.version))
    return rows
  }

  private async flush(p: number) {
    const batch = this.pending[p]
    if (!batch.length) return
    this.pending[p] = []
    await this.opts.onOutput(await this.processors[p].process(batch))
  }
}
