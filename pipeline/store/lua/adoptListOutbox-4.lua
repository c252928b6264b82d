--[[
  Moves a partition's outbox kept in the former lists (acknowledged by count) into the streams
  (acknowledged by id), oldest first, so an upgrade loses nothing that was committed but not yet
  drained. Idempotent: once the lists are gone it does nothing.

  KEYS[1] rows (former list)     list: JSON OutboxRow, oldest first
  KEYS[2] outbox:rows            stream: v = JSON OutboxRow
  KEYS[3] alerts (former list)   list: JSON RiskAlert, oldest first
  KEYS[4] outbox:alerts          stream: v = JSON RiskAlert

  Returns the number of entries moved.
]]
local moved = 0
for i = 1, 3, 2 do
  if redis.call('TYPE', KEYS[i]).ok == 'list' then
    local entries = redis.call('LRANGE', KEYS[i], 0, -1)
    for _, v in ipairs(entries) do
      redis.call('XADD', KEYS[i + 1], '*', 'v', v)
    end
    moved = moved + #entries
    redis.call('DEL', KEYS[i])
  end
end
return moved
