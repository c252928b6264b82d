/**
 * A compact binary encoding of plain JSON data (objects, arrays, strings, numbers, booleans, null;
 * no `toJSON`), for customer records in Redis: it holds exactly what
 * `JSON.parse(JSON.stringify(value))` would (the same keys in the same order, undefined properties
 * left out, numbers that are not finite as null), in about a third of the bytes of JSON, and costs
 * about what JSON.stringify does, where deflate with a dictionary costs several times more.
 *
 * Each value starts with a tag byte:
 * - the field names and common values of customer records are one byte each, from `TABLE`;
 * - other strings are written once per record and then referred to by their index, so an id or a
 *   month that recurs costs two bytes after its first time;
 * - integers are varints; event times (integers of 10^11 and more) are written as the difference
 *   from the event time before them in the record, so that most take three or four bytes;
 * - numbers with up to four decimals (amounts, coordinates) are an integer and their scale.
 *
 * The table may never change once records are written with it: a new table needs a new format
 * byte (codec.ts), and the old one stays to read old records.
 */

const NULL = 0x00
const FALSE = 0x01
const TRUE = 0x02
const UINT = 0x03
const NEGATIVE_INT = 0x04
/** An integer of 10^11 or more (an event time), as the zigzag difference from the one before. */
const TIME = 0x05
const FLOAT64 = 0x06
/** DECIMAL + k, for k = 1…4 (0x07–0x0a): a zigzag integer n standing for n / 10^k. */
const DECIMAL = 0x06
const STRING = 0x0b
const STRING_AGAIN = 0x0c
const ARRAY = 0x0d
const OBJECT = 0x0e
const TABLE_FIRST = 0x10

const TIME_FROM = 1e11
/** Beyond it, a difference of two such integers might not be a safe integer. */
const TIME_UNTIL = 2 ** 51
const SCALES = [1, 10, 100, 1000, 10000]

/** Field names and common values of customer records (format 3). Never change nor reorder. */
export const TABLE: readonly string[] = [
  // the record, profile, facts and policy
  'v', 'seen', 'profile', 'facts', 'policy', 'inbox', 'pending', 'conversions', 'ops', 'opv',
  'timezone', 'homeCountry', 'consent', 'birthDate', 'homeCity', 'homeLat', 'homeLon', 'segment', 'tags', 'preferredChannel',
  'cards', 'stage', 'creditLimit', 'activatedAt', 'firstPurchaseAt', 'approved', 'spend', 'day', 'd', 'block', 'b',
  'month', 'cents', 'alerts', 'at', 'severity', 'firstApprovedAt', 'lastApprovedAt',
  'lastContact', 'contacts', 'riskHoldFrom', 'riskHoldUntil',
  // moments waiting for a decision, and open attribution windows
  'kind', 'moment', 'trigger', 'occurrence', 'eventTime', 'cardId', 'reason', 'causeEventId',
  'decisionId', 'outcome', 'from', 'until', 'goal', 'preSpend', 'version', 'convertedAt', 'convertingEventId', 'engaged', 'minAmount',
  // operators' state
  'last', 'done', 'w', 'k', 'mtd', 'checked', 'tz', 'due', 'greeted', 'next', 'since', 'fired', 'check', 'episode',
  'h', 'c', 'id', 't', 'lat', 'lon', 'r', 'l', 'a', 'firedLimit', 'firedAt', 'startedAt', 'reminded', 'aboveLimit', 'device', 'crossBorder',
  // operators, triggers and signals
  'activation_reminder', 'first_swipe_incentive', 'bind_wallet_nudge', 'first_purchase_reward', 'dormancy_wakeup', 'churn_retention',
  'spend_threshold_challenge', 'installment_offer', 'cross_border_offer', 'birthday_greeting', 'renewal_reminder', 'limit_upgrade_offer',
  'amount_anomaly', 'impossible_travel', 'velocity', 'card_testing', 'night_burst', 'cashout_pattern', 'new_device_large_amount', 'prohibited_use',
  // input events held in an inbox
  'type', 'eventId', 'occurredAt', 'customerId', 'amount', 'currency', 'status', 'channel', 'cardPresent', 'merchant',
  'name', 'mcc', 'city', 'country', 'deviceId', 'product', 'attributes', 'granted',
  'transaction', 'app', 'lifecycle', 'CNY', 'declined', 'reversed', 'pos', 'ecom', 'qr', 'wallet', 'atm',
  'login', 'page_view', 'offer_viewed', 'offer_clicked', 'coupon_claimed', 'offer_redeemed', 'installment_applied',
  'consent_changed', 'device_registered', 'app_uninstalled', 'profile_updated',
  // values
  'applied', 'issued', 'activated', 'bound', 'limit_changed', 'expiring', 'renewed', 'blocked', 'closed',
  'low', 'medium', 'high', 'critical', 'sms', 'push', 'call', 'app_banner', 'all', 'send', 'control', 'suppressed',
  'mass_market', 'young_professional', 'affluent', 'senior', 'small_business',
  'CN', 'HK', 'SG', 'JP', 'AU', 'GB', 'US',
  'Asia/Shanghai', 'Asia/Hong_Kong', 'Asia/Singapore', 'Asia/Tokyo', 'Asia/Taipei', 'Asia/Seoul', 'Australia/Sydney',
  'Europe/London', 'America/Los_Angeles', 'America/New_York',
  'Shanghai', 'Beijing', 'Guangzhou', 'Shenzhen', 'Hong Kong',
]

