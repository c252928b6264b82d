--[[
  Puts a webhook back into the outbox (a delivery dead letter sent again), unless it is pending.

  KEYS[1] webhooks:due   zset: decisionId -> dueAt ms
  KEYS[2] webhooks:body  hash: decisionId -> JSON PendingWebhook

  ARGV[1] decisionId
  ARGV[2] dueAt (ms)
  ARGV[3] JSON PendingWebhook

  Returns
    1  queued
    0  already pending: nothing written
]]
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
