local before = redis.call('GET', KEYS[1]) or '0'
redis.call('DEL', KEYS[1], KEYS[2])
return before