const TABLE_INDEX = new Map(TABLE.map((s, i) => [s, i]))
if (TABLE_INDEX.size !== TABLE.length || TABLE_FIRST + TABLE.length > 0x100) throw new Error('compact record table: entries must be unique and at most 240')

/** Encodes `value` after a first byte `format`. */
export function encodeCompact(value: unknown, format: number): Buffer {
  const w = new Writer()
  w.byte(format)
  w.value(value)
  return w.done()
}

/** Decodes the value that starts at `offset` of `bytes`. */
export function decodeCompact(bytes: Buffer, offset = 0): unknown {
  const r = new Reader(bytes, offset)
  const value = r.value()
  if (r.pos !== bytes.length) throw new Error(`compact record: ${bytes.length - r.pos} bytes left after the value`)
  return value
}

class Writer {
  private buf = Buffer.allocUnsafe(2048)
  private pos = 0
  private lastTime = 0
  private readonly strings = new Map<string, number>()

  done(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos))
  }

  byte(b: number) {
    if (this.pos === this.buf.length) this.grow(1)
    this.buf[this.pos++] = b
  }

  value(v: unknown): void {
    switch (typeof v) {
      case 'string':
        return this.string(v)
      case 'number':
        return this.number(v)
      case 'boolean':
        return this.byte(v ? TRUE : FALSE)
      case 'object':
        if (v === null) return this.byte(NULL)
        if (Array.isArray(v)) return this.array(v)
        return this.object(v as Record<string, unknown>)
      default:
        // As JSON writes them in arrays (objects leave them out): undefined, functions, symbols.
        if (typeof v === 'bigint') throw new TypeError('compact record: a BigInt cannot be encoded')
        return this.byte(NULL)
    }
  }

  private array(a: unknown[]): void {
    this.byte(ARRAY)
    this.varint(a.length)
    for (let i = 0; i < a.length; i++) this.value(a[i])
  }

  private object(o: Record<string, unknown>): void {
    const keys = Object.keys(o)
    this.byte(OBJECT)
    if (keys.length >= 0x80) {
      // A count of two bytes or more: counted first (most objects take the one-pass path below).
      let kept = 0
      for (const k of keys) if (isKept(o[k])) kept++
      this.varint(kept)
      for (const k of keys) this.property(k, o[k])
      return
    }
    // Fewer than 128 properties: the count is one byte, written once they are.
    const countAt = this.pos
    this.byte(0)
    let kept = 0
    for (const k of keys) if (this.property(k, o[k])) kept++
    this.buf[countAt] = kept
  }

  private property(key: string, v: unknown): boolean {
    if (!isKept(v)) return false
    this.string(key)
    this.value(v)
    return true
  }

  private string(s: string): void {
    const t = TABLE_INDEX.get(s)
    if (t !== undefined) return this.byte(TABLE_FIRST + t)
    const again = this.strings.get(s)
    if (again !== undefined) {
      this.byte(STRING_AGAIN)
      return this.varint(again)
    }
    this.strings.set(s, this.strings.size)
    const length = Buffer.byteLength(s)
    this.byte(STRING)
    this.varint(length)
    if (this.pos + length > this.buf.length) this.grow(length)
    this.pos += this.buf.write(s, this.pos, 'utf8')
  }

  private number(v: number): void {
    if (!Number.isFinite(v)) return this.byte(NULL)
    if (Number.isSafeInteger(v)) {
      const magnitude = Math.abs(v)
      if (magnitude >= TIME_FROM && magnitude < TIME_UNTIL) {
        this.byte(TIME)
        this.varint(zigzag(v - this.lastTime))
        this.lastTime = v
      } else if (v >= 0) {
        this.byte(UINT)
        this.varint(v)
      } else {
        this.byte(NEGATIVE_INT)
        this.varint(-v)
      }
      return
    }
    for (let k = 1; k < SCALES.length; k++) {
      const n = Math.round(v * SCALES[k])
      if (Math.abs(n) < 2 ** 52 && n / SCALES[k] === v) {
        this.byte(DECIMAL + k)
        return this.varint(zigzag(n))
      }
    }
    this.byte(FLOAT64)
    if (this.pos + 8 > this.buf.length) this.grow(8)
    this.buf.writeDoubleLE(v, this.pos)
    this.pos += 8
  }

  /** A non-negative safe integer, 7 bits a byte, low bits first. */
  private varint(n: number) {
    if (this.pos + 8 > this.buf.length) this.grow(8)
    // Past 31 bits with float arithmetic (bit operators would cut the number to 32 bits).
    while (n >= 0x80000000) {
      const high = Math.floor(n / 0x80)
      this.buf[this.pos++] = (n - high * 0x80) | 0x80
      n = high
    }
    while (n >= 0x80) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80
      n >>>= 7
    }
    this.buf[this.pos++] = n
  }

  private grow(needed: number) {
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + needed))
    this.buf.copy(next, 0, 0, this.pos)
    this.buf = next
  }
}

