import { Worker } from 'node:worker_threads'
import type { Catalog } from '../../schemas/catalog.ts'
import type { RoundTrips } from '../store/redis.ts'
import type { Instrumentation, InstrumentationEvents } from '../../core/instrumentation.ts'
import type { StateThreadMessage, StateThreadOptions, ThreadHeap } from './stateThreadMessages.ts'

/**
 * The state stage on several threads. Each thread is a member of the state stage's consumer group
 * (pipeline/kafka/stateWorker.ts), so Kafka shares the partitions of the events topic among the
 * threads of every process exactly as among processes: ownership, fencing and the effectively-once
 * commit are the single-threaded stage's, and the process still scales out by adding processes.
 * The main thread keeps ingest, the outbox drain and HTTP; it logs and counts what the threads
 * report, and tells them when the catalogue changes.
 */

export interface StateThreadsOptions extends Omit<StateThreadOptions, 'thread'> {
  threads: number
  instrumentation: Instrumentation
  /** A commit put something in the outbox that should go now (`run` nudges the drain). */
  onOutbox: () => void
  /** A thread stopped without being asked to: the pipeline cannot go on as configured. */
  onFailed: (error: Error) => void
}

/**
 * Young generation of a state thread: every event replaces its customer's record, and with V8's
 * default semi-spaces the replaced versions are promoted and collected by full collections.
 */
const YOUNG_GENERATION_MB = 128

interface Thread {
  worker: Worker
  owned: number[]
  roundTrips: RoundTrips
  heap: ThreadHeap
  stopping: boolean
  /** Resolves when the thread has exited. */
  exited: Promise<void>
}

export class StateThreads {
  private readonly threads: Thread[] = []

  constructor(private readonly opts: StateThreadsOptions) {}

  /** Starts every thread; resolves when each has joined the group, rejects with the first failure. */
  async start(): Promise<void> {
    const { threads, instrumentation: _, onOutbox: __, onFailed: ___, ...base } = this.opts
    await Promise.all(Array.from({ length: threads }, (_, thread) => this.spawn({ ...base, thread })))
  }

  private spawn(options: StateThreadOptions): Promise<void> {
    const worker = new Worker(new URL('./stateWorker.js', import.meta.url), { workerData: options, resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB } })
    const thread: Thread = { worker, owned: [], roundTrips: { load: 0, commit: 0, outbox: 0 }, heap: { used: 0, committed: 0 }, stopping: false, exited: new Promise((resolve) => worker.once('exit', () => resolve())) }
    this.threads.push(thread)
    const events = this.opts.instrumentation
    return new Promise((resolve, reject) => {
      let started = false
      worker.on('message', (m: StateThreadMessage) => {
        if (m.type === 'event') {
          if (m.name === 'pipeline.assigned') thread.owned = (m.event as InstrumentationEvents['pipeline.assigned']).partitions
          events.emit(m.name, m.event as never)
        } else if (m.type === 'committed') {
          thread.roundTrips = m.roundTrips
          thread.heap = m.heap
          if (m.nudge) this.opts.onOutbox()
        } else if (m.type === 'stopped') {
          void worker.terminate()
        } else if (m.type === 'started') {
          started = true
          resolve()
        } else if (m.type === 'failed') {
          thread.stopping = true
          void worker.terminate()
          reject(new Error(`state thread ${options.thread}: ${m.message}`))
        }
      })
      const failed = (error: Error) => {
        thread.owned = []
        if (!started) reject(error)
        else if (!thread.stopping) this.opts.onFailed(error)
      }
      worker.once('error', failed)
      worker.once('exit', (code) => failed(new Error(`state thread ${options.thread} stopped (exit code ${code})`)))
    })
  }

  /** Stops reading on every thread and waits for the steps under way to commit. */
  async stop(): Promise<void> {
    for (const thread of this.threads) {
      thread.stopping = true
      thread.worker.postMessage({ type: 'stop' })
    }
    await Promise.all(this.threads.map((t) => t.exited))
  }

  /** The partitions of the events topic the threads own now, in order. */
  owned(): number[] {
    return this.threads.flatMap((t) => t.owned).sort((a, b) => a - b)
  }

  /** The catalogue reloaded in the main thread applies to the threads' next steps. */
  setCatalog(catalog: Catalog): void {
    for (const t of this.threads) t.worker.postMessage({ type: 'catalog', catalog })
  }

  /** Likewise the shadow catalogue. */
  setShadowCatalog(catalog: Catalog): void {
    for (const t of this.threads) t.worker.postMessage({ type: 'shadowCatalog', catalog })
  }

  /** Each thread's V8 heap at its last commit. */
  heaps(): ThreadHeap[] {
    return this.threads.map((t) => t.heap)
  }

  /** The state stage's Redis round trips so far, summed over the threads. */
  roundTrips(): RoundTrips {
    const sum: RoundTrips = { load: 0, commit: 0, outbox: 0 }
    for (const t of this.threads) for (const k of Object.keys(sum) as (keyof RoundTrips)[]) sum[k] += t.roundTrips[k]
    return sum
  }
}
