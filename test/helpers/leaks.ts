/**
 * Whether a card number's digits appear anywhere in an output: as written, with the separators a
 * PAN may be written with (spaces, dashes) taken out, or inside anything base64 encoded in it.
 */
export function leaksPan(output: string, pan: string): boolean {
  const found = (text: string) => text.includes(pan) || text.replace(/[ -]/g, '').includes(pan)
  if (found(output)) return true
  for (const [chunk] of output.matchAll(/[A-Za-z0-9+/]{16,}={0,2}/g)) if (found(Buffer.from(chunk, 'base64').toString('latin1'))) return true
  return false
}
