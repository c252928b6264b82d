--[[
  Claims due webhooks for sending. A webhook still pending is claimed ('' in the claims hash) and
  returned; one gone (finished or cancelled) is not. One whose claim holds a cancellation — a
  dispatcher stopped while sending it — is cancelled now rather than sent again.

  KEYS[1] webhooks:due    zset: decisionId -> dueAt ms
  KEYS[2] webhooks:body   hash: decisionId -> JSON PendingWebhook
  KEYS[3] webhooks:claims hash: decisionId -> '' or a cancelled row (commitBatch-9.lua)
  KEYS[4] outbox:rows     stream: v = JSON OutboxRow

  ARGV    decisionIds

  Returns the ids claimed.
]]
local claimed = {}
for _, id in ipairs(ARGV) do
  local body = redis.call('HGET', KEYS[2], id)
  if body then
    local claim = redis.call('HGET', KEYS[3], id)
    if claim and claim ~= '' then
      local pending = cjson.decode(body)
      local entry = cjson.decode(claim)
      entry.row.attempts = pending.attempts
      entry.row.decidedAt = pending.decision.decidedAt
      redis.call('ZREM', KEYS[1], id)
      redis.call('HDEL', KEYS[2], id)
      redis.call('HDEL', KEYS[3], id)
      redis.call('XADD', KEYS[4], '*', 'v', cjson.encode(entry))
    else
      redis.call('HSET', KEYS[3], id, '')
      claimed[#claimed + 1] = id
    end
  end
end
return claimed
