import { createHash } from 'node:crypto'

/** Which embedded partition owns a customer (Kafka partitions by its own key hash). */
const hashes = new Map<string, number>()

export function partitionOf(customerId: string, partitions: number): number {
  if (partitions === 1) return 0
  let hash = hashes.get(customerId)
  if (hash === undefined) {
    hash = createHash('md5').update(customerId).digest().readUInt32BE(0)
    if (hashes.size >= 1_000_000) hashes.clear()
    hashes.set(customerId, hash)
  }
  return hash % partitions
}
