-- bench.lua: the wrk script of every scenario of bench/bench.sh (see
-- bench/highpress_bench/scenarios.py, which prints these arguments).
--
-- wrk -s bench.lua URL -- MODE DIST PREFIX NKEYS ZIPF_S SEQ_LIMIT DONE_DIR [TOKEN]
--   MODE      post (POST increment), post_users (the same, a new user_id per request),
--             incrby (webdis GET /INCRBY/<key>/1), get (GET the counter)
--   DIST      hot (key PREFIX0 only), uniform (rotation over PREFIX0 .. PREFIX<NKEYS-1>),
--             zipf (Zipf ZIPF_S over NKEYS keys: key i-1 has rank i),
--             random (uniformly random over PREFIX0 .. PREFIX<NKEYS-1>, for key counts in the
--             millions, which a rotation table would not hold),
--             seq (distinct keys PREFIXt<thread>_<n>, SEQ_LIMIT per thread, then the
--             thread writes done.<thread> into DONE_DIR and stops)
--   TOKEN     optional: an API token, sent as Authorization: Bearer TOKEN (api.auth)
-- At the end it prints one line, BENCHJSON {...}, with the run's counts and percentiles.
local threads = {}
local nthreads = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
  table.insert(threads, thread)
end

local json_headers = { ["Content-Type"] = "application/json" }
local get_headers = {}
local mode, dist, prefix, nkeys, zipf_s, seq_limit, done_dir
local fixed, reqs, pos, cdf, seq, stopped, run_id

local function make(i)
  local key = prefix .. i
  if mode == "post" then
    return wrk.format("POST", "/api/v1/counter/increment", json_headers,
      '{"resource_id":"' .. key .. '","counter_type":"like","user_id":"bench","increment":1}')
  elseif mode == "post_users" then
    -- A new user for every request, so a unique-per-user "like" counts every one of them;
    -- the run's start time keeps the users of later runs new too.
    return wrk.format("POST", "/api/v1/counter/increment", json_headers,
      '{"resource_id":"' .. key .. '","counter_type":"like","user_id":"u' .. run_id .. '_' ..
      tid .. '_' .. issued .. '","increment":1}')
  elseif mode == "incrby" then
    return wrk.format("GET", "/INCRBY/" .. key .. "/1", get_headers)
  else
    return wrk.format("GET", "/api/v1/counter/" .. key .. "/like", get_headers)
  end
end

function init(args)
  if #args < 7 then
    error("bench.lua needs: MODE DIST PREFIX NKEYS ZIPF_S SEQ_LIMIT DONE_DIR after --")
  end
  mode, dist, prefix = args[1], args[2], args[3]
  nkeys, zipf_s, seq_limit = tonumber(args[4]), tonumber(args[5]), tonumber(args[6])
  done_dir = args[7]
  if args[8] and args[8] ~= "" then
    json_headers["Authorization"] = "Bearer " .. args[8]
    get_headers["Authorization"] = "Bearer " .. args[8]
  end
  issued = 0
  run_id = os.time()
  math.randomseed(tid * 7919 + os.time())
  fixed = make(0)
  if dist == "uniform" then
    reqs = {}
    for i = 1, nkeys do reqs[i] = make(i - 1) end
    pos = ((tid - 1) * 397) % nkeys
  elseif dist == "zipf" then
    -- CDF of Zipf(s) over ranks 1..nkeys.
    cdf = {}
    local total = 0
    for k = 1, nkeys do
      total = total + 1 / (k ^ zipf_s)
      cdf[k] = total
    end
    for k = 1, nkeys do cdf[k] = cdf[k] / total end
  elseif dist == "seq" then
    seq = 0
    stopped = false
  end
end

function request()
  issued = issued + 1
  if dist == "hot" then
    return fixed
  elseif dist == "uniform" then
    pos = pos % nkeys + 1
    if mode == "post_users" then return make(pos - 1) end
    return reqs[pos]
  elseif dist == "zipf" then
    local u = math.random()
    local lo, hi = 1, nkeys
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if cdf[mid] < u then lo = mid + 1 else hi = mid end
    end
    return make(lo - 1)
  elseif dist == "random" then
    return make(math.random(0, nkeys - 1))
  else
    if seq >= seq_limit then
      if not stopped then
        stopped = true
        local f = io.open(done_dir .. "/done." .. tid, "w")
        if f then f:write(tostring(seq) .. "\n") f:close() end
        wrk.thread:stop()
      end
      return fixed
    end
    seq = seq + 1
    return make("t" .. tid .. "_" .. seq)
  end
end

function done(summary, latency, requests)
  local total_issued = 0
  for _, t in ipairs(threads) do total_issued = total_issued + (t:get("issued") or 0) end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"duration_us":%d,"requests":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"issued":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, total_issued, latency:percentile(50), latency:percentile(99),
    latency.mean))
end
