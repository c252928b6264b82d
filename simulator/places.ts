import type { Category } from './config.ts'

/** Where the simulated bank's customers live, travel and shop. */

export interface City {
  city: string
  country: string
  lat: number
  lon: number
  timezone: string
  /** Short code for merchant ids. */
  code: string
}

export const DOMESTIC: readonly City[] = [
  { city: 'Shanghai', country: 'CN', lat: 31.23, lon: 121.47, timezone: 'Asia/Shanghai', code: 'sh' },
  { city: 'Beijing', country: 'CN', lat: 39.9, lon: 116.4, timezone: 'Asia/Shanghai', code: 'bj' },
  { city: 'Shenzhen', country: 'CN', lat: 22.54, lon: 114.06, timezone: 'Asia/Shanghai', code: 'sz' },
  { city: 'Guangzhou', country: 'CN', lat: 23.13, lon: 113.26, timezone: 'Asia/Shanghai', code: 'gz' },
  { city: 'Chengdu', country: 'CN', lat: 30.66, lon: 104.06, timezone: 'Asia/Shanghai', code: 'cd' },
  { city: 'Hangzhou', country: 'CN', lat: 30.27, lon: 120.16, timezone: 'Asia/Shanghai', code: 'hz' },
  { city: 'Wuhan', country: 'CN', lat: 30.59, lon: 114.31, timezone: 'Asia/Shanghai', code: 'wh' },
  { city: 'Nanjing', country: 'CN', lat: 32.06, lon: 118.8, timezone: 'Asia/Shanghai', code: 'nj' },
  { city: "Xi'an", country: 'CN', lat: 34.34, lon: 108.94, timezone: 'Asia/Shanghai', code: 'xa' },
  { city: 'Chongqing', country: 'CN', lat: 29.56, lon: 106.55, timezone: 'Asia/Shanghai', code: 'cq' },
  { city: 'Tianjin', country: 'CN', lat: 39.08, lon: 117.2, timezone: 'Asia/Shanghai', code: 'tj' },
  { city: 'Suzhou', country: 'CN', lat: 31.3, lon: 120.62, timezone: 'Asia/Shanghai', code: 'su' },
]
/** How many customers live in each domestic city, relatively. */
export const DOMESTIC_WEIGHTS = [6, 5, 4, 4, 3, 3, 2, 2, 2, 2, 2, 2]

/** Homes of customers living abroad (their own time zone and country). */
export const ABROAD: readonly City[] = [
  { city: 'Hong Kong', country: 'HK', lat: 22.32, lon: 114.17, timezone: 'Asia/Hong_Kong', code: 'hk' },
  { city: 'Singapore', country: 'SG', lat: 1.35, lon: 103.82, timezone: 'Asia/Singapore', code: 'sg' },
  { city: 'London', country: 'GB', lat: 51.51, lon: -0.13, timezone: 'Europe/London', code: 'ld' },
  { city: 'San Francisco', country: 'US', lat: 37.77, lon: -122.42, timezone: 'America/Los_Angeles', code: 'sf' },
  { city: 'Tokyo', country: 'JP', lat: 35.68, lon: 139.69, timezone: 'Asia/Tokyo', code: 'tk' },
  { city: 'Sydney', country: 'AU', lat: -33.87, lon: 151.21, timezone: 'Australia/Sydney', code: 'sy' },
]

/** Holiday and business destinations abroad. */
export const FOREIGN: readonly City[] = [
  ...ABROAD,
  { city: 'Seoul', country: 'KR', lat: 37.57, lon: 126.98, timezone: 'Asia/Seoul', code: 'se' },
  { city: 'Bangkok', country: 'TH', lat: 13.76, lon: 100.5, timezone: 'Asia/Bangkok', code: 'bk' },
  { city: 'Paris', country: 'FR', lat: 48.86, lon: 2.35, timezone: 'Europe/Paris', code: 'pa' },
  { city: 'New York', country: 'US', lat: 40.71, lon: -74.01, timezone: 'America/New_York', code: 'ny' },
]

/** Far-away places where counterfeit cards are used. */
export const FRAUD_PLACES: readonly City[] = [
  { city: 'Urumqi', country: 'CN', lat: 43.83, lon: 87.62, timezone: 'Asia/Shanghai', code: 'uq' },
  { city: 'Harbin', country: 'CN', lat: 45.8, lon: 126.53, timezone: 'Asia/Shanghai', code: 'hb' },
  { city: 'Moscow', country: 'RU', lat: 55.76, lon: 37.62, timezone: 'Europe/Moscow', code: 'mo' },
  { city: 'Dubai', country: 'AE', lat: 25.2, lon: 55.27, timezone: 'Asia/Dubai', code: 'db' },
  { city: 'Lagos', country: 'NG', lat: 6.52, lon: 3.38, timezone: 'Africa/Lagos', code: 'lg' },
  { city: 'Sao Paulo', country: 'BR', lat: -23.55, lon: -46.63, timezone: 'America/Sao_Paulo', code: 'sp' },
  { city: 'Mexico City', country: 'MX', lat: 19.43, lon: -99.13, timezone: 'America/Mexico_City', code: 'mx' },
]

export interface MerchantKind {
  mcc: string
  names: readonly string[]
  /** Typical amount (median, yuan) and spread (log-normal sigma). */
  median: number
  sigma: number
  online?: boolean
}

