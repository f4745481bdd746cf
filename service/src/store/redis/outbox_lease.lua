-- Takes, keeps or gives up the lease of one outbox partition. KEYS[1] the lease.
-- ARGV[1] the relay asking, ARGV[2] the lease time in ms (0: give it up).
-- Answers 1 when the relay holds the lease now, 0 when another one does.
local holder = redis.call('GET', KEYS[1])
if ARGV[2] == '0' then
    if holder == ARGV[1] then
        redis.call('DEL', KEYS[1])
    end
    return 0
end
if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return 1
end
if not holder then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return 1
end
return 0
