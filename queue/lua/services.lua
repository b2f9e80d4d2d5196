-- services.lua: the circuit breaker, throttle and limits of one AI service,
-- shared by every worker of the fleet. Updated by the calls that reserve,
-- ack, fail and defer a queue's jobs, so the hot path has no extra round
-- trip. Keys of a service S, derived from KEYS[1]: from the service key
-- itself (corral_declare_service, corral_breaker, corral_breaker_reset),
-- or from a queue key's prefix and the service its K:conf names (the job
-- functions, corral_stats); outside the queues' slots:
--   <prefix>:svc:S        hash  settings (corral_declare_service) and state:
--     st closed|open|half_open, until (open until, ms), n (trips since the
--     breaker last closed), why (what tripped it), probes (half-open probe
--     permits handed out), okp (probes that succeeded), thr (throttled until,
--     ms), thr_why, the window: per-bucket counts cI fI sI (calls, failures,
--     slow calls), bh (newest bucket index), bad (failures + slow calls
--     recorded since the window was last summed: 0 means none can be in it),
--     slp (1 while some worker may be waiting), and i:<host> (calls in
--     flight on a host)
--   <prefix>:svc:S:rl     zset  calls granted within the last rate period
--   <prefix>:svc:S:sl     hash  host -> workers waiting for the service
--   <prefix>:svc:S:held   set   "<K>|<id>" of jobs deferred until the breaker
--                               may close (a reset makes them due at once)
--   <prefix>:svc:S:wake:<host> list  markers that wake those workers
--   <prefix>:services     set   every declared service name

local NB = 10 -- buckets per breaker window: it slides in tenths
local SVC_FIELDS = {'win', 'minc', 'fr', 'slow', 'sr', 'of', 'om', 'hc', 'rn', 'rp', 'st',
                    'until', 'n', 'why', 'probes', 'okp', 'thr', 'thr_why', 'bh', 'bad', 'slp'}
local SVC_NUM = {win = 60000, minc = 20, fr = 50, slow = 30000, sr = 80, of = 30000,
                 om = 300000, hc = 3, rn = 0, rp = 60000, ['until'] = 0, n = 0, probes = 0,
                 okp = 0, thr = 0, bad = 0, slp = 0}

local function svc_key(prefix, name)
    return prefix .. ':svc:' .. name
end

-- The service's settings and state, or nil when it was never declared (a
-- queue naming an undeclared service runs without a breaker).
local function load_svc(SK, name)
    local v = redis.call('HMGET', SK, unpack(SVC_FIELDS))
    if not v[1] then
        return nil
    end
    local s = {key = SK, name = name}
    for i, f in ipairs(SVC_FIELDS) do
        if SVC_NUM[f] ~= nil then
            s[f] = tonumber(v[i]) or SVC_NUM[f]
        else
            s[f] = v[i]
        end
    end
    s.st = s.st or 'closed'
    s.why = s.why or ''
    s.thr_why = s.thr_why or ''
    s.bh = tonumber(s.bh)
    return s
end

local function svc_bucket(s, now)
    return math.floor(now / math.max(math.floor(s.win / NB), 1))
end

