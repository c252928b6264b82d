import type { Operator } from '../types.ts'
import { firstSwipe } from './firstSwipe.ts'
import { bindWallet } from './bindWallet.ts'
import { firstPurchase } from './firstPurchase.ts'
import { renewalReminder } from './renewal.ts'
import { birthdayGreeting } from './birthday.ts'
import { installmentOffer } from './installment.ts'
import { crossBorderOffer } from './crossBorder.ts'

/** The card-lifecycle and purchase-moment triggers (activation_reminder lives in ../activation.ts). */
export const LIFECYCLE_OPERATORS: readonly Operator<any, any>[] = [
  firstSwipe,
  bindWallet,
  firstPurchase,
  renewalReminder,
  birthdayGreeting,
  installmentOffer,
  crossBorderOffer,
]

export { firstSwipe, bindWallet, firstPurchase, renewalReminder, birthdayGreeting, installmentOffer, crossBorderOffer }
