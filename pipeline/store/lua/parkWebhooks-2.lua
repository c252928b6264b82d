--[[
  Moves due webhooks of one channel aside, while its endpoint cannot take them: out of the due
  set into the channel's parked set, with the same score (dueAt), so they keep their order. The
  bodies stay where they are: a parked webhook is still pending, with its attempts and expiry.

  KEYS[1] webhooks:due              zset: decisionId -> dueAt ms
  KEYS[2] webhooks:parked:<channel> zset: decisionId -> dueAt ms

  ARGV    decisionIds

  Returns the number parked (ids no longer due are left alone: finished or rescheduled meanwhile)
]]
local parked = 0
for i = 1, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZADD', KEYS[2], score, ARGV[i])
    parked = parked + 1
  end
end
return parked
