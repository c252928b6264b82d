import { rmSync } from 'node:fs'
import { Redis } from 'ioredis'
import type { KafkaAdmin } from '../pipeline/kafka/types.ts'
import { StoreKeys } from '../pipeline/store/keys.ts'

/** Removes what a live benchmark made: its topics, its Redis keys (on a single server) and its data folder. */
export async function removeBenchData(o: { admin: KafkaAdmin; topics: string[]; redisUrl: string; prefix: string; dataDir: string }) {
  await o.admin.deleteTopics(o.topics).catch(() => {})
  await o.admin.close()
  if (o.redisUrl.startsWith('redis://')) {
    const redis = new Redis(o.redisUrl)
    const keys = await redis.keys(new StoreKeys(o.prefix).pattern())
    if (keys.length) await redis.del(...keys)
    redis.disconnect()
  }
  rmSync(o.dataDir, { recursive: true, force: true })
}
