import { parentPort, workerData } from 'node:worker_threads'
import { runShard, type ShardOptions } from './replayShard.ts'

/** A replay shard on its own thread; reports bytes read for the progress bar, then its results. */
let last = 0
const result = await runShard({
  ...(workerData as ShardOptions),
  onBytes(bytes) {
    if (bytes - last < 1 << 20) return
    last = bytes
    parentPort!.postMessage({ bytes })
  },
})
parentPort!.postMessage({ result })
