import type { AppEvent, InputEvent, LifecycleEvent, TransactionEvent, Channel } from '../schemas/events.ts'
import { mulberry32 } from './random.ts'

/**
 * The first synthetic bank, kept as it was because the demo's bundled sample (simulator/sample/)
 * was generated with it: `npx tsx simulator/sample.ts` regenerates those files byte for byte.
 * New work uses SimulatedBank (bank.ts). Also the scripted fraud scenarios and malformed inputs
 * that tests and the sample use.
 */

export interface LegacyBankOptions {
  customers: number
  /** First day of the simulated period (UTC midnight). */
  start: Date
  days: number
  seed: number
}

const HOUR = 3_600_000
const DAY = 24 * HOUR

const CITIES = [
  { city: 'Shanghai', lat: 31.23, lon: 121.47 },
  { city: 'Beijing', lat: 39.9, lon: 116.4 },
  { city: 'Shenzhen', lat: 22.54, lon: 114.06 },
  { city: 'Chengdu', lat: 30.66, lon: 104.06 },
  { city: 'Hangzhou', lat: 30.27, lon: 120.16 },
]
const MERCHANTS = [
  { id: 'm_grocer', name: 'FreshMart', mcc: '5411' },
  { id: 'm_cafe', name: 'Lucky Coffee', mcc: '5814' },
  { id: 'm_fuel', name: 'Sinopec Station', mcc: '5541' },
  { id: 'm_mall', name: 'Grand Mall', mcc: '5311' },
  { id: 'm_air', name: 'Eastern Air', mcc: '4511' },
  { id: 'm_elec', name: 'Digital City', mcc: '5732' },
  { id: 'm_dine', name: 'Hotpot House', mcc: '5812' },
]
const SEGMENTS = ['mass', 'mass', 'mass', 'affluent', 'young_professional', 'student']
const CHANNELS: Channel[] = ['sms', 'push', 'push', 'app_banner']

