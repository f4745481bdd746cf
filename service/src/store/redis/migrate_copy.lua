if (redis.call('GET', KEYS[2]) or '') ~= ARGV[1] then return 0 end
redis.call('INCRBY', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[2])
return 1
