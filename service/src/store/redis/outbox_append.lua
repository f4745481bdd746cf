-- One flush's events for one outbox partition: a stream entry and the partition's running
-- total of events appended. KEYS[1] the stream, KEYS[2] the appended total.
-- ARGV[1] the entry's events (one per line), ARGV[2] how many.
-- The entry carries the total after it (`c`), so the relay can record what it relayed
-- idempotently. The total is written after the XADD: a failed XADD changes nothing.
local total = tonumber(redis.call('GET', KEYS[2]) or '0') + tonumber(ARGV[2])
redis.call('XADD', KEYS[1], '*', 'c', total, 'e', ARGV[1])
redis.call('SET', KEYS[2], total)
return total
