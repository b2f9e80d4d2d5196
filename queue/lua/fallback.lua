-- fallback.lua: a queue's fallback list of services ([queue Q] service =
-- A, B, ...; docs/breakers.md, "Fallback"). K:conf's service holds the
-- names comma-separated; load_conf keeps the first as c.service (so a
-- single service works exactly as before) and the list as c.services. A
-- reserve leases its jobs to the first service of the list that takes
-- calls (breaker closed, or half-open with a probe permit; no throttle,
-- rate or max_inflight gate; room in its token and spend budgets), and
-- writes it in each job's served_by field; the calls that end a run
-- (ack, fail, defer, reclaim, cancel) read it back and release that
-- service. Keys: the services' (services.lua), from K's prefix and the
-- names; the queue's stats bucket K:st:<minute> (stats.lua) gets
-- served:<service>, the jobs each service was given.

-- Whether the token or spend budget of s (tokens.lua) has no room now.
local function fb_no_budget(s, now, K)
    local t = tok_begin(s, now, K)
    if t == nil then
        return false
    end
    return (s.budget > 0 and t.spent >= s.budget) or (s.tokens > 0 and t.left <= 0)
end

-- The service of c.services a reserve of n jobs uses: its state (nil when
-- not declared: no breaker), the worker's host, how many calls it allows,
-- the gate (until, why) when fewer than n, and its name. When none takes
-- calls, the first service's state and name with the earliest gate of all,
-- so the worker sleeps on the first service's wake list until then. The
-- first service's max_inflight is the worker's (the reserve's argument);
-- the others' is the one they declared (corral_declare_service).
local function fb_choose(K, c, prefix, worker, now, n, max_inflight)
    local host = worker:match('^(.*):[^:]*$') or worker
    local first, until_ms, why
    for i, name in ipairs(c.services) do
        local s = load_svc(svc_key(prefix, name), name)
        if s == nil then
            return nil, host, n, nil, nil, name
        end
        local m = rcall('HMGET', s.key, 'max_inflight', 'model')
        local mi = max_inflight
        if i > 1 and (tonumber(m[1]) or 0) > 0 then
            mi = tonumber(m[1])
        end
        s.model = m[2] ~= '' and m[2] or nil
        local allowed, upto, w = svc_gate(s, now, n, host, mi)
        if allowed > 0 and fb_no_budget(s, now, K) then
            allowed, upto, w = 0, now + 1000, 'token or spend budget used up (service ' .. name .. ')'
        end
        if allowed > 0 then
            return s, host, allowed, upto, w, name
        end
        first = first or s
        if upto and (until_ms == nil or upto < until_ms) then
            until_ms, why = upto, w
        end
    end
    return first, host, 0, until_ms, why, c.services[1]
end

-- Counts n jobs given to service name in the queue's minute bucket.
local function fb_served(K, now, name, n)
    if n > 0 then
        local bk = K .. ':st:' .. math.floor(now / 60000)
        if rcall('HINCRBY', bk, 'served:' .. name, n) == n then
            rcall('EXPIRE', bk, STATS_TTL_S)
        end
    end
end

-- The breaker batch of a call that ends runs (services.lua's svc_batch):
-- for a queue with a fallback list, one batch per service its jobs used.
local function fb_batch(K, c, prefix, now)
    if not c.services then
        return svc_batch(K, c, prefix, now) -- with now: only hot fields (load_svc)
    end
    return {fb = true, K = K, prefix = prefix, first = c.service, by = {}, now = now}
end

-- The batch for the job at jk: the service its lease chose.
local function fb_for(bs, jk)
    if bs == nil or not bs.fb then
        return bs
    end
    local name = rcall('HGET', jk, 'served_by') or bs.first
    local b = bs.by[name]
    if b == nil then
        b = svc_batch(bs.K, {service = name}, bs.prefix, bs.now) or false
        bs.by[name] = b
    end
    return b or nil
end

local function fb_apply(bs, now)
    if bs == nil or not bs.fb then
        return svc_apply(bs, now)
    end
    for _, b in pairs(bs.by) do
        if b then
            svc_apply(b, now)
        end
    end
end

-- corral_declare's service setting: one name, or a fallback list as a JSON
-- array or a comma-separated text (spaces allowed). Returns what K:conf
-- keeps: the names joined by commas; refuses a bad name or one named twice.
local function fb_declared(q, v)
    if v == nil or v == '' then
        return ''
    end
    local names = {}
    if type(v) == 'table' then
        names = v
    elseif type(v) == 'string' then
        for item in v:gmatch('[^,]+') do
            names[#names + 1] = item:match('^%s*(.-)%s*$')
        end
    else
        fail('BADSETTING', 'queue "%s": service must be a name or a list of names', q)
    end
    if #names > 16 then
        fail('BADSETTING', 'queue "%s": service lists %d services, at most 16', q, #names)
    end
    local seen = {}
    for _, name in ipairs(names) do
        if type(name) ~= 'string' or not valid_name(name) then
            fail('BADSETTING', 'queue "%s": bad service name "%s" in the service list', q,
                 shown(name):sub(1, 64))
        end
        if seen[name] then
            fail('BADSETTING', 'queue "%s": service "%s" is listed twice', q, name)
        end
        seen[name] = true
    end
    return table.concat(names, ',')
end