class Reader {
  pos: number
  private lastTime = 0
  private readonly strings: string[] = []

  constructor(
    private readonly bytes: Buffer,
    offset: number,
  ) {
    this.pos = offset
  }

  value(): unknown {
    const tag = this.byte()
    if (tag >= TABLE_FIRST) {
      const s = TABLE[tag - TABLE_FIRST]
      if (s === undefined) throw new Error(`compact record: no table entry ${tag - TABLE_FIRST}`)
      return s
    }
    switch (tag) {
      case NULL:
        return null
      case FALSE:
        return false
      case TRUE:
        return true
      case UINT:
        return this.varint()
      case NEGATIVE_INT:
        return -this.varint()
      case TIME:
        return (this.lastTime += unzigzag(this.varint()))
      case FLOAT64: {
        if (this.pos + 8 > this.bytes.length) throw new Error('compact record: truncated')
        const v = this.bytes.readDoubleLE(this.pos)
        this.pos += 8
        return v
      }
      case DECIMAL + 1:
      case DECIMAL + 2:
      case DECIMAL + 3:
      case DECIMAL + 4:
        return unzigzag(this.varint()) / SCALES[tag - DECIMAL]
      case STRING:
      case STRING_AGAIN:
        return this.stringAfter(tag)
      case ARRAY: {
        const n = this.varint()
        const a: unknown[] = new Array(n)
        for (let i = 0; i < n; i++) a[i] = this.value()
        return a
      }
      case OBJECT: {
        const n = this.varint()
        const o: Record<string, unknown> = {}
        for (let i = 0; i < n; i++) {
          const key = this.string()
          const v = this.value()
          // An own property, as JSON.parse makes it, even for "__proto__" (keys may come from input).
          if (key === '__proto__') Object.defineProperty(o, key, { value: v, enumerable: true, writable: true, configurable: true })
          else o[key] = v
        }
        return o
      }
      default:
        throw new Error(`compact record: unknown tag 0x${tag.toString(16)}`)
    }
  }

  private string(): string {
    const tag = this.byte()
    if (tag >= TABLE_FIRST && tag - TABLE_FIRST < TABLE.length) return TABLE[tag - TABLE_FIRST]
    if (tag !== STRING && tag !== STRING_AGAIN) throw new Error(`compact record: a key must be a string, found tag 0x${tag.toString(16)}`)
    return this.stringAfter(tag)
  }

  private stringAfter(tag: number): string {
    if (tag === STRING_AGAIN) {
      const s = this.strings[this.varint()]
      if (s === undefined) throw new Error('compact record: a string referred to before it was written')
      return s
    }
    const length = this.varint()
    const end = this.pos + length
    if (end > this.bytes.length) throw new Error('compact record: truncated')
    const s = this.bytes.toString('utf8', this.pos, end)
    this.pos = end
    this.strings.push(s)
    return s
  }

  private byte(): number {
    if (this.pos >= this.bytes.length) throw new Error('compact record: truncated')
    return this.bytes[this.pos++]
  }

  private varint(): number {
    let n = 0
    let scale = 1
    for (;;) {
      const b = this.byte()
      n += (b & 0x7f) * scale
      if (b < 0x80) return n
      scale *= 0x80
      if (scale > 2 ** 56) throw new Error('compact record: varint too long')
    }
  }
}

/** Whether JSON keeps an object property with this value. */
const isKept = (v: unknown) => v !== undefined && typeof v !== 'function' && typeof v !== 'symbol'

const zigzag = (n: number) => (n >= 0 ? n * 2 : -n * 2 - 1)
const unzigzag = (z: number) => (z % 2 === 0 ? z / 2 : -(z + 1) / 2)
