--[[
  Reschedules a webhook after a retriable failure, only while it is still pending. A cancellation
  that came while the attempt was in flight (kept in its claim) ends it instead: cancelled, since
  it would wait again.

  KEYS[1] webhooks:due    zset: decisionId -> dueAt ms
  KEYS[2] webhooks:body   hash: decisionId -> JSON PendingWebhook
  KEYS[3] webhooks:claims hash: decisionId -> '' or a cancelled row (commitBatch-9.lua)
  KEYS[4] outbox:rows     stream: v = JSON OutboxRow

  ARGV[1] decisionId
  ARGV[2] new dueAt (ms)
  ARGV[3] JSON PendingWebhook (attempts and dueAt updated)

  Returns
    1  rescheduled
    2  cancelled: removed, its cancelled row appended
    0  not pending (finished meanwhile): nothing written
]]
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  redis.call('HDEL', KEYS[3], ARGV[1])
  return 0
end
local claim = redis.call('HGET', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if claim and claim ~= '' then
  local pending = cjson.decode(ARGV[3])
  local entry = cjson.decode(claim)
  entry.row.attempts = pending.attempts
  entry.row.decidedAt = pending.decision.decidedAt
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('XADD', KEYS[4], '*', 'v', cjson.encode(entry))
  return 2
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
