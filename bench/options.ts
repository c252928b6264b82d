import { InvalidArgumentError } from 'commander'

/** Commander parser for a whole-number option: a bad value stops the benchmark with one line, before any work. */
export const wholeNumber = (min: number) => (value: string) => {
  const n = Number(value)
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`must be a whole number of at least ${min}`)
  return n
}
