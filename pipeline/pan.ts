/**
 * PAN detection and masking. A card number is 13–19 digits passing the Luhn check, written
 * either as one run of digits or in groups of four separated by single spaces or dashes.
 */

const PAN_LIKE = /(?<![0-9])(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2}[ -]\d{1,7}|\d{4}[ -]\d{6}[ -]\d{5})(?![0-9])/g

export function luhnValid(digits: string): boolean {
  let sum = 0
  let double = false
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48
    if (double) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
    double = !double
  }
  return sum % 10 === 0
}

function panDigits(match: string): string | undefined {
  const digits = match.replace(/[ -]/g, '')
  return digits.length >= 13 && digits.length <= 19 && luhnValid(digits) ? digits : undefined
}

export function containsPan(text: string): boolean {
  for (const m of text.matchAll(PAN_LIKE)) if (panDigits(m[0])) return true
  return false
}

/** Replaces every PAN-like run with asterisks, keeping its last four digits. */
export function maskPans(text: string): string {
  return text.replace(PAN_LIKE, (m) => {
    const digits = panDigits(m)
    return digits ? '*'.repeat(digits.length - 4) + digits.slice(-4) : m
  })
}
