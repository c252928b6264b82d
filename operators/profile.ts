import type { InputEvent, Channel } from '../schemas/events.ts'
import type { CustomerProfile } from './types.ts'

/**
 * The customer's profile and marketing consent, folded from lifecycle and app events.
 * Consent is granted unless withdrawn: customers opt in to service marketing when they apply.
 */

export function initialProfile(): CustomerProfile {
  return { timezone: 'Asia/Shanghai', homeCountry: 'CN', consent: {} }
}

const CHANNELS: Channel[] = ['sms', 'push', 'call', 'app_banner']

export function foldProfile(profile: CustomerProfile, event: InputEvent): CustomerProfile {
  if (event.type === 'lifecycle' && event.profile) {
    const given = Object.fromEntries(Object.entries(event.profile).filter(([, v]) => v !== undefined))
    return { ...profile, ...given }
  }
  if (event.type === 'app' && event.name === 'consent_changed' && event.attributes) {
    const channel = String(event.attributes.channel)
    const granted = event.attributes.granted === true
    const consent = { ...profile.consent }
    for (const c of channel === 'all' ? CHANNELS : [channel as Channel]) consent[c] = granted
    return { ...profile, consent }
  }
  return profile
}

export function hasConsent(profile: CustomerProfile, channel: Channel): boolean {
  return profile.consent[channel] !== false
}
