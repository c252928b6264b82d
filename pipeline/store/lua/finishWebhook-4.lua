--[[
  Ends a pending webhook and records its delivery row, once. The attempt's outcome wins over a
  cancellation that came while it was being sent: that cancellation is dropped with the claim.

  KEYS[1] webhooks:due    zset: decisionId -> dueAt ms
  KEYS[2] webhooks:body   hash: decisionId -> JSON PendingWebhook
  KEYS[3] outbox:rows     stream: v = JSON OutboxRow
  KEYS[4] webhooks:claims hash: decisionId -> '' or a cancelled row (commitBatch-9.lua)

  ARGV[1] decisionId
  ARGV[2] delivery row, JSON OutboxRow

  Returns
    1  finished: removed, row appended
    0  not pending (already finished or never scheduled): nothing written
]]
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
if redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('XADD', KEYS[3], '*', 'v', ARGV[2])
return 1
