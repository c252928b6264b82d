import { parentPort, workerData } from 'node:worker_threads'
import { runShard, type ShardOptions } from './replayShard.ts'

/**
 * A replay shard on its own thread: reports bytes read for the progress bar, its last event time
 * (answered with the whole input's, at which every shard ends), then its results.
 */
let last = 0
const options = workerData as ShardOptions
const result = await runShard({
  ...options,
  onBytes(bytes) {
    if (bytes - last < 1 << 20) return
    last = bytes
    parentPort!.postMessage({ bytes })
  },
  lastEventTime:
    options.shards === 1
      ? undefined
      : (own) =>
          new Promise((resolve) => {
            parentPort!.once('message', (m: { lastEventTime: number }) => resolve(m.lastEventTime))
            parentPort!.postMessage({ lastEventTime: own })
          }),
})
parentPort!.postMessage({ result })
