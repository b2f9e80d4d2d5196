-- stats.lua: per-minute counters and the processing-time histogram of a
-- queue, and corral_stats, which reads them. Keys, derived from the queue
-- key K: K:st:<minute> (hash, STATS_TTL_S), and for corral_stats the
-- queue's lists, sets and jobs (jobs.lua) and its service (services.lua).

local STATS_TTL_S = 7200
-- A queue's usage totals (tokens.lua): defined there.
local tok_totals
-- Upper bounds (ms) of the processing-time histogram buckets; the last is open.
local HIST = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 30000,
              60000, 120000, 300000, 600000}

-- The key of the statistics bucket of the minute of now, and K:ctr
-- (counters.lua): kept per queue while the minute lasts (derived data:
-- prelude's hot-path caches), so the hot path does not format the
-- minute's number or build the keys on every call.
local st_keys, st_cached = {}, 0
-- e[4]: where the minute starts, so the hot path compares rather than
-- divides (math.floor is a global's lookup and a C call).
local function stat_key(K, now)
    local e = st_keys[K]
    if e and now >= e[4] and now < e[4] + 60000 then
        return e[2], e[3]
    end
    local m = math.floor(now / 60000)
    local bk = K .. ':st:' .. itxt(m)
    if e then
        e[1], e[2], e[4] = m, bk, m * 60000
    else
        if st_cached >= CACHE_MAX then
            st_keys, st_cached = {}, 0
        end
        e = {m, bk, K .. ':ctr', m * 60000}
        st_keys[K], st_cached = e, st_cached + 1
    end
    return bk, e[3]
end

-- Per-minute statistics. Each counter's first increment in a bucket sets the
-- TTL, so no call pays for an EXPIRE on the hot path more than a few times a
-- minute.
local function stat(K, now, field, n)
    local bk, ck = stat_key(K, now)
    n = n or 1
    local nt = itxt(n)
    if rcall('HINCRBY', bk, field, nt) == n then
        rcall('EXPIRE', bk, STATS_TTL_S)
    end
    count_total(K, field, nt, ck) -- the never-expiring total (counters.lua)
    return bk
end

-- The histogram bucket field of a processing time (HIST.names: "h0" ...).
HIST.names = {}
for i = 0, #HIST do
    HIST.names[i + 1] = 'h' .. i
end
local function hist_field(ms)
    for i = 1, #HIST do -- not ipairs: no C call per step
        if ms <= HIST[i] then
            return HIST.names[i]
        end
    end
    return HIST.names[#HIST + 1]
end

-- A call's statistics, summed in a table (field -> count) and written by
-- stat_flush once at the end: one HINCRBY per field per call rather than
-- three or four per job.
local function stat_add(acc, field, n)
    acc[field] = (acc[field] or 0) + (n or 1)
end

-- A job's processing time (since its run started), recorded with its
-- outcome field ('done' or 'fail'). Their count is the sum of the histogram's
-- fields: since library version 7 no field "pn" holds it (one HINCRBY less
-- per ack and key; readers sum h0..h19 as corral_stats does).
local function stat_proc_add(acc, now, field, started)
    local ms = now - (tonumber(started) or now)
    if ms < 0 then
        ms = 0
    end
    stat_add(acc, field)
    stat_add(acc, hist_field(ms))
    stat_add(acc, 'ps', ms)
end

local function stat_flush(K, now, acc)
    local bk, ck, fresh = nil, nil, false
    for field, n in pairs(acc) do
        if not bk then
            bk, ck = stat_key(K, now)
        end
        local nt = itxt(n)
        if rcall('HINCRBY', bk, field, nt) == n then
            fresh = true
        end
        count_total(K, field, nt, ck) -- the never-expiring total (counters.lua)
    end
    if fresh then
        rcall('EXPIRE', bk, STATS_TTL_S)
    end
end

local function stat_proc(K, now, field, started)
    local acc = {}
    stat_proc_add(acc, now, field, started)
    stat_flush(K, now, acc)
end


-- corral_stats: KEYS[1] queue; ARGV[1] optional window in seconds (default
-- 60, whole minutes); ARGV[2] optional "lean": leave the breaker out ->
-- a JSON object: name, paused, depth, depth_by_priority, inflight,
-- scheduled, dead, enqueued_per_s, done_per_s, failed_per_s,
-- proc_ms_p50/p95/p99/mean, oldest_wait_ms, window_s, tenanted (a job
-- with the option tenant was ever enqueued: tenants.lua), and the breaker
-- of the queue's service (as corral_breaker) unless lean.
local function corral_stats(keys, args)
    local K, q, prefix = queue_key(keys[1])
    local c, tenanted = load_conf(K, q)
    local window_s = int_arg('BADARG', args[1] or 60, 'window', 60, 3600)
    local minutes = math.ceil(window_s / 60)
    local now = now_ms()
    local by, depth, oldest = {}, 0, nil
    for i, name in ipairs(c.priorities) do
        local lk = K .. ':q:' .. (i - 1)
        local n = rcall('LLEN', lk)
        if n > 0 then
            local head = rcall('LINDEX', lk, 0)
            local t = tonumber(rcall('HGET', job_key(K, head), 'queued_ms'))
            if t and (oldest == nil or t < oldest) then
                oldest = t
            end
        end
        local tw = tenant_waiting(K, i - 1) -- named tenants' jobs (tenants.lua)
        if tw > 0 then
            n = n + tw
            local t = tenant_oldest(K, i - 1)
            if t and (oldest == nil or t < oldest) then
                oldest = t
            end
        end
        by[name] = n
        depth = depth + n
    end
    local m = math.floor(now / 60000)
    local sums = {enq = 0, done = 0, fail = 0, dead = 0, retry = 0, defer = 0, lost = 0,
                  ps = 0, pn = 0, tin = 0, tout = 0, cost = 0, tcalls = 0} -- t*, cost: tokens.lua
    local hist, served = {}, {}
    for b = 0, #HIST do
        hist[b] = 0
    end
    for k = m - minutes, m do
        local h = rcall('HGETALL', K .. ':st:' .. k)
        for i = 1, #h, 2 do
            local f, v = h[i], tonumber(h[i + 1])
            if sums[f] ~= nil then
                sums[f] = sums[f] + v
            elseif f:sub(1, 1) == 'h' then
                local b = tonumber(f:sub(2))
                hist[b] = (hist[b] or 0) + v
            elseif f:sub(1, 7) == 'served:' then -- fallback.lua: jobs per service
                served[f:sub(8)] = (served[f:sub(8)] or 0) + v
            end
        end
    end
    sums.pn = 0 -- the runs timed: the histogram's sum (stat_proc_add), "pn" of older buckets unread
    for b = 0, #HIST do
        sums.pn = sums.pn + hist[b]
    end
    local span_s = (now - (m - minutes) * 60000) / 1000
    local function pct(p)
        if sums.pn == 0 then
            return 0
        end
        local want, acc = p * sums.pn, 0
        for b = 0, #HIST do
            local cnt = hist[b]
            if cnt > 0 and acc + cnt >= want then
                local lo = b == 0 and 0 or HIST[b]
                local hi = HIST[b + 1] or lo
                return math.floor(lo + (hi - lo) * (want - acc) / cnt + 0.5)
            end
            acc = acc + cnt
        end
        return HIST[#HIST]
    end
    local function rate(n)
        return math.floor(n / span_s * 1000 + 0.5) / 1000
    end
    local paused = rcall('EXISTS', K .. ':paused') == 1
    local breaker = nil
    if c.service ~= '' and args[2] ~= 'lean' then
        -- With a fallback list (fallback.lua), the breaker of the first
        -- service that holds nothing back (the one jobs go to), else the first's.
        for _, name in ipairs(c.services or {c.service}) do
            local sv = load_svc(svc_key(prefix, name), name)
            local v = sv ~= nil and svc_view(sv, now) or nil
            breaker = breaker or v
            if v ~= nil and v.hold == '' then
                breaker = v
                break
            end
        end
    end
    return cjson.encode({
        name = q, paused = paused, depth = depth, depth_by_priority = by,
        inflight = rcall('ZCARD', K .. ':active'),
        scheduled = rcall('ZCARD', K .. ':sched'),
        dead = rcall('LLEN', K .. ':dead'),
        enqueued_per_s = rate(sums.enq), done_per_s = rate(sums.done),
        failed_per_s = rate(sums.fail), retried = sums.retry, deferred = sums.defer,
        lost = sums.lost, died = sums.dead,
        proc_ms_p50 = pct(0.50), proc_ms_p95 = pct(0.95), proc_ms_p99 = pct(0.99),
        proc_ms_mean = sums.pn > 0 and math.floor(sums.ps / sums.pn + 0.5) or 0,
        oldest_wait_ms = oldest and (now - oldest) or 0, window_s = window_s,
        service = c.gated or c.service, time_ms = now, breaker = breaker, tenanted = tenanted,
        -- tokens.lua's ledger over the window: tokens by direction, cost
        tokens_in = sums.tin, tokens_out = sums.tout, cost_nano = sums.cost,
        tokens_per_min = math.floor((sums.tin + sums.tout) * 60 / span_s + 0.5),
        cost_per_hour = math.floor(sums.cost * 3600 / span_s + 0.5) / 1e9,
        usage_total = tok_totals(K),
        -- fallback.lua: the list, and the jobs each service was given in the window
        -- (gate.lua: a gated queue's list, c.gated_list)
        services = c.services or c.gated_list,
        served = (c.services or c.gated_list) and served or nil
    })
end