local function bucket_fields(lo, hi)
    local fields = {}
    for j = lo, hi do
        fields[#fields + 1] = 'c' .. j
        fields[#fields + 1] = 'f' .. j
        fields[#fields + 1] = 's' .. j
    end
    return fields
end

-- Moves the newest bucket to idx, deleting the buckets that left the
-- window (once per bucket width, not per call).
local function svc_advance(s, idx)
    if s.bh ~= nil and idx <= s.bh then
        return -- same bucket, or the clock stepped back: keep the newest
    end
    if s.bh ~= nil then
        local lo, hi = s.bh - NB + 1, math.min(s.bh, idx - NB)
        if hi >= lo then
            redis.call('HDEL', s.key, unpack(bucket_fields(lo, hi)))
        end
    end
    s.bh = idx
    redis.call('HSET', s.key, 'bh', idx)
end

-- Sums the window as of now into s.c, s.f, s.s (read-only).
local function svc_sum(s, now)
    s.c, s.f, s.s = 0, 0, 0
    if s.bh == nil then
        return
    end
    local idx = svc_bucket(s, now)
    local lo, hi = idx - NB + 1, math.min(idx, s.bh)
    if hi < lo then
        return
    end
    local v = redis.call('HMGET', s.key, unpack(bucket_fields(lo, hi)))
    for k = 1, #v, 3 do
        s.c = s.c + (tonumber(v[k]) or 0)
        s.f = s.f + (tonumber(v[k + 1]) or 0)
        s.s = s.s + (tonumber(v[k + 2]) or 0)
    end
end

local function svc_clear_window(s)
    if s.bh ~= nil then
        redis.call('HDEL', s.key, 'bh', unpack(bucket_fields(s.bh - NB + 1, s.bh)))
    end
    s.bh, s.c, s.f, s.s, s.bad = nil, 0, 0, 0, 0
    redis.call('HSET', s.key, 'bad', 0)
end

-- Wakes the workers waiting for the service: on one host, or all.
local function svc_wake(s, host)
    if s.slp ~= 1 then
        return -- nobody waits: the common case, one field read with the rest
    end
    local slk = s.key .. ':sl'
    local hosts
    if host then
        local n = redis.call('HGET', slk, host)
        if not n then
            return
        end
        hosts = {host, n}
    else
        hosts = redis.call('HGETALL', slk)
    end
    for i = 1, #hosts, 2 do
        local wk = s.key .. ':wake:' .. hosts[i]
        local marks = {}
        for k = 1, math.min(tonumber(hosts[i + 1]) or 1, 64) do
            marks[k] = '1'
        end
        redis.call('RPUSH', wk, unpack(marks))
        redis.call('PEXPIRE', wk, 60000)
        redis.call('HDEL', slk, hosts[i])
    end
    if host == nil or redis.call('EXISTS', slk) == 0 then
        s.slp = 0
        redis.call('HSET', s.key, 'slp', 0)
    end
end

local function svc_open(s, now, dur, why)
    s.st, s['until'], s.why, s.probes, s.okp = 'open', now + dur, why, 0, 0
    -- The window that tripped it stays visible (tc, tf: calls, failures)
    -- while the breaker is not closed; the window itself starts afresh.
    redis.call('HSET', s.key, 'st', 'open', 'until', s['until'], 'why', why, 'n', s.n,
               'probes', 0, 'okp', 0, 'opened_ms', now, 'tc', s.c or 0, 'tf', s.f or 0)
    svc_clear_window(s)
end

local function svc_close(s, now)
    s.st, s.n, s.probes, s.okp = 'closed', 0, 0, 0
    redis.call('HSET', s.key, 'st', 'closed', 'n', 0, 'probes', 0, 'okp', 0, 'closed_ms', now)
    svc_clear_window(s)
    svc_wake(s, nil)
    redis.call('DEL', s.key .. ':held') -- they are due about now anyway
end

-- Remembers a job that waits for the breaker rather than for a back-off.
local function svc_hold_job(b, K, id)
    redis.call('SADD', b.s.key .. ':held', K .. '|' .. id)
end

local function pct_text(a, b)
    return string.format('%d%%', math.floor(a * 100 / b + 0.5))
end

-- What may be reserved for the service now: the number of calls allowed
-- (at most want) and, when that is fewer than want, until when (ms) and why.
-- Moves an open breaker whose time is up to half-open.
local function svc_gate(s, now, want, host, max_inflight)
    if s.thr > now then
        return 0, s.thr, 'throttled: ' .. s.thr_why
    end
    if s.st == 'open' then
        if now < s['until'] then
            return 0, s['until'], 'breaker open: ' .. s.why
        end
        s.st, s.probes, s.okp = 'half_open', 0, 0
        redis.call('HSET', s.key, 'st', 'half_open', 'probes', 0, 'okp', 0)
    end
    local allowed, upto, why = want, nil, nil
    local function cap(n, t, w)
        if n < allowed then
            allowed, upto, why = math.max(n, 0), t, w
        end
    end
    if s.st == 'half_open' then
        cap(s.hc - s.probes, now + 1000, 'breaker half-open: probe calls in flight')
    end
    if max_inflight > 0 then
        local cur = tonumber(redis.call('HGET', s.key, 'i:' .. host)) or 0
        cap(max_inflight - cur, now + 1000,
            string.format('max_inflight %d reached on host %s', max_inflight, host))
    end
    if s.rn > 0 and allowed > 0 then
        local rk = s.key .. ':rl'
        redis.call('ZREMRANGEBYSCORE', rk, '-inf', now - s.rp)
        local used = redis.call('ZCARD', rk)
        if used + allowed > s.rn then
            local t = now + 1
            local first = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')
            if first[2] then
                t = tonumber(first[2]) + s.rp + 1
            end
            cap(s.rn - used, t, string.format('rate %d per %d ms reached', s.rn, s.rp))
        end
    end
    return allowed, upto, why
end

-- Records calls granted by reserve: in-flight count, probes, rate log.
local function svc_granted(s, now, n, host)
    if n == 0 then
        return
    end
    redis.call('HINCRBY', s.key, 'i:' .. host, n)
    if s.st == 'half_open' then
        s.probes = s.probes + n
        redis.call('HSET', s.key, 'probes', s.probes)
    end
    if s.rn > 0 then
        local rk = s.key .. ':rl'
        local seq = redis.call('HINCRBY', s.key, 'rseq', n)
        local entries = {}
        for k = 1, n do
            entries[#entries + 1] = now
            entries[#entries + 1] = tostring(seq - n + k)
        end
        redis.call('ZADD', rk, unpack(entries))
        redis.call('PEXPIRE', rk, s.rp + 1000)
    end
end

-- Collects the outcomes of one ack/fail/defer call for a queue's service
-- and applies them to the breaker once, at the end of the call.
local function svc_batch(K, c, prefix)
    if c.service == '' then
        return nil
    end
    local SK = svc_key(prefix, c.service)
    local s = load_svc(SK, c.service)
    if s == nil then
        return nil
    end
    return {s = s, ok = 0, fail = 0, slow = 0, pok = 0, pfail = 0, prel = 0, hosts = {},
            fail_why = ''}
end

-- A job leaves its lease: its host's call slot and its probe permit (if it
-- held one) are released. Returns the job's started_ms (read anyway), so
-- the caller need not read it again. kind: 'ok', 'fail' (a breaker failure) or nil
-- (the call does not count: throttled, deferred, reclaimed).
local function svc_leave(b, jk, now, kind, why)
    if b == nil then
        return
    end
    local j = redis.call('HMGET', jk, 'state', 'worker', 'probe', 'started_ms')
    if j[1] == 'active' and j[2] then
        local host = j[2]:match('^(.*):[^:]*$') or j[2]
        b.hosts[host] = (b.hosts[host] or 0) + 1
    end
    local probe = j[3] == '1'
    if probe then
        redis.call('HDEL', jk, 'probe')
    end
    if kind == nil then
        if probe then
            b.prel = b.prel + 1
        end
        return j[4]
    end
    local ms = now - (tonumber(j[4]) or now)
    if ms >= b.s.slow then
        b.slow = b.slow + 1
    end
    if kind == 'ok' then
        b.ok = b.ok + 1
        if probe then
            b.pok = b.pok + 1
        end
    else
        b.fail = b.fail + 1
        b.fail_why = why or ''
        if probe then
            b.pfail = b.pfail + 1
        end
    end
    return j[4]
end

local function svc_apply(b, now)
    if b == nil then
        return
    end
    local s = b.s
    for host, n in pairs(b.hosts) do
        redis.call('HINCRBY', s.key, 'i:' .. host, -n)
        svc_wake(s, host)
    end
    if s.st == 'half_open' then
        if b.pfail > 0 then
            s.n = s.n + 1
            local dur = math.min(s.of * 2 ^ math.min(s.n, 40), s.om)
            svc_open(s, now, dur, string.format('probe call failed: %s', b.fail_why:sub(1, 120)))
            return
        end
        s.okp = s.okp + b.pok
        s.probes = math.max(s.probes - b.prel, 0)
        if s.okp >= s.hc then
            svc_close(s, now)
        else
            redis.call('HSET', s.key, 'okp', s.okp, 'probes', s.probes)
            if b.prel > 0 then
                svc_wake(s, nil)
            end
        end
        return
    end
    if s.st ~= 'closed' or b.ok + b.fail == 0 then
        return -- calls that finish after the trip do not count
    end
    local idx = svc_bucket(s, now)
    svc_advance(s, idx)
    redis.call('HINCRBY', s.key, 'c' .. idx, b.ok + b.fail)
    if b.fail > 0 then
        redis.call('HINCRBY', s.key, 'f' .. idx, b.fail)
    end
    if b.slow > 0 then
        redis.call('HINCRBY', s.key, 's' .. idx, b.slow)
    end
    -- Only a window holding failures or slow calls can trip, so a healthy
    -- service costs one HINCRBY per call here: the window is summed only
    -- while "bad" says some may be in it (a success can still be the call
    -- that reaches min_calls with enough failures before it).
    if s.bad + b.fail + b.slow == 0 then
        return
    end
    svc_sum(s, now)
    s.bad = s.f + s.s
    redis.call('HSET', s.key, 'bad', s.bad)
    if s.c >= s.minc then
        local why
        if s.f * 100 >= s.fr * s.c then
            why = string.format('failure rate %s (%d of %d calls in %d ms; last: %s)',
                                pct_text(s.f, s.c), s.f, s.c, s.win, b.fail_why:sub(1, 120))
        elseif s.s * 100 >= s.sr * s.c then
            why = string.format('slow-call rate %s (%d of %d calls over %d ms)',
                                pct_text(s.s, s.c), s.s, s.c, s.slow)
        end
        if why then
            s.n = 0
            svc_open(s, now, s.of, why)
        end
    end
end

-- A 429: the whole service waits until its Retry-After.
local function svc_throttle(b, now, delay, why)
    if b == nil then
        return
    end
    local s = b.s
    if now + delay > s.thr then
        s.thr, s.thr_why = now + delay, why
        redis.call('HSET', s.key, 'thr', s.thr, 'thr_why', why:sub(1, 200))
    end
end

-- A billing or quota error: retrying will not help for a long time.
local function svc_quota(b, now, why)
    if b == nil then
        return 0
    end
    local s = b.s
    if s.st ~= 'open' or s['until'] < now + s.om then
        s.n = s.n + 1
        svc_open(s, now, s.om, 'quota: ' .. why:sub(1, 200))
    end
    return s['until'] - now
end

-- The breaker as status shows it (read-only: rolls the window in memory).
local function svc_view(s, now)
    svc_sum(s, now)
    local st = s.st
    if st == 'open' and now >= s['until'] then
        st = 'half_open'
    end
    local inflight, total = {}, 0
    local h = redis.call('HGETALL', s.key)
    for i = 1, #h, 2 do
        local f = h[i]
        if f:byte(1) == 105 and f:byte(2) == 58 then -- "i:<host>"
            local n = tonumber(h[i + 1]) or 0
            if n > 0 then
                inflight[f:sub(3)] = n
                total = total + n
            end
        end
    end
    local rate_used = 0
    if s.rn > 0 then
        rate_used = redis.call('ZCOUNT', s.key .. ':rl', now - s.rp, '+inf')
    end
    if st ~= 'closed' and s.c == 0 then
        -- Open or half-open: show the window that tripped it.
        local t = redis.call('HMGET', s.key, 'tc', 'tf')
        s.c, s.f = tonumber(t[1]) or 0, tonumber(t[2]) or 0
    end
    local v = {
        service = s.name, state = st, calls = s.c, failures = s.f, slow_calls = s.s,
        failure_rate = s.c > 0 and math.floor(s.f * 1000 / s.c + 0.5) / 1000 or 0,
        slow_rate = s.c > 0 and math.floor(s.s * 1000 / s.c + 0.5) / 1000 or 0,
        open_until_ms = st ~= 'closed' and s['until'] or 0,
        throttled_until_ms = s.thr > now and s.thr or 0,
        reason = st ~= 'closed' and utf8_clean(s.why) or '',
        throttle_reason = s.thr > now and utf8_clean(s.thr_why) or '',
        trips = s.n, probes = s.probes, probe_successes = s.okp, half_open_calls = s.hc,
        min_calls = s.minc, window_ms = s.win, inflight = total, rate_limit = s.rn,
        rate_period_ms = s.rp, rate_used = rate_used, time_ms = now
    }
    if total > 0 then
        v.inflight_by_host = inflight
    end
    local held
    if v.throttled_until_ms > 0 then
        held = 'throttled: ' .. s.thr_why
    elseif st == 'open' then
        held = 'breaker open: ' .. s.why
    elseif st == 'half_open' then
        held = 'breaker half-open'
    elseif s.rn > 0 and rate_used >= s.rn then
        held = string.format('at its rate limit (%d per %d ms)', s.rn, s.rp)
    end
    v.hold = held or ''
    return v
end


-- Returns the service key and name from the one key argument: a bare name
-- (prefix "corral") or "<prefix>:svc:<name>".
local function service_key(key)
    if key == nil then
        fail('BADARG', 'expected one key: the service name')
    end
    local prefix, name = key:match('^(.-):svc:(.*)$')
    if prefix == nil then
        prefix, name = 'corral', key
    end
    if not valid_name(name) then
        fail('BADNAME', 'bad service name "%s": use 1-64 characters of A-Z a-z 0-9 _ . : -', name:sub(1, 80))
    end
    if not valid_name(prefix) then
        fail('BADNAME', 'bad key prefix "%s"', prefix:sub(1, 80))
    end
    return svc_key(prefix, name), name, prefix
end

-- corral_declare_service: KEYS[1] service; ARGV[1] settings JSON
-- {window_ms, min_calls, failure_rate, slow_call_ms, slow_rate, open_for_ms,
-- open_max_ms, half_open_calls, rate, rate_period_ms} (rates in percent;
-- rate 0 = no limit) -> "OK". Registers or updates a service's breaker
-- settings; its state is kept.
local function corral_declare_service(keys, args)
    local SK, name, prefix = service_key(keys[1])
    local ok, v = pcall(json_decode, args[1] or '')
    if not ok or type(v) ~= 'table' then
        fail('BADSETTING', 'service "%s": settings must be a JSON object', name)
    end
    local function num(k, dflt, lo, hi)
        local x = v[k]
        if x == nil then
            x = dflt
        end
        x = tonumber(x)
        if x == nil or x < lo or x > hi then
            fail('BADSETTING', 'service "%s": %s must be a number from %d to %d', name, k, lo, hi)
        end
        return x
    end
    local fields = {
        'win', math.floor(num('window_ms', 60000, 100, 86400000)),
        'minc', math.floor(num('min_calls', 20, 1, 1000000)),
        'fr', num('failure_rate', 50, 0.01, 100),
        'slow', math.floor(num('slow_call_ms', 30000, 1, 86400000)),
        'sr', num('slow_rate', 80, 0.01, 100),
        'of', math.floor(num('open_for_ms', 30000, 1, 86400000)),
        'om', math.floor(num('open_max_ms', 300000, 1, 86400000)),
        'hc', math.floor(num('half_open_calls', 3, 1, 10000)),
        'rn', math.floor(num('rate', 0, 0, 100000000)),
        'rp', math.floor(num('rate_period_ms', 60000, 1, 86400000))
    }
    if fields[12] > fields[14] then
        fail('BADSETTING', 'service "%s": open_for_ms must not exceed open_max_ms', name)
    end
    if not redis.call('HGET', SK, 'st') then
        fields[#fields + 1] = 'st'
        fields[#fields + 1] = 'closed'
    end
    redis.call('HSET', SK, unpack(fields))
    redis.call('SADD', prefix .. ':services', name)
    return 'OK'
end

local function known_service(SK, name)
    local s = load_svc(SK, name)
    if s == nil then
        fail('NOSERVICE', 'unknown service "%s": no corrald or worker has declared it', name)
    end
    return s
end

-- corral_breaker: KEYS[1] service -> its breaker, throttle and limits as a
-- JSON object (service, state, failure_rate, calls, open_until_ms, ...).
local function corral_breaker(keys, args)
    local SK, name = service_key(keys[1])
    return cjson.encode(svc_view(known_service(SK, name), now_ms()))
end

-- corral_breaker_reset: KEYS[1] service -> "OK". Closes the breaker, ends a
-- throttle and wakes the workers waiting for the service.
local function corral_breaker_reset(keys, args)
    local SK, name = service_key(keys[1])
    local s = known_service(SK, name)
    local now = now_ms()
    -- Jobs that wait for the breaker run now, not when it would have let
    -- them; jobs in an ordinary back-off keep theirs.
    for _, e in ipairs(redis.call('SMEMBERS', SK .. ':held')) do
        local K, id = e:match('^(.*)|([^|]*)$')
        if K and redis.call('ZSCORE', K .. ':sched', id) then
            redis.call('ZADD', K .. ':sched', 'XX', now, id)
            redis.call('HSET', job_key(K, id), 'run_at_ms', now)
        end
    end
    redis.call('HSET', SK, 'thr', 0, 'thr_why', '')
    svc_close(s, now)
    return 'OK'
end

