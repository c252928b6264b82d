import { deflateRawSync, inflateRawSync } from 'node:zlib'
import type { CustomerRecord } from './types.ts'
import { encodeCompact, decodeCompact } from './compact.ts'

/**
 * How a customer record is stored in Redis. The first byte names the format:
 *
 * - `3` (written now): the compact binary encoding of `compact.ts`, with its fixed table of the
 *   record's field names and common values: about a third of the JSON size, like deflate below,
 *   at a fraction of its cost (a deflate call costs about 25 µs before it compresses a byte).
 * - `{` plain JSON, `1` and `2` JSON deflated with preset dictionaries v1 and v2: still read.
 *
 * A dictionary or table may never change once data is written with it: a new one gets a new
 * format byte, and old records stay readable.
 */

const DICTIONARY_V1 = Buffer.from(
  [
    '{"v":1,"seen":[["tx-","lc-","app-"],"profile":{"timezone":"Asia/Shanghai","homeCountry":"CN","consent":{"sms":false,"push":false,"call":false,"app_banner":false},',
    '"birthDate":"19","homeCity":"Shanghai","Beijing","homeLat":,"homeLon":,"segment":"mass","affluent","tags":[],"preferredChannel":"sms","push","app_banner","call"},',
    '"facts":{"cards":{"tok_":{"stage":"activated","bound","issued","approved","expiring","creditLimit":0000,"activatedAt":17},"approved":,',
    '"spend":{"day":20,"d":[0,0,0,0,0,0,0,0],"block":20,"b":[0,0,0]},"alerts":[{"at":17,"severity":"high"}],"stage":"bound","firstApprovedAt":17,"lastApprovedAt":17},',
    '"policy":{"lastContact":{"activation_reminder":17,"first_swipe_incentive":17,"bind_wallet_nudge":17,"first_purchase_reward":17,"dormancy_wakeup":17,',
    '"churn_retention":17,"spend_threshold_challenge":17,"installment_offer":17,"cross_border_offer":17,"birthday_greeting":17,"renewal_reminder":17,',
    '"limit_upgrade_offer":17},"contacts":[17],"riskHoldFrom":17,"riskHoldUntil":17},"pending":[{"kind":"moment","trigger":"","occurrence":"","eventTime":17,"cardId":"tok_","reason":{}}],',
    '"ops":{"risk.amount_anomaly":{"w":1296000000,"b":13,"k":[[0,0,0],[',
    '"risk.impossible_travel":{"last":{"t":17,"lat":3,"lon":1,"id":"tx-","r":true}},"risk.velocity":{"h":[{"t":17,"id":"tx-","a":}],"c":17},',
    '"risk.card_testing":{},"risk.night_burst":{},"risk.cashout_pattern":{},"risk.new_device_large_amount":{"r":[],"l":[]},',
    '"activation":{"cards":{"tok_":{"startedAt":17,"reminded":true,"activatedAt":17}}},"first_swipe":{"cards":{"tok_":{"activatedAt":17,"done":true}}},',
    '"bind_wallet":{"cards":{"tok_":{"activatedAt":17,"done":true}}},"first_purchase":{"done":true},"renewal":{"cards":{"tok_":["20"]}},',
    '"birthday":{"birthDate":"19","tz":"Asia/Shanghai","due":17,"greeted":2026},"cross_border":{"last":17},',
    '"dormancy":{"last":17,"fired":2592000000},"churn":{"check":17,"episode":20},"spendChallenge":{"month":"2026-","mtd":0,"last":0,"checked":"2026-"},',
    '"limitUpgrade":{"firedLimit":0000,"firedAt":17}}}',
  ].join(''),
)

