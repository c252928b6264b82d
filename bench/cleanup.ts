import { rmSync } from 'node:fs'
import type { Admin } from 'kafkajs'
import { Redis } from 'ioredis'
import { StoreKeys } from '../pipeline/store/keys.ts'

/** Removes what a live benchmark made: its topics, its Redis keys (on a single server) and its data folder. */
export async function removeBenchData(o: { admin: Admin; topics: string[]; redisUrl: string; prefix: string; dataDir: string }) {
  await o.admin.deleteTopics({ topics: o.topics }).catch(() => {})
  await o.admin.disconnect()
  if (o.redisUrl.startsWith('redis://')) {
    const redis = new Redis(o.redisUrl)
    const keys = await redis.keys(new StoreKeys(o.prefix).pattern())
    if (keys.length) await redis.del(...keys)
    redis.disconnect()
  }
  rmSync(o.dataDir, { recursive: true, force: true })
}
