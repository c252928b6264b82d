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

/**
 * The PAN-like runs of a text as [start, end) spans, in order, overlapping ones merged. Groups
 * are searched again from their second group on, so that a card number written in groups is
 * found after another group too ("ref 1234 4539 1488 0343 6467").
 */
function panSpans(text: string): [number, number][] {
  const spans: [number, number][] = []
  PAN_LIKE.lastIndex = 0
  for (let m: RegExpExecArray | null; (m = PAN_LIKE.exec(text)); ) {
    const start = m.index
    const end = start + m[0].length
    if (panDigits(m[0])) {
      const last = spans[spans.length - 1]
      if (last && start < last[1]) last[1] = Math.max(last[1], end)
      else spans.push([start, end])
    }
    if (m[0][4] === ' ' || m[0][4] === '-') PAN_LIKE.lastIndex = start + 5
  }
  return spans
}

export function containsPan(text: string): boolean {
  return panSpans(text).length > 0
}

/** Replaces every PAN-like run with asterisks, keeping its last four digits. */
export function maskPans(text: string): string {
  const spans = panSpans(text)
  if (!spans.length) return text
  let out = ''
  let at = 0
  for (const [start, end] of spans) {
    const digits = text.slice(start, end).replace(/[ -]/g, '')
    out += text.slice(at, start) + '*'.repeat(digits.length - 4) + digits.slice(-4)
    at = end
  }
  return out + text.slice(at)
}

/**
 * Masks PAN-like runs in raw bytes, whatever their encoding: digits, spaces and dashes are one
 * byte each in UTF-8 and every ASCII-compatible encoding, and such a byte is never part of a
 * multi-byte UTF-8 character, so the bytes are masked as one Latin-1 character each — exactly
 * what `maskPans` does to the same bytes read as UTF-8 text.
 */
export function maskPanBytes(buf: Buffer): Buffer {
  const bytes = buf.toString('latin1')
  const masked = maskPans(bytes)
  return masked === bytes ? buf : Buffer.from(masked, 'latin1')
}
