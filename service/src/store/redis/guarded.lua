local function failed(r) return type(r) == 'table' and r.err end
-- The counter's value as a string: `known` when the group's last INCRBY told it, else a GET.
local function current(ck, known)
  if known then return known end
  local v = redis.pcall('GET', ck)
  if failed(v) then return nil, v.err end
  return v or '0'
end
local ttl = ARGV[1]
local out = {}
local k, a = 1, 2
while a <= #ARGV do
  local n, records = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local ck, uk = KEYS[k], KEYS[k + 1]
  local group = {false}
  local known = nil
  for i = 0, n - 1 do
    local at = a + 2 + i * 4
    local delta, user = ARGV[at], ARGV[at + 1]
    local rec, fp = tonumber(ARGV[at + 2]), ARGV[at + 3]
    local rk = nil
    if rec > 0 then rk = KEYS[k + 1 + rec] end
    local answer = nil
    local seen = false
    if rk then
      seen = redis.pcall('GET', rk)
      if failed(seen) then answer = 'e ' .. seen.err end
    end
    if answer then
    elseif seen then
      local sfp, counted, value = string.match(seen, '^(%S+) ([01]) (%-?%d+)$')
      if sfp == fp then answer = 'r ' .. counted .. ' ' .. value else answer = 'x' end
    else
      local counted = 1
      if user ~= '' then
        if delta == '1' then counted = redis.pcall('SADD', uk, user)
        else counted = redis.pcall('SREM', uk, user) end
        if failed(counted) then answer = 'e ' .. counted.err end
      end
      if not answer and counted == 1 then
        local r = redis.pcall('INCRBY', ck, delta)
        if failed(r) then
          if user ~= '' then
            if delta == '1' then redis.pcall('SREM', uk, user) else redis.pcall('SADD', uk, user) end
          end
          if string.find(r.err, 'overflow', 1, true) then answer = 'o' else answer = 'e ' .. r.err end
        elseif r > -9007199254740992 and r < 9007199254740992 then
          known = string.format('%d', r)
        else
          known = nil
        end
      end
      if not answer then
        local value, err = current(ck, known)
        if not value then
          answer = 'e ' .. err
        else
          known = value
          answer = 'a ' .. counted .. ' ' .. value
          if rk then
            local w = redis.pcall('SET', rk, fp .. ' ' .. counted .. ' ' .. value, 'PX', ttl)
            if failed(w) then answer = 'e ' .. w.err end
          end
        end
      end
    end
    group[#group + 1] = answer
  end
  group[1] = current(ck, known) or ''
  out[#out + 1] = group
  k = k + 2 + records
  a = a + 2 + n * 4
end
return out
