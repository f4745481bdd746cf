-- One leaderboard's write: new scores, then a trim to the top K, then the K-th score back.
--
-- KEYS[1] the ranking's sorted set.
-- ARGV[1] K, the members kept; ARGV[2] the most members one call trims (a set left larger by an
-- older version shrinks over a few calls instead of blocking Redis once); ARGV[3] the set's TTL
-- in seconds (0: none). Then pairs of <score> <member> raised (ZADD GT: a score only goes up,
-- a new member is added), ARGV[4] of them, then pairs lowered on members already in the set
-- (ZADD XX), the rest.
--
-- Returns the score at rank K (from the top), or false while the set holds fewer than K.
local key = KEYS[1]
local keep = tonumber(ARGV[1])
local raised = tonumber(ARGV[4])
local first = 5
local split = first + 2 * raised
local function zadd(flag, from, to)
  -- ZADD takes many pairs at once; unpack in chunks that stay below Lua's stack limit.
  local i = from
  while i < to do
    local j = math.min(i + 2 * 500, to)
    redis.call('ZADD', key, flag, unpack(ARGV, i, j - 1))
    i = j
  end
end
zadd('GT', first, split)
zadd('XX', split, #ARGV + 1)
local extra = redis.call('ZCARD', key) - keep
if extra > 0 then
  redis.call('ZREMRANGEBYRANK', key, 0, math.min(extra, tonumber(ARGV[2])) - 1)
end
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('EXPIRE', key, ttl)
end
local kth = redis.call('ZREVRANGE', key, keep - 1, keep - 1, 'WITHSCORES')
if #kth == 0 then
  return false
end
return kth[2]