/** Everyday spending by category. No category uses an MCC barred for card funds. */
export const CATEGORY_MERCHANTS: Record<Category, MerchantKind> = {
  grocery: { mcc: '5411', names: ['FreshMart', 'Hema Fresh', 'Carrefour', 'Yonghui'], median: 110, sigma: 0.7 },
  dining: { mcc: '5812', names: ['Hotpot House', 'Dim Sum Garden', 'Noodle Bar', 'Golden Duck'], median: 140, sigma: 0.75 },
  coffee: { mcc: '5814', names: ['Lucky Coffee', 'Tea Time', 'Bakery 101', 'Morning Cup'], median: 32, sigma: 0.45 },
  fuel: { mcc: '5541', names: ['Sinopec Station', 'PetroChina', 'Shell'], median: 320, sigma: 0.4 },
  online: { mcc: '5999', names: ['Taobao Mall', 'JD Online', 'Pinduoduo', 'Meituan'], median: 160, sigma: 0.9, online: true },
  department: { mcc: '5311', names: ['Grand Mall', 'Parkson', 'Wanda Plaza'], median: 380, sigma: 0.8 },
  electronics: { mcc: '5732', names: ['Digital City', 'Suning', 'Gome'], median: 1300, sigma: 0.7 },
  transport: { mcc: '4121', names: ['Didi', 'City Taxi', 'Metro Top-up'], median: 38, sigma: 0.6 },
  entertainment: { mcc: '7832', names: ['Wanda Cinema', 'KTV Star', 'Live House'], median: 160, sigma: 0.6 },
  health: { mcc: '5912', names: ['Laobaixing Pharmacy', 'Yifeng Pharmacy', 'Clinic Plus'], median: 180, sigma: 0.8 },
  utilities: { mcc: '4900', names: ['State Grid', 'China Mobile', 'City Gas'], median: 210, sigma: 0.5 },
  business: { mcc: '5111', names: ['Office Depot', 'Wholesale Hub', 'Print Shop', 'Logistics Co'], median: 900, sigma: 0.9 },
}

export const TRAVEL = {
  airline: { mcc: '4511', names: ['China Eastern', 'Air China', 'China Southern'] },
  hotel: { mcc: '7011', names: ['Jinjiang Inn', 'Marriott', 'Atour Hotel'] },
  dining: { mcc: '5812', names: ['Local Kitchen', 'Harbour Grill', 'Night Market'] },
  shopping: { mcc: '5309', names: ['Duty Free', 'Outlet Village', 'Souvenir Street'] },
}

export const INSTALLMENT_MERCHANTS = [
  { mcc: '5732', names: ['Apple Store', 'Digital City', 'Huawei Store'] },
  { mcc: '5712', names: ['IKEA', 'Red Star Macalline', 'Home Furnish'] },
  { mcc: '5094', names: ['Chow Tai Fook', 'Lao Feng Xiang'] },
]

/** Merchant categories barred for card funds (the default catalogue's prohibited_use list). */
export const PROHIBITED = [
  { mcc: '7995', name: 'Lucky Star Betting', country: 'MO' },
  { mcc: '6211', name: 'Golden Securities', country: 'CN' },
  { mcc: '6513', name: 'Harbour Real Estate', country: 'CN' },
  { mcc: '6051', name: 'Quick Cash Exchange', country: 'CN' },
]

const EARTH_RADIUS_KM = 6371.0088

export function distanceKm(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const rad = Math.PI / 180
  const dLat = (lat2 - lat1) * rad
  const dLon = (lon2 - lon1) * rad
  const a = Math.sin(dLat / 2) ** 2 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(a)))
}

/** UTC offset (ms) of a time zone at an instant, cached per zone and hour. */
const offsets = new Map<string, Map<number, number>>()
const formatters = new Map<string, Intl.DateTimeFormat>()

export function zoneOffset(ms: number, timeZone: string): number {
  if (timeZone === 'Asia/Shanghai') return 8 * 3_600_000
  const slot = Math.floor(ms / 3_600_000)
  let zone = offsets.get(timeZone)
  if (!zone) offsets.set(timeZone, (zone = new Map()))
  let offset = zone.get(slot)
  if (offset === undefined) {
    let f = formatters.get(timeZone)
    if (!f) {
      f = new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric' })
      formatters.set(timeZone, f)
    }
    const p: Record<string, number> = {}
    const at = slot * 3_600_000
    for (const part of f.formatToParts(new Date(at))) if (part.type !== 'literal') p[part.type] = Number(part.value)
    offset = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute) - at
    if (zone.size > 200_000) zone.clear()
    zone.set(slot, offset)
  }
  return offset
}

/** Local hour (0–23) and weekday (0 = Monday) of an instant. */
export function localClock(ms: number, timeZone: string): { hour: number; weekday: number; minutes: number } {
  const local = ms + zoneOffset(ms, timeZone)
  const minutes = ((Math.floor(local / 60_000) % 1440) + 1440) % 1440
  const day = Math.floor(local / 86_400_000)
  // 1970-01-01 was a Thursday (weekday 3 counting from Monday = 0).
  return { hour: Math.floor(minutes / 60), weekday: (((day + 3) % 7) + 7) % 7, minutes }
}

/** The instant of local time `minutes` past midnight on the local day containing `ms`. */
export function atLocalMinutes(ms: number, timeZone: string, minutes: number): number {
  const offset = zoneOffset(ms, timeZone)
  const localMidnight = Math.floor((ms + offset) / 86_400_000) * 86_400_000
  return localMidnight + minutes * 60_000 - offset
}
