--[[
  Moves the oldest parked webhooks of one channel back into the due set, with the scores they
  had, so they come first again. A parked id whose body is gone (finished meanwhile) is dropped.

  KEYS[1] webhooks:due              zset: decisionId -> dueAt ms
  KEYS[2] webhooks:parked:<channel> zset: decisionId -> dueAt ms
  KEYS[3] webhooks:body             hash: decisionId -> JSON PendingWebhook

  ARGV[1] most to move

  Returns { moved, still parked }
]]
local max = tonumber(ARGV[1])
local moved = 0
if max > 0 then
  local entries = redis.call('ZRANGE', KEYS[2], 0, max - 1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    local id = entries[i]
    redis.call('ZREM', KEYS[2], id)
    if redis.call('HEXISTS', KEYS[3], id) == 1 then
      -- NX: an id due again meanwhile (rescheduled) keeps its newer time.
      redis.call('ZADD', KEYS[1], 'NX', entries[i + 1], id)
      moved = moved + 1
    end
  end
end
return { moved, redis.call('ZCARD', KEYS[2]) }
