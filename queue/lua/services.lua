-- services.lua: the circuit breaker, throttle and limits of one AI service,
-- shared by every worker of the fleet. Updated by the calls that reserve,
-- ack, fail and defer a queue's jobs, so the hot path has no extra round
-- trip. Keys of a service S, derived from KEYS[1]: from the service key
-- itself (corral_declare_service, corral_breaker, corral_breaker_reset),
-- or from a queue key's prefix and the service its K:conf names (the job
-- functions, corral_stats); outside the queues' slots:
--   <prefix>:svc:S        hash  the settings (corral_declare_service: window_ms,
--     min_calls, failure_rate, slow_call_ms, slow_rate, open_for_ms,
--     open_max_ms, half_open_calls, rate, rate_period_ms; and all of them as
--     one text, settings, with sv its digest that load_svc checks) and the state:
--     state (closed, open or half_open), open_until_ms, trips (since the
--     breaker last closed), reason (what tripped it), probes (half-open
--     probe permits handed out), probe_successes, opened_ms, closed_ms,
--     trip_calls and trip_failures (the window that tripped it),
--     throttled_until_ms, throttle_reason, the window: per-bucket counts
--     calls:<i>, failures:<i>, slow:<i>, newest_bucket (<i> of the newest),
--     bad_calls (failures + slow calls recorded since the window was last
--     summed: 0 means none can be in it), sleepers (1 while some worker may
--     be waiting), rate_seq (names rate log entries), inflight:<host> (calls
--     in flight on a host), max_inflight and model (fallback.lua). Version 3's
--     names (minc, fr, ...) are dropped on declare (protocol.md, "Upgrading").
--   <prefix>:svc:S:rl     zset  calls granted within the last rate period
--   <prefix>:svc:S:sl     hash  host -> workers waiting for the service
--   <prefix>:svc:S:held   set   "<K>|<id>" of jobs deferred until the breaker
--                               may close (a reset makes them due at once)
--   <prefix>:svc:S:wake:<host> list  markers that wake those workers
--   <prefix>:services     set   every declared service name
-- corral_breaker_reset also touches, for each "<K>|<id>" of S:held, K:sched,
-- K:conf and K:job:<id> of that queue: keys derived from S:held's members.

-- The settings (all numeric), the state fields load_svc reads, the defaults.
local SVC_SETTINGS = {'window_ms', 'min_calls', 'failure_rate', 'slow_call_ms', 'slow_rate',
                      'open_for_ms', 'open_max_ms', 'half_open_calls', 'rate', 'rate_period_ms',
                      -- tokens.lua's budgets (money in nano-units)
                      'tokens', 'tokens_period_ms', 'bytes_per_token', 'price_input',
                      'price_output', 'budget', 'budget_period_ms'}
-- In this order: an ack reads the first five while the breaker is closed.
local SVC_STATE = {'sv', 'state', 'newest_bucket', 'bad_calls', 'sleepers',
                   'throttled_until_ms', 'open_until_ms', 'trips', 'reason', 'probes',
                   'probe_successes', 'throttle_reason'}
local SVC_NUM = {window_ms = 60000, min_calls = 20, failure_rate = 50, slow_call_ms = 30000,
                 slow_rate = 80, open_for_ms = 30000, open_max_ms = 300000, half_open_calls = 3,
                 rate = 0, rate_period_ms = 60000, tokens = 0, tokens_period_ms = 60000,
                 bytes_per_token = 4, price_input = 0, price_output = 0, budget = 0,
                 budget_period_ms = 86400000}
local tok_view -- the budgets and usage in a service's view: defined in tokens.lua

-- Parsed settings per service key, valid while its "sv" (corral_declare_service) is the same.
local svc_cache, svc_cached = {}, 0

