import { createHash } from 'node:crypto'

/** Which embedded partition owns a customer (Kafka partitions by its own key hash). */
export function partitionOf(customerId: string, partitions: number): number {
  if (partitions === 1) return 0
  return createHash('md5').update(customerId).digest().readUInt32BE(0) % partitions
}
