import { InvalidArgumentError } from 'commander'

/** Commander parser for a whole-number option: a bad value stops the benchmark with one line, before any work. */
export const wholeNumber = (min: number) => (value: string) => {
  const n = Number(value)
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`must be a whole number of at least ${min}`)
  return n
}

/** Commander parser for --kafka-client of the benchmarks: one client, or both in turn. */
export const kafkaClientChoice = (value: string) => {
  if (value !== 'kafkajs' && value !== 'rdkafka' && value !== 'both') throw new InvalidArgumentError('must be kafkajs, rdkafka or both')
  return value
}