/** Version 2: the operators under the names of the catalogue entries they serve, and state versions. */
const DICTIONARY_V2 = Buffer.from(
  [
    '{"v":1,"seen":[["tx-","lc-","app-"],"profile":{"timezone":"Asia/Shanghai","homeCountry":"CN","consent":{"sms":false,"push":false,"call":false,"app_banner":false},',
    '"birthDate":"19","homeCity":"Shanghai","Beijing","homeLat":,"homeLon":,"segment":"mass","affluent","tags":[],"preferredChannel":"sms","push","app_banner","call"},',
    '"facts":{"cards":{"tok_":{"stage":"activated","bound","issued","approved","expiring","creditLimit":0000,"activatedAt":17},"approved":,',
    '"spend":{"day":20,"d":[0,0,0,0,0,0,0,0],"block":20,"b":[0,0,0]},"alerts":[{"at":17,"severity":"high"}],"stage":"bound","firstApprovedAt":17,"lastApprovedAt":17},',
    '"policy":{"lastContact":{"activation_reminder":17,"first_swipe_incentive":17,"bind_wallet_nudge":17,"first_purchase_reward":17,"dormancy_wakeup":17,',
    '"churn_retention":17,"spend_threshold_challenge":17,"installment_offer":17,"cross_border_offer":17,"birthday_greeting":17,"renewal_reminder":17,',
    '"limit_upgrade_offer":17},"contacts":[17],"riskHoldFrom":17,"riskHoldUntil":17},"pending":[{"kind":"moment","trigger":"","occurrence":"","eventTime":17,"cardId":"tok_","reason":{}}],',
    '"ops":{"amount_anomaly":{"w":1296000000,"b":13,"k":[[0,0,0],[',
    '"impossible_travel":{"last":{"t":17,"lat":3,"lon":1,"id":"tx-","r":true}},"velocity":{"h":[{"t":17,"id":"tx-","a":}],"c":17},',
    '"card_testing":{},"night_burst":{},"cashout_pattern":{},"new_device_large_amount":{"r":[],"l":[]},',
    '"activation_reminder":{"cards":{"tok_":{"startedAt":17,"done":true}}},"first_swipe_incentive":{"cards":{"tok_":{"activatedAt":17,"done":true}}},',
    '"bind_wallet_nudge":{"cards":{"tok_":{"activatedAt":17,"done":true}}},"first_purchase_reward":{"done":true},"renewal_reminder":{"cards":{"tok_":["20"]}},',
    '"birthday_greeting":{"birthDate":"19","tz":"Asia/Shanghai","due":17,"greeted":2026},"cross_border_offer":{"last":17},',
    '"dormancy_wakeup":{"last":17,"fired":2592000000},"churn_retention":{"check":17,"episode":20},"spend_threshold_challenge":{"month":"2026-","mtd":0,"last":0,"checked":"2026-"},',
    '"limit_upgrade_offer":{"firedLimit":0000,"firedAt":17}},"opv":{"activation_reminder":2}}',
  ].join(''),
)

const FORMAT_COMPACT = 0x33 // '3'

export function encodeRecord(record: CustomerRecord): Buffer {
  return encodeCompact(record, FORMAT_COMPACT)
}

/** The record in format 2 (JSON deflated with dictionary v2), as written before format 3. */
export function encodeRecordDeflated(record: CustomerRecord): Buffer {
  const json = Buffer.from(JSON.stringify(record))
  return Buffer.concat([Buffer.from('2'), deflateRawSync(json, { dictionary: DICTIONARY_V2 })])
}

export function decodeRecord(stored: Buffer): CustomerRecord {
  const format = stored[0]
  if (format === FORMAT_COMPACT) return decodeCompact(stored, 1) as CustomerRecord
  if (format === 0x7b /* { */) return JSON.parse(stored.toString('utf8'))
  if (format === 0x32 /* 2 */) return JSON.parse(inflateRawSync(stored.subarray(1), { dictionary: DICTIONARY_V2 }).toString('utf8'))
  if (format === 0x31 /* 1 */) return JSON.parse(inflateRawSync(stored.subarray(1), { dictionary: DICTIONARY_V1 }).toString('utf8'))
  throw new Error(`customer record in an unknown format (first byte 0x${format?.toString(16)})`)
}
