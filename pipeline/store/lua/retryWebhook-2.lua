--[[
  Reschedules a webhook after a retriable failure, only while it is still pending.

  KEYS[1] webhooks:due   zset: decisionId -> dueAt ms
  KEYS[2] webhooks:body  hash: decisionId -> JSON PendingWebhook

  ARGV[1] decisionId
  ARGV[2] new dueAt (ms)
  ARGV[3] JSON PendingWebhook (attempts and dueAt updated)

  Returns
    1  rescheduled
    0  not pending (finished meanwhile): nothing written
]]
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
