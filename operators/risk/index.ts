import type { Operator } from '../types.ts'
import { impossibleTravel } from './impossibleTravel.ts'
import { nightBurst } from './nightBurst.ts'
import { cardTesting } from './cardTesting.ts'
import { cashoutPattern } from './cashoutPattern.ts'
import { newDeviceLargeAmount } from './newDeviceLargeAmount.ts'
import { velocity } from './velocity.ts'
import { amountAnomaly } from './amountAnomaly.ts'
import { prohibitedUse } from './prohibitedUse.ts'

/** One operator per risk signal of the catalogue (CONTRACT.md §4), in the contract's order. */
export const RISK_OPERATORS: readonly Operator<any, any>[] = [
  impossibleTravel,
  nightBurst,
  cardTesting,
  cashoutPattern,
  newDeviceLargeAmount,
  velocity,
  amountAnomaly,
  prohibitedUse,
]
