--[[
  Ends a pending webhook and records its delivery row, once.

  KEYS[1] webhooks:due   zset: decisionId -> dueAt ms
  KEYS[2] webhooks:body  hash: decisionId -> JSON PendingWebhook
  KEYS[3] outbox:rows    stream: v = JSON OutboxRow

  ARGV[1] decisionId
  ARGV[2] delivery row, JSON OutboxRow

  Returns
    1  finished: removed, row appended
    0  not pending (already finished or never scheduled): nothing written
]]
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('XADD', KEYS[3], '*', 'v', ARGV[2])
return 1
