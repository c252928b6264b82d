import type { Operator } from '../types.ts'
import { dormancyWakeup } from './dormancy.ts'
import { churnRetention } from './churn.ts'
import { spendThresholdChallenge } from './spendChallenge.ts'
import { limitUpgradeOffer } from './limitUpgrade.ts'

/** The spend-based marketing operators: dormancy, churn, monthly challenge, limit upgrade. */
export const SPEND_OPERATORS: readonly Operator<any, any>[] = [dormancyWakeup, churnRetention, spendThresholdChallenge, limitUpgradeOffer]

export { dormancyWakeup, churnRetention, spendThresholdChallenge, limitUpgradeOffer }
