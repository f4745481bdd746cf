-- Relayed entries leave the outbox. KEYS[1] the stream, KEYS[2] the relayed total.
-- ARGV[1] the least id to keep (every entry below it was relayed), ARGV[2] the appended total
-- carried by the last relayed entry. Idempotent: run twice, it changes nothing more.
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
local relayed = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) > relayed then
    redis.call('SET', KEYS[2], ARGV[2])
end
return 1
