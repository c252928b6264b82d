--[[
  Commits one batch of a partition atomically, fenced on the applied offset and on the number of
  commits so far: a step that moves only the watermark (an idle partition's timers) leaves the
  offset as it was, so the offset alone would let two owners of one moment both commit it.

  KEYS[1] meta           hash: appliedOffset (absent = null), watermark, sources, version (commits; absent = 0)
  KEYS[2] customers      hash: customerId -> JSON CustomerRecord
  KEYS[3] timers         zset: member -> due ms
  KEYS[4] outbox:rows    stream: v = JSON OutboxRow
  KEYS[5] outbox:alerts  stream: v = JSON RiskAlert
  KEYS[6] webhooks:due   zset: decisionId -> dueAt ms
  KEYS[7] webhooks:body  hash: decisionId -> JSON PendingWebhook
  KEYS[8] outbox:dlq     stream: v = JSON DeadLetter
  KEYS[9] webhooks:claims hash: decisionId -> '' while being sent, or a cancelled row that came meanwhile

  ARGV[1] expected applied offset, encoded: '' = null, '=' .. offset otherwise
  ARGV[2] new applied offset, same encoding
  ARGV[3] watermark (decimal string, stored verbatim)
  ARGV[4] sources: JSON of the source watermarks, stored verbatim; '' leaves them as they are
  ARGV[5..12] counts: customers, timers set, timers removed, webhooks, alerts, rows, dead letters,
              cancellations
  ARGV[13..] the groups, in that order and without separators:
    customers       id, json          (2 each)
    timers set      member, at        (2 each)
    timers removed  member            (1 each)
    webhooks        id, dueAt, json   (3 each)
    alerts          json              (1 each)
    rows            json              (1 each)
    dead letters    json              (1 each)
    cancellations   id, json row      (2 each)
  ARGV[#ARGV] the expected version ('' = not checked)

  Flat strings rather than a cjson payload: records are stored byte for byte as sent, and offsets
  and times never pass through Lua numbers. Outbox entries are appended with XADD '*': the stream
  entry id is the outbox id that acknowledges exactly that entry (XDEL).

  A cancellation removes a webhook still waiting and appends its `deliveries` row (status
  cancelled; attempts and decidedAt taken from the pending webhook); one no longer pending is left
  alone; one claimed by a dispatcher keeps the row in its claim, for the attempt's outcome to decide
  (finishWebhook: the attempt wins; retryWebhook: the cancellation does).

  Returns
    {0, id...}         committed; the ids of the webhooks cancelled at once
    {1, foundOffset, foundVersion}   fenced: the stored offset (same encoding as ARGV[1]) or version differs; nothing written
]]
local function decode(v)
  if v == '' then return false end
  return string.sub(v, 2)
end

local meta = redis.call('HMGET', KEYS[1], 'appliedOffset', 'version')
local found, version = meta[1], meta[2] or '0'
if found ~= decode(ARGV[1]) or (ARGV[#ARGV] ~= '' and version ~= ARGV[#ARGV]) then
  return {1, found and ('=' .. found) or '', version}
end

local nc, nts, ntr = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local nw, na, nr, nd = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local nx = tonumber(ARGV[12])
-- Checked before any write: a script error part-way would leave a partial commit.
if #ARGV ~= 13 + 2 * nc + 2 * nts + ntr + 3 * nw + na + nr + nd + 2 * nx then
  return redis.error_reply('ERR commitBatch: ARGV does not match its counts')
end

local offset = decode(ARGV[2])
if offset then
  redis.call('HSET', KEYS[1], 'appliedOffset', offset, 'watermark', ARGV[3])
else
  redis.call('HDEL', KEYS[1], 'appliedOffset')
  redis.call('HSET', KEYS[1], 'watermark', ARGV[3])
end
redis.call('HINCRBY', KEYS[1], 'version', 1)
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'sources', ARGV[4])
end

local i = 13
for _ = 1, nc do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2
end
-- Removals first, so a timer both removed and set in one batch ends up set.
local setFrom = i
i = i + 2 * nts
for _ = 1, ntr do
  redis.call('ZREM', KEYS[3], ARGV[i]); i = i + 1
end
for j = setFrom, setFrom + 2 * nts - 1, 2 do
  redis.call('ZADD', KEYS[3], ARGV[j + 1], ARGV[j])
end
for _ = 1, nw do
  redis.call('ZADD', KEYS[6], ARGV[i + 1], ARGV[i])
  redis.call('HSET', KEYS[7], ARGV[i], ARGV[i + 2]); i = i + 3
end
for _ = 1, na do
  redis.call('XADD', KEYS[5], '*', 'v', ARGV[i]); i = i + 1
end
for _ = 1, nr do
  redis.call('XADD', KEYS[4], '*', 'v', ARGV[i]); i = i + 1
end
for _ = 1, nd do
  redis.call('XADD', KEYS[8], '*', 'v', ARGV[i]); i = i + 1
end
local reply = {0}
for _ = 1, nx do
  local id, row = ARGV[i], ARGV[i + 1]; i = i + 2
  local body = redis.call('HGET', KEYS[7], id)
  if body then
    local claim = redis.call('HGET', KEYS[9], id)
    if claim == '' then
      redis.call('HSET', KEYS[9], id, row)
    elseif not claim then
      local pending = cjson.decode(body)
      local entry = cjson.decode(row)
      entry.row.attempts = pending.attempts
      entry.row.decidedAt = pending.decision.decidedAt
      redis.call('ZREM', KEYS[6], id)
      redis.call('HDEL', KEYS[7], id)
      redis.call('XADD', KEYS[4], '*', 'v', cjson.encode(entry))
      reply[#reply + 1] = id
    end
  end
end
return reply