/** All events of the simulated period, sorted by event time (ties by eventId). */
export function simulateSampleBank(opts: LegacyBankOptions): InputEvent[] {
  const random = mulberry32(opts.seed)
  const pick = <T>(list: T[]) => list[Math.floor(random() * list.length)]
  const end = opts.start.getTime() + opts.days * DAY
  const events: InputEvent[] = []
  let seq = 0
  const iso = (ms: number) => new Date(Math.round(ms)).toISOString()
  const id = (prefix: string) => `${prefix}-${opts.seed}-${(++seq).toString(36)}`

  for (let n = 0; n < opts.customers; n++) {
    const customerId = `cust_${String(n).padStart(6, '0')}`
    const cardId = `tok_${(opts.seed * 7919 + n).toString(36)}`
    const home = pick(CITIES)
    const lifecycle = (stage: LifecycleEvent['stage'], at: number, extra: Partial<LifecycleEvent> = {}) => {
      if (at < end) events.push({ type: 'lifecycle', eventId: id('lc'), occurredAt: iso(at), customerId, cardId, stage, ...extra })
    }
    const app = (name: AppEvent['name'], at: number, extra: Partial<AppEvent> = {}) => {
      if (at < end) events.push({ type: 'app', eventId: id('app'), occurredAt: iso(at), customerId, name, ...extra } as AppEvent)
    }

    const appliedAt = opts.start.getTime() + random() * Math.min(opts.days * 0.6, 60) * DAY
    const birth = new Date(Date.UTC(1960 + Math.floor(random() * 45), Math.floor(random() * 12), 1 + Math.floor(random() * 28)))
    lifecycle('applied', appliedAt, {
      product: random() < 0.3 ? 'platinum' : 'classic',
      profile: {
        birthDate: birth.toISOString().slice(0, 10),
        timezone: 'Asia/Shanghai',
        homeCity: home.city,
        homeCountry: 'CN',
        homeLat: home.lat,
        homeLon: home.lon,
        segment: pick(SEGMENTS),
        preferredChannel: pick(CHANNELS),
      },
    })
    if (random() < 0.1) {
      lifecycle('declined', appliedAt + (2 + random() * 20) * HOUR)
      continue
    }
    const approvedAt = appliedAt + (1 + random() * 30) * HOUR
    const creditLimit = pick([5000, 10000, 20000, 50000])
    lifecycle('approved', approvedAt, { creditLimit })
    lifecycle('issued', approvedAt + (20 + random() * 30) * HOUR)
    const r = random()
    // Most activate within three days, some later (after a reminder would go out), some never.
    const activatedAt = r < 0.6 ? approvedAt + (2 + random() * 60) * HOUR : r < 0.85 ? approvedAt + (80 + random() * 200) * HOUR : undefined
    if (random() < 0.05) app('consent_changed', approvedAt + random() * 48 * HOUR, { attributes: { channel: 'all', granted: false } })
    if (activatedAt === undefined) continue
    lifecycle('activated', activatedAt)
    if (random() < 0.5) lifecycle('bound', activatedAt + (1 + random() * 120) * HOUR, { attributes: { wallet: pick(['alipay', 'wechat', 'applepay']) } })
    app('login', activatedAt + random() * 2 * HOUR, { deviceId: `dev_${n}` })

    // Spending: a daily rate per customer; some go quiet after a while.
    const rate = 0.2 + random() * 1.5
    const quietFrom = random() < 0.2 ? activatedAt + (5 + random() * 30) * DAY : Infinity
    let t = activatedAt + random() * 3 * DAY
    if (random() < 0.1) lifecycle('expiring', activatedAt + (10 + random() * 60) * DAY, { attributes: { expiresOn: new Date(activatedAt + 90 * DAY).toISOString().slice(0, 10) } })
    const traveller = random() < 0.15
    while (t < end && t < quietFrom) {
      const abroad = traveller && random() < 0.1
      const merchant = abroad ? { id: 'm_duty_free', name: 'Narita Duty Free', mcc: '5309' } : pick(MERCHANTS)
      const place = abroad ? { city: 'Tokyo', country: 'JP', lat: 35.77, lon: 140.39 } : { city: home.city, country: 'CN', lat: home.lat, lon: home.lon }
      // Mostly everyday amounts; now and then a big-ticket purchase.
      const amount = random() < 0.01 ? 5000 + Math.round(random() * 20000) : Math.round(Math.exp(3 + random() * 4) * 100) / 100
      const tx: TransactionEvent = {
        type: 'transaction',
        eventId: id('tx'),
        occurredAt: iso(t),
        customerId,
        cardId,
        amount: Math.max(1, amount),
        currency: 'CNY',
        status: random() < 0.97 ? 'approved' : 'declined',
        channel: pick(['pos', 'ecom', 'qr', 'wallet']),
        cardPresent: random() < 0.6,
        merchant: { ...merchant, ...place },
      }
      events.push(tx)
      if (random() < 0.15) app('login', t - random() * HOUR, { deviceId: `dev_${n}` })
      t += (-Math.log(1 - random()) / rate) * DAY
    }
  }
  return events
    .filter((e) => Date.parse(e.occurredAt) < end)
    .sort((a, b) => (a.occurredAt < b.occurredAt ? -1 : a.occurredAt > b.occurredAt ? 1 : a.eventId < b.eventId ? -1 : 1))
}

/**
 * Customers whose cards show each risk pattern of the default catalogue once, from `start`:
 * card testing, velocity, impossible travel, a night burst, a cash-out pattern, a new device with
 * a large amount, an amount anomaly, and a prohibited merchant category.
 */
