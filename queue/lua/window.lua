-- window.lua: a service's breaker window (services.lua), the calls, failures
-- and slow calls of its last window_ms in NB buckets that slide in tenths.
-- Keys: the service's hash <prefix>:svc:S (services.lua's header), its
-- fields calls:<i>, failures:<i>, slow:<i>, newest_bucket and bad_calls.
-- A module of its own so that services.lua stays within 700 lines.

local NB = 10 -- buckets per breaker window: it slides in tenths

-- The bucket of now (s.bucket_ms: the width, made by services.lua's load_svc).
-- The last bucket's bounds are kept with the settings (s.bm, derived
-- data): most calls compare rather than divide.
local function svc_bucket(s, now)
    local bm = s.bm
    if now >= bm[2] and now < bm[3] then
        return bm[1]
    end
    local idx = math.floor(now / s.bucket_ms) -- bucket_ms: load_svc
    bm[1], bm[2], bm[3] = idx, idx * s.bucket_ms, (idx + 1) * s.bucket_ms
    return idx
end

local function bucket_fields(lo, hi)
    local fields = {}
    for j = lo, hi do
        fields[#fields + 1] = 'calls:' .. j
        fields[#fields + 1] = 'failures:' .. j
        fields[#fields + 1] = 'slow:' .. j
    end
    return fields
end

-- Moves the newest bucket to idx, deleting the buckets that left the
-- window (once per bucket width, not per call).
local function svc_advance(s, idx)
    if s.newest_bucket ~= nil and idx <= s.newest_bucket then
        return -- same bucket, or the clock stepped back: keep the newest
    end
    if s.newest_bucket ~= nil then
        local lo, hi = s.newest_bucket - NB + 1, math.min(s.newest_bucket, idx - NB)
        if hi >= lo then
            rcall('HDEL', s.key, unpack(bucket_fields(lo, hi)))
        end
    end
    s.newest_bucket = idx
    rcall('HSET', s.key, 'newest_bucket', idx)
end

-- Sums the window as of now into s.calls, s.failures, s.slow_calls (read-only).
local function svc_sum(s, now)
    s.calls, s.failures, s.slow_calls = 0, 0, 0
    if s.newest_bucket == nil then
        return
    end
    local idx = svc_bucket(s, now)
    local lo, hi = idx - NB + 1, math.min(idx, s.newest_bucket)
    if hi < lo then
        return
    end
    local v = rcall('HMGET', s.key, unpack(bucket_fields(lo, hi)))
    for k = 1, #v, 3 do
        s.calls = s.calls + (tonumber(v[k]) or 0)
        s.failures = s.failures + (tonumber(v[k + 1]) or 0)
        s.slow_calls = s.slow_calls + (tonumber(v[k + 2]) or 0)
    end
end

local function svc_clear_window(s)
    if s.newest_bucket ~= nil then
        rcall('HDEL', s.key, 'newest_bucket',
              unpack(bucket_fields(s.newest_bucket - NB + 1, s.newest_bucket)))
    end
    s.newest_bucket, s.calls, s.failures, s.slow_calls, s.bad_calls = nil, 0, 0, 0, 0
    rcall('HSET', s.key, 'bad_calls', 0)
end