-- The host of a worker id "<host>:<n>" (the id itself without a colon),
-- whose calls in flight count against max_inflight. Kept per worker id
-- (derived data: prelude's hot-path caches): reserve and ack ask it.
local host_cache, host_cached = {}, 0
local function worker_host(worker)
    local host = host_cache[worker]
    if host == nil then
        host = worker:match('^(.*):[^:]*$') or worker
        if host_cached >= CACHE_MAX then
            host_cache, host_cached = {}, 0
        end
        host_cache[worker], host_cached = host, host_cached + 1
    end
    return host
end

-- With c (a queue's settings, load_conf) and name its c.service: the key
-- is kept in c (c.sk, derived data), not made on every call.
local function svc_key(prefix, name, c)
    if c then
        local sk = c.sk
        if sk == nil then
            sk = prefix .. ':svc:' .. name
            c.sk = sk
        end
        return sk
    end
    return prefix .. ':svc:' .. name
end

-- The service's settings and state, or nil when it was never declared (a
-- queue naming an undeclared service runs without a breaker). The state is
-- read on every call (one HMGET); the settings come from svc_cache (the
-- table's metatable) while "sv" (else "settings") is unchanged (services
-- of library version 4 and before have neither: read in full). Each field of a
-- reply costs a Lua string and table slot: with now, a closed breaker's
-- call reads what it uses, with host (reserve) the throttle and the host's
-- calls in flight, else (ack) the window and sleepers; the settings' table
-- answers the rest as svc_close leaves it (trips, probes 0; no reasons).
-- With both (corral_ack_reserve: runs.lua), the ack's fields and the
-- reserve's in one read. Small integers come back through int_texts
-- (prelude: no tonumber).
local function load_svc(SK, name, now, host, both)
    local v, full, thr, hi
    if both then
        v = rcall('HMGET', SK, 'sv', 'state', 'newest_bucket', 'bad_calls', 'sleepers',
                  'throttled_until_ms', inflight_field(host))
        thr, hi = v[6], v[7]
        hi = hi and (int_texts[hi] or tonumber(hi)) or 0
    elseif host then
        v = rcall('HMGET', SK, 'sv', 'state', 'throttled_until_ms', inflight_field(host))
        thr, hi, v[3], v[4] = v[3], v[4], nil, nil
        hi = hi and (int_texts[hi] or tonumber(hi)) or 0
    else
        v = rcall('HMGET', SK, unpack(SVC_STATE, 1, now and 5 or 12))
        full, thr = not now, v[6]
    end
    local packed = v[1] or rcall('HGET', SK, 'settings') -- declared before "sv" (v7, perf)
    local set = packed and svc_cache[SK]
    if not (set and set.packed == packed) then
        local w = rcall('HMGET', SK, unpack(SVC_SETTINGS))
        if not w[1] then
            return nil
        end
        set = {packed = packed, calls_field = {}, open_until_ms = 0, trips = 0, reason = '',
               probes = 0, probe_successes = 0, throttle_reason = '', nb = {},
               bm = {0, 0, 0}}
        for i, f in ipairs(SVC_SETTINGS) do
            set[f] = tonumber(w[i]) or SVC_NUM[f]
        end
        -- svc_bucket's width, made once (derived from window_ms)
        set.bucket_ms = math.max(math.floor(set.window_ms / NB), 1)
        set.meta = {__index = set}
        if packed then
            if svc_cached >= CACHE_MAX then
                svc_cache, svc_cached = {}, 0
            end
            svc_cache[SK], svc_cached = set, svc_cached + 1
        end
    end
    local state, throttled = v[2] or 'closed', thr and tonumber(thr) or 0
    if now and (state ~= 'closed' or throttled > now) then
        v, full = rcall('HMGET', SK, unpack(SVC_STATE)), true
        throttled = tonumber(v[6]) or 0
    end
    -- newest_bucket: its last text and number kept with the settings
    -- (derived data); bad_calls and sleepers are small integers.
    local nbt, nb, bc, sl = v[3], nil, v[4], v[5]
    if nbt then
        local memo = set.nb
        if memo[1] == nbt then
            nb = memo[2]
        else
            nb = tonumber(nbt)
            memo[1], memo[2] = nbt, nb
        end
    end
    local s = setmetatable({key = SK, name = name, state = state, throttled_until_ms = throttled,
                            newest_bucket = nb,
                            bad_calls = bc and (int_texts[bc] or tonumber(bc)) or 0,
                            sleepers = sl and (int_texts[sl] or tonumber(sl)) or 0,
                            host_inflight = hi}, set.meta)
    if full then
        s.open_until_ms, s.trips, s.reason, s.probes, s.probe_successes, s.throttle_reason =
            tonumber(v[7]) or 0, tonumber(v[8]) or 0, v[9] or '', tonumber(v[10]) or 0,
            tonumber(v[11]) or 0, v[12] or ''
    end
    return s
end

-- Wakes the workers waiting for the service: on one host, or all.
local function svc_wake(s, host)
    if s.sleepers ~= 1 then
        return -- nobody waits: the common case, one field read with the rest
    end
    local slk = s.key .. ':sl'
    local hosts
    if host then
        local n = rcall('HGET', slk, host)
        if not n then
            return
        end
        hosts = {host, n}
    else
        hosts = rcall('HGETALL', slk)
    end
    for i = 1, #hosts, 2 do
        local wk = s.key .. ':wake:' .. hosts[i]
        local marks = {}
        for k = 1, math.min(tonumber(hosts[i + 1]) or 1, 64) do
            marks[k] = '1'
        end
        rcall('RPUSH', wk, unpack(marks))
        rcall('PEXPIRE', wk, 60000)
        rcall('HDEL', slk, hosts[i])
    end
    if host == nil or rcall('EXISTS', slk) == 0 then
        s.sleepers = 0
        rcall('HSET', s.key, 'sleepers', 0)
    end
end

local function svc_open(s, now, dur, why)
    s.state, s.open_until_ms, s.reason, s.probes, s.probe_successes = 'open', now + dur, why, 0, 0
    -- The window that tripped it stays visible (trip_calls, trip_failures)
    -- while the breaker is not closed; the window itself starts afresh.
    rcall('HSET', s.key, 'state', 'open', 'open_until_ms', s.open_until_ms, 'reason', why,
          'trips', s.trips, 'probes', 0, 'probe_successes', 0, 'opened_ms', now,
          'trip_calls', s.calls or 0, 'trip_failures', s.failures or 0)
    svc_clear_window(s)
end

local function svc_close(s, now)
    s.state, s.trips, s.probes, s.probe_successes = 'closed', 0, 0, 0
    rcall('HSET', s.key, 'state', 'closed', 'trips', 0, 'probes', 0, 'probe_successes', 0,
          'closed_ms', now)
    svc_clear_window(s)
    svc_wake(s, nil)
    rcall('DEL', s.key .. ':held') -- they are due about now anyway
end

-- Remembers a job that waits for the breaker rather than for a back-off.
local function svc_hold_job(b, K, id)
    rcall('SADD', b.s.key .. ':held', K .. '|' .. id)
end

local function pct_text(a, b) return string.format('%d%%', math.floor(a * 100 / b + 0.5)) end

-- What may be reserved for the service now: the number of calls allowed
-- (at most want) and, when that is fewer than want, until when (ms) and why.
-- Moves an open breaker whose time is up to half-open.
local function svc_gate(s, now, want, host, max_inflight)
    if s.throttled_until_ms > now then
        return 0, s.throttled_until_ms, 'throttled: ' .. s.throttle_reason
    end
    if s.state == 'open' then
        if now < s.open_until_ms then
            return 0, s.open_until_ms, 'breaker open: ' .. s.reason
        end
        s.state, s.probes, s.probe_successes = 'half_open', 0, 0
        rcall('HSET', s.key, 'state', 'half_open', 'probes', 0, 'probe_successes', 0)
    end
    -- Each limit caps allowed; the reason text is made only for a limit
    -- that caps (the hot path makes no closure and formats nothing).
    local allowed, upto, why = want, nil, nil
    if s.state == 'half_open' then
        local n = s.half_open_calls - s.probes
        if n < allowed then
            allowed, upto, why = math.max(n, 0), now + 1000,
                                 'breaker half-open: probe calls in flight'
        end
    end
    if max_inflight > 0 then
        local n = max_inflight - (s.host_inflight or -- read by load_svc, else here
                                   tonumber(rcall('HGET', s.key, inflight_field(host))) or 0)
        if n < allowed then
            allowed, upto, why = math.max(n, 0), now + 1000,
                                 string.format('max_inflight %d reached on host %s', max_inflight,
                                               host)
        end
    end
    if s.rate > 0 and allowed > 0 then
        local rk = s.key .. ':rl'
        rcall('ZREMRANGEBYSCORE', rk, '-inf', now - s.rate_period_ms)
        local used = rcall('ZCARD', rk)
        if used + allowed > s.rate then
            local t = now + 1
            local first = rcall('ZRANGE', rk, 0, 0, 'WITHSCORES')
            if first[2] then
                t = tonumber(first[2]) + s.rate_period_ms + 1
            end
            local n = s.rate - used
            if n < allowed then
                allowed, upto, why = math.max(n, 0), t,
                                     string.format('rate %d per %d ms reached', s.rate,
                                                   s.rate_period_ms)
            end
        end
    end
    return allowed, upto, why
end

-- Records calls granted by reserve: in-flight count, probes, rate log.
local function svc_granted(s, now, n, host, shared)
    if n == 0 then
        return
    end
    if shared then -- svc_batch's shared batch: written net by corral_ack_reserve
        shared.granted = n
    else
        rcall('HINCRBY', s.key, inflight_field(host), itxt(n))
    end
    if s.state == 'half_open' then
        s.probes = s.probes + n
        rcall('HSET', s.key, 'probes', s.probes)
    end
    if s.rate > 0 then
        local rk = s.key .. ':rl'
        local seq = rcall('HINCRBY', s.key, 'rate_seq', n)
        local entries = {}
        for k = 1, n do
            entries[#entries + 1] = now
            entries[#entries + 1] = tostring(seq - n + k)
        end
        rcall('ZADD', rk, unpack(entries))
        rcall('PEXPIRE', rk, s.rate_period_ms + 1000)
    end
end

-- Collects the outcomes of one ack/fail/defer call for a queue's service
-- and applies them to the breaker once, at the end of the call.
-- With host (corral_ack_reserve, runs.lua), the batch is shared with the
-- call's reserve: the state is read once for both (load_svc's both), and
-- the host's calls in flight are written once, net, by corral_ack_reserve:
-- svc_leave_read counts that host's calls ended in b.acked (svc_apply
-- takes them off s.host_inflight for the reserve's gate), svc_granted its
-- grant in b.granted.
local function svc_batch(K, c, prefix, now, host)
    if c.service == '' then
        return nil
    end
    local SK = svc_key(prefix, c.service, c)
    local s = load_svc(SK, c.service, now, host, host ~= nil)
    if s == nil then
        return nil
    end
    local b = {s = s, ok = 0, fail = 0, slow = 0, pok = 0, pfail = 0, prel = 0, hosts = {},
               fail_why = ''}
    if host then
        b.host, b.acked, b.granted = host, 0, 0
    end
    return b
end

-- A job leaves its lease: its host's call slot and its probe permit (if it
-- held one) are released. Returns the job's started_ms (read anyway), so
-- the caller need not read it again. kind: 'ok', 'fail' (a breaker failure) or nil
-- (the call does not count: throttled, deferred, reclaimed).
-- svc_leave_read is svc_leave for a caller that has read the job's state,
-- worker, probe and started_ms fields itself.
local function svc_leave_read(b, jk, now, kind, why, state, worker, probe_field, started)
    if b == nil then
        return started
    end
    if state == 'active' and worker then
        local host = worker_host(worker)
        if host == b.host then -- the shared batch's host: written net (runs.lua)
            b.acked = b.acked + 1
        else
            b.hosts[host] = (b.hosts[host] or 0) + 1
        end
    end
    local probe = probe_field == '1'
    if probe then
        rcall('HDEL', jk, 'probe')
    end
    if kind == nil then
        if probe then
            b.prel = b.prel + 1
        end
        return started
    end
    local ms = now - (tonumber(started) or now)
    if ms >= b.s.slow_call_ms then
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
    return started
end

local function svc_leave(b, jk, now, kind, why)
    if b == nil then
        return
    end
    local j = rcall('HMGET', jk, 'state', 'worker', 'probe', 'started_ms')
    return svc_leave_read(b, jk, now, kind, why, j[1], j[2], j[3], j[4])
end

local function svc_apply(b, now)
    if b == nil then
        return
    end
    local s = b.s
    for host, n in pairs(b.hosts) do
        rcall('HINCRBY', s.key, inflight_field(host), itxt(-n))
        svc_wake(s, host)
    end
    if b.host and b.acked > 0 then -- the shared batch's host: written net (runs.lua)
        s.host_inflight = s.host_inflight - b.acked
        svc_wake(s, b.host)
    end
    if s.state == 'half_open' then
        if b.pfail > 0 then
            s.trips = s.trips + 1
            local dur = math.min(s.open_for_ms * 2 ^ math.min(s.trips, 40), s.open_max_ms)
            svc_open(s, now, dur, string.format('probe call failed: %s', b.fail_why:sub(1, 120)))
            return
        end
        s.probe_successes = s.probe_successes + b.pok
        s.probes = math.max(s.probes - b.prel, 0)
        if s.probe_successes >= s.half_open_calls then
            svc_close(s, now)
        else
            rcall('HSET', s.key, 'probe_successes', s.probe_successes, 'probes', s.probes)
            if b.prel > 0 then
                svc_wake(s, nil)
            end
        end
        return
    end
    if s.state ~= 'closed' or b.ok + b.fail == 0 then
        return -- calls that finish after the trip do not count
    end
    local idx = svc_bucket(s, now)
    svc_advance(s, idx)
    -- The newest bucket's field name, kept with the settings (derived data:
    -- prelude's hot-path caches) while the bucket lasts.
    local cf = s.calls_field
    if cf[1] ~= idx then
        cf[1], cf[2] = idx, 'calls:' .. itxt(idx)
    end
    rcall('HINCRBY', s.key, cf[2], itxt(b.ok + b.fail))
    if b.fail > 0 then
        rcall('HINCRBY', s.key, 'failures:' .. idx, b.fail)
    end
    if b.slow > 0 then
        rcall('HINCRBY', s.key, 'slow:' .. idx, b.slow)
    end
    -- Only a window holding failures or slow calls can trip, so a healthy
    -- service costs one HINCRBY per call here: the window is summed only
    -- while bad_calls says some may be in it (a success can still be the call
    -- that reaches min_calls with enough failures before it).
    if s.bad_calls + b.fail + b.slow == 0 then
        return
    end
    svc_sum(s, now)
    s.bad_calls = s.failures + s.slow_calls
    rcall('HSET', s.key, 'bad_calls', s.bad_calls)
    if s.calls >= s.min_calls then
        local why
        if s.failures * 100 >= s.failure_rate * s.calls then
            why = string.format('failure rate %s (%d of %d calls in %d ms; last: %s)',
                                pct_text(s.failures, s.calls), s.failures, s.calls, s.window_ms,
                                b.fail_why:sub(1, 120))
        elseif s.slow_calls * 100 >= s.slow_rate * s.calls then
            why = string.format('slow-call rate %s (%d of %d calls over %d ms)',
                                pct_text(s.slow_calls, s.calls), s.slow_calls, s.calls,
                                s.slow_call_ms)
        end
        if why then
            s.trips = 0
            svc_open(s, now, s.open_for_ms, why)
        end
    end
end

-- A 429: the whole service waits until its Retry-After.
local function svc_throttle(b, now, delay, why)
    if b == nil then
        return
    end
    local s = b.s
    if now + delay > s.throttled_until_ms then
        s.throttled_until_ms, s.throttle_reason = now + delay, why
        rcall('HSET', s.key, 'throttled_until_ms', s.throttled_until_ms, 'throttle_reason',
              why:sub(1, 200))
    end
end

-- A billing or quota error: retrying will not help for a long time.
local function svc_quota(b, now, why)
    if b == nil then
        return 0
    end
    local s = b.s
    if s.state ~= 'open' or s.open_until_ms < now + s.open_max_ms then
        s.trips = s.trips + 1
        svc_open(s, now, s.open_max_ms, 'quota: ' .. why:sub(1, 200))
    end
    return s.open_until_ms - now
end

-- The breaker as status shows it (read-only: rolls the window in memory).
local function svc_view(s, now)
    svc_sum(s, now)
    local st = s.state
    if st == 'open' and now >= s.open_until_ms then
        st = 'half_open'
    end
    local inflight, total = {}, 0
    local h = rcall('HGETALL', s.key)
    for i = 1, #h, 2 do
        local host = h[i]:match('^inflight:(.*)$')
        if host then
            local n = tonumber(h[i + 1]) or 0
            if n > 0 then
                inflight[host] = n
                total = total + n
            end
        end
    end
    local rate_used = 0
    if s.rate > 0 then
        rate_used = rcall('ZCOUNT', s.key .. ':rl', now - s.rate_period_ms, '+inf')
    end
    if st ~= 'closed' and s.calls == 0 then
        -- Open or half-open: show the window that tripped it.
        local t = rcall('HMGET', s.key, 'trip_calls', 'trip_failures')
        s.calls, s.failures = tonumber(t[1]) or 0, tonumber(t[2]) or 0
    end
    local c = s.calls
    local v = {
        service = s.name, state = st, calls = c, failures = s.failures,
        slow_calls = s.slow_calls,
        failure_rate = c > 0 and math.floor(s.failures * 1000 / c + 0.5) / 1000 or 0,
        slow_rate = c > 0 and math.floor(s.slow_calls * 1000 / c + 0.5) / 1000 or 0,
        open_until_ms = st ~= 'closed' and s.open_until_ms or 0,
        throttled_until_ms = s.throttled_until_ms > now and s.throttled_until_ms or 0,
        reason = st ~= 'closed' and utf8_clean(s.reason) or '',
        throttle_reason = s.throttled_until_ms > now and utf8_clean(s.throttle_reason) or '',
        trips = s.trips, probes = s.probes, probe_successes = s.probe_successes,
        half_open_calls = s.half_open_calls,
        min_calls = s.min_calls, window_ms = s.window_ms, inflight = total, rate_limit = s.rate,
        rate_period_ms = s.rate_period_ms, rate_used = rate_used, time_ms = now
    }
    if total > 0 then
        v.inflight_by_host = inflight
    end
    local held
    if v.throttled_until_ms > 0 then
        held = 'throttled: ' .. s.throttle_reason
    elseif st == 'open' then
        held = 'breaker open: ' .. s.reason
    elseif st == 'half_open' then
        held = 'breaker half-open'
    elseif s.rate > 0 and rate_used >= s.rate then
        held = string.format('at its rate limit (%d per %d ms)', s.rate, s.rate_period_ms)
    end
    v.hold = held or ''
    tok_view(s, now, v) -- tokens.lua
    return v
end

-- Returns the service key and name from the one key argument: a bare name
-- (prefix "corral"), "<prefix>:svc:<name>" or, on a Redis Cluster, the
-- hash-tagged "<prefix>:{svc:<name>}", kept as it is (gate.lua).
local function service_key(key)
    if key == nil then
        fail('BADARG', 'expected one key: the service name')
    end
    local prefix, tag, name = key:match('^(.-):({?)svc:(.*)$')
    if tag == '{' then name = name:match('^(.*)}$') end
    if prefix == nil or name == nil then
        prefix, name = 'corral', key
    end
    if not valid_name(name) then
        fail('BADNAME', 'bad service name "%s": use 1-64 characters of A-Z a-z 0-9 _ . : -',
             name:sub(1, 80))
    end
    if not valid_name(prefix) then
        fail('BADNAME', 'bad key prefix "%s"', prefix:sub(1, 80))
    end
    return tag == '{' and key or svc_key(prefix, name), name, prefix
end

-- A service hash of library version 3 (short field names: win, minc, ...,
-- i:<host>) starts afresh: its breaker closed, its window empty, its
-- throttle ended; only the calls in flight per host are kept (the jobs
-- holding them give them back when they end), as inflight:<host>.
local function upgrade_v3(SK)
    if not rcall('HGET', SK, 'win') then
        return
    end
    local h = rcall('HGETALL', SK)
    local keep = {}
    for i = 1, #h, 2 do
        local host = h[i]:match('^i:(.*)$')
        if host then
            keep[#keep + 1] = 'inflight:' .. host
            keep[#keep + 1] = h[i + 1]
        end
    end
    rcall('DEL', SK)
    if #keep > 0 then
        rcall('HSET', SK, unpack(keep))
    end
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
        'window_ms', math.floor(num('window_ms', 60000, 100, 86400000)),
        'min_calls', math.floor(num('min_calls', 20, 1, 1000000)),
        'failure_rate', num('failure_rate', 50, 0.01, 100),
        'slow_call_ms', math.floor(num('slow_call_ms', 30000, 1, 86400000)),
        'slow_rate', num('slow_rate', 80, 0.01, 100),
        'open_for_ms', math.floor(num('open_for_ms', 30000, 1, 86400000)),
        'open_max_ms', math.floor(num('open_max_ms', 300000, 1, 86400000)),
        'half_open_calls', math.floor(num('half_open_calls', 3, 1, 10000)),
        'rate', math.floor(num('rate', 0, 0, 100000000)),
        'rate_period_ms', math.floor(num('rate_period_ms', 60000, 1, 86400000)),
        -- tokens.lua's budgets: tokens per period, prices per million
        -- tokens and the spend budget in nano-units (docs/tokens.md)
        'tokens', math.floor(num('tokens', 0, 0, 1e12)),
        'tokens_period_ms', math.floor(num('tokens_period_ms', 60000, 1, 86400000)),
        'bytes_per_token', math.floor(num('bytes_per_token', 4, 1, 64)),
        'price_input', math.floor(num('price_input_nano', 0, 0, 1e15)),
        'price_output', math.floor(num('price_output_nano', 0, 0, 1e15)),
        'budget', math.floor(num('budget_nano', 0, 0, 1e18)),
        'budget_period_ms', math.floor(num('budget_period_ms', 86400000, 1, 366 * 86400000))
    }
    if fields[12] > fields[14] then
        fail('BADSETTING', 'service "%s": open_for_ms must not exceed open_max_ms', name)
    end
    -- "settings": each name=value, one a line; longer than Redis's
    -- hash-max-listpack-value (64 bytes), so the service's hash is a real
    -- hash table and the fields reserve and ack read are found at once (in
    -- a listpack of 30-odd fields a lookup costs about a microsecond). "sv",
    -- its digest, is what they read (load_svc): 16 bytes, not the whole text.
    local values = {}
    for i = 2, #fields, 2 do
        values[#values + 1] = fields[i - 1] .. '=' .. fields[i]
    end
    local text = table.concat(values, '\n')
    fields[#fields + 1], fields[#fields + 2] = 'settings', text
    fields[#fields + 1], fields[#fields + 2] = 'sv', redis.sha1hex(text):sub(1, 16)
    upgrade_v3(SK)
    if not rcall('HGET', SK, 'state') then
        fields[#fields + 1] = 'state'
        fields[#fields + 1] = 'closed'
    end
    rcall('HSET', SK, unpack(fields))
    -- fallback.lua: a later service of a list calls up to its own max_inflight per host
    -- (0: the worker's), and a job's record names its model ('' none).
    rcall('HSET', SK, 'max_inflight', math.floor(num('max_inflight', 0, 0, 1000000)),
          'model', type(v.model) == 'string' and v.model:sub(1, 200) or '')
    redis.pcall('SADD', prefix .. ':services', name) -- on a Cluster: a call of its own (gate.lua)
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
    for _, e in ipairs(rcall('SMEMBERS', SK .. ':held')) do
        local K, id = e:match('^(.*)|([^|]*)$')
        if K and rcall('ZSCORE', K .. ':sched', id) then
            rcall('ZADD', K .. ':sched', 'XX', now, id)
            rcall('HSET', job_key(K, id), 'run_at_ms', now)
            rcall('HDEL', K .. ':conf', 'due') -- promote_due looks again (jobs.lua)
        end
    end
    rcall('HSET', SK, 'throttled_until_ms', 0, 'throttle_reason', '')
    svc_close(s, now)
    return 'OK'
end