export function fraudScenarios(start: Date, customers = 8): InputEvent[] {
  const events: InputEvent[] = []
  const t0 = start.getTime()
  for (let n = 0; n < customers; n++) {
    const customerId = `risk_${String(n).padStart(4, '0')}`
    const cardId = `tok_r${n}`
    let seq = 0
    const base = t0 + n * 2 * DAY
    const iso = (ms: number) => new Date(ms).toISOString()
    const tx = (at: number, amount: number, extra: Partial<TransactionEvent> = {}) =>
      events.push({
        type: 'transaction',
        eventId: `${customerId}-tx-${++seq}`,
        occurredAt: iso(at),
        customerId,
        cardId,
        amount,
        currency: 'CNY',
        status: 'approved',
        channel: 'pos',
        cardPresent: true,
        merchant: { id: 'm_grocer', mcc: '5411', city: 'Shanghai', country: 'CN', lat: 31.23, lon: 121.47 },
        ...extra,
      })
    events.push({ type: 'lifecycle', eventId: `${customerId}-approved`, occurredAt: iso(base - 20 * DAY), customerId, cardId, stage: 'approved', creditLimit: 50000, profile: { timezone: 'Asia/Shanghai', homeCountry: 'CN', homeCity: 'Shanghai' } })
    events.push({ type: 'lifecycle', eventId: `${customerId}-activated`, occurredAt: iso(base - 19 * DAY), customerId, cardId, stage: 'activated' })
    // A normal history: a dozen everyday purchases.
    for (let i = 0; i < 12; i++) tx(base - 18 * DAY + i * DAY, 80 + ((i * 37) % 120))
    const at = base + 2 * HOUR // 10:00 in Shanghai
    switch (n % 8) {
      case 0: // card testing: tiny amounts, any status
        for (let i = 0; i < 4; i++) tx(at + i * 60_000, 1 + i, { channel: 'ecom', cardPresent: false, status: i % 2 ? 'declined' : 'approved' })
        break
      case 1: // velocity
        for (let i = 0; i < 11; i++) tx(at + i * 45_000, 30 + i, { channel: 'ecom', cardPresent: false })
        break
      case 2: // impossible travel: Shanghai, then Beijing 30 minutes later
        tx(at, 200)
        tx(at + 30 * 60_000, 300, { merchant: { id: 'm_bj', mcc: '5311', city: 'Beijing', country: 'CN', lat: 39.9, lon: 116.4 } })
        break
      case 3: // night burst: 01:00–01:40 Shanghai
        for (let i = 0; i < 3; i++) tx(base - 7 * HOUR + i * 20 * 60_000, 150 + i)
        break
      case 4: // cash-out: round amounts at one merchant
        for (let i = 0; i < 3; i++) tx(at + i * HOUR, 2000, { merchant: { id: 'm_gold', mcc: '5944', city: 'Shanghai', country: 'CN' } })
        break
      case 5: // new device, then a large amount
        events.push({ type: 'app', eventId: `${customerId}-device`, occurredAt: iso(at), customerId, name: 'device_registered', deviceId: 'dev_new' })
        tx(at + 20 * 60_000, 8000, { channel: 'ecom', cardPresent: false, deviceId: 'dev_new' })
        break
      case 6: // amount anomaly
        tx(at, 9000)
        break
      case 7: // prohibited use: a betting merchant
        tx(at, 500, { merchant: { id: 'm_bet', mcc: '7995', city: 'Macau', country: 'MO' } })
        break
    }
  }
  return events
}

/** Malformed input of every kind the edge must dead-letter, for demos and tests. */
export function badInputSamples(at: string): string[] {
  return [
    '{"type":"transaction","eventId":"bad-json"', // truncated JSON
    JSON.stringify({ type: 'refund', eventId: 'bad-type', occurredAt: at, customerId: 'cust_000001' }),
    JSON.stringify({ type: 'transaction', eventId: 'bad-schema', occurredAt: at, customerId: 'cust_000001', cardId: 'tok_x', amount: -5, status: 'approved', channel: 'pos', cardPresent: true, merchant: { id: 'm' } }),
    JSON.stringify({ type: 'transaction', eventId: 'bad-pan', occurredAt: at, customerId: 'cust_000002', cardId: '4111111111111111', amount: 10, status: 'approved', channel: 'pos', cardPresent: true, merchant: { id: 'm' } }),
    '[1,2,3]',
  ]
}
