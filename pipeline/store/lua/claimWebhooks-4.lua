--[[
  Claims due webhooks for sending. A webhook still pending is claimed ('' in the claims hash) and
  returned; one gone (finished or cancelled) is not. A claim already there was left by a
  dispatcher that stopped while sending it: that attempt may have delivered, so the webhook is sent
  again (its Idempotency-Key lets the receiver drop a repeat), and a cancellation that came
  meanwhile stays in the claim, for this attempt's outcome to decide.

  KEYS[1] webhooks:due    zset: decisionId -> dueAt ms
  KEYS[2] webhooks:body   hash: decisionId -> JSON PendingWebhook
  KEYS[3] webhooks:claims hash: decisionId -> '' or a cancelled row (commitBatch-9.lua)
  KEYS[4] outbox:rows     stream: v = JSON OutboxRow

  ARGV    decisionIds

  Returns the ids claimed.
]]
local claimed = {}
for _, id in ipairs(ARGV) do
  if redis.call('HEXISTS', KEYS[2], id) == 1 then
    redis.call('HSETNX', KEYS[3], id, '')
    claimed[#claimed + 1] = id
  end
end
return claimed
